//! Exactly-once message push.
//!
//! Every synced message gets a deterministic id: a UUIDv5 in the conversation's namespace
//! over the pushing user, the message's ordinal among synced messages, its role and its
//! content. Rows are inserted with `on_conflict=id` + `resolution=ignore-duplicates`, so a
//! retried request, a push repeated after a crash, or a second machine pushing the same
//! history all produce the same ids and the database keeps one row. Two identical messages
//! ("ok", "ok") differ by ordinal and are both kept.
//!
//! The per-conversation [`PushState`] remembers how many synced messages were pushed and a
//! hash chain over them. When the local history no longer starts with what was pushed (it was
//! compacted or edited), ordinals would shift and mint new ids for old messages; that is
//! detected and the push falls back to matching against the cloud's recent rows, numbering
//! genuinely new messages after the last ordinal used.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Rows per request: one insert statement each.
pub const BATCH: usize = 500;

/// Namespace of the prefix hash chain (any fixed UUID; changing it resets every chain).
const CHAIN_NS: Uuid = Uuid::from_u128(0x6f62_6f74_6f2d_4368_8169_6e2d_7072_6566);

/// A message that is pushed: `user` or `assistant`, not from the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub role: &'static str,
    pub content: String,
}

/// Keeps `user` and `assistant` messages that did not come from the cloud (`_cloudId`).
/// Content that is not a string (multi-part content) is pushed as its JSON text.
pub fn synced_messages(messages: &Value) -> Result<Vec<Synced>> {
    let Some(list) = messages.as_array() else {
        return Err(Error::InvalidArgument("messages must be an array".into()));
    };
    Ok(list
        .iter()
        .filter(|m| m.get("_cloudId").is_none_or(Value::is_null))
        .filter_map(|m| {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("user") => "user",
                Some("assistant") => "assistant",
                _ => return None,
            };
            let content = match m.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            Some(Synced { role, content })
        })
        .collect())
}

/// The row id of the synced message with `ordinal`, pushed by `user` into `conversation`.
pub fn message_id(conversation: &Uuid, user: &str, ordinal: u64, m: &Synced) -> Uuid {
    let mut name = Vec::with_capacity(m.content.len() + 64);
    name.extend_from_slice(user.as_bytes());
    name.push(0);
    name.extend_from_slice(&ordinal.to_be_bytes());
    name.extend_from_slice(m.role.as_bytes());
    name.push(0);
    name.extend_from_slice(m.content.as_bytes());
    Uuid::new_v5(conversation, &name)
}

/// The hash chain over `messages`: it changes when any of them changes, moves or goes.
pub fn chain(messages: &[Synced]) -> Uuid {
    messages.iter().fold(CHAIN_NS, |h, m| {
        let mut name = Vec::with_capacity(m.content.len() + 16);
        name.extend_from_slice(m.role.as_bytes());
        name.push(0);
        name.extend_from_slice(m.content.as_bytes());
        Uuid::new_v5(&h, &name)
    })
}

/// What the link file remembers per conversation between pushes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushState {
    /// How many synced messages of the local history have been pushed.
    #[serde(default)]
    pub pushed_count: u64,
    /// The ordinal the first message after those gets.
    #[serde(default)]
    pub next_ordinal: u64,
    /// [`chain`] over the pushed messages; `None` before the first push.
    #[serde(default)]
    pub pushed_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The history still starts with what was pushed: push `messages[from..]`, numbering
    /// them from `first_ordinal`.
    Append { from: usize, first_ordinal: u64 },
    /// The history was rewritten: match against the cloud's recent rows instead.
    Rewritten,
}

pub fn plan(state: &PushState, messages: &[Synced]) -> Plan {
    let n = state.pushed_count as usize;
    let intact = messages.len() >= n
        && match &state.pushed_hash {
            None => n == 0,
            Some(h) => chain(&messages[..n]).to_string() == *h,
        };
    if intact {
        Plan::Append {
            from: n,
            first_ordinal: state.next_ordinal,
        }
    } else {
        Plan::Rewritten
    }
}

/// For a rewritten history: the messages not found among the cloud's recent `(role,
/// content)` pairs, matched as a multiset so that repeats are counted.
pub fn unmatched<'a>(messages: &'a [Synced], recent: &[(String, String)]) -> Vec<&'a Synced> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (role, content) in recent {
        *seen.entry((role.as_str(), content.as_str())).or_default() += 1;
    }
    messages
        .iter()
        .filter(|m| match seen.get_mut(&(m.role, m.content.as_str())) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

/// The rows to insert for `messages` numbered from `first_ordinal`. User messages carry the
/// pushing user as sender (RLS accepts only that); assistant messages carry none, so
/// `metadata.pushedBy` records who pushed them, and a pull leaves them out for that user
/// (the host already has them).
pub fn rows(
    conversation: &Uuid,
    user: &str,
    first_ordinal: u64,
    messages: &[&Synced],
) -> Vec<Value> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "id": message_id(conversation, user, first_ordinal + i as u64, m).to_string(),
                "conversation_id": conversation.to_string(),
                "role": m.role,
                "content": m.content,
                "sender_user_id": if m.role == "user" { Value::String(user.to_string()) } else { Value::Null },
                "metadata": { "pushedBy": user },
            })
        })
        .collect()
}

/// The state after `messages` (the whole synced history) was pushed, `used` ordinals having
/// been consumed from `first_ordinal`.
pub fn next_state(messages: &[Synced], first_ordinal: u64, used: u64) -> PushState {
    PushState {
        pushed_count: messages.len() as u64,
        next_ordinal: first_ordinal + used,
        pushed_hash: Some(chain(messages).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONV: Uuid = Uuid::from_u128(0xcccccccc_0000_4000_8000_000000000001);
    const ALICE: &str = "11111111-1111-4111-8111-111111111111";

    fn m(role: &'static str, content: &str) -> Synced {
        Synced {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn ids_are_deterministic_and_tell_repeats_apart() {
        let ok = m("user", "ok");
        let a = message_id(&CONV, ALICE, 0, &ok);
        assert_eq!(a, message_id(&CONV, ALICE, 0, &ok), "same input, same id");
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(
            a,
            message_id(&CONV, ALICE, 1, &ok),
            "a repeated message is a new row"
        );
        assert_ne!(a, message_id(&CONV, ALICE, 0, &m("assistant", "ok")));
        assert_ne!(a, message_id(&CONV, ALICE, 0, &m("user", "ok!")));
        let other_conv = Uuid::from_u128(1);
        assert_ne!(a, message_id(&other_conv, ALICE, 0, &ok));
        assert_ne!(a, message_id(&CONV, "someone-else", 0, &ok));
    }

    #[test]
    fn only_user_and_assistant_messages_from_here_are_synced() {
        let msgs = json!([
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "tool", "content": "t"},
            {"role": "assistant", "content": null},
            {"role": "assistant", "content": "from cloud", "_cloudId": "x"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ]);
        let s = synced_messages(&msgs).unwrap();
        assert_eq!(
            s,
            vec![
                m("user", "u"),
                m("assistant", ""),
                m("user", r#"[{"text":"hi","type":"text"}]"#)
            ]
        );
        assert_eq!(
            synced_messages(&json!({})).unwrap_err().code(),
            "INVALID_ARGUMENT"
        );
    }

    #[test]
    fn appending_continues_the_numbering() {
        let h = vec![m("user", "a"), m("assistant", "b")];
        assert_eq!(
            plan(&PushState::default(), &h),
            Plan::Append {
                from: 0,
                first_ordinal: 0
            }
        );
        let st = next_state(&h, 0, 2);
        let mut longer = h.clone();
        longer.push(m("user", "c"));
        assert_eq!(
            plan(&st, &longer),
            Plan::Append {
                from: 2,
                first_ordinal: 2
            }
        );
        assert_eq!(
            plan(&st, &h),
            Plan::Append {
                from: 2,
                first_ordinal: 2
            },
            "nothing new"
        );
    }

    #[test]
    fn a_rewritten_history_is_detected() {
        let h = vec![m("user", "a"), m("assistant", "b"), m("user", "c")];
        let st = next_state(&h, 0, 3);
        assert_eq!(plan(&st, &h[1..]), Plan::Rewritten, "shorter");
        let edited = vec![
            m("user", "summary"),
            m("assistant", "b"),
            m("user", "c"),
            m("user", "d"),
        ];
        assert_eq!(
            plan(&st, &edited),
            Plan::Rewritten,
            "same length, new start"
        );
    }

    #[test]
    fn matching_against_cloud_rows_counts_repeats() {
        let local = vec![
            m("user", "ok"),
            m("user", "ok"),
            m("assistant", "x"),
            m("user", "new"),
        ];
        let recent = vec![
            ("user".to_string(), "ok".to_string()),
            ("assistant".to_string(), "x".to_string()),
        ];
        let left: Vec<_> = unmatched(&local, &recent).into_iter().cloned().collect();
        assert_eq!(left, vec![m("user", "ok"), m("user", "new")]);
    }

    #[test]
    fn rows_set_the_sender_on_user_messages_only() {
        let a = m("user", "a");
        let b = m("assistant", "b");
        let r = rows(&CONV, ALICE, 7, &[&a, &b]);
        assert_eq!(r[0]["sender_user_id"], json!(ALICE));
        assert_eq!(r[1]["sender_user_id"], Value::Null);
        assert_eq!(r[1]["metadata"]["pushedBy"], json!(ALICE));
        assert_eq!(
            r[1]["id"],
            json!(message_id(&CONV, ALICE, 8, &b).to_string())
        );
    }
}
