//! Phoenix frames with the `vsn=1.0.0` serializer: one JSON object per text message,
//! `{topic, event, payload, ref, join_ref}`. The server's v1 frames carry no `join_ref`; a
//! reply's `ref` is the ref of the push it answers, and `phx_close`/`phx_error` carry the
//! join ref in `ref`.
//!
//! Everything the server sends is parsed into the expected shape here; a frame that does not
//! fit is an error the socket logs and drops.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
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

/// A frame as received, before its payload is read.
#[derive(Debug, Deserialize)]
pub struct Raw<'a> {
    pub topic: String,
    pub event: String,
    /// Left as text, so that it is parsed once, into the type its event calls for.
    #[serde(borrow, default)]
    pub payload: Option<&'a RawValue>,
    #[serde(rename = "ref", default, deserialize_with = "reference")]
    pub reference: Option<String>,
    #[serde(default, deserialize_with = "reference")]
    pub join_ref: Option<String>,
}

/// Refs are strings; a number is accepted (some servers count with integers).
fn reference<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ref {
        S(String),
        N(u64),
    }
    Ok(Option::<Ref>::deserialize(d)?.map(|r| match r {
        Ref::S(s) => s,
        Ref::N(n) => n.to_string(),
    }))
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

/// Reads one text message.
pub fn decode(text: &str) -> Result<(String, Incoming), FrameError> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| FrameError::Shape(e.to_string()))?;
    let incoming = interpret(&raw)?;
    Ok((raw.topic, incoming))
}

fn payload<T: serde::de::DeserializeOwned>(raw: &Raw) -> Result<T, FrameError> {
    let text = raw.payload.map_or("null", RawValue::get);
    serde_json::from_str(text).map_err(|e| FrameError::Payload {
        event: raw.event.chars().take(40).collect(),
        reason: e.to_string(),
    })
}

pub fn interpret(raw: &Raw) -> Result<Incoming, FrameError> {
    Ok(match raw.event.as_str() {
        "phx_reply" => Incoming::Reply {
            reference: raw.reference.clone().ok_or_else(|| FrameError::Payload {
                event: "phx_reply".into(),
                reason: "a reply without a ref".into(),
            })?,
            reply: payload(raw)?,
        },
        "postgres_changes" => Incoming::Change(payload(raw)?),
        "presence_state" => Incoming::PresenceState(payload(raw)?),
        "presence_diff" => Incoming::PresenceDiff(payload(raw)?),
        "broadcast" => Incoming::Broadcast(payload(raw)?),
        "system" => Incoming::System(payload(raw)?),
        "phx_close" => Incoming::Close {
            join_ref: raw.join_ref.clone().or_else(|| raw.reference.clone()),
        },
        "phx_error" => Incoming::Error {
            join_ref: raw.join_ref.clone().or_else(|| raw.reference.clone()),
        },
        other => return Err(FrameError::UnknownEvent(other.chars().take(40).collect())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
