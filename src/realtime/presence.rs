//! The Phoenix presence merge (phoenix.js `Presence.syncState`/`syncDiff`): the channel's
//! view of who is online, keyed by user id, with one meta per connection. Diffs that arrive
//! before this join's first `presence_state` are buffered and applied after it, and the
//! host sees one member per user however many machines that user is on.

use serde::Serialize;
use serde_json::Value;

use super::frame::{Entry, Meta, PresenceDiff, PresenceState};

#[derive(Debug, Default)]
pub struct Presence {
    state: PresenceState,
    /// Diffs received since the (re)join, waiting for its `presence_state`.
    pending: Vec<PresenceDiff>,
    synced: bool,
}

/// A member as `getPresence()` and `cloud:presence:updated` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub status: String,
    pub last_seen: Option<String>,
}

impl Presence {
    /// A new join: diffs wait again for its `presence_state` (which replaces the state).
    pub fn rejoined(&mut self) {
        self.pending.clear();
        self.synced = false;
    }

    /// Returns whether the members changed.
    pub fn on_state(&mut self, new: PresenceState) -> bool {
        let before = self.members();
        self.state = sync_state(std::mem::take(&mut self.state), new);
        for diff in std::mem::take(&mut self.pending) {
            self.state = sync_diff(std::mem::take(&mut self.state), diff);
        }
        self.synced = true;
        self.members() != before
    }

    pub fn on_diff(&mut self, diff: PresenceDiff) -> bool {
        if !self.synced {
            // Bounded: a server that never sends the state cannot grow this without end.
            if self.pending.len() < 1000 {
                self.pending.push(diff);
            }
            return false;
        }
        let before = self.members();
        self.state = sync_diff(std::mem::take(&mut self.state), diff);
        self.members() != before
    }

    /// Forgets everyone (the channel is gone, or a new join's state is to replace it
    /// whole); returns whether anyone was listed.
    pub fn clear(&mut self) -> bool {
        self.rejoined();
        let had = !self.state.is_empty();
        self.state.clear();
        had
    }

    pub fn state(&self) -> &PresenceState {
        &self.state
    }

    /// One member per key, ordered by key.
    pub fn members(&self) -> Vec<Member> {
        self.state
            .iter()
            .filter_map(|(key, entry)| member(key, &entry.metas))
            .collect()
    }
}

/// The member behind a key's metas: the newest meta (phoenix appends new metas) names it,
/// and it is `active` when any of its connections is.
fn member(key: &str, metas: &[Meta]) -> Option<Member> {
    let newest = metas.last()?;
    let s = |k: &str| {
        newest
            .fields
            .get(k)
            .and_then(Value::as_str)
            .map(String::from)
    };
    let active = metas
        .iter()
        .any(|m| m.fields.get("status").and_then(Value::as_str) == Some("active"));
    Some(Member {
        user_id: s("user_id").unwrap_or_else(|| key.to_string()),
        display_name: s("display_name"),
        avatar_url: s("avatar_url"),
        status: if active {
            "active".into()
        } else {
            s("status").unwrap_or_else(|| "online".into())
        },
        last_seen: metas
            .iter()
            .filter_map(|m| m.fields.get("online_at").and_then(Value::as_str))
            .max()
            .map(String::from),
    })
}

/// phoenix.js `syncState`: keys missing from `new` leave; for shared keys, new refs join and
/// vanished refs leave; then the diff is applied.
pub fn sync_state(current: PresenceState, new: PresenceState) -> PresenceState {
    let mut diff = PresenceDiff::default();
    for (key, entry) in &current {
        if !new.contains_key(key) {
            diff.leaves.insert(key.clone(), entry.clone());
        }
    }
    for (key, entry) in new {
        match current.get(&key) {
            Some(cur) => {
                let joined: Vec<Meta> = entry
                    .metas
                    .iter()
                    .filter(|m| !cur.metas.iter().any(|c| c.phx_ref == m.phx_ref))
                    .cloned()
                    .collect();
                let left: Vec<Meta> = cur
                    .metas
                    .iter()
                    .filter(|c| !entry.metas.iter().any(|m| m.phx_ref == c.phx_ref))
                    .cloned()
                    .collect();
                if !joined.is_empty() {
                    diff.joins.insert(key.clone(), Entry { metas: joined });
                }
                if !left.is_empty() {
                    diff.leaves.insert(key, Entry { metas: left });
                }
            }
            None => {
                diff.joins.insert(key, entry);
            }
        }
    }
    sync_diff(current, diff)
}

/// phoenix.js `syncDiff`: a join sets the new metas after the old ones that were not
/// rejoined; a leave drops the metas with matching refs and the key once it has none.
pub fn sync_diff(mut state: PresenceState, diff: PresenceDiff) -> PresenceState {
    for (key, entry) in diff.joins {
        let mut metas = match state.remove(&key) {
            Some(cur) => cur
                .metas
                .into_iter()
                .filter(|c| !entry.metas.iter().any(|m| m.phx_ref == c.phx_ref))
                .collect(),
            None => Vec::new(),
        };
        metas.extend(entry.metas);
        state.insert(key, Entry { metas });
    }
    for (key, entry) in diff.leaves {
        let Some(cur) = state.get_mut(&key) else {
            continue;
        };
        cur.metas
            .retain(|c| !entry.metas.iter().any(|m| m.phx_ref == c.phx_ref));
        if cur.metas.is_empty() {
            state.remove(&key);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map};
    use std::collections::{BTreeMap, BTreeSet};

    fn meta(r: &str, user: &str) -> Meta {
        let mut fields = Map::new();
        fields.insert("user_id".into(), json!(user));
        fields.insert("status".into(), json!("active"));
        fields.insert(
            "online_at".into(),
            json!(format!("2026-01-01T00:00:0{}Z", r.len() % 10)),
        );
        Meta {
            phx_ref: r.into(),
            fields,
        }
    }

    fn one(key: &str, refs: &[&str]) -> PresenceState {
        let mut s = PresenceState::new();
        s.insert(
            key.into(),
            Entry {
                metas: refs.iter().map(|r| meta(r, key)).collect(),
            },
        );
        s
    }

    #[test]
    fn diffs_wait_for_the_state() {
        let mut p = Presence::default();
        assert!(!p.on_diff(PresenceDiff {
            joins: one("bob", &["b1"]),
            leaves: PresenceState::new()
        }));
        assert!(p.members().is_empty());
        assert!(p.on_state(one("alice", &["a1"])));
        let ids: Vec<String> = p.members().into_iter().map(|m| m.user_id).collect();
        assert_eq!(ids, vec!["alice", "bob"]);
    }

    #[test]
    fn one_member_per_user_and_leaves_by_ref() {
        let mut p = Presence::default();
        p.on_state(one("alice", &["a1", "a2"]));
        assert_eq!(p.members().len(), 1);
        assert!(!p.on_diff(PresenceDiff {
            joins: PresenceState::new(),
            leaves: one("alice", &["a1"])
        }));
        assert_eq!(p.members().len(), 1);
        assert!(p.on_diff(PresenceDiff {
            joins: PresenceState::new(),
            leaves: one("alice", &["a2"])
        }));
        assert!(p.members().is_empty());
    }

    #[test]
    fn a_new_state_replaces_the_old() {
        let mut p = Presence::default();
        p.on_state(one("alice", &["a1"]));
        p.rejoined();
        p.on_state(one("bob", &["b9"]));
        assert_eq!(p.members()[0].user_id, "bob");
        assert_eq!(p.members().len(), 1);
    }

    /// The server's model: key → refs, and the ops that change it.
    #[derive(Debug, Clone)]
    enum Op {
        Join(u8, u16),
        Leave(u8, u16),
    }

    fn refs(s: &PresenceState) -> BTreeMap<String, BTreeSet<String>> {
        s.iter()
            .map(|(k, e)| {
                (
                    k.clone(),
                    e.metas.iter().map(|m| m.phx_ref.clone()).collect(),
                )
            })
            .collect()
    }

    /// Runs the ops against the server model, returning the diffs the server would send
    /// (only effective ones, like Phoenix.Tracker) and the model after each.
    fn server(ops: &[Op]) -> Vec<(PresenceDiff, PresenceState)> {
        let mut model = PresenceState::new();
        let mut out = Vec::new();
        for op in ops {
            let mut diff = PresenceDiff::default();
            match *op {
                Op::Join(k, r) => {
                    let key = format!("u{k}");
                    let r = format!("r{k}-{r}");
                    let e = model.entry(key.clone()).or_insert(Entry { metas: vec![] });
                    if e.metas.iter().any(|m| m.phx_ref == r) {
                        continue;
                    }
                    e.metas.push(meta(&r, &key));
                    diff.joins = one(&key, &[&r]);
                }
                Op::Leave(k, r) => {
                    let key = format!("u{k}");
                    let r = format!("r{k}-{r}");
                    let Some(e) = model.get_mut(&key) else {
                        continue;
                    };
                    let Some(i) = e.metas.iter().position(|m| m.phx_ref == r) else {
                        continue;
                    };
                    e.metas.remove(i);
                    if e.metas.is_empty() {
                        model.remove(&key);
                    }
                    diff.leaves = one(&key, &[&r]);
                }
            }
            out.push((diff, model.clone()));
        }
        out
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (0u8..4, 0u16..6).prop_map(|(k, r)| Op::Join(k, r)),
                (0u8..4, 0u16..6).prop_map(|(k, r)| Op::Leave(k, r)),
            ],
            0..40,
        )
    }

    proptest! {
        /// Joining at any point: the diffs before the snapshot are buffered, the state
        /// arrives, later diffs follow; the client ends where the server is.
        #[test]
        fn client_converges_to_the_server(ops in ops(), cut in any::<prop::sample::Index>(), early in 0usize..5) {
            let events = server(&ops);
            let mut p = Presence::default();
            let cut = if events.is_empty() { 0 } else { cut.index(events.len() + 1) };
            let snapshot = if cut == 0 { PresenceState::new() } else { events[cut - 1].1.clone() };
            // Up to `early` diffs just before the snapshot reach the client first, buffered.
            for (d, _) in &events[cut.saturating_sub(early)..cut] {
                p.on_diff(d.clone());
            }
            p.on_state(snapshot);
            for (d, _) in &events[cut..] {
                p.on_diff(d.clone());
            }
            let expected = events.last().map(|e| e.1.clone()).unwrap_or_default();
            prop_assert_eq!(refs(p.state()), refs(&expected));
            // One member per user, never an empty one.
            prop_assert_eq!(p.members().len(), expected.len());
        }

        /// syncState lands exactly on the new state, whatever the old one.
        #[test]
        fn sync_state_lands_on_the_new_state(a in ops(), b in ops()) {
            let old = server(&a).last().map(|e| e.1.clone()).unwrap_or_default();
            let new = server(&b).last().map(|e| e.1.clone()).unwrap_or_default();
            prop_assert_eq!(refs(&sync_state(old, new.clone())), refs(&new));
        }
    }
}
