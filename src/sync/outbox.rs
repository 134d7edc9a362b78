//! The durable offline outbox: pushes that could not reach the cloud, in order, in
//! `.cloud-outbox.jsonl` beside `.cloud-link.json` (so it travels with the workspace and a
//! restarted process finds it).
//!
//! One JSON object per line, appended and synced; a crash mid-append can only tear the last
//! line, which is skipped on load. Draining rewrites the file atomically with what is left.
//! Message rows carry their deterministic ids, so sending an entry twice (a crash after the
//! request but before the rewrite) inserts nothing new.

use std::{
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

/// A line on disk: the entry plus a format version.
#[derive(Serialize, Deserialize)]
struct Line {
    v: u32,
    #[serde(flatten)]
    entry: Entry,
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
    pub fn load(&self) -> Result<Vec<Entry>> {
        let _g = self.guard();
        self.load_unlocked()
    }

    fn load_unlocked(&self) -> Result<Vec<Entry>> {
        Ok(parse(&self.text()?))
    }

    fn text(&self) -> Result<String> {
        match fs::read_to_string(&self.path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(Error::Io(format!("cannot read the outbox: {e}"))),
        }
    }

    pub fn len(&self) -> usize {
        self.load().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `entries` durably, or refuses all of them with `OutboxFull` when they would
    /// exceed the bound.
    pub fn append(&self, entries: &[Entry]) -> Result<usize> {
        let _g = self.guard();
        let existing = self.text()?;
        let queued = parse(&existing).len();
        if queued + entries.len() > self.max {
            return Err(Error::OutboxFull(self.max));
        }
        let mut text = String::new();
        // After a torn line (a crash mid-append), start on a fresh line so the torn fragment
        // does not swallow the first new entry.
        if !existing.is_empty() && !existing.ends_with('\n') {
            text.push('\n');
        }
        for entry in entries {
            let line = Line {
                v: 1,
                entry: entry.clone(),
            };
            text.push_str(&serde_json::to_string(&line).map_err(|e| Error::Io(e.to_string()))?);
            text.push('\n');
        }
        let io = |e: std::io::Error| Error::Io(format!("cannot write the outbox: {e}"));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        Ok(queued + entries.len())
    }

    /// Drops the first `sent` entries (those delivered or given up), keeping anything
    /// appended meanwhile.
    pub fn remove_first(&self, sent: usize) -> Result<usize> {
        let _g = self.guard();
        let all = self.load_unlocked()?;
        let rest = &all[sent.min(all.len())..];
        if rest.is_empty() {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io(format!("cannot clear the outbox: {e}"))),
            }
            return Ok(0);
        }
        let mut text = String::new();
        for entry in rest {
            let line = Line {
                v: 1,
                entry: entry.clone(),
            };
            text.push_str(&serde_json::to_string(&line).map_err(|e| Error::Io(e.to_string()))?);
            text.push('\n');
        }
        write_atomic(&self.path, text.as_bytes())?;
        Ok(rest.len())
    }
}

/// Every complete, readable line; a torn or foreign line is skipped (and logged).
fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<Line>(l) {
            Ok(line) => Some(line.entry),
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

    #[test]
    fn the_file_format_is_one_versioned_object_per_line() {
        let d = tmp();
        let ob = Outbox::new(&d, 10);
        ob.append(&[
            msgs(1),
            Entry::Workspace {
                workspace_id: "w".into(),
                state: json!({"task_goal": "g"}),
            },
        ])
        .unwrap();
        let text = fs::read_to_string(ob.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({"v": 1, "kind": "messages", "conversationId": "c", "rows": [{"id": 1}]}),
                json!({"v": 1, "kind": "workspace", "workspaceId": "w", "state": {"task_goal": "g"}}),
            ]
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn keeps_order_survives_reopening_and_drains() {
        let d = tmp();
        Outbox::new(&d, 10).append(&[msgs(1), msgs(2)]).unwrap();
        let ob = Outbox::new(&d, 10);
        ob.append(&[msgs(3)]).unwrap();
        assert_eq!(ob.load().unwrap(), vec![msgs(1), msgs(2), msgs(3)]);
        assert_eq!(ob.remove_first(2).unwrap(), 1);
        assert_eq!(ob.load().unwrap(), vec![msgs(3)]);
        assert_eq!(ob.remove_first(1).unwrap(), 0);
        assert!(!ob.path().exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let d = tmp();
        let ob = Outbox::new(&d, 10);
        ob.append(&[msgs(1)]).unwrap();
        let mut f = OpenOptions::new().append(true).open(ob.path()).unwrap();
        f.write_all(b"{\"v\":1,\"kind\":\"mess").unwrap();
        assert_eq!(ob.load().unwrap(), vec![msgs(1)]);
        ob.append(&[msgs(2)]).unwrap();
        assert_eq!(ob.load().unwrap(), vec![msgs(1), msgs(2)]);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn it_is_bounded() {
        let d = tmp();
        let ob = Outbox::new(&d, 2);
        ob.append(&[msgs(1)]).unwrap();
        let err = ob.append(&[msgs(2), msgs(3)]).unwrap_err();
        assert_eq!(err.code(), "OUTBOX_FULL");
        assert_eq!(ob.len(), 1, "nothing of a refused append is kept");
        ob.append(&[msgs(2)]).unwrap();
        fs::remove_dir_all(d).unwrap();
    }
}
