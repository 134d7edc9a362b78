//! Workspace and conversation sync (Phase 2): the link between the working directory and a
//! cloud workspace, the engine that keeps them in step, and the offline outbox.
//!
//! [`Syncer`] is activated at login with the session's [`Connection`] (it then loads the
//! link of the working directory and starts the engine when linked), and deactivated at
//! logout, destroy and re-initialize. Its concerns have a file each: this one is the
//! lifecycle (engine and realtime socket), `status` the board and its events, `link` the
//! link and its file, `workspace_state` and `conversations` the two kinds of data.
//!
//! All mutable state sits in one [`State`] behind one lock, never held across an await.
//! The async guards do not hold state: they serialize the operations of one kind (two
//! pushes of one conversation must not plan from the same state).

pub mod conflict;
mod conversations;
pub mod engine;
mod link;
pub mod live;
pub mod outbox;
pub mod state;
mod status;
mod workspace_state;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use serde_json::Value;
use tokio::{runtime::Handle, sync::Notify, task::AbortHandle};
use uuid::Uuid;

use crate::{
    connection::Connection,
    conversations::push::PushState,
    events::{Event, Events},
    link_file::{self, Link},
};
pub use link::LinkedWorkspace;
use outbox::{Limits, LIMITS};
pub use state::{Board, Kind, SyncState, TypeStatus};
pub use status::EngineStatus;

/// The link-file key holding the cloud's `updated_at` at the last workspace sync: the base
/// that tells a one-sided change from a true conflict, across restarts.
const BASE_KEY: &str = "workspaceUpdatedAt";

pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Syncer {
    events: Arc<Events>,
    me: Weak<Syncer>,
    state: Mutex<State>,
    workspace_guard: tokio::sync::Mutex<()>,
    conversations_guard: tokio::sync::Mutex<()>,
    outbox_guard: tokio::sync::Mutex<()>,
    /// Serializes writes of the link file (which happen outside the state lock).
    link_write: Mutex<()>,
    wake: Arc<Notify>,
    max_outbox: Limits,
}

#[derive(Default)]
struct State {
    dir: Option<PathBuf>,
    /// The logged-in session; `None` while logged out.
    conn: Option<Arc<Connection>>,
    link: Option<Link>,
    board: Board,
    /// Captured at activation, so that `setWorkingDir` (a sync call) can restart the engine.
    runtime: Option<Handle>,
    engine: Option<AbortHandle>,
    /// The linked workspace's realtime socket; it lives as long as the engine would.
    realtime: Option<crate::realtime::Realtime>,
    /// A local workspace state not yet pushed (debounced, or waiting for the cloud).
    pending_state: Option<Value>,
    /// Push state of conversations outside a linked workspace (not persisted).
    push_states: HashMap<Uuid, PushState>,
    /// The chain over every prefix of each conversation's pushed history (see
    /// [`crate::conversations::push::Tracker`]); kept in memory only, checked against the
    /// persisted state on use.
    prefixes: HashMap<Uuid, Vec<Uuid>>,
}

impl Syncer {
    pub fn new(events: Arc<Events>) -> Arc<Syncer> {
        Arc::new_cyclic(|me| Syncer {
            events,
            me: me.clone(),
            state: Mutex::default(),
            workspace_guard: tokio::sync::Mutex::new(()),
            conversations_guard: tokio::sync::Mutex::new(()),
            outbox_guard: tokio::sync::Mutex::new(()),
            link_write: Mutex::new(()),
            wake: Arc::new(Notify::new()),
            max_outbox: LIMITS,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a login: loads the working directory's link and starts the engine when linked.
    pub fn activate(&self, conn: Arc<Connection>) {
        let rt = Handle::try_current().ok();
        {
            let mut i = self.lock();
            i.conn = Some(conn);
            if rt.is_some() {
                i.runtime = rt;
            }
        }
        self.reload();
    }

    /// Logout, destroy, re-initialize: stops the engine and forgets the session's state.
    /// Files (link, outbox) stay for the next login; the outbox's entries stay their user's,
    /// whoever logs in next.
    pub fn deactivate(&self) {
        self.deactivate_with(Withdraw::Presence);
    }

    /// `deactivate` for `destroy()`: the realtime socket closes without a last presence
    /// event, since the host takes no events once it has asked for the teardown.
    pub fn shut_down(&self) {
        self.deactivate_with(Withdraw::Quietly);
    }

    fn deactivate_with(&self, withdraw: Withdraw) {
        self.stop_engine_with(withdraw);
        {
            let mut i = self.lock();
            i.conn = None;
            i.link = None;
            i.pending_state = None;
            i.push_states.clear();
            i.prefixes.clear();
        }
        self.update_board(|b| *b = Board::default());
    }

    pub fn set_dir(&self, dir: Option<PathBuf>) {
        self.stop_engine_with(Withdraw::Presence);
        let active = {
            let mut i = self.lock();
            i.dir = dir;
            i.link = None;
            i.pending_state = None;
            i.conn.is_some()
        };
        self.update_board(|b| {
            *b = Board::default();
        });
        if active {
            self.reload();
        }
    }

    /// Reads the link file of the working directory. An unreadable file is reported and
    /// treated as "not linked", and left as it is.
    fn reload(&self) {
        let Some(dir) = self.lock().dir.clone() else {
            return;
        };
        link_file::remove_stale_temp_files(&dir);
        match link_file::read(&dir) {
            Ok(link) => {
                self.lock().link = link;
                // Whatever a previous process or session of this user left queued.
                let user = self.lock().conn.as_ref().and_then(|c| c.user_id());
                let pending = match (self.outbox(), user) {
                    (Some(ob), Some(user)) => ob.pending(&user),
                    _ => 0,
                };
                self.update_board(|b| {
                    b.link_error = None;
                    b.outbox_pending = pending;
                });
                self.start_engine();
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the workspace link");
                self.lock().link = None;
                self.update_board(|b| b.link_error = Some(e.to_string()));
            }
        }
    }

    /// Starts what keeps a linked workspace in step: its realtime socket, and the engine
    /// when auto-sync is on (it polls only while the socket is not live).
    fn start_engine(&self) {
        self.stop_engine();
        let mut i = self.lock();
        let (Some(conn), Some(link), Some(rt)) = (&i.conn, &i.link, &i.runtime) else {
            return;
        };
        let realtime = link
            .workspace_id()
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| {
                let files = link.sync_config().sync_files;
                live::start(conn, id, self.wake.clone(), files, rt)
            });
        let status = realtime.as_ref().map(|r| r.watch_status());
        let engine = link.sync_config().auto_sync.then(|| {
            let interval = Duration::from_millis(conn.config.sync_interval_ms.into());
            let debounce = Duration::from_millis(conn.config.sync_debounce_ms.into());
            rt.spawn(engine::run(
                self.me.clone(),
                conn.clone(),
                self.wake.clone(),
                engine::Pace {
                    interval,
                    debounce,
                    status,
                },
            ))
            .abort_handle()
        });
        let running = engine.is_some();
        i.realtime = realtime;
        i.engine = engine;
        drop(i);
        self.update_board(|b| b.running = running);
    }

    /// Stops the engine to start it again (a login, a link): the members shown stay until
    /// the new socket's list replaces them. Only unlink, logout and a new working directory
    /// withdraw them.
    fn stop_engine(&self) {
        self.stop_engine_with(Withdraw::Quietly);
    }

    fn stop_engine_with(&self, withdraw: Withdraw) {
        let (engine, realtime) = {
            let mut i = self.lock();
            (i.engine.take(), i.realtime.take())
        };
        if let Some(task) = engine {
            task.abort();
        }
        // Closing the socket announces the leave to the others; the host is told that the
        // members it was shown are gone with it (before this returns, so before the list of
        // any socket started next).
        if let Some(r) = realtime {
            match withdraw {
                Withdraw::Presence => r.close(),
                Withdraw::Quietly => drop(r),
            }
        }
        self.update_board(|b| b.running = false);
    }

    /// `getPresence()`: the members of the linked workspace online now.
    pub fn presence(&self) -> Vec<crate::realtime::Member> {
        self.lock()
            .realtime
            .as_ref()
            .map(|r| r.members())
            .unwrap_or_default()
    }

    /// `broadcast()`: an ephemeral message to the other members; nothing when not linked.
    pub fn broadcast(&self, event: String, payload: Value) {
        if let Some(r) = &self.lock().realtime {
            r.broadcast(event, payload);
        }
    }

    fn engine_exited(&self) {
        self.lock().engine = None;
        self.update_board(|b| b.running = false);
    }

    fn engine_running(&self) -> bool {
        self.lock().engine.is_some()
    }

    /// Counts consecutive failed cycles; returns the count.
    fn record_cycle(&self, ok: bool) -> u32 {
        let mut i = self.lock();
        let b = &mut i.board;
        b.failures = if ok { 0 } else { b.failures.saturating_add(1) };
        b.failures
    }

    /// One engine cycle: drain the outbox, reconcile the workspace state, then sync the files.
    async fn cycle(&self, conn: &Arc<Connection>) -> Cycle {
        let Some(cfg) = self.lock().link.as_ref().map(Link::sync_config) else {
            return Cycle {
                ok: true,
                files_busy: false,
            };
        };
        let mut ok = true;
        // Another process on this directory may have queued this user's entries since: the
        // file, not this process's count, says what there is to send.
        if let (Some(ob), Some(user)) = (self.outbox(), conn.user_id()) {
            let pending = ob.pending(&user);
            self.update_board(|b| b.outbox_pending = pending);
        }
        let needs_flush = {
            let b = &self.lock().board;
            b.outbox_pending > 0
                || matches!(b.conversations.state, SyncState::Offline | SyncState::Error)
        };
        if cfg.sync_conversations && needs_flush {
            let r = self
                .track(Kind::Conversations, async {
                    let flushed = self.flush_outbox(conn).await?;
                    match flushed.held.into_iter().next() {
                        // Each kept entry was reported; the board shows the refusal until
                        // a cycle gets through.
                        Some((_, e)) => Err(e),
                        None => Ok((flushed.sent, SyncState::Synced)),
                    }
                })
                .await;
            ok &= r.is_ok();
        }
        let workspace_ok =
            !cfg.sync_workspace_state || self.sync_workspace(conn, true, None).await.is_ok();
        // A workspace step that failed (the workspace deleted, or no longer visible to this
        // session, or the cloud out of reach) says the file listing could not be trusted
        // either: the files wait for a cycle that gets through.
        let mut files_busy = false;
        if workspace_ok {
            match self.sync_files(conn).await {
                FilesStep::Done => {}
                FilesStep::Failed => ok = false,
                FilesStep::Busy => files_busy = true,
            }
        }
        Cycle {
            ok: ok && workspace_ok,
            files_busy,
        }
    }

    /// The working directory and the workspace whose files the engine syncs, when the link
    /// says so.
    fn files_target(&self) -> Option<(PathBuf, Uuid)> {
        let i = self.lock();
        let link = i.link.as_ref().filter(|l| l.sync_config().sync_files)?;
        let ws = Uuid::parse_str(link.workspace_id()?).ok()?;
        Some((i.dir.clone()?, ws))
    }

    /// The working directory's files against their last file sync, from a walk alone (no
    /// request, no file read); `None` when files are not synced or the walk fails (a cycle
    /// would fail the same way).
    async fn files_glance(&self) -> Option<crate::files::scan::Glance> {
        let (dir, ws) = self.files_target()?;
        let walked = tokio::task::spawn_blocking(move || crate::files::sync::glance(&dir, &ws))
            .await
            .map_err(|e| crate::error::Error::Io(format!("the walk failed: {e}")))
            .and_then(|walk| walk);
        match walked {
            Ok(glance) => Some(glance),
            Err(e) => {
                tracing::debug!(error = %e, "local files not looked at");
                None
            }
        }
    }

    /// With `syncConfig.syncFiles: true`, a two-way file sync of the working directory each
    /// cycle (cheap when nothing changed: one listing, and the hash cache spares the reads).
    /// A run in which a transfer failed fails the cycle, so the engine's backoff tries again:
    /// the tree is as that run left it, so with the socket live no glance would. While
    /// another run holds the directory the step waits for nothing (see
    /// [`sync_files_unless_busy`](crate::files::sync::sync_files_unless_busy)).
    async fn sync_files(&self, conn: &Arc<Connection>) -> FilesStep {
        let Some((dir, ws)) = self.files_target() else {
            return FilesStep::Done;
        };
        let ctx = crate::files::Ctx {
            client: &conn.client,
            events: conn.events.clone(),
            user_id: conn.user_id(),
        };
        match crate::files::sync::sync_files_unless_busy(&ctx, &ws, &dir).await {
            Ok(Some(run)) if run.transfers_failed => FilesStep::Failed,
            Ok(Some(_)) => FilesStep::Done,
            Ok(None) => {
                tracing::debug!(dir = %dir.display(), "another run holds the directory; its files wait for a later cycle");
                FilesStep::Busy
            }
            Err(e) => {
                self.events.emit(Event::sync_error("files", &e));
                FilesStep::Failed
            }
        }
    }
}

/// How an engine cycle went.
struct Cycle {
    /// No step failed.
    ok: bool,
    /// The files step was left for a later cycle: another run held the directory.
    files_busy: bool,
}

enum FilesStep {
    Done,
    Failed,
    Busy,
}

/// How a realtime socket the client closes leaves the presence the host was shown.
#[derive(Clone, Copy)]
enum Withdraw {
    /// One last `cloud:presence:updated` with nobody.
    Presence,
    /// No event (the host is tearing down, or a new socket is starting in its place).
    Quietly,
}
