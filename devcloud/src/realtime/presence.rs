//! Phoenix.Presence for one topic: every tracking channel holds one meta under its key; each
//! change yields the diff (`joins`, `leaves`) that Phoenix broadcasts, and the state is what a
//! joining channel receives as `presence_state`. An update is a leave of the old meta and a
//! join of the new one carrying `phx_ref_prev`.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use serde_json::{json, Map, Value};

/// Which channel holds a meta.
pub type Owner = u64;

#[derive(Debug, Clone, PartialEq)]
struct Meta {
    owner: Owner,
    /// The meta as sent: the tracked payload plus `phx_ref` (and `phx_ref_prev`).
    value: Value,
}

#[derive(Debug, Default)]
pub struct Presence {
    keys: BTreeMap<String, Vec<Meta>>,
    /// Which key each owner tracks under.
    owners: BTreeMap<Owner, String>,
}

/// `{"joins": {...}, "leaves": {...}}`, each `{key: {"metas": [...]}}`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Diff {
    pub joins: BTreeMap<String, Vec<Value>>,
    pub leaves: BTreeMap<String, Vec<Value>>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
    pub fn to_json(&self) -> Value {
        json!({"joins": group(&self.joins), "leaves": group(&self.leaves)})
    }
}

fn group(m: &BTreeMap<String, Vec<Value>>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, metas)| (k.clone(), json!({ "metas": metas })))
            .collect(),
    )
}

/// A ref unique in this process, short like Phoenix's (`F…`): a counter seeded by the clock,
/// so refs from a restarted server do not repeat the old ones.
pub fn new_ref() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    });
    let n = base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    use base64::Engine as _;
    format!(
        "F{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_be_bytes())
    )
}

impl Presence {
    /// Tracks (or re-tracks) `owner` under `key` with `payload` (a JSON object).
    pub fn track(&mut self, owner: Owner, key: &str, payload: Map<String, Value>) -> Diff {
        let mut diff = Diff::default();
        let mut meta = payload;
        meta.insert("phx_ref".into(), Value::String(new_ref()));
        if let Some(old) = self.remove(owner) {
            let (old_key, old_meta) = old;
            if let Some(prev) = old_meta.value.get("phx_ref").cloned() {
                meta.insert("phx_ref_prev".into(), prev);
            }
            diff.leaves.entry(old_key).or_default().push(old_meta.value);
        }
        let value = Value::Object(meta);
        diff.joins
            .entry(key.to_string())
            .or_default()
            .push(value.clone());
        self.keys
            .entry(key.to_string())
            .or_default()
            .push(Meta { owner, value });
        self.owners.insert(owner, key.to_string());
        diff
    }

    /// Untrack, leave, close or a dropped socket: the owner's meta leaves.
    pub fn untrack(&mut self, owner: Owner) -> Diff {
        let mut diff = Diff::default();
        if let Some((key, meta)) = self.remove(owner) {
            diff.leaves.entry(key).or_default().push(meta.value);
        }
        diff
    }

    fn remove(&mut self, owner: Owner) -> Option<(String, Meta)> {
        let key = self.owners.remove(&owner)?;
        let metas = self.keys.get_mut(&key)?;
        let i = metas.iter().position(|m| m.owner == owner)?;
        let meta = metas.remove(i);
        if metas.is_empty() {
            self.keys.remove(&key);
        }
        Some((key, meta))
    }

    /// `presence_state`: `{key: {"metas": [...]}}`.
    pub fn state(&self) -> Value {
        Value::Object(
            self.keys
                .iter()
                .map(|(k, metas)| {
                    let metas: Vec<&Value> = metas.iter().map(|m| &m.value).collect();
                    (k.clone(), json!({ "metas": metas }))
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn join_update_leave() {
        let mut p = Presence::default();
        let d = p.track(1, "alice", obj(json!({"status": "active"})));
        assert!(d.leaves.is_empty());
        let r1 = d.joins["alice"][0]["phx_ref"].as_str().unwrap().to_string();
        assert_eq!(d.joins["alice"][0]["status"], "active");

        // Same key from another channel: two metas under one key.
        let d = p.track(2, "alice", obj(json!({"status": "away"})));
        assert_eq!(d.joins["alice"].len(), 1);
        assert_eq!(p.state()["alice"]["metas"].as_array().unwrap().len(), 2);

        // Re-track: leave the old meta, join the new one with phx_ref_prev.
        let d = p.track(1, "alice", obj(json!({"status": "typing"})));
        assert_eq!(d.leaves["alice"][0]["phx_ref"], r1.as_str());
        assert_eq!(d.joins["alice"][0]["phx_ref_prev"], r1.as_str());
        assert_ne!(d.joins["alice"][0]["phx_ref"], r1.as_str());

        let d = p.untrack(2);
        assert_eq!(d.leaves["alice"][0]["status"], "away");
        assert_eq!(p.state()["alice"]["metas"].as_array().unwrap().len(), 1);
        let d = p.untrack(1);
        assert_eq!(d.leaves.len(), 1);
        assert!(p.is_empty());
        assert!(p.untrack(1).is_empty());
    }

    #[test]
    fn retrack_under_another_key_moves_the_meta() {
        let mut p = Presence::default();
        p.track(1, "a", Map::new());
        let d = p.track(1, "b", Map::new());
        assert!(d.leaves.contains_key("a") && d.joins.contains_key("b"));
        assert!(p.state().get("a").is_none());
        let json = d.to_json();
        assert!(json["joins"]["b"]["metas"].is_array());
    }

    #[test]
    fn refs_are_unique() {
        let refs: std::collections::HashSet<String> = (0..1000).map(|_| new_ref()).collect();
        assert_eq!(refs.len(), 1000);
    }
}
