//! Exactly-once message push.
//!
//! Every synced message gets a deterministic id: a UUIDv5 in the conversation's namespace
//! over the pushing user, the message's ordinal among synced messages, its role and its
//! content. Rows are inserted with `on_conflict=id` + `resolution=ignore-duplicates`, so a
//! retried request, a push repeated after a crash, or a second machine pushing the same
//! history all produce the same ids and the database keeps one row. Two identical messages
//! ("ok", "ok") differ by ordinal and are both kept.
//!
//! The per-conversation [`PushState`] remembers how many synced messages were pushed, the
//! next ordinal, and a hash chain over them; a [`Tracker`] adds, in memory, the chain over
//! every prefix. A push of a history that extends the pushed one sends its tail; one of a
//! prefix of it (an older snapshot, or a push that lost a race to a longer one) sends
//! nothing and changes nothing. When the local history no longer starts with what was
//! pushed (it was compacted or edited), ordinals would shift and mint new ids for old
//! messages; that is detected and the push falls back to matching against this user's
//! recent cloud rows, numbering genuinely new messages after the last ordinal used.
//! Pushes of one conversation run one at a time (the caller holds a guard), so each plans
//! against the state the previous one left.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Rows per request: one insert statement each.
pub const BATCH: usize = 500;

/// Bytes of JSON per insert request: a quarter of the 1 MiB a PostgREST body may hold by
/// default, so that a batch of long messages is not refused whole for its size (HTTP 413),
/// with room for a server configured lower. A row larger than this goes in a request of
/// its own.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Namespace of the prefix hash chain (any fixed UUID; changing it resets every chain).
const CHAIN_NS: Uuid = Uuid::from_u128(0x6f62_6f74_6f2d_4368_8169_6e2d_7072_6566);

/// A message that is pushed: `user` or `assistant`, not from the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub role: &'static str,
    pub content: String,
}

/// Keeps `user` and `assistant` messages that did not come from the cloud (`_cloudId`).
/// Content that is not a string (multi-part content) is pushed as its JSON text; string
/// content as [`storable`] text.
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
                Some(Value::String(s)) => storable(s),
                // JSON text escapes U+0000 as `\u0000`: nothing to replace.
                Some(other) => other.to_string(),
            };
            Some(Synced { role, content })
        })
        .collect())
}

/// PostgreSQL `text` cannot hold U+0000 (the insert fails with `22P05`), so a message with
/// a NUL could never be stored, and would hold back every message after it. NUL is replaced
/// by U+FFFD (the replacement character) before the id is computed, so every machine stores
/// the same text under the same id; everything else is stored as it is.
pub fn storable(content: &str) -> String {
    content.replace('\0', "\u{FFFD}")
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
    messages.iter().fold(CHAIN_NS, |h, m| link(&h, m))
}

fn link(h: &Uuid, m: &Synced) -> Uuid {
    let mut name = Vec::with_capacity(m.content.len() + 16);
    name.extend_from_slice(m.role.as_bytes());
    name.push(0);
    name.extend_from_slice(m.content.as_bytes());
    Uuid::new_v5(h, &name)
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
    /// Set when a push sent messages the pushed history does not hold (an older snapshot
    /// that arrived after a newer, compacted one): the cloud may then hold the tail a later
    /// push would append, so from then on every push of the conversation that is not a
    /// prefix is matched against the cloud's recent rows (one more request per push).
    // Always written: the link file's entry is merged into, so a key left out would keep
    // its old value.
    #[serde(default)]
    pub rematch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The history still starts with what was pushed: push `messages[from..]`, numbering
    /// them from `first_ordinal`.
    Append { from: usize, first_ordinal: u64 },
    /// The history is a prefix of what was pushed (an older snapshot, or a push that lost a
    /// race to a longer one): nothing to send, and the state stays as it is.
    Prefix,
    /// The history was rewritten: match against the cloud's recent rows instead.
    Rewritten,
}

/// [`chain`] over every prefix: `out[i]` is the chain over `messages[..=i]`.
pub fn chains(messages: &[Synced]) -> Vec<Uuid> {
    let mut h = CHAIN_NS;
    messages
        .iter()
        .map(|m| {
            h = link(&h, m);
            h
        })
        .collect()
}

/// The pushed history of one conversation as this process knows it: the persisted
/// [`PushState`], plus (in memory only) the chain over every prefix of it, which is what
/// tells a prefix of the pushed history from a rewritten one. The persisted state holds
/// only the chain over the whole, so after a restart a shorter history is matched against
/// the cloud until a push that extends the state brings the prefixes back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    state: PushState,
    /// `chains(pushed)`, when known; always `pushed_count` long and ending in `pushed_hash`.
    prefixes: Option<Vec<Uuid>>,
}

impl Tracker {
    /// `prefixes` that do not belong to `state` (another process wrote the link file, or a
    /// write failed) are dropped.
    pub fn new(state: PushState, prefixes: Option<Vec<Uuid>>) -> Tracker {
        let prefixes = prefixes.filter(|p| {
            p.len() as u64 == state.pushed_count
                && match (p.last(), &state.pushed_hash) {
                    (None, None) => true,
                    (Some(last), Some(h)) => last.to_string() == *h,
                    _ => false,
                }
        });
        Tracker { state, prefixes }
    }

    pub fn state(&self) -> &PushState {
        &self.state
    }

    pub fn prefixes(&self) -> Option<&[Uuid]> {
        self.prefixes.as_deref()
    }

    pub fn plan(&self, messages: &[Synced]) -> Plan {
        let n = self.state.pushed_count as usize;
        let m = messages.len();
        if m >= n && !self.state.rematch {
            let intact = match &self.state.pushed_hash {
                None => n == 0,
                Some(h) => chain(&messages[..n]).to_string() == *h,
            };
            return if intact {
                Plan::Append {
                    from: n,
                    first_ordinal: self.state.next_ordinal,
                }
            } else {
                Plan::Rewritten
            };
        }
        // Every message of a prefix of the pushed history is stored (or durably queued),
        // whatever was sent since.
        let is_prefix = m == 0
            || m <= n
                && self
                    .prefixes
                    .as_ref()
                    .is_some_and(|p| p[m - 1] == chain(messages));
        if is_prefix {
            Plan::Prefix
        } else {
            Plan::Rewritten
        }
    }

    /// What to send for `plan`; `recent` (this user's cloud rows, oldest first) is read
    /// only for a rewritten history.
    pub fn outgoing<'a>(
        &self,
        plan: &Plan,
        messages: &'a [Synced],
        recent: &[(String, String)],
    ) -> Outgoing<'a> {
        match plan {
            Plan::Append {
                from,
                first_ordinal,
            } => Outgoing {
                first_ordinal: *first_ordinal,
                messages: messages[*from..].iter().collect(),
                adopt: true,
            },
            Plan::Prefix => Outgoing {
                first_ordinal: self.state.next_ordinal,
                messages: Vec::new(),
                adopt: false,
            },
            Plan::Rewritten => {
                let (fresh, current) = reconcile(messages, recent);
                Outgoing {
                    first_ordinal: self.state.next_ordinal,
                    // Once rows the base does not hold were sent, the cloud's order no
                    // longer tells a current history from an older one.
                    adopt: current && !fresh.is_empty() && !self.state.rematch,
                    messages: fresh,
                }
            }
        }
    }

    /// After `out` (computed for `messages`) was stored or durably queued.
    pub fn pushed(&mut self, messages: &[Synced], out: &Outgoing<'_>) {
        let next = out.first_ordinal + out.messages.len() as u64;
        if !out.adopt {
            // Ordinals once handed out are never handed out again, so that a repeated
            // message ("ok") cannot be merged into an earlier one's row.
            self.state.next_ordinal = self.state.next_ordinal.max(next);
            self.state.rematch |= !out.messages.is_empty();
            return;
        }
        let prefixes = chains(messages);
        self.state = PushState {
            pushed_count: messages.len() as u64,
            next_ordinal: next,
            pushed_hash: prefixes.last().map(Uuid::to_string),
            rematch: false,
        };
        self.prefixes = Some(prefixes);
    }
}

/// The rows one push sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub first_ordinal: u64,
    pub messages: Vec<&'a Synced>,
    /// Whether the pushed history becomes the base the next push is compared with. Only a
    /// history that is the newest the cloud has may: a later push that extends it sends its
    /// tail without asking the cloud, so that tail must not be there already.
    pub adopt: bool,
}

/// For a rewritten history, against this user's `recent` cloud rows (oldest first): the
/// messages not among them, and whether the history is current, i.e. holds every recent row
/// from its first match on (a compacted history is; an older snapshot that lost a race to a
/// newer one is not).
///
/// Rows are matched as a multiset (repeats count) to their latest occurrences, and of
/// repeated local messages the later ones are taken as new, which is how compaction leaves
/// a history: an old tail, then new turns. Content alone cannot tell a new "ok" from a
/// kept one when the compaction dropped another "ok": such a message is taken as stored.
pub fn reconcile<'a>(
    messages: &'a [Synced],
    recent: &[(String, String)],
) -> (Vec<&'a Synced>, bool) {
    let mut at: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, (role, content)) in recent.iter().enumerate() {
        at.entry((role.as_str(), content.as_str()))
            .or_default()
            .push(i);
    }
    let mut wanted: HashMap<(&str, &str), usize> = HashMap::new();
    for m in messages {
        *wanted.entry((m.role, m.content.as_str())).or_default() += 1;
    }
    let mut matched = vec![false; recent.len()];
    for (key, n) in &wanted {
        if let Some(rows) = at.get(key) {
            for &i in rows.iter().rev().take(*n) {
                matched[i] = true;
            }
        }
    }
    let current = match matched.iter().position(|m| *m) {
        Some(first) => matched[first..].iter().all(|m| *m),
        None => recent.is_empty(),
    };
    let mut left: HashMap<(&str, &str), usize> =
        at.iter().map(|(k, rows)| (*k, rows.len())).collect();
    let fresh = messages
        .iter()
        .filter(|m| match left.get_mut(&(m.role, m.content.as_str())) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect();
    (fresh, current)
}

/// One's own recent rows, newest first as the server ordered them, put oldest first in the
/// order they were pushed: by `metadata.ordinal` when every row has one (ordinals only grow),
/// else as the server ordered them.
pub fn in_push_order(
    mut newest_first: Vec<(Option<u64>, (String, String))>,
) -> Vec<(String, String)> {
    newest_first.reverse();
    if newest_first.iter().all(|(o, _)| o.is_some()) {
        newest_first.sort_by_key(|(o, _)| *o);
    }
    newest_first.into_iter().map(|(_, r)| r).collect()
}

/// The rows to insert for `messages` numbered from `first_ordinal`. User messages carry the
/// pushing user as sender (RLS accepts only that); assistant messages carry none, so
/// `metadata.pushedBy` records who pushed them, and a pull leaves them out for that user
/// (the host already has them). `metadata.ordinal` orders one's own rows as they were
/// pushed where `created_at` cannot: rows of one insert share it on a server whose default
/// is `now()`.
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
                "metadata": { "pushedBy": user, "ordinal": first_ordinal + i as u64 },
            })
        })
        .collect()
}

/// The length of `v` as JSON text, as a request body carries it.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a `Value` fails only when the writer does, and this one never does.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// `rows` cut, in order, into the insert requests they go in: at most `max_rows` rows and
/// `max_bytes` bytes of JSON array each, except that a row larger than `max_bytes` by itself
/// is a request of its own (whether the cloud takes it is the cloud's call).
pub fn batches(rows: &[Value], max_rows: usize, max_bytes: usize) -> Vec<&[Value]> {
    let max_rows = max_rows.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    // The body of `rows[start..i]`: `[`, the rows joined by `,`, `]`.
    let mut len = 0usize;
    for (i, row) in rows.iter().enumerate() {
        let size = json_len(row);
        let grown = len.saturating_add(1).saturating_add(size);
        if i > start && (i - start >= max_rows || grown > max_bytes) {
            out.push(&rows[start..i]);
            start = i;
        }
        len = if i == start {
            size.saturating_add(2)
        } else {
            len.saturating_add(1).saturating_add(size)
        };
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const CONV: Uuid = Uuid::from_u128(0xcccccccc_0000_4000_8000_000000000001);
    const ALICE: &str = "11111111-1111-4111-8111-111111111111";

    fn m(role: &'static str, content: &str) -> Synced {
        Synced {
            role,
            content: content.into(),
        }
    }

    fn history(n: usize) -> Vec<Synced> {
        (0..n)
            .map(|i| {
                m(
                    if i % 2 == 0 { "user" } else { "assistant" },
                    &format!("m {i}"),
                )
            })
            .collect()
    }

    /// The cloud as the push sees it: rows with unique ids, in insertion order.
    #[derive(Default)]
    struct Cloud {
        ids: HashSet<Uuid>,
        rows: Vec<(String, String)>,
    }

    impl Cloud {
        fn recent(&self) -> Vec<(String, String)> {
            self.rows.clone()
        }

        /// One push as `Sync::push_inner` does it; returns how many rows were new.
        fn push(&mut self, t: &mut Tracker, msgs: &[Synced]) -> usize {
            let plan = t.plan(msgs);
            let recent = if plan == Plan::Rewritten {
                self.recent()
            } else {
                Vec::new()
            };
            let out = t.outgoing(&plan, msgs, &recent);
            let mut new = 0;
            for row in rows(&CONV, ALICE, out.first_ordinal, &out.messages) {
                let id = Uuid::parse_str(row["id"].as_str().unwrap()).unwrap();
                if self.ids.insert(id) {
                    new += 1;
                    self.rows.push((
                        row["role"].as_str().unwrap().into(),
                        row["content"].as_str().unwrap().into(),
                    ));
                }
            }
            t.pushed(msgs, &out);
            new
        }

        fn contents(&self) -> Vec<&str> {
            self.rows.iter().map(|(_, c)| c.as_str()).collect()
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
    fn a_nul_is_stored_as_the_replacement_character() {
        let s = synced_messages(&json!([
            {"role": "user", "content": "a\0b\0"},
            {"role": "user", "content": [{"type": "text", "text": "x\0"}]},
        ]))
        .unwrap();
        assert_eq!(s[0].content, "a\u{FFFD}b\u{FFFD}");
        assert_eq!(s[1].content, r#"[{"text":"x\u0000","type":"text"}]"#);
        assert!(s.iter().all(|m| !m.content.contains('\0')));
    }

    #[test]
    fn chains_are_the_chain_of_every_prefix() {
        let h = history(5);
        let c = chains(&h);
        assert_eq!(c.len(), 5);
        for i in 0..5 {
            assert_eq!(c[i], chain(&h[..=i]));
        }
    }

    #[test]
    fn appending_continues_the_numbering() {
        let h = vec![m("user", "a"), m("assistant", "b")];
        let mut t = Tracker::default();
        let plan = t.plan(&h);
        assert_eq!(
            plan,
            Plan::Append {
                from: 0,
                first_ordinal: 0
            }
        );
        let out = t.outgoing(&plan, &h, &[]);
        t.pushed(&h, &out);
        let mut longer = h.clone();
        longer.push(m("user", "c"));
        assert_eq!(
            t.plan(&longer),
            Plan::Append {
                from: 2,
                first_ordinal: 2
            }
        );
        assert_eq!(
            t.plan(&h),
            Plan::Append {
                from: 2,
                first_ordinal: 2
            },
            "nothing new"
        );
    }

    #[test]
    fn a_prefix_is_not_a_rewrite() {
        let h = history(6);
        let mut cloud = Cloud::default();
        let mut t = Tracker::default();
        assert_eq!(cloud.push(&mut t, &h[..4]), 4);
        assert_eq!(t.plan(&h[..2]), Plan::Prefix);
        assert_eq!(t.plan(&[]), Plan::Prefix);
        assert_eq!(cloud.push(&mut t, &h[..2]), 0);
        assert_eq!(t.state().pushed_count, 4, "a prefix leaves the state alone");
        assert_eq!(cloud.push(&mut t, &h), 2);
        assert_eq!(cloud.rows.len(), 6);
    }

    #[test]
    fn after_a_restart_a_prefix_is_matched_against_the_cloud() {
        let h = history(6);
        let mut cloud = Cloud::default();
        let mut t = Tracker::default();
        cloud.push(&mut t, &h[..4]);
        let mut restarted = Tracker::new(t.state().clone(), None);
        assert_eq!(restarted.plan(&h[..2]), Plan::Rewritten);
        assert_eq!(cloud.push(&mut restarted, &h[..2]), 0);
        assert_eq!(restarted.state(), t.state(), "nothing new: the state stays");
        assert_eq!(cloud.push(&mut restarted, &h), 2);
        assert_eq!(cloud.rows.len(), 6);
    }

    #[test]
    fn prefixes_that_do_not_belong_to_the_state_are_dropped() {
        let h = history(3);
        let mut t = Tracker::default();
        let out = t.outgoing(&t.plan(&h), &h, &[]);
        t.pushed(&h, &out);
        let st = t.state().clone();
        assert!(Tracker::new(st.clone(), Some(chains(&h)))
            .prefixes()
            .is_some());
        assert!(Tracker::new(st.clone(), Some(chains(&h[..2])))
            .prefixes()
            .is_none());
        assert!(Tracker::new(st, Some(chains(&history(4)[1..])))
            .prefixes()
            .is_none());
    }

    #[test]
    fn a_rewritten_history_is_detected() {
        let h = vec![m("user", "a"), m("assistant", "b"), m("user", "c")];
        let mut t = Tracker::default();
        let out = t.outgoing(&t.plan(&h), &h, &[]);
        t.pushed(&h, &out);
        assert_eq!(t.plan(&h[1..]), Plan::Rewritten, "shorter, not a prefix");
        let edited = vec![
            m("user", "summary"),
            m("assistant", "b"),
            m("user", "c"),
            m("user", "d"),
        ];
        assert_eq!(t.plan(&edited), Plan::Rewritten, "same length, new start");
    }

    #[test]
    fn a_compacted_history_sends_only_its_new_turns_and_becomes_the_base() {
        let h = history(12);
        let mut cloud = Cloud::default();
        let mut t = Tracker::default();
        cloud.push(&mut t, &h);
        let mut compacted = h[8..].to_vec();
        compacted.push(m("user", "after"));
        assert_eq!(cloud.push(&mut t, &compacted), 1);
        assert_eq!(t.state().pushed_count, 5);
        assert_eq!(t.state().next_ordinal, 13);
        compacted.push(m("assistant", "reply"));
        assert!(matches!(t.plan(&compacted), Plan::Append { from: 5, .. }));
        assert_eq!(cloud.push(&mut t, &compacted), 1);
        assert_eq!(cloud.rows.len(), 14);
    }

    #[test]
    fn an_older_snapshot_after_a_compaction_is_not_taken_as_the_base() {
        // The compacted history reached the cloud first; then an old snapshot (which the
        // cloud lacks the first message of) arrives, then a longer old snapshot.
        let h = history(12);
        let mut cloud = Cloud::default();
        let mut t = Tracker::default();
        cloud.push(&mut t, &h[1..10]);
        assert_eq!(cloud.push(&mut t, &h[..2]), 1, "m 0 was missing");
        assert_eq!(t.state().pushed_count, 9, "not current: the base stays");
        assert_eq!(cloud.push(&mut t, &h[..4]), 0);
        assert_eq!(cloud.push(&mut t, &h[1..12]), 2);
        let mut stored = cloud.contents();
        stored.sort_unstable();
        let mut want: Vec<String> = h.iter().map(|x| x.content.clone()).collect();
        want.sort_unstable();
        assert_eq!(stored, want);
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
        let (left, current) = reconcile(&local, &recent);
        let left: Vec<_> = left.into_iter().cloned().collect();
        assert_eq!(left, vec![m("user", "ok"), m("user", "new")]);
        assert!(current);
        let (_, current) = reconcile(&local[..1], &recent);
        assert!(
            !current,
            "a row after the first match is not in the history"
        );
        let (left, current) = reconcile(&local, &[]);
        assert_eq!(left.len(), 4);
        assert!(current, "an empty cloud");
    }

    #[test]
    fn own_rows_are_put_in_push_order() {
        let r = |o: Option<u64>, c: &str| (o, ("user".to_string(), c.to_string()));
        let got = in_push_order(vec![
            r(Some(3), "d"),
            r(Some(1), "b"),
            r(Some(2), "c"),
            r(Some(0), "a"),
        ]);
        let contents: Vec<&str> = got.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(
            contents,
            ["a", "b", "c", "d"],
            "ties in created_at do not scramble"
        );
        let got = in_push_order(vec![r(None, "c"), r(Some(9), "b"), r(Some(0), "a")]);
        let contents: Vec<&str> = got.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(
            contents,
            ["a", "b", "c"],
            "rows without an ordinal: the server's order"
        );
    }

    #[test]
    fn rows_set_the_sender_on_user_messages_only() {
        let a = m("user", "a");
        let b = m("assistant", "b");
        let r = rows(&CONV, ALICE, 7, &[&a, &b]);
        assert_eq!(r[0]["sender_user_id"], json!(ALICE));
        assert_eq!(r[1]["sender_user_id"], Value::Null);
        assert_eq!(r[1]["metadata"]["pushedBy"], json!(ALICE));
        assert_eq!(r[1]["metadata"]["ordinal"], json!(8));
        assert_eq!(
            r[1]["id"],
            json!(message_id(&CONV, ALICE, 8, &b).to_string())
        );
    }

    #[test]
    fn batches_are_bounded_by_rows_and_by_bytes() {
        let row = |n: usize| json!({"content": "x".repeat(n)});
        // `{"content":""}` is 14 bytes; a body is `[` rows joined by `,` `]`.
        assert_eq!(json_len(&row(0)), 14);
        assert_eq!(json_len(&json!("a\"b")), 6, "escapes count as sent");
        let rows: Vec<Value> = (0..10).map(|_| row(86)).collect();
        let sizes = |b: Vec<&[Value]>| b.iter().map(|x| x.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&rows, 4, 10_000)), vec![4, 4, 2]);
        // Three rows of 100 bytes make a body of 2 + 300 + 2 = 304 bytes.
        assert_eq!(sizes(batches(&rows, 500, 304)), vec![3, 3, 3, 1]);
        assert_eq!(sizes(batches(&rows, 500, 303)), vec![2, 2, 2, 2, 2]);
        let body = |b: &[Value]| serde_json::to_vec(&Value::Array(b.to_vec())).unwrap().len();
        for b in batches(&rows, 500, 304) {
            assert!(body(b) <= 304, "{}", body(b));
        }
        // A row larger than the bound goes alone, and nothing is lost or reordered.
        let mixed = vec![row(10), row(1000), row(10), row(10)];
        let b = batches(&mixed, 500, 200);
        assert_eq!(sizes(b.clone()), vec![1, 1, 2]);
        assert_eq!(b.concat(), mixed);
        assert!(batches(&[], 500, 200).is_empty());
        assert_eq!(
            sizes(batches(&rows, 0, 10_000)),
            vec![1; 10],
            "at least a row each"
        );
    }

    #[test]
    fn a_batch_of_long_messages_fits_the_default_body_limit() {
        let long: Vec<Synced> = (0..600)
            .map(|i| m("user", &format!("{i} {}", "x".repeat(2000))))
            .collect();
        let refs: Vec<&Synced> = long.iter().collect();
        let all = rows(&CONV, ALICE, 0, &refs);
        let b = batches(&all, BATCH, BATCH_BYTES);
        assert!(b.len() > 2);
        assert_eq!(b.iter().map(|x| x.len()).sum::<usize>(), 600);
        for batch in b {
            assert!(json_len(&Value::Array(batch.to_vec())) <= BATCH_BYTES);
        }
    }

    /// One step of a push scenario: push snapshot `k` (an index into the snapshots), or
    /// restart (lose the in-memory prefixes, keep the persisted state).
    #[derive(Debug, Clone)]
    enum Step {
        Push(usize),
        Restart,
    }

    fn steps(snapshots: usize) -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                8 => (0..snapshots).prop_map(Step::Push),
                1 => Just(Step::Restart),
            ],
            1..40,
        )
    }

    /// Runs `steps` over `snapshots` and checks that every message of a pushed snapshot is
    /// stored, once: `key` names a message (its position in the one true history).
    /// Runs `steps` (a push picks its snapshot modulo their number) and checks that the
    /// cloud holds each message of the pushed snapshots exactly once.
    fn check(snapshots: &[Vec<(usize, Synced)>], steps: &[Step]) -> Result<(), TestCaseError> {
        let mut cloud = Cloud::default();
        let mut t = Tracker::default();
        let mut expected: HashSet<usize> = HashSet::new();
        for step in steps {
            match step {
                Step::Restart => t = Tracker::new(t.state().clone(), None),
                Step::Push(k) => {
                    let snap = &snapshots[*k % snapshots.len()];
                    let msgs: Vec<Synced> = snap.iter().map(|(_, s)| s.clone()).collect();
                    cloud.push(&mut t, &msgs);
                    expected.extend(snap.iter().map(|(i, _)| *i));
                }
            }
        }
        prop_assert_eq!(cloud.rows.len(), expected.len(), "rows {:?}", cloud.rows);
        let all: HashMap<usize, &Synced> =
            snapshots.iter().flatten().map(|(i, s)| (*i, s)).collect();
        let mut want: Vec<(&str, &str)> = expected
            .iter()
            .map(|i| (all[i].role, all[i].content.as_str()))
            .collect();
        let mut got: Vec<(&str, &str)> = cloud
            .rows
            .iter()
            .map(|(r, c)| (r.as_str(), c.as_str()))
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        prop_assert_eq!(got, want);
        Ok(())
    }

    proptest! {
        /// Snapshots across two compactions (each dropping a longer head), in any order.
        #[test]
        fn two_compactions_store_each_message_once(
            n in 1..30usize,
            at in (0..30usize, 0..30usize),
            drop in (0..30usize, 0..30usize),
            order in steps(31),
        ) {
            let h = history(n);
            let (a1, a2) = (at.0 % (n + 1), at.1 % (n + 1));
            let (a1, a2) = (a1.min(a2), a1.max(a2));
            let d1 = drop.0 % (a1 + 1);
            let d2 = d1.max(drop.1 % (a2 + 1));
            let snapshots: Vec<Vec<(usize, Synced)>> = (0..=n)
                .map(|k| {
                    let from = if k < a1 { 0 } else if k < a2 { d1 } else { d2 };
                    (from..k).map(|i| (i, h[i].clone())).collect()
                })
                .collect();
            check(&snapshots, &order)?;
        }
    }

    proptest! {
        /// Snapshots of one growing history (with repeated messages), pushed in any order,
        /// any number of times, across restarts.
        #[test]
        fn prefixes_in_any_order_store_each_message_once(
            contents in prop::collection::vec((any::<bool>(), 0..3u8), 1..30),
            order in steps(31),
        ) {
            let h: Vec<Synced> = contents
                .iter()
                .map(|(user, c)| m(if *user { "user" } else { "assistant" }, &format!("c{c}")))
                .collect();
            let snapshots: Vec<Vec<(usize, Synced)>> = (0..=h.len())
                .map(|k| h[..k].iter().cloned().enumerate().collect())
                .collect();
            check(&snapshots, &order)?;
        }

        /// Snapshots before and after one compaction (the first `drop` messages replaced
        /// by a summary that is not synced), pushed in any order, across restarts.
        #[test]
        fn prefixes_and_a_compacted_history_store_each_message_once(
            n in 1..30usize,
            at in 0..30usize,
            drop in 0..30usize,
            order in steps(31),
        ) {
            let h = history(n);
            let at = at % (n + 1);
            let drop = drop % (at + 1);
            let snapshots: Vec<Vec<(usize, Synced)>> = (0..=n)
                .map(|k| {
                    let from = if k < at { 0 } else { drop };
                    (from..k).map(|i| (i, h[i].clone())).collect()
                })
                .collect();
            check(&snapshots, &order)?;
        }
    }
}
