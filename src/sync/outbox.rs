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
    collections::{HashMap, HashSet},
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    link_file::write_atomic,
};

pub const FILE_NAME: &str = ".cloud-outbox.jsonl";
/// The lock file beside the outbox. It is never removed: a process that removed it while
/// another held it would let a third lock a new file of the same name, and both write.
/// (Its name starts with the outbox's, so file sync skips it; it does not end in `.tmp`, so
/// the stale temporary files' cleanup leaves it alone.)
pub const LOCK_NAME: &str = ".cloud-outbox.jsonl.lock";
/// How long a write waits for another process to let go of the lock (each holds it for one
/// read and one write of the file), and how often it tries meanwhile: often, as a holder
/// that writes again and again lets go only briefly, and tries cost a system call each.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// How much the outbox holds. Each user's backlog has its own bound, so that one user's
/// backlog never refuses another's pushes; the file's bound only keeps a directory shared by
/// many users with full backlogs from growing without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries of one user, each one insert request's rows (at most 500 rows and, but for a
    /// single longer row, 256 KiB of JSON): thousands of messages at the least, far beyond
    /// a day offline.
    pub entries_per_user: usize,
    /// Bytes of one user's lines.
    pub bytes_per_user: usize,
    /// Bytes of the whole file (it is read whole at each append).
    pub file_bytes: usize,
}

pub const LIMITS: Limits = Limits {
    entries_per_user: 1000,
    bytes_per_user: 64 * 1024 * 1024,
    file_bytes: 256 * 1024 * 1024,
};

/// Namespace of the ids given to lines of earlier versions, which have none.
const LEGACY_NS: Uuid = Uuid::from_u128(0x6f62_6f74_6f2d_4f75_8462_6f78_2d6c_696e);

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
    Workspace {
        workspace_id: String,
        state: Value,
        /// The cloud state it was made on: the link's base when it was queued (`null` for
        /// none). Once the base has moved on, a state was pushed or pulled since, this one
        /// included when its drain could not remove it, and sending it would overwrite a
        /// newer one. Absent on lines of earlier versions, which are sent as before.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        base: Option<Option<String>>,
    },
}

/// A field that is there, `null` or not (absent is `None` through `default`).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
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

/// A queued entry, its identity and the user it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// Names this entry among every entry ever queued, so that [`Outbox::remove`] drops
    /// exactly the entries a flush handled, whatever other processes did to the file since
    /// it was read. Given at append; a line of an earlier version gets one derived from its
    /// text (and its rank among identical lines), kept from the first rewrite on.
    pub id: Uuid,
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

/// A line on disk: the entry, its id, its owner and a format version. The id and the owner
/// were added without a new version: both are optional both ways, as earlier versions
/// ignore them.
#[derive(Serialize, Deserialize)]
struct Line {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(flatten)]
    entry: Entry,
}

fn line(q: &Queued) -> Result<String> {
    let line = Line {
        v: 1,
        id: Some(q.id),
        user: q.user.clone(),
        entry: q.entry.clone(),
    };
    let mut text = serde_json::to_string(&line).map_err(|e| Error::Io(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// An exclusive advisory lock on the lock file, released when dropped (and by the system
/// when the process ends, however it ends).
struct FileLock(File);

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.0);
    }
}

#[derive(Clone)]
pub struct Outbox {
    path: PathBuf,
    lock_path: PathBuf,
    limits: Limits,
}

impl Outbox {
    pub fn new(dir: &Path, limits: Limits) -> Outbox {
        Outbox {
            path: dir.join(FILE_NAME),
            lock_path: dir.join(LOCK_NAME),
            limits,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serializes appends and rewrites across every process (and every `Outbox` of this
    /// one: each lock is its own open file). Without it, an append landing between a
    /// rewrite's read and its rename would be lost. Reads need none: a rewrite replaces the
    /// file whole, and a line an append has not finished is skipped until it is.
    fn lock(&self) -> Result<FileLock> {
        let io = |e: std::io::Error| Error::Io(format!("cannot lock the outbox: {e}"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.lock_path)
            .map_err(io)?;
        // A holder that never lets go (stopped, or on a hung network file system) must not
        // hold up the write for ever.
        let start = std::time::Instant::now();
        loop {
            match fs4::FileExt::try_lock(&f) {
                Ok(()) => return Ok(FileLock(f)),
                Err(fs4::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(fs4::TryLockError::WouldBlock) => {
                    let waited = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    return Err(Error::OutboxLocked(waited));
                }
                Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
    }

    /// The queued entries, oldest first.
    pub fn load(&self) -> Result<Vec<Queued>> {
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
    /// `OutboxFull` when they would take `user`'s backlog (what `user`'s session sends)
    /// or the file past its [`Limits`]. Returns how many entries `user` has queued now.
    pub async fn append(&self, user: &str, entries: Vec<Entry>) -> Result<usize> {
        let (ob, user) = (self.clone(), user.to_string());
        off_the_runtime(move || ob.append_blocking(&user, &entries)).await
    }

    /// Drops the entries with ids `done`; see [`remove_blocking`](Self::remove_blocking).
    pub async fn remove(&self, done: Vec<Uuid>) -> Result<Vec<Queued>> {
        let ob = self.clone();
        off_the_runtime(move || ob.remove_blocking(&done)).await
    }

    fn append_blocking(&self, user: &str, entries: &[Entry]) -> Result<usize> {
        let _lock = self.lock()?;
        let existing = self.text()?;
        let queued = parse(&existing);
        let mut text = String::new();
        // After a torn line (a crash mid-append), start on a fresh line so the torn fragment
        // does not swallow the first new entry.
        if !existing.is_empty() && !existing.ends_with('\n') {
            text.push('\n');
        }
        for entry in entries {
            text.push_str(&line(&Queued {
                id: Uuid::new_v4(),
                user: Some(user.to_string()),
                entry: entry.clone(),
            })?);
        }
        let own: Vec<&Queued> = queued.iter().filter(|q| q.belongs_to(user)).collect();
        let own_bytes = own
            .iter()
            .map(|q| line(q).map(|l| l.len()))
            .sum::<Result<usize>>()?;
        let l = &self.limits;
        if own.len() + entries.len() > l.entries_per_user {
            return Err(Error::OutboxFull(format!(
                "{} entries of this user's",
                l.entries_per_user
            )));
        }
        if own_bytes + text.len() > l.bytes_per_user {
            return Err(Error::OutboxFull(format!(
                "{} MiB of this user's entries",
                l.bytes_per_user >> 20
            )));
        }
        if existing.len() + text.len() > l.file_bytes {
            return Err(Error::OutboxFull(format!(
                "{} MiB, with the entries of every user of this directory",
                l.file_bytes >> 20
            )));
        }
        let io = |e: std::io::Error| Error::Io(format!("cannot write the outbox: {e}"));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        Ok(own.len() + entries.len())
    }

    /// Drops the entries with ids `done` (delivered, or given up), keeping every other one:
    /// those appended since they were loaded, and those another process removed are not
    /// brought back. Returns what is left.
    fn remove_blocking(&self, done: &[Uuid]) -> Result<Vec<Queued>> {
        let _lock = self.lock()?;
        let done: HashSet<&Uuid> = done.iter().collect();
        let all = self.load()?;
        let rest: Vec<Queued> = all.into_iter().filter(|q| !done.contains(&q.id)).collect();
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

/// Runs a write of the outbox on the blocking pool: it may wait up to [`LOCK_WAIT`] for
/// another process's lock, then reads, writes and syncs the file, and on a runtime worker
/// that would stall every other task of that worker (realtime delivery, timers) meanwhile.
/// Waiting there keeps the outbox plain blocking file code, which its cross-process tests
/// drive from threads; an async try-lock loop would move only the wait, not the fsync. A
/// caller that stops waiting does not stop the write: it happens whole, or not at all.
async fn off_the_runtime<T: Send + 'static>(
    write: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| Error::Io(format!("the outbox write did not finish: {e}")))?
}

/// Every complete, readable line; a torn or foreign line is skipped (and logged).
fn parse(text: &str) -> Vec<Queued> {
    // Identical lines of earlier versions are told apart by their rank.
    let mut seen: HashMap<&str, u64> = HashMap::new();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<Line>(l) {
            Ok(line) => {
                let id = line.id.unwrap_or_else(|| {
                    let rank = seen.entry(l.trim()).or_insert(0);
                    *rank += 1;
                    let mut name = rank.to_be_bytes().to_vec();
                    name.extend_from_slice(l.trim().as_bytes());
                    Uuid::new_v5(&LEGACY_NS, &name)
                });
                Some(Queued {
                    id,
                    user: line.user,
                    entry: line.entry,
                })
            }
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
    use proptest::prelude::*;
    use serde_json::json;

    /// What `remove` takes for the entries at `done` of `loaded`.
    fn done_of(loaded: &[Queued], done: &[usize]) -> Vec<Uuid> {
        done.iter().map(|&i| loaded[i].id).collect()
    }

    /// Room for `entries` entries per user, and bytes enough not to matter.
    fn limits(entries: usize) -> Limits {
        Limits {
            entries_per_user: entries,
            ..LIMITS
        }
    }

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
        let ob = Outbox::new(&d, limits(10));
        ob.append_blocking(
            ALICE,
            &[
                msgs(1),
                Entry::Workspace {
                    workspace_id: "w".into(),
                    state: json!({"task_goal": "g"}),
                    base: Some(None),
                },
            ],
        )
        .unwrap();
        let text = fs::read_to_string(ob.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: Vec<String> = ob
            .load()
            .unwrap()
            .iter()
            .map(|q| q.id.to_string())
            .collect();
        assert_ne!(ids[0], ids[1]);
        assert_eq!(
            lines,
            vec![
                json!({"v": 1, "id": ids[0], "userId": ALICE, "kind": "messages", "conversationId": "c", "rows": [{"id": 1}]}),
                json!({"v": 1, "id": ids[1], "userId": ALICE, "kind": "workspace", "workspaceId": "w", "state": {"task_goal": "g"}, "base": null}),
            ]
        );
        fs::remove_dir_all(d).unwrap();
    }

    /// A state's base reads back as written, a `null` one too; a line of an earlier version
    /// has none, which is not the same as a `null` one.
    #[test]
    fn a_workspace_state_keeps_the_base_it_was_queued_on() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(10));
        let state = |base| Entry::Workspace {
            workspace_id: "w".into(),
            state: json!({}),
            base,
        };
        let written = vec![
            state(Some(Some("2026-01-01T00:00:00Z".into()))),
            state(Some(None)),
        ];
        ob.append_blocking(ALICE, &written).unwrap();
        let mut text = fs::read_to_string(ob.path()).unwrap();
        text.push_str("{\"v\":1,\"kind\":\"workspace\",\"workspaceId\":\"w\",\"state\":{}}\n");
        fs::write(ob.path(), text).unwrap();
        let mut want = written;
        want.push(state(None));
        assert_eq!(entries(ob.load().unwrap()), want);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_lock_held_elsewhere_fails_the_append_in_bounded_time() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(10));
        ob.append_blocking(ALICE, &[msgs(1)]).unwrap();
        // Another process stopped while holding the lock (a lock on another open file
        // conflicts like one in another process).
        let held = File::options().write(true).open(d.join(LOCK_NAME)).unwrap();
        fs4::FileExt::lock(&held).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = d.clone();
        std::thread::spawn(move || {
            let ob = Outbox::new(&dir, limits(10));
            let _ = tx.send(ob.append_blocking(ALICE, &[msgs(2)]));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the append gives up");
        let e = got.unwrap_err();
        assert_eq!(e.code(), "OUTBOX_LOCKED", "{e}");
        // Nothing was lost, nothing added: once the lock is free the append goes through.
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1)]);
        fs4::FileExt::unlock(&held).unwrap();
        ob.append_blocking(ALICE, &[msgs(2)]).unwrap();
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1), msgs(2)]);
        fs::remove_dir_all(d).unwrap();
    }

    /// Waiting for a lock another process holds leaves the runtime's thread to its other
    /// tasks: on a runtime of one thread, one of them runs to its end while the append waits,
    /// and the append then goes through once the lock is free.
    #[test]
    fn waiting_for_the_lock_leaves_the_runtime_to_its_other_tasks() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(10));
        let held = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(d.join(LOCK_NAME))
            .unwrap();
        fs4::FileExt::lock(&held).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let appending = tokio::spawn({
                let ob = ob.clone();
                async move { ob.append(ALICE, vec![msgs(1)]).await }
            });
            tokio::spawn(tokio::task::yield_now()).await.unwrap();
            assert!(
                !appending.is_finished(),
                "the other task ran only once the append had given up: {:?}",
                appending.await
            );
            fs4::FileExt::unlock(&held).unwrap();
            assert_eq!(appending.await.unwrap().unwrap(), 1);
        });
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1)]);
        let left = rt.block_on(ob.remove(ob.load().unwrap().iter().map(|q| q.id).collect()));
        assert!(left.unwrap().is_empty());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn keeps_order_survives_reopening_and_drains() {
        let d = tmp();
        Outbox::new(&d, limits(10))
            .append_blocking(ALICE, &[msgs(1), msgs(2)])
            .unwrap();
        let ob = Outbox::new(&d, limits(10));
        ob.append_blocking(ALICE, &[msgs(3)]).unwrap();
        let all = ob.load().unwrap();
        assert_eq!(entries(all.clone()), vec![msgs(1), msgs(2), msgs(3)]);
        assert_eq!(
            entries(ob.remove_blocking(&done_of(&all, &[0, 1])).unwrap()),
            vec![msgs(3)]
        );
        assert_eq!(ob.load().unwrap(), all[2..], "ids survive a rewrite");
        assert!(ob.remove_blocking(&done_of(&all, &[2])).unwrap().is_empty());
        assert!(!ob.path().exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn entries_belong_to_the_user_who_queued_them() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(10));
        assert_eq!(ob.append_blocking(ALICE, &[msgs(1), msgs(2)]).unwrap(), 2);
        assert_eq!(
            ob.append_blocking(BOB, &[msgs(3)]).unwrap(),
            1,
            "bob's own count"
        );
        assert_eq!(ob.append_blocking(ALICE, &[msgs(4)]).unwrap(), 3);
        assert_eq!((ob.pending(ALICE), ob.pending(BOB)), (3, 1));
        let all = ob.load().unwrap();
        let owners: Vec<_> = all.iter().map(|q| q.owner()).collect();
        assert_eq!(owners, [Some(ALICE), Some(ALICE), Some(BOB), Some(ALICE)]);
        assert!(all[2].belongs_to(BOB) && !all[2].belongs_to(ALICE));
        // Bob sent his; alice's stay, in their order, with their owner.
        let left = ob.remove_blocking(&done_of(&all, &[2])).unwrap();
        assert_eq!(entries(left.clone()), vec![msgs(1), msgs(2), msgs(4)]);
        assert!(left.iter().all(|q| q.user.as_deref() == Some(ALICE)));
        assert_eq!(ob.load().unwrap(), left, "the rewrite keeps the owners");
        assert_eq!(ob.pending(BOB), 0);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn lines_of_earlier_versions_belong_to_the_user_their_rows_name() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(10));
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
        ob.remove_blocking(&[]).unwrap();
        let again = ob.load().unwrap();
        assert_eq!(again, all);
        assert!(!fs::read_to_string(ob.path()).unwrap().contains("userId"));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(10));
        ob.append_blocking(ALICE, &[msgs(1)]).unwrap();
        let mut f = OpenOptions::new().append(true).open(ob.path()).unwrap();
        f.write_all(b"{\"v\":1,\"kind\":\"mess").unwrap();
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1)]);
        ob.append_blocking(ALICE, &[msgs(2)]).unwrap();
        assert_eq!(entries(ob.load().unwrap()), vec![msgs(1), msgs(2)]);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn it_is_bounded() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(2));
        ob.append_blocking(ALICE, &[msgs(1)]).unwrap();
        let err = ob.append_blocking(ALICE, &[msgs(2), msgs(3)]).unwrap_err();
        assert_eq!(err.code(), "OUTBOX_FULL");
        assert_eq!(
            ob.load().unwrap().len(),
            1,
            "nothing of a refused append is kept"
        );
        ob.append_blocking(ALICE, &[msgs(2)]).unwrap();
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn bytes_are_bounded_per_user_and_for_the_file() {
        let d = tmp();
        let one = line(&Queued {
            id: Uuid::nil(),
            user: Some(ALICE.into()),
            entry: msgs(1),
        })
        .unwrap()
        .len();
        let ob = Outbox::new(
            &d,
            Limits {
                entries_per_user: 100,
                bytes_per_user: 2 * one,
                file_bytes: 3 * one,
            },
        );
        ob.append_blocking(ALICE, &[msgs(1), msgs(2)]).unwrap();
        let err = ob.append_blocking(ALICE, &[msgs(3)]).unwrap_err();
        assert_eq!(err.code(), "OUTBOX_FULL");
        assert!(err.to_string().contains("this user's"), "{err}");
        ob.append_blocking(BOB, &[msgs(3)]).unwrap();
        let err = ob.append_blocking(BOB, &[msgs(4)]).unwrap_err();
        assert!(err.to_string().contains("every user"), "{err}");
        assert_eq!(ob.load().unwrap().len(), 3);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn identical_lines_of_earlier_versions_are_removed_one_by_one() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(10));
        let old = json!({"v": 1, "kind": "messages", "conversationId": "c", "rows": [{"id": 1}]});
        fs::write(ob.path(), format!("{old}\n{old}\n")).unwrap();
        let all = ob.load().unwrap();
        assert_ne!(all[0].id, all[1].id);
        assert_eq!(ob.load().unwrap(), all, "the same ids at every read");
        let left = ob.remove_blocking(&done_of(&all, &[0])).unwrap();
        assert_eq!(left, all[1..]);
        assert_eq!(
            ob.load().unwrap(),
            left,
            "the id is kept from the rewrite on"
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn each_users_backlog_has_its_own_bound() {
        let d = tmp();
        let ob = Outbox::new(&d, limits(2));
        ob.append_blocking(ALICE, &[msgs(1), msgs(2)]).unwrap();
        assert_eq!(
            ob.append_blocking(ALICE, &[msgs(3)]).unwrap_err().code(),
            "OUTBOX_FULL"
        );
        assert_eq!(
            ob.append_blocking(BOB, &[msgs(4), msgs(5)]).unwrap(),
            2,
            "alice's backlog is hers"
        );
        assert_eq!(
            ob.append_blocking(BOB, &[msgs(6)]).unwrap_err().code(),
            "OUTBOX_FULL"
        );
        fs::remove_dir_all(d).unwrap();
    }

    /// A step of two processes sharing one outbox: `Load(p)` reads it, `Remove(p, mask)`
    /// drops what `p` delivered of what it loaded last, `Append(p)` queues a new entry.
    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        Load(usize),
        Remove(usize, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..2usize).prop_map(Op::Append),
            (0..2usize).prop_map(Op::Load),
            (0..2usize, any::<u64>()).prop_map(|(p, m)| Op::Remove(p, m)),
        ]
    }

    proptest! {
        // Each case writes files; fewer cases than the default keep the suite quick.
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn two_processes_lose_nothing_and_drop_only_what_was_delivered(
            ops in prop::collection::vec(op(), 1..40),
        ) {
            let d = tmp();
            let procs = [Outbox::new(&d, limits(1000)), Outbox::new(&d, limits(1000))];
            let mut loaded: [Vec<Queued>; 2] = [Vec::new(), Vec::new()];
            let mut next = 0u32;
            let mut appended: HashSet<u32> = HashSet::new();
            let mut delivered: HashSet<u32> = HashSet::new();
            let n = |q: &Queued| match &q.entry {
                Entry::Messages { rows, .. } => rows[0]["id"].as_u64().unwrap_or(u64::MAX) as u32,
                Entry::Workspace { .. } => u32::MAX,
            };
            for op in &ops {
                match op {
                    Op::Append(p) => {
                        procs[*p].append_blocking(ALICE, &[msgs(next)]).unwrap();
                        appended.insert(next);
                        next += 1;
                    }
                    Op::Load(p) => loaded[*p] = procs[*p].load().unwrap(),
                    Op::Remove(p, mask) => {
                        let done = sent(&loaded[*p], *mask);
                        delivered.extend(done.iter().map(|&i| n(&loaded[*p][i])));
                        procs[*p].remove_blocking(&done_of(&loaded[*p], &done)).unwrap();
                        loaded[*p].clear();
                    }
                }
                let left: Vec<u32> = procs[0].load().unwrap().iter().map(n).collect();
                let unique: HashSet<u32> = left.iter().copied().collect();
                prop_assert_eq!(unique.len(), left.len(), "an entry twice: {:?}", left);
                let want: HashSet<u32> = appended.difference(&delivered).copied().collect();
                prop_assert_eq!(unique, want, "after {:?}", op);
            }
            fs::remove_dir_all(d).unwrap();
        }
    }

    /// The positions of `loaded` that `mask` marks as delivered.
    fn sent(loaded: &[Queued], mask: u64) -> Vec<usize> {
        (0..loaded.len())
            .filter(|i| mask & (1 << (i % 64)) != 0)
            .collect()
    }

    #[test]
    fn appends_of_another_process_survive_a_concurrent_rewrite() {
        let d = tmp();
        let writer = Outbox::new(&d, limits(1000));
        let drainer = Outbox::new(&d, limits(1000));
        let total = 300u32;
        let appending = std::thread::spawn(move || {
            for i in 0..total {
                writer.append_blocking(ALICE, &[msgs(i)]).unwrap();
            }
        });
        // Rewrites the file again and again (removing the entries it saw, every other time):
        // without one lock across instances, an append landing between a rewrite's read and
        // its rename is lost.
        let mut removed = 0usize;
        let mut round = 0u32;
        while !appending.is_finished() {
            let all = drainer.load().unwrap();
            let done: Vec<usize> = if round.is_multiple_of(2) {
                (0..all.len().min(3)).collect()
            } else {
                vec![]
            };
            removed += done.len();
            drainer.remove_blocking(&done_of(&all, &done)).unwrap();
            round += 1;
            // Between rewrites, as between real flushes (each sends over the network): a
            // lock taken again at once, for ever, would keep the appends waiting past their
            // bound, since they poll for it.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        appending.join().unwrap();
        assert_eq!(drainer.load().unwrap().len() + removed, total as usize);
        fs::remove_dir_all(d).unwrap();
    }
}
