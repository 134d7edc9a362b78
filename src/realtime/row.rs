//! A changed row as the server sent it: a JSON object kept as text. Readers take only the
//! fields they need, and a message row goes to the host as it came: building a map of every
//! column and serializing it again was most of the socket's CPU per event.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::{value::RawValue, Value};
use uuid::Uuid;

/// A JSON object (checked when it is read off the wire).
#[derive(Debug, Clone)]
pub struct Row(Box<RawValue>);

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.0.get() == other.0.get()
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Row, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        // A raw value starts at its first token.
        if !raw.get().starts_with('{') {
            return Err(serde::de::Error::custom("a row must be a JSON object"));
        }
        Ok(Row(raw))
    }
}

impl Row {
    /// `None` unless `v` is an object.
    pub fn from_value(v: &Value) -> Option<Row> {
        if !v.is_object() {
            return None;
        }
        serde_json::value::to_raw_value(v).ok().map(Row)
    }

    /// The row's text, a JSON object.
    pub fn into_raw(self) -> Box<RawValue> {
        self.0
    }

    /// The row's `id` and `workspace_id` (a conversation's), each `None` when it is missing
    /// or no uuid.
    pub fn ids(&self) -> Ids {
        let read = serde_json::from_str::<IdColumns>(self.0.get()).ok();
        let uuid = |raw: Option<&RawValue>| text(raw?).and_then(|s| Uuid::parse_str(&s).ok());
        Ids {
            id: read.as_ref().and_then(|r| uuid(r.id)),
            workspace_id: read.as_ref().and_then(|r| uuid(r.workspace_id)),
        }
    }

    /// A message row's `id` and `conversation_id`, each `None` when it is missing or no uuid
    /// (a row the server cut short may still have them).
    pub fn message_ids(&self) -> (Option<Uuid>, Option<Uuid>) {
        let Ok(m) = serde_json::from_str::<Message>(self.0.get()) else {
            return (None, None);
        };
        let uuid = |raw: Option<&RawValue>| text(raw?).and_then(|s| Uuid::parse_str(&s).ok());
        (uuid(m.id), uuid(m.conversation_id))
    }

    /// The fields a message row must have to be shown as a chat message, or `None` if it
    /// has not (or is no valid object).
    pub fn message(&self) -> Option<MessageHead<'_>> {
        let m: Message = serde_json::from_str(self.0.get()).ok()?;
        let role = text(m.role?)?;
        if !matches!(role.as_ref(), "user" | "assistant" | "system" | "tool") {
            return None;
        }
        // A raw value that is a string starts with its quote.
        if !m.content?.get().starts_with('"') {
            return None;
        }
        let pushed_by = m
            .metadata
            .filter(|raw| raw.get().starts_with('{'))
            .and_then(|raw| serde_json::from_str::<Metadata>(raw.get()).ok())
            .and_then(|meta| meta.pushed_by)
            .and_then(text);
        Some(MessageHead {
            id: Uuid::parse_str(&text(m.id?)?).ok()?,
            conversation_id: Uuid::parse_str(&text(m.conversation_id?)?).ok()?,
            created_at: m.created_at.and_then(text),
            sender_user_id: m.sender_user_id.and_then(text),
            pushed_by,
        })
    }
}

#[derive(Debug, PartialEq)]
pub struct Ids {
    pub id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
}

#[derive(Deserialize)]
struct IdColumns<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    workspace_id: Option<&'a RawValue>,
}

/// What the client checks of a message row before the host gets it.
#[derive(Debug, PartialEq)]
pub struct MessageHead<'a> {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub created_at: Option<Cow<'a, str>>,
    pub sender_user_id: Option<Cow<'a, str>>,
    /// `metadata.pushedBy`: the user whose client pushed it.
    pub pushed_by: Option<Cow<'a, str>>,
}

/// The columns read, each left raw so that one of an unexpected type fails only its own
/// check (as a missing one would), not the whole row.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    conversation_id: Option<&'a RawValue>,
    #[serde(borrow)]
    role: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow)]
    sender_user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, rename = "pushedBy")]
    pushed_by: Option<&'a RawValue>,
}

/// A raw JSON string's value (borrowed unless it has escapes); `None` for anything else.
fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    if !s.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(s) {
        Ok(b) => Some(Cow::Borrowed(b)),
        Err(_) => serde_json::from_str::<String>(s).ok().map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        serde_json::from_value::<Row>(v).unwrap()
    }

    const ID: &str = "00000000-0000-0000-0000-000000000001";
    const CONV: &str = "00000000-0000-0000-0000-000000000007";

    #[test]
    fn only_objects_are_rows() {
        for bad in [json!([1]), json!("x"), json!(1), json!(true)] {
            assert!(serde_json::from_value::<Row>(bad.clone()).is_err(), "{bad}");
            assert!(Row::from_value(&bad).is_none());
        }
        let text = r#"{"record": {"a": 1}, "old_record": null}"#;
        #[derive(Deserialize)]
        struct D {
            record: Option<Row>,
            old_record: Option<Row>,
        }
        let d: D = serde_json::from_str(text).unwrap();
        assert_eq!(d.record.unwrap().into_raw().get(), r#"{"a": 1}"#);
        assert!(d.old_record.is_none());
    }

    #[test]
    fn a_message_head_reads_what_the_checks_need() {
        let r = row(json!({
            "id": ID, "conversation_id": CONV, "role": "user", "content": "a \"quoted\"\nline",
            "created_at": "2026-01-01T00:00:00Z", "sender_user_id": null,
            "metadata": {"pushedBy": "u\u{e9}", "x": [1, {"y": 2}]}, "extra": {"deep": [1, 2]}
        }));
        let m = r.message().unwrap();
        assert_eq!(m.id, Uuid::parse_str(ID).unwrap());
        assert_eq!(m.conversation_id, Uuid::parse_str(CONV).unwrap());
        assert_eq!(m.created_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(m.sender_user_id, None);
        assert_eq!(m.pushed_by.as_deref(), Some("u\u{e9}"));
        assert_eq!(
            r.ids(),
            Ids {
                id: Some(Uuid::parse_str(ID).unwrap()),
                workspace_id: None
            }
        );
        let conversation = row(json!({"id": CONV, "workspace_id": ID, "title": "t"}));
        assert_eq!(
            conversation.ids(),
            Ids {
                id: Some(Uuid::parse_str(CONV).unwrap()),
                workspace_id: Some(Uuid::parse_str(ID).unwrap())
            }
        );
        assert_eq!(row(json!({"id": 7, "workspace_id": "x"})).ids().id, None);
    }

    #[test]
    fn a_row_that_is_no_chat_message_has_no_head() {
        let base = json!({"id": ID, "conversation_id": CONV, "role": "user", "content": "x"});
        assert!(row(base.clone()).message().is_some());
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            row(b)
        };
        assert!(with("role", json!("admin")).message().is_none());
        assert!(with("role", json!(1)).message().is_none());
        assert!(with("content", json!({"text": "x"})).message().is_none());
        assert!(with("content", Value::Null).message().is_none());
        assert!(with("id", json!("not-a-uuid")).message().is_none());
        assert!(with("conversation_id", json!(7)).message().is_none());
        // Columns of an unexpected type outside the checks leave the row a message.
        let r = with("created_at", json!(5));
        assert_eq!(r.message().unwrap().created_at, None);
        let r = with("metadata", json!(["pushedBy"]));
        assert_eq!(r.message().unwrap().pushed_by, None);
        let r = with("metadata", json!({"pushedBy": 5}));
        assert_eq!(r.message().unwrap().pushed_by, None);
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("content");
        assert!(row(missing).message().is_none());
    }

    proptest! {
        /// The head agrees with the same checks made on the parsed row.
        #[test]
        fn the_head_agrees_with_the_parsed_row(
            role in prop::sample::select(vec![json!("user"), json!("tool"), json!("boss"), json!(3), Value::Null]),
            content in prop::sample::select(vec![json!("hi"), json!("a\\\"b\u{1F600}"), json!(""), json!(1), json!([]), Value::Null]),
            sender in prop::sample::select(vec![json!("me"), json!("y\\z"), json!(1), Value::Null]),
            pushed in prop::sample::select(vec![json!({"pushedBy": "me"}), json!({"pushedBy": 2}), json!(["me"]), json!("me"), Value::Null]),
            id in prop::sample::select(vec![json!(ID), json!("x"), json!(1)]),
        ) {
            let v = json!({"id": id, "conversation_id": CONV, "role": role, "content": content,
                           "sender_user_id": sender, "metadata": pushed});
            let r = row(v.clone());
            let head = r.message();
            let valid = matches!(v["role"].as_str(), Some("user" | "assistant" | "system" | "tool"))
                && v["content"].is_string()
                && v["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()).is_some();
            prop_assert_eq!(head.is_some(), valid);
            if let Some(h) = head {
                prop_assert_eq!(h.sender_user_id.as_deref(), v["sender_user_id"].as_str());
                prop_assert_eq!(h.pushed_by.as_deref(), v.pointer("/metadata/pushedBy").and_then(Value::as_str));
            }
        }
    }
}
