//! Phoenix frames with the `vsn=1.0.0` serializer: one JSON object per text message,
//! `{topic, event, payload, ref, join_ref}`. The server's v1 frames carry no `join_ref`; a
//! reply's `ref` is the ref of the push it answers, and `phx_close`/`phx_error` carry the
//! join ref in `ref`.
//!
//! Everything the server sends is parsed into the expected shape here; a frame that does not
//! fit is an error the socket logs and drops.

use std::collections::BTreeMap;

use serde::{
    de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor},
    Deserialize, Deserializer, Serialize,
};
use serde_json::{value::RawValue, Map, Value};

use super::row::Row;

/// A frame to send.
#[derive(Debug, Serialize)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub event: &'a str,
    pub payload: &'a Value,
    #[serde(rename = "ref")]
    pub reference: Option<&'a str>,
    pub join_ref: Option<&'a str>,
}

impl Outgoing<'_> {
    pub fn encode(&self) -> String {
        // Serializing borrowed strings and a `Value` cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A frame's `ref` or `join_ref`: a string; a number is accepted (some servers count with
/// integers).
struct Ref(Option<String>);

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ref, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(u64),
        }
        Ok(Ref(Option::<Either>::deserialize(d)?.map(|r| match r {
            Either::S(s) => s,
            Either::N(n) => n.to_string(),
        })))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reply {
    pub status: String,
    #[serde(default)]
    pub response: Value,
}

/// The `response` of an ok join reply.
#[derive(Debug, Default, Deserialize)]
pub struct JoinResponse {
    #[serde(default)]
    pub postgres_changes: Vec<ServerBinding>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerBinding {
    pub id: i64,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub schema: String,
    #[serde(default)]
    pub table: String,
    #[serde(default)]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeType {
    Insert,
    Update,
    Delete,
}

impl ChangeType {
    /// As a binding's `event` names it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeType::Insert => "INSERT",
            ChangeType::Update => "UPDATE",
            ChangeType::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChangeData {
    pub schema: String,
    pub table: String,
    #[serde(rename = "type")]
    pub kind: ChangeType,
    #[serde(default)]
    pub commit_timestamp: Option<String>,
    #[serde(default)]
    pub record: Option<Row>,
    #[serde(default)]
    pub old_record: Option<Row>,
    #[serde(default)]
    pub errors: Option<Value>,
}

/// What a change's `errors` say about its record (Supabase's `apply_rls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// `null` or `[]`: the record is whole.
    None,
    /// Only `Error 413` (the row was over the server's `max_record_bytes`): the server kept
    /// the small columns and left the others out. The row is read over REST.
    TooLarge,
    /// `Error 401` or `Error 403`: this subscriber may not see the row. Nothing of it is
    /// shown, nor asked for.
    Hidden(String),
    /// Anything else (or `errors` of an unexpected shape): the record cannot be trusted to
    /// be whole. The row is read over REST, where the server's own checks decide.
    Unknown(String),
}

/// At most this much of the server's `errors` goes into a log line.
const ERRORS_LOGGED: usize = 200;

impl ChangeData {
    /// What `errors` say about `record`. The worst wins: a row this subscriber may not
    /// see stays unseen even when it is too large as well.
    pub fn record_problem(&self) -> RecordProblem {
        let errors = match &self.errors {
            None | Some(Value::Null) => return RecordProblem::None,
            Some(Value::Array(errors)) if errors.is_empty() => return RecordProblem::None,
            Some(Value::Array(errors)) => errors,
            Some(other) => return RecordProblem::Unknown(excerpt(&other.to_string())),
        };
        let text = || {
            excerpt(
                &errors
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), String::from))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        };
        let code = |e: &Value| {
            e.as_str()
                .and_then(|e| e.strip_prefix("Error "))
                .and_then(|e| e.get(..3))
                .map(String::from)
        };
        let codes: Vec<Option<String>> = errors.iter().map(code).collect();
        if codes
            .iter()
            .any(|c| matches!(c.as_deref(), Some("401" | "403")))
        {
            RecordProblem::Hidden(text())
        } else if codes.iter().all(|c| c.as_deref() == Some("413")) {
            RecordProblem::TooLarge
        } else {
            RecordProblem::Unknown(text())
        }
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(ERRORS_LOGGED).collect()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    pub ids: Vec<i64>,
    pub data: ChangeData,
}

/// One presence meta; `phx_ref` identifies it, the rest is what the tracker sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub phx_ref: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub metas: Vec<Meta>,
}

/// `presence_state`: key → metas.
pub type PresenceState = BTreeMap<String, Entry>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceDiff {
    #[serde(default)]
    pub joins: PresenceState,
    #[serde(default)]
    pub leaves: PresenceState,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Broadcast {
    pub event: String,
    #[serde(default)]
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct System {
    #[serde(default)]
    pub extension: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: Value,
}

/// What a server frame means.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Reply {
        reference: String,
        reply: Reply,
    },
    Change(Change),
    PresenceState(PresenceState),
    PresenceDiff(PresenceDiff),
    Broadcast(Broadcast),
    System(System),
    /// The server closed the channel whose join ref is given (when it says).
    Close {
        join_ref: Option<String>,
    },
    Error {
        join_ref: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("not a Phoenix frame: {0}")]
    Shape(String),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("bad {event} payload: {reason}")]
    Payload { event: String, reason: String },
}

/// Reads one text message, in one pass when `event` comes before `payload` (as Phoenix and
/// the local cloud send them); otherwise the payload is kept as text and read after.
pub fn decode(text: &str) -> Result<(String, Incoming), FrameError> {
    let f: Fields = serde_json::from_str(text).map_err(|e| FrameError::Shape(e.to_string()))?;
    let body = match f.body {
        Some(Body::Read(b)) => b,
        later => {
            let text = match later {
                Some(Body::Raw(raw)) => raw.get(),
                _ => "null",
            };
            let mut d = serde_json::Deserializer::from_str(text);
            BodySeed(&f.event)
                .deserialize(&mut d)
                .map_err(|e| FrameError::Payload {
                    event: f.event.chars().take(40).collect(),
                    reason: e.to_string(),
                })?
        }
    };
    let incoming = match body {
        Typed::Reply(reply) => Incoming::Reply {
            reference: f.reference.ok_or_else(|| FrameError::Payload {
                event: "phx_reply".into(),
                reason: "a reply without a ref".into(),
            })?,
            reply,
        },
        Typed::Change(c) => Incoming::Change(c),
        Typed::PresenceState(s) => Incoming::PresenceState(s),
        Typed::PresenceDiff(d) => Incoming::PresenceDiff(d),
        Typed::Broadcast(b) => Incoming::Broadcast(b),
        Typed::System(s) => Incoming::System(s),
        Typed::Untyped => match f.event.as_str() {
            "phx_close" => Incoming::Close {
                join_ref: f.join_ref.or(f.reference),
            },
            "phx_error" => Incoming::Error {
                join_ref: f.join_ref.or(f.reference),
            },
            other => return Err(FrameError::UnknownEvent(other.chars().take(40).collect())),
        },
    };
    Ok((f.topic, incoming))
}

/// A payload read into the type its event calls for.
enum Typed {
    Reply(Reply),
    Change(Change),
    PresenceState(PresenceState),
    PresenceDiff(PresenceDiff),
    Broadcast(Broadcast),
    System(System),
    /// `phx_close`, `phx_error` (whose payload says nothing) and unknown events.
    Untyped,
}

struct BodySeed<'e>(&'e str);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Typed;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Typed, D::Error> {
        Ok(match self.0 {
            "phx_reply" => Typed::Reply(Reply::deserialize(d)?),
            "postgres_changes" => Typed::Change(Change::deserialize(d)?),
            "presence_state" => Typed::PresenceState(PresenceState::deserialize(d)?),
            "presence_diff" => Typed::PresenceDiff(PresenceDiff::deserialize(d)?),
            "broadcast" => Typed::Broadcast(Broadcast::deserialize(d)?),
            "system" => Typed::System(System::deserialize(d)?),
            _ => {
                IgnoredAny::deserialize(d)?;
                Typed::Untyped
            }
        })
    }
}

enum Body<'a> {
    Read(Typed),
    /// The payload came before the event.
    Raw(&'a RawValue),
}

/// A frame's fields, its payload read on the way when the event is known by then.
struct Fields<'a> {
    topic: String,
    event: String,
    body: Option<Body<'a>>,
    reference: Option<String>,
    join_ref: Option<String>,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Phoenix frame object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        fn once<T, E: serde::de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        let (mut topic, mut event, mut body) = (None, None::<String>, None);
        let (mut reference, mut join_ref) = (None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "topic" => {
                    once(&topic, "topic")?;
                    topic = Some(map.next_value::<String>()?);
                }
                "event" => {
                    once(&event, "event")?;
                    event = Some(map.next_value::<String>()?);
                }
                "payload" => {
                    once(&body, "payload")?;
                    body = Some(match &event {
                        Some(e) => Body::Read(map.next_value_seed(BodySeed(e))?),
                        None => Body::Raw(map.next_value::<&'de RawValue>()?),
                    });
                }
                "ref" => {
                    once(&reference, "ref")?;
                    reference = Some(map.next_value::<Ref>()?.0);
                }
                "join_ref" => {
                    once(&join_ref, "join_ref")?;
                    join_ref = Some(map.next_value::<Ref>()?.0);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Fields {
            topic: topic.ok_or_else(|| serde::de::Error::missing_field("topic"))?,
            event: event.ok_or_else(|| serde::de::Error::missing_field("event"))?,
            body,
            reference: reference.flatten(),
            join_ref: join_ref.flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_classify_the_record() {
        let with = |errors: Value| ChangeData {
            schema: "public".into(),
            table: "messages".into(),
            kind: ChangeType::Insert,
            commit_timestamp: None,
            record: None,
            old_record: None,
            errors: Some(errors),
        };
        let p = |errors: Value| with(errors).record_problem();
        assert_eq!(p(Value::Null), RecordProblem::None);
        assert_eq!(p(serde_json::json!([])), RecordProblem::None);
        assert_eq!(
            p(serde_json::json!(["Error 413: Payload Too Large"])),
            RecordProblem::TooLarge
        );
        assert!(matches!(
            p(serde_json::json!([
                "Error 413: Payload Too Large",
                "Error 401: Unauthorized"
            ])),
            RecordProblem::Hidden(_)
        ));
        assert!(matches!(
            p(serde_json::json!(["Error 403: Forbidden"])),
            RecordProblem::Hidden(_)
        ));
        for odd in [
            serde_json::json!(["Error 413: Payload Too Large", "Error 500: x"]),
            serde_json::json!(["Error 4"]),
            serde_json::json!([413]),
            serde_json::json!("Error 413: Payload Too Large"),
            serde_json::json!({"e": 1}),
        ] {
            assert!(matches!(p(odd.clone()), RecordProblem::Unknown(_)), "{odd}");
        }
        let RecordProblem::Unknown(logged) = p(serde_json::json!(["x".repeat(10_000)])) else {
            panic!("not unknown")
        };
        assert_eq!(logged.chars().count(), ERRORS_LOGGED);
    }
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn encodes_v1_objects() {
        let p = json!({"config": {}});
        let f = Outgoing {
            topic: "realtime:workspace:x",
            event: "phx_join",
            payload: &p,
            reference: Some("1"),
            join_ref: Some("1"),
        };
        let v: Value = serde_json::from_str(&f.encode()).unwrap();
        assert_eq!(
            v,
            json!({"topic":"realtime:workspace:x","event":"phx_join","payload":{"config":{}},"ref":"1","join_ref":"1"})
        );
        let hb = Outgoing {
            topic: "phoenix",
            event: "heartbeat",
            payload: &json!({}),
            reference: Some("2"),
            join_ref: None,
        };
        assert!(hb.encode().contains("\"join_ref\":null"));
    }

    #[test]
    fn reads_the_reference_frames() {
        let (topic, f) = decode(r#"{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{"postgres_changes":[{"event":"INSERT","schema":"public","table":"todos","filter":"id=eq.1","id":38606455}]}},"ref":"6"}"#).unwrap();
        assert_eq!(topic, "realtime:room1");
        let Incoming::Reply { reference, reply } = f else {
            panic!()
        };
        assert_eq!((reference.as_str(), reply.status.as_str()), ("6", "ok"));
        let r: JoinResponse = serde_json::from_value(reply.response).unwrap();
        assert_eq!(r.postgres_changes[0].id, 38606455);

        let (_, f) = decode(r#"{"topic":"realtime:room1","event":"postgres_changes","payload":{"ids":[38606455],"data":{"schema":"public","table":"todos","commit_timestamp":"2025-01-01T12:00:00.123Z","type":"UPDATE","columns":[{"name":"id","type":"int8"}],"record":{"id":1,"done":true},"old_record":{"id":1},"errors":null}},"ref":null}"#).unwrap();
        let Incoming::Change(c) = f else { panic!() };
        assert_eq!((c.ids, c.data.kind), (vec![38606455], ChangeType::Update));
        let record: Value = serde_json::from_str(c.data.record.unwrap().into_raw().get()).unwrap();
        assert_eq!(record["done"], json!(true));

        let (_, f) = decode(r#"{"topic":"t","event":"presence_state","payload":{"user-1":{"metas":[{"phx_ref":"GBm0x","user":"a"}]}},"ref":null}"#).unwrap();
        let Incoming::PresenceState(s) = f else {
            panic!()
        };
        assert_eq!(s["user-1"].metas[0].fields["user"], json!("a"));

        let (_, f) = decode(r#"{"topic":"t","event":"phx_close","payload":{},"ref":"6"}"#).unwrap();
        assert_eq!(
            f,
            Incoming::Close {
                join_ref: Some("6".into())
            }
        );
        let (_, f) = decode(
            r#"{"topic":"t","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":9}"#,
        )
        .unwrap();
        assert!(matches!(f, Incoming::Reply { reference, .. } if reference == "9"));
    }

    #[test]
    fn a_change_is_read_whatever_the_field_order() {
        let change = r#"{"ids":[1],"data":{"schema":"public","table":"m","type":"INSERT","record":{"id":1}}}"#;
        let frames = [
            format!(r#"{{"event":"postgres_changes","payload":{change},"ref":null,"topic":"t"}}"#),
            format!(r#"{{"payload":{change},"topic":"t","event":"postgres_changes"}}"#),
        ];
        for f in &frames {
            let (topic, incoming) = decode(f).unwrap();
            assert_eq!(topic, "t");
            let Incoming::Change(c) = incoming else {
                panic!("{f}")
            };
            assert_eq!(c.ids, vec![1]);
        }
        assert!(decode(r#"{"topic":"t","topic":"u","event":"phx_close"}"#).is_err());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for bad in [
            "",
            "not json",
            "[null,null,\"t\",\"phx_reply\",{}]",
            r#"{"topic":1,"event":"x"}"#,
            r#"{"topic":"t","event":"phx_reply","payload":{"status":"ok"}}"#,
            r#"{"topic":"t","event":"postgres_changes","payload":{"ids":"x","data":{}}}"#,
            r#"{"topic":"t","event":"postgres_changes","payload":{"ids":[1],"data":{"schema":"public","table":"m","type":"TRUNCATE"}}}"#,
            r#"{"topic":"t","event":"presence_state","payload":{"k":{"metas":[{"user":"a"}]}}}"#,
            r#"{"topic":"t","event":"presence_diff","payload":[1]}"#,
            r#"{"topic":"t","event":"broadcast","payload":{"payload":{}}}"#,
            r#"{"topic":"t","event":"whatever","payload":{}}"#,
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Arbitrary text never panics the decoder.
        #[test]
        fn any_text_is_read_or_refused(s in ".{0,200}") {
            let _ = decode(&s);
        }

        /// The order of a frame's fields changes nothing: a payload before its event is
        /// read the same as one after it.
        #[test]
        fn field_order_does_not_matter(
            event in prop::sample::select(vec!["phx_reply","postgres_changes","presence_state","presence_diff","broadcast","system","phx_close","phx_error","other"]),
            payload in arb_json(3),
            reference in prop::sample::select(vec![json!("1"), json!(7), Value::Null]),
        ) {
            let (e, p, r) = (json!(event), payload.to_string(), reference.to_string());
            let first = decode(&format!(r#"{{"topic":"t","event":{e},"payload":{p},"ref":{r}}}"#));
            let last = decode(&format!(r#"{{"payload":{p},"ref":{r},"topic":"t","event":{e}}}"#));
            prop_assert_eq!(first.is_ok(), last.is_ok());
            if let (Ok(a), Ok(b)) = (first, last) {
                prop_assert_eq!(a, b);
            }
        }

        /// Arbitrary JSON objects with a known event never panic it either.
        #[test]
        fn any_payload_is_read_or_refused(
            event in prop::sample::select(vec!["phx_reply","postgres_changes","presence_state","presence_diff","broadcast","system","phx_close","phx_error"]),
            payload in arb_json(3),
        ) {
            let text = json!({"topic": "t", "event": event, "payload": payload, "ref": "1"}).to_string();
            let _ = decode(&text);
        }
    }

    fn arb_json(depth: u32) -> BoxedStrategy<Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z_]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(depth, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "status", "response", "ids", "data", "metas", "phx_ref", "joins", "leaves",
                        "event", "payload", "type", "table", "schema", "record", "x"
                    ])
                    .prop_map(String::from),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
    }
}
