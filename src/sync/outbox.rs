//! The durable offline outbox: pushes that could not reach the cloud, in order, in
//! `.cloud-outbox.jsonl` beside `.cloud-link.json` (so it travels with the workspace and a
//! restarted process finds it).
//!
//! One JSON object per line, appended and synced; a crash mid-append can only tear the last
//! line, which is skipped on load. Draining rewrites the file atomically with what is left.
//! Message rows carry their deterministic ids, so sending an entry twice (a crash after the
//! request but before the rewrite) inserts nothing new.
//!
//! Each entry belongs to the user whose session queued it (`userId` on its line): the cloud
//! takes message rows only from their sender, so another user's session must neither send
//! them nor, refused, drop them. A session sends its own user's entries and leaves the rest
//! for their user's next login. Lines of earlier versions have no `userId`; see
//! [`Queued::owner`].

use std::{
    collections::HashSet,
    fs::{self, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    error::{Error, Result},
    link_file::write_atomic,
};

pub const FILE_NAME: &str = ".cloud-outbox.jsonl";
/// Entries kept at most, each one insert request's rows (at most 500 rows and, but for a
/// single longer row, 256 KiB of JSON): thousands of messages at the least, far beyond a
/// day offline, yet a bounded file.
pub const MAX_ENTRIES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Entry {
    /// Message rows to insert with `on_conflict=id` (ignore duplicates).
    #[serde(rename_all = "camelCase")]
    Messages {
        conversation_id: String,
        rows: Vec<Value>,
    },
    /// A workspace state push; only the newest one of a workspace matters.
    #[serde(rename_all = "camelCase")]
    Workspace { workspace_id: String, state: Value },
}

impl Entry {
    /// The conversation or workspace the entry writes to: entries of one key are sent in
    /// the order they were queued.
    pub fn key(&self) -> &str {
        match self {
            Entry::Messages {
                conversation_id, ..
            } => conversation_id,
            Entry::Workspace { workspace_id, .. } => workspace_id,
        }
    }
}

/// A queued entry and the user it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// The user whose session queued it; `None` on lines of earlier versions.
    pub user: Option<String>,
    pub entry: Entry,
}

impl Queued {
    /// The user the entry belongs to. A line of an earlier version records none; its message
    /// rows still name the user who pushed them (`metadata.pushedBy` on every row, the
    /// sender on user rows), the only user the cloud takes them from, so they go to that
    /// user. A workspace state of an earlier version names nobody: it is the working
    /// directory's state, and goes to the first user who flushes the outbox.
    pub fn owner(&self) -> Option<&str> {
        if let Some(user) = &self.user {
            return Some(user);
        }
        match &self.entry {
            Entry::Messages { rows, .. } => rows.iter().find_map(|r| {
                r.get("metadata")
                    .and_then(|m| m.get("pushedBy"))
                    .or_else(|| r.get("sender_user_id"))
                    .and_then(Value::as_str)
            }),
            Entry::Workspace { .. } => None,
        }
    }

    /// Whether `user`'s session sends this entry.
    pub fn belongs_to(&self, user: &str) -> bool {
        self.owner().is_none_or(|owner| owner == user)
    }
}

/// A line on disk: the entry, its owner and a format version. The owner was added without a
/// new version: it is optional both ways, as earlier versions ignore it.
#[derive(Serialize, Deserialize)]
struct Line {
    v: u32,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(flatten)]
    entry: Entry,
}

fn line(q: &Queued) -> Result<String> {
    let line = Line {
        v: 1,
        user: q.user.clone(),
        entry: q.entry.clone(),
    };
    let mut text = serde_json::to_string(&line).map_err(|e| Error::Io(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

pub struct Outbox {
    path: PathBuf,
    max: usize,
    /// Serializes appends and rewrites within this process.
    lock: Mutex<()>,
}

impl Outbox {
    pub fn new(dir: &Path, max: usize) -> Outbox {
        Outbox {
            path: dir.join(FILE_NAME),
            max,
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queued entries, oldest first.
    pub fn load(&self) -> Result<Vec<Queued>> {
        let _g = self.guard();
        self.load_unlocked()
    }

    fn load_unlocked(&self) -> Result<Vec<Queued>> {
        Ok(parse(&self.text()?))
    }

    fn text(&self) -> Result<String> {
        match fs::read_to_string(&self.path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(Error::Io(format!("cannot read the outbox: {e}"))),
        }
    }

    /// How many entries `user`'s session has to send (none when the file is unreadable:
    /// the next flush reports that).
    pub fn pending(&self, user: &str) -> usize {
        self.load()
            .map(|all| all.iter().filter(|q| q.belongs_to(user)).count())
            .unwrap_or(0)
    }

    /// Appends `entries`, queued by `user`, durably, or refuses all of them with
    /// `OutboxFull` when they would exceed the bound (on the whole file, whoever queued what).
    /// Returns how many entries `user` has queued now.
    pub fn append(&self, user: &str, entries: &[Entry]) -> Result<usize> {
        let _g = self.guard();
        let existing = self.text()?;
        let queued = parse(&existing);
        if queued.len() + entries.len() > self.max {
            return Err(Error::OutboxFull(self.max));
        }
        let mut text = String::new();
        // After a torn line (a crash mid-append), start on a fresh line so the torn fragment
        // does not swallow the first new entry.
        if !existing.is_empty() && !existing.ends_with('\n') {
            text.push('\n');
        }
        for entry in entries {
            text.push_str(&line(&Queued {
                user: Some(user.to_string()),
                entry: entry.clone(),
            })?);
        }
        let io = |e: std::io::Error| Error::Io(format!("cannot write the outbox: {e}"));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        let own = queued.iter().filter(|q| q.belongs_to(user)).count();
        Ok(own + entries.len())
    }

    /// Drops the entries at positions `done` of the list [`load`](Self::load) returned
    /// (delivered, or given up), keeping every other one and anything appended since (the
    /// file only grows at its end in between). Returns what is left.
    pub fn remove(&self, done: &[usize]) -> Result<Vec<Queued>> {
        let _g = self.guard();
        let done: HashSet<usize> = done.iter().copied().collect();
        let all = self.load_unlocked()?;
        let rest: Vec<Queued> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !done.contains(i))
            .map(|(_, q)| q)
            .collect();
        if rest.is_empty() {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io(format!("cannot clear the outbox: {e}"))),
            }
            return Ok(rest);
        }
        let mut text = String::new();
        for q in &rest {
            text.push_str(&line(q)?);
        }
        write_atomic(&self.path, text.as_bytes())?;
        Ok(rest)
    }
}

/// Every complete, readable line; a torn or foreign line is skipped (and logged).
fn parse(text: &str) -> Vec<Queued> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<Line>(l) {
            Ok(line) => Some(Queued {
                user: line.user,
                entry: line.entry,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable outbox line");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: &str = "11111111-1111-4111-8111-111111111111";
    const BOB: &str = "22222222-2222-4222-8222-222222222222";

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("oboto-outbox-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn msgs(n: u32) -> Entry {
        Entry::Messages {
            conversation_id: "c".into(),
            rows: vec![json!({"id": n})],
        }
    }

    fn entries(q: Vec<Queued>) -> Vec<Entry> {
        q.into_iter().map(|q| q.entry).collect()
    }

    #[test]
    fn the_file_format_is_one_versioned_object_per_line() {
        let d = tmp();
        let ob = Outbox::new(&d, 10);
        ob.append(
            ALICE,
            &[
                msgs(1),
                Entry::Workspace {
                    workspace_id: "w".into(),
                    state: json!({"task_goal": "g"}),
                },
            ],
        )
        .unwrap();
        let text = fs::read_to_string(ob.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({"v": 1, "userId": ALICE, "kind": "messages", "conversationId": "c", "rows": [{"id": 1}]}),
                json!({"v": 1, "userId": ALICE, "kind": "workspace", "workspaceId": "w", "state": {"task_goal": "g"}}),
            ]
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn keeps_order_survives_reopening_and_drains() {
        let d = tmp();
        Outbox::new(&d, 10)
            .append(ALICE, &[msgs(1), msgs(2)])
            .unwrap();
        let ob = Outbox::new(&d, 10);
        ob.append(ALICE, &[msgs(3)]).unwrap();
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1), msgs(2), msgs(3)]);
        assert_eq!(entries(ob.remove(&[0, 1]).unwrap()), vec![msgs(3)]);
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(3)]);
        assert!(ob.remove(&[0]).unwrap().is_empty());
        assert!(!ob.path().exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn entries_belong_to_the_user_who_queued_them() {
        let d = tmp();
        let ob = Outbox::new(&d, 10);
        assert_eq!(ob.append(ALICE, &[msgs(1), msgs(2)]).unwrap(), 2);
        assert_eq!(ob.append(BOB, &[msgs(3)]).unwrap(), 1, "bob's own count");
        assert_eq!(ob.append(ALICE, &[msgs(4)]).unwrap(), 3);
        assert_eq!((ob.pending(ALICE), ob.pending(BOB)), (3, 1));
        let all = ob.load().unwrap();
        let owners: Vec<_> = all.iter().map(|q| q.owner()).collect();
        assert_eq!(owners, [Some(ALICE), Some(ALICE), Some(BOB), Some(ALICE)]);
        assert!(all[2].belongs_to(BOB) && !all[2].belongs_to(ALICE));
        // Bob sent his; alice's stay, in their order, with their owner.
        let left = ob.remove(&[2]).unwrap();
        assert_eq!(entries(left.clone()), vec![msgs(1), msgs(2), msgs(4)]);
        assert!(left.iter().all(|q| q.user.as_deref() == Some(ALICE)));
        assert_eq!(ob.load().unwrap(), left, "the rewrite keeps the owners");
        assert_eq!(ob.pending(BOB), 0);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn lines_of_earlier_versions_belong_to_the_user_their_rows_name() {
        let d = tmp();
        let ob = Outbox::new(&d, 10);
        let row = |role: &str, sender: Option<&str>, pushed_by: Option<&str>| {
            let mut r = json!({"id": "x", "role": role, "sender_user_id": sender});
            if let Some(p) = pushed_by {
                r["metadata"] = json!({"pushedBy": p, "ordinal": 0});
            }
            r
        };
        let lines = [
            json!({"v": 1, "kind": "messages", "conversationId": "c",
                   "rows": [row("assistant", None, Some(ALICE)), row("user", Some(ALICE), Some(ALICE))]}),
            json!({"v": 1, "kind": "messages", "conversationId": "c", "rows": [row("user", Some(BOB), None)]}),
            json!({"v": 1, "kind": "workspace", "workspaceId": "w", "state": {}}),
            json!({"v": 1, "kind": "messages", "conversationId": "c", "rows": [row("assistant", None, None)]}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        fs::write(ob.path(), text).unwrap();
        let all = ob.load().unwrap();
        assert!(all.iter().all(|q| q.user.is_none()));
        let owners: Vec<_> = all.iter().map(|q| q.owner()).collect();
        assert_eq!(owners, [Some(ALICE), Some(BOB), None, None]);
        // Whoever flushes first takes what names nobody.
        assert_eq!((ob.pending(ALICE), ob.pending(BOB)), (3, 3));
        // Rewritten, they stay as they were: still without a recorded owner.
        ob.remove(&[]).unwrap();
        let again = ob.load().unwrap();
        assert_eq!(again, all);
        assert!(!fs::read_to_string(ob.path()).unwrap().contains("userId"));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let d = tmp();
        let ob = Outbox::new(&d, 10);
        ob.append(ALICE, &[msgs(1)]).unwrap();
        let mut f = OpenOptions::new().append(true).open(ob.path()).unwrap();
        f.write_all(b"{\"v\":1,\"kind\":\"mess").unwrap();
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1)]);
        ob.append(ALICE, &[msgs(2)]).unwrap();
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1), msgs(2)]);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn it_is_bounded() {
        let d = tmp();
        let ob = Outbox::new(&d, 2);
        ob.append(ALICE, &[msgs(1)]).unwrap();
        let err = ob.append(BOB, &[msgs(2), msgs(3)]).unwrap_err();
        assert_eq!(err.code(), "OUTBOX_FULL");
        assert_eq!(
            ob.load().unwrap().len(),
            1,
            "nothing of a refused append is kept"
        );
        ob.append(BOB, &[msgs(2)]).unwrap();
        fs::remove_dir_all(d).unwrap();
    }
}
