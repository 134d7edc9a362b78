//! Workspace and conversation sync (Phase 2): the link between the working directory and a
//! cloud workspace, the sync engine that keeps them in step, and the offline outbox.
//!
//! [`Sync`] is owned by `CloudSync`. It is activated at login (it then loads the link of the
//! working directory and starts the engine when linked), and deactivated at logout, destroy
//! and re-initialize. Every operation runs under the concurrency guard of its data type
//! (workspace state, conversations) and reports into one status [`Board`].

pub mod conflict;
pub mod engine;
pub mod live;
pub mod outbox;
pub mod state;

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::{runtime::Handle, sync::Notify, task::AbortHandle};
use uuid::Uuid;

use crate::{
    cloud::Cloud,
    conversations::{
        self,
        pull::{self, PAGE},
        push::{self, Plan, PushState, Synced, Tracker, BATCH},
    },
    error::{Error, Result},
    events::Events,
    link_file::{self, Link},
    rest::{query, Request},
    workspace,
};
use conflict::{decide, Action};
use outbox::{Entry, Outbox, MAX_ENTRIES};
pub use state::{Board, Kind, SyncState};

/// The link-file key holding the cloud's `updated_at` at the last workspace sync: the base
/// that tells a one-sided change from a true conflict, across restarts.
const BASE_KEY: &str = "workspaceUpdatedAt";
/// Cloud rows a rewritten history is matched against.
const RECENT_ROWS: usize = 1000;

pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Sync {
    events: Arc<Events>,
    me: Weak<Sync>,
    inner: Mutex<Inner>,
    board: Mutex<Board>,
    workspace_guard: tokio::sync::Mutex<()>,
    conversations_guard: tokio::sync::Mutex<()>,
    outbox_guard: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    max_outbox: usize,
    /// Serializes writes of the link file.
    link_write: Mutex<()>,
}

#[derive(Default)]
struct Inner {
    dir: Option<PathBuf>,
    /// The logged-in cloud; `None` while logged out.
    cloud: Option<Arc<Cloud>>,
    link: Option<Link>,
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
    /// [`Tracker`]); kept in memory only, checked against the persisted state on use.
    prefixes: HashMap<Uuid, Vec<Uuid>>,
}

impl Sync {
    pub fn new(events: Arc<Events>) -> Arc<Sync> {
        Arc::new_cyclic(|me| Sync {
            events,
            me: me.clone(),
            inner: Mutex::default(),
            board: Mutex::default(),
            workspace_guard: tokio::sync::Mutex::new(()),
            conversations_guard: tokio::sync::Mutex::new(()),
            outbox_guard: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            max_outbox: MAX_ENTRIES,
            link_write: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- lifecycle -------------------------------------------------------------------

    /// After a login: loads the working directory's link and starts the engine when linked.
    pub fn activate(&self, cloud: Arc<Cloud>) {
        let rt = Handle::try_current().ok();
        {
            let mut i = self.lock();
            i.cloud = Some(cloud);
            if rt.is_some() {
                i.runtime = rt;
            }
        }
        self.reload();
    }

    /// Logout, destroy, re-initialize: stops the engine and forgets the session's state.
    /// Files (link, outbox) stay for the next login.
    pub fn deactivate(&self) {
        self.stop_engine();
        {
            let mut i = self.lock();
            i.cloud = None;
            i.link = None;
            i.pending_state = None;
            i.push_states.clear();
            i.prefixes.clear();
        }
        self.update_board(|b| *b = Board::default());
    }

    pub fn set_dir(&self, dir: Option<PathBuf>) {
        self.stop_engine();
        let active = {
            let mut i = self.lock();
            i.dir = dir;
            i.link = None;
            i.pending_state = None;
            i.cloud.is_some()
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
                // Whatever a previous process left queued.
                let pending = self.outbox().map_or(0, |o| o.len());
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
        let (Some(cloud), Some(link), Some(rt)) = (&i.cloud, &i.link, &i.runtime) else {
            return;
        };
        let realtime = link
            .workspace_id()
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| {
                let files = link.sync_config().sync_files;
                live::start(cloud, id, self.wake.clone(), files, rt)
            });
        let status = realtime.as_ref().map(|r| r.watch_status());
        let engine = link.sync_config().auto_sync.then(|| {
            let interval = Duration::from_millis(cloud.config.sync_interval_ms.into());
            let debounce = Duration::from_millis(cloud.config.sync_debounce_ms.into());
            rt.spawn(engine::run(
                self.me.clone(),
                cloud.clone(),
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

    fn stop_engine(&self) {
        let (engine, realtime) = {
            let mut i = self.lock();
            (i.engine.take(), i.realtime.take())
        };
        if let Some(task) = engine {
            task.abort();
        }
        // Dropping the handle closes the socket (and announces the leave to the others).
        drop(realtime);
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
        let mut b = self.board();
        b.failures = if ok { 0 } else { b.failures.saturating_add(1) };
        b.failures
    }

    /// One engine cycle: drain the outbox, then reconcile the workspace state.
    async fn cycle(&self, cloud: &Arc<Cloud>) -> bool {
        let Some(cfg) = self.lock().link.as_ref().map(Link::sync_config) else {
            return true;
        };
        let mut ok = true;
        let conv_state = self.board().conversations.state;
        let needs_flush = self.board().outbox_pending > 0
            || matches!(conv_state, SyncState::Offline | SyncState::Error);
        if cfg.sync_conversations && needs_flush {
            let r = self
                .track(Kind::Conversations, async {
                    let sent = self.flush_outbox(cloud).await?;
                    Ok((sent, SyncState::Synced))
                })
                .await;
            ok &= r.is_ok();
        }
        if cfg.sync_workspace_state {
            ok &= self.sync_workspace(cloud, true, None).await.is_ok();
        }
        ok &= self.sync_files(cloud).await;
        ok
    }

    /// With `syncConfig.syncFiles: true`, a two-way file sync of the working directory each
    /// cycle (cheap when nothing changed: one listing, and the hash cache spares the reads).
    async fn sync_files(&self, cloud: &Arc<Cloud>) -> bool {
        let (dir, ws) = {
            let i = self.lock();
            let on = i.link.as_ref().is_some_and(|l| l.sync_config().sync_files);
            let ws = i
                .link
                .as_ref()
                .and_then(|l| l.workspace_id().map(String::from));
            match (on, i.dir.clone(), ws.and_then(|w| Uuid::parse_str(&w).ok())) {
                (true, Some(dir), Some(ws)) => (dir, ws),
                _ => return true,
            }
        };
        let ctx = crate::files::Ctx {
            client: &cloud.client,
            events: cloud.events.clone(),
            user_id: cloud.auth.context().user_id().map(String::from),
        };
        match crate::files::sync::sync_files(&ctx, &ws, &dir).await {
            Ok(_) => true,
            Err(e) => {
                self.events.emit(
                    "cloud:sync:error",
                    json!({"type": "files", "code": e.code(), "error": e.to_string()}),
                );
                false
            }
        }
    }

    // ---- status ----------------------------------------------------------------------

    /// Changes the board and emits `cloud:sync-status` when the overall state changed.
    fn update_board(&self, f: impl FnOnce(&mut Board)) {
        let (before, after, error) = {
            let mut b = self.board();
            let before = (b.overall(), b.overall_error());
            f(&mut b);
            (before, b.overall(), b.overall_error())
        };
        if before != (after, error.clone()) {
            let mut payload = json!({ "state": after.as_str() });
            if let Some(e) = error {
                payload["error"] = json!(e);
            }
            self.events.emit("cloud:sync-status", payload);
        }
    }

    /// Runs one sync operation of `kind`, reporting it: `cloud:sync:started`, then
    /// `completed` (or `error`), the type's status, and `resolved` when a conflict or failure
    /// gives way to a clean sync. The future says which state it ended in.
    async fn track<T>(
        &self,
        kind: Kind,
        fut: impl Future<Output = Result<(T, SyncState)>>,
    ) -> Result<T> {
        let ty = kind.as_str();
        let before = self.board().get_mut(kind).state;
        self.update_board(|b| b.get_mut(kind).state = SyncState::Syncing);
        self.events
            .emit("cloud:sync:started", json!({ "type": ty }));
        let outcome = fut.await;
        match &outcome {
            Ok((_, end)) => {
                let end = *end;
                let now = now_iso();
                self.update_board(|b| {
                    let t = b.get_mut(kind);
                    t.state = end;
                    if end == SyncState::Synced {
                        t.last_sync_at = Some(now.clone());
                        t.error = None;
                    } else if end == SyncState::Offline {
                        t.error = Some("Oboto Cloud is unreachable; changes are queued".into());
                    }
                });
                self.events.emit(
                    "cloud:sync:completed",
                    json!({ "type": ty, "state": end.as_str() }),
                );
                if end == SyncState::Synced
                    && matches!(
                        before,
                        SyncState::Conflict | SyncState::Error | SyncState::Offline
                    )
                {
                    self.events
                        .emit("cloud:sync:resolved", json!({ "type": ty }));
                }
            }
            Err(e) => {
                let state = if e.is_network() {
                    SyncState::Offline
                } else {
                    SyncState::Error
                };
                let msg = e.to_string();
                self.update_board(|b| {
                    let t = b.get_mut(kind);
                    t.state = state;
                    t.error = Some(msg.clone());
                });
                self.events.emit(
                    "cloud:sync:error",
                    json!({ "type": ty, "error": msg, "code": e.code() }),
                );
            }
        }
        outcome.map(|(v, _)| v)
    }

    /// `getStatus().linkedWorkspace`.
    pub fn linked_workspace(&self) -> Value {
        match &self.lock().link {
            Some(l) => json!({ "id": l.workspace_id(), "name": l.workspace_name() }),
            None => Value::Null,
        }
    }

    pub fn sync_state(&self) -> &'static str {
        self.board().overall().as_str()
    }

    /// `getStatus().syncEngineStatus` (`null` while logged out).
    pub fn engine_status(&self) -> Value {
        if self.lock().cloud.is_none() {
            return Value::Null;
        }
        let mut v = self.board().to_json();
        if let Some(o) = self.outbox() {
            v["outboxPath"] = json!(o.path().display().to_string());
        }
        v
    }

    pub fn linked_workspace_id(&self) -> Option<String> {
        self.lock()
            .link
            .as_ref()
            .and_then(|l| l.workspace_id().map(String::from))
    }

    pub fn link_data(&self) -> Value {
        self.lock()
            .link
            .as_ref()
            .map(Link::to_value)
            .unwrap_or(Value::Null)
    }

    // ---- link ------------------------------------------------------------------------

    pub async fn link(&self, cloud: &Arc<Cloud>, id: &str, name: Option<&str>) -> Result<()> {
        let ws = query::uuid("workspace id", id)?.to_string();
        let dir = self.lock().dir.clone().ok_or(Error::NoWorkingDir)?;
        let Some(row) = workspace::find(cloud, &ws).await? else {
            return Err(Error::InvalidArgument(format!(
                "Workspace {ws} does not exist or is not visible to you"
            )));
        };
        let name = name
            .filter(|n| !n.trim().is_empty())
            .map(String::from)
            .unwrap_or_else(|| {
                row.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            });
        self.stop_engine();
        let now = now_iso();
        let interval = cloud.config.sync_interval_ms;
        let mut link = match link_file::read(&dir) {
            // Re-linking the same workspace keeps its conversations and sync state.
            Ok(Some(l)) if l.workspace_id() == Some(ws.as_str()) => l,
            Ok(_) => Link::new(&ws, &name, &now, interval),
            Err(_) => {
                // The user links again: the unreadable file is kept aside, not overwritten.
                if let Some(to) = link_file::set_aside(&dir, chrono::Utc::now().timestamp_millis())
                {
                    tracing::warn!(path = %to.display(), "moved the unreadable link file aside");
                }
                Link::new(&ws, &name, &now, interval)
            }
        };
        link.set("cloudWorkspaceName", json!(name));
        if let Some(base) = workspace::updated_at(&row) {
            link.set(BASE_KEY, json!(base));
        }
        link_file::write(&dir, &link)?;
        self.lock().link = Some(link);
        self.update_board(|b| b.link_error = None);
        self.events.emit(
            "cloud:workspace:linked",
            json!({
                "localDir": dir.display().to_string(),
                "cloudWorkspaceId": ws,
                "cloudWorkspaceName": name,
            }),
        );
        self.start_engine();
        Ok(())
    }

    pub fn unlink(&self) -> Result<()> {
        let Some(dir) = self.lock().dir.clone() else {
            return Ok(());
        };
        self.stop_engine();
        let had = self.lock().link.take();
        let corrupt = self.board().link_error.is_some();
        if had.is_none() && !corrupt {
            return Ok(());
        }
        if corrupt && had.is_none() {
            link_file::set_aside(&dir, chrono::Utc::now().timestamp_millis());
        } else {
            link_file::remove(&dir)?;
        }
        self.lock().pending_state = None;
        self.update_board(|b| *b = Board::default());
        self.events.emit(
            "cloud:workspace:unlinked",
            json!({
                "localDir": dir.display().to_string(),
                "cloudWorkspaceId": had.as_ref().and_then(|l| l.workspace_id().map(String::from)),
            }),
        );
        Ok(())
    }

    /// Changes the in-memory link and writes it out; a no-op when not linked (so a late
    /// writer cannot recreate a file the user just unlinked).
    fn save_link(&self, f: impl FnOnce(&mut Link)) -> Result<()> {
        {
            let mut i = self.lock();
            let Some(link) = i.link.as_mut() else {
                return Ok(());
            };
            f(link);
        }
        // The file is written outside the state lock (a synced write can take milliseconds
        // and `getStatus()` must not wait for it), one writer at a time, and each writer
        // writes the newest in-memory link, so the last write on disk is never a stale one.
        let _w = self.link_write.lock().unwrap_or_else(|p| p.into_inner());
        let (dir, link) = {
            let i = self.lock();
            (i.dir.clone(), i.link.clone())
        };
        match (dir, link) {
            (Some(dir), Some(link)) => link_file::write(&dir, &link),
            _ => Ok(()),
        }
    }

    fn outbox(&self) -> Option<Outbox> {
        self.lock()
            .dir
            .as_ref()
            .map(|d| Outbox::new(d, self.max_outbox))
    }

    // ---- workspace state -------------------------------------------------------------

    pub async fn list_workspaces(&self, cloud: &Cloud) -> Result<Value> {
        workspace::list(cloud).await
    }

    /// `pushWorkspaceState`: `null` when the engine takes it (debounced), the updated row
    /// when pushed now, `null` when a conflict kept the cloud version or the cloud was
    /// unreachable and the state was queued.
    pub async fn push_workspace_state(&self, cloud: &Arc<Cloud>, local: Value) -> Result<Value> {
        workspace::check_state(&local)?;
        if self.linked_workspace_id().is_none() {
            return Ok(Value::Null);
        }
        if self.engine_running() && cloud.config.sync_debounce_ms > 0 {
            self.lock().pending_state = Some(local);
            self.wake.notify_one();
            return Ok(Value::Null);
        }
        // Pushed now, by this call: handed over directly, so an engine cycle running at the
        // same time cannot take it and leave this caller without its row.
        self.sync_workspace(cloud, true, Some(local)).await
    }

    /// Reconciles the workspace state once: pushes a pending local state unless the cloud
    /// changed since the base (a conflict), otherwise pulls a newer cloud state.
    /// `local`: a state to push now; otherwise the pending one, if any.
    async fn sync_workspace(
        &self,
        cloud: &Arc<Cloud>,
        queue_offline: bool,
        local: Option<Value>,
    ) -> Result<Value> {
        let _g = self.workspace_guard.lock().await;
        let in_conflict = self.board().get_mut(Kind::Workspace).state == SyncState::Conflict;
        self.track(
            Kind::Workspace,
            self.sync_workspace_inner(cloud, queue_offline, local, in_conflict),
        )
        .await
    }

    async fn sync_workspace_inner(
        &self,
        cloud: &Arc<Cloud>,
        queue_offline: bool,
        explicit: Option<Value>,
        in_conflict: bool,
    ) -> Result<(Value, SyncState)> {
        let (ws, base, pending) = {
            let mut i = self.lock();
            let Some(link) = i.link.as_ref() else {
                return Ok((Value::Null, SyncState::Idle));
            };
            let ws = link.workspace_id().unwrap_or_default().to_string();
            let base = link.get(BASE_KEY).and_then(Value::as_str).map(String::from);
            // A state handed over explicitly is newer than any pending one.
            let pending = i.pending_state.take();
            (ws, base, explicit.or(pending))
        };
        let now = now_iso();
        let Some(local) = pending else {
            let Some(row) = workspace::pull(cloud, &ws).await? else {
                return Err(gone(&ws));
            };
            let current = workspace::updated_at(&row);
            if decide(base.as_deref(), current.as_deref(), false) == Action::Pull {
                self.save_link(|l| {
                    l.set(BASE_KEY, json!(current));
                    l.set("lastSyncAt", json!(now));
                })?;
                self.events
                    .emit("cloud:workspace:remote-update", row.clone());
                self.events.emit(
                    "cloud:workspace:pulled",
                    json!({ "workspaceId": ws, "state": row }),
                );
            }
            // A conflict stands until the host's next change goes through: a pull (such as
            // the one the echo of the conflicting remote change triggers) does not resolve it.
            let end = if in_conflict {
                SyncState::Conflict
            } else {
                SyncState::Synced
            };
            return Ok((Value::Null, end));
        };
        // The PATCH only applies while the row is still at the base: one request decides
        // between "only we changed it" (last write wins) and "both changed it" (conflict).
        match workspace::push(cloud, &ws, &local, base.as_deref(), &now).await {
            Ok(Some(row)) => {
                let updated = workspace::updated_at(&row);
                self.save_link(|l| {
                    l.set(BASE_KEY, json!(updated));
                    l.set("lastSyncAt", json!(now));
                })?;
                self.events
                    .emit("cloud:workspace:pushed", json!({ "workspaceId": ws }));
                Ok((row, SyncState::Synced))
            }
            Ok(None) => {
                let Some(row) = workspace::pull(cloud, &ws).await? else {
                    return Err(gone(&ws));
                };
                let current = workspace::updated_at(&row);
                debug_assert_eq!(
                    decide(base.as_deref(), current.as_deref(), true),
                    Action::Conflict
                );
                self.save_link(|l| {
                    l.set(BASE_KEY, json!(current));
                    l.set("lastSyncAt", json!(now));
                })?;
                self.events.emit(
                    "cloud:sync:conflict",
                    json!({
                        "type": "workspace",
                        "workspaceId": ws,
                        "resolution": "cloud",
                        "local": local,
                        "cloud": row,
                    }),
                );
                self.events.emit(
                    "cloud:workspace:pulled",
                    json!({ "workspaceId": ws, "state": row }),
                );
                Ok((Value::Null, SyncState::Conflict))
            }
            Err(e) if e.is_network() && queue_offline => {
                match self.outbox() {
                    Some(ob) => {
                        self.enqueue(
                            &ob,
                            &[Entry::Workspace {
                                workspace_id: ws,
                                state: local,
                            }],
                        )?;
                    }
                    None => self.restore_pending(local),
                }
                Err(e)
            }
            Err(e) => {
                self.restore_pending(local);
                Err(e)
            }
        }
    }

    /// Puts a state that could not be pushed back, unless a newer one arrived meanwhile.
    fn restore_pending(&self, local: Value) {
        let mut i = self.lock();
        if i.pending_state.is_none() {
            i.pending_state = Some(local);
        }
    }

    pub async fn pull_workspace_state(&self, cloud: &Arc<Cloud>) -> Result<Value> {
        let Some(ws) = self.linked_workspace_id() else {
            return Ok(Value::Null);
        };
        let _g = self.workspace_guard.lock().await;
        self.track(Kind::Workspace, async {
            let Some(row) = workspace::pull(cloud, &ws).await? else {
                return Err(gone(&ws));
            };
            let now = now_iso();
            let updated = workspace::updated_at(&row);
            self.save_link(|l| {
                l.set(BASE_KEY, json!(updated));
                l.set("lastSyncAt", json!(now));
            })?;
            self.events.emit(
                "cloud:workspace:pulled",
                json!({ "workspaceId": ws, "state": row }),
            );
            Ok((row, SyncState::Synced))
        })
        .await
    }

    // ---- conversations ---------------------------------------------------------------

    pub async fn list_conversations(&self, cloud: &Cloud) -> Result<Value> {
        match self.linked_workspace_id() {
            Some(ws) => conversations::list(cloud, &ws).await,
            None => Ok(json!([])),
        }
    }

    /// Creates a cloud conversation in the linked workspace and maps `name` to it.
    pub async fn create_conversation(
        &self,
        cloud: &Cloud,
        name: &str,
        conversation_type: Option<&str>,
    ) -> Result<Value> {
        let ws = self.linked_workspace_id().ok_or_else(not_linked)?;
        let row =
            conversations::create(cloud, &ws, name, conversation_type.unwrap_or("chat")).await?;
        if let Some(id) = row.get("id").and_then(Value::as_str) {
            let id = id.to_string();
            self.save_link(|l| l.link_conversation(name, &id))?;
        }
        Ok(row)
    }

    /// Maps a local conversation name to a cloud conversation in the link file.
    pub fn link_conversation(&self, name: &str, cloud_conv_id: &str) -> Result<()> {
        let id = query::uuid("conversation id", cloud_conv_id)?.to_string();
        if self.linked_workspace_id().is_none() {
            return Err(not_linked());
        }
        self.save_link(|l| l.link_conversation(name, &id))
    }

    fn push_state(&self, conv: &Uuid) -> PushState {
        let i = self.lock();
        match &i.link {
            Some(link) => link
                .conversation(&conv.to_string())
                .and_then(|e| serde_json::from_value(Value::Object(e.clone())).ok())
                .unwrap_or_default(),
            None => i.push_states.get(conv).cloned().unwrap_or_default(),
        }
    }

    fn save_push_state(&self, conv: &Uuid, st: PushState, now: &str) -> Result<()> {
        let linked = self.lock().link.is_some();
        if !linked {
            self.lock().push_states.insert(*conv, st);
            return Ok(());
        }
        let id = conv.to_string();
        self.save_link(|l| {
            let e = l.conversation_mut(&id);
            if let Ok(Value::Object(fields)) = serde_json::to_value(&st) {
                e.extend(fields);
            }
            e.insert("lastSyncAt".into(), json!(now));
        })
    }

    /// `pushConversation`: the new user/assistant messages, in batches, exactly once; queued
    /// in the outbox when the cloud is unreachable.
    pub async fn push_conversation(
        &self,
        cloud: &Arc<Cloud>,
        conv_id: &str,
        messages: &Value,
    ) -> Result<Value> {
        let conv = query::uuid("conversation id", conv_id)?;
        let msgs = push::synced_messages(messages)?;
        let user = cloud
            .auth
            .context()
            .user_id()
            .map(String::from)
            .ok_or(Error::NotLoggedIn)?;
        let _g = self.conversations_guard.lock().await;
        self.track(
            Kind::Conversations,
            self.push_inner(cloud, conv, &user, &msgs),
        )
        .await
    }

    fn tracker(&self, conv: &Uuid) -> Tracker {
        let state = self.push_state(conv);
        let prefixes = self.lock().prefixes.get(conv).cloned();
        Tracker::new(state, prefixes)
    }

    fn save_tracker(&self, conv: &Uuid, t: &Tracker, now: &str) -> Result<()> {
        self.save_push_state(conv, t.state().clone(), now)?;
        let mut i = self.lock();
        match t.prefixes() {
            Some(p) => i.prefixes.insert(*conv, p.to_vec()),
            None => i.prefixes.remove(conv),
        };
        Ok(())
    }

    async fn push_inner(
        &self,
        cloud: &Arc<Cloud>,
        conv: Uuid,
        user: &str,
        msgs: &[Synced],
    ) -> Result<(Value, SyncState)> {
        let mut tracker = self.tracker(&conv);
        let plan = tracker.plan(msgs);
        let recent = if plan == Plan::Rewritten {
            tracing::info!(conversation = %conv, "local history was rewritten; matching against recent cloud rows");
            // Rows still queued are not in the cloud yet: matched without them, their
            // messages would be sent again under new ordinals.
            if self.outbox().is_some() && self.board().outbox_pending > 0 {
                self.flush_outbox(cloud).await?;
            }
            recent_rows(cloud, &conv, user).await?
        } else {
            Vec::new()
        };
        let out = tracker.outgoing(&plan, msgs, &recent);
        let rows = push::rows(&conv, user, out.first_ordinal, &out.messages);
        let now = now_iso();
        let ob = self.outbox();
        // Anything queued earlier goes first, so the cloud sees messages in order.
        let mut offline = false;
        if ob.is_some() && self.board().outbox_pending > 0 && !rows.is_empty() {
            if let Err(e) = self.flush_outbox(cloud).await {
                if !is_retryable(&e) {
                    return Err(e);
                }
                offline = true;
            }
        }
        let mut pushed = 0usize;
        let mut queued = 0usize;
        let mut refused = Vec::new();
        let batches: Vec<&[Value]> = rows.chunks(BATCH).collect();
        for (i, batch) in batches.iter().enumerate() {
            if !offline {
                match insert_isolating(cloud, batch).await {
                    Ok((n, mut r)) => {
                        pushed += n;
                        refused.append(&mut r);
                        continue;
                    }
                    // Unreachable: this batch and the rest go to the outbox below.
                    Err(e) if e.is_network() && ob.is_some() => {}
                    Err(e) => return Err(e),
                }
            }
            let rest: Vec<Entry> = batches[i..]
                .iter()
                .map(|b| Entry::Messages {
                    conversation_id: conv.to_string(),
                    rows: b.to_vec(),
                })
                .collect();
            queued = batches[i..].iter().map(|b| b.len()).sum();
            if let Some(ob) = &ob {
                self.enqueue(ob, &rest)?;
            }
            break;
        }
        tracker.pushed(msgs, &out);
        self.save_tracker(&conv, &tracker, &now)?;
        let mut out = json!({ "pushed": pushed, "lastSyncAt": now });
        if !refused.is_empty() {
            out["refused"] = json!(refused.len());
            self.report_refused(&conv, &refused);
        }
        let end = if queued > 0 {
            out["queued"] = json!(queued);
            SyncState::Offline
        } else {
            SyncState::Synced
        };
        Ok((out, end))
    }

    /// Rows the cloud refused for their data are not sent again (they never could be
    /// stored), and so that this is never silent, each push that met some says so.
    fn report_refused(&self, conv: &Uuid, refused: &[(String, Error)]) {
        let ids: Vec<&str> = refused.iter().map(|(id, _)| id.as_str()).collect();
        let (_, first) = &refused[0];
        tracing::warn!(conversation = %conv, count = refused.len(), error = %first, "the cloud refused some messages for their content");
        self.events.emit(
            "cloud:sync:error",
            json!({
                "type": "conversations",
                "conversationId": conv.to_string(),
                "code": first.code(),
                "error": first.to_string(),
                "refusedIds": ids,
            }),
        );
    }

    fn enqueue(&self, ob: &Outbox, entries: &[Entry]) -> Result<()> {
        match ob.append(entries) {
            Ok(n) => {
                self.update_board(|b| b.outbox_pending = n);
                Ok(())
            }
            Err(e) => {
                if matches!(e, Error::OutboxFull(_)) {
                    self.events.emit(
                        "cloud:sync:error",
                        json!({
                            "type": "outbox",
                            "code": e.code(),
                            "error": e.to_string(),
                            "path": ob.path().display().to_string(),
                        }),
                    );
                }
                Err(e)
            }
        }
    }

    /// Sends the outbox in order. Stops at the first failure that may pass (offline, 5xx,
    /// rate limit) and keeps the rest; an entry the server refuses for good is dropped and
    /// reported, so it cannot block everything behind it.
    async fn flush_outbox(&self, cloud: &Arc<Cloud>) -> Result<usize> {
        let Some(ob) = self.outbox() else {
            return Ok(0);
        };
        let _g = self.outbox_guard.lock().await;
        let entries = ob.load()?;
        if entries.is_empty() {
            self.update_board(|b| b.outbox_pending = 0);
            return Ok(0);
        }
        let linked = self.linked_workspace_id();
        // Only the newest queued state of the linked workspace is worth sending.
        let last_state = entries.iter().rposition(
            |e| matches!(e, Entry::Workspace { workspace_id, .. } if Some(workspace_id) == linked.as_ref()),
        );
        let mut done = 0;
        let mut failure = None;
        for (i, entry) in entries.iter().enumerate() {
            let r = match entry {
                Entry::Messages {
                    rows,
                    conversation_id,
                } => insert_isolating(cloud, rows).await.map(|(_, refused)| {
                    if let (false, Ok(conv)) =
                        (refused.is_empty(), Uuid::parse_str(conversation_id))
                    {
                        self.report_refused(&conv, &refused);
                    }
                }),
                Entry::Workspace { state, .. } if Some(i) == last_state => {
                    let _g = self.workspace_guard.lock().await;
                    // A newer local state, if any, supersedes the queued one.
                    let newer = self.lock().pending_state.take();
                    let local = newer.unwrap_or_else(|| state.clone());
                    self.sync_workspace_inner(cloud, false, Some(local), false)
                        .await
                        .map(|_| ())
                }
                Entry::Workspace { .. } => Ok(()),
            };
            match r {
                Ok(()) => done += 1,
                Err(e) if is_retryable(&e) => {
                    failure = Some(e);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dropping an outbox entry the cloud refused");
                    self.events.emit(
                        "cloud:sync:error",
                        json!({ "type": "outbox", "code": e.code(), "error": e.to_string() }),
                    );
                    done += 1;
                }
            }
        }
        let left = ob.remove_first(done)?;
        self.update_board(|b| b.outbox_pending = left);
        match failure {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// `pullConversation`: every message after `since` from other senders, until drained.
    pub async fn pull_conversation(
        &self,
        cloud: &Arc<Cloud>,
        conv_id: &str,
        since: Option<&str>,
    ) -> Result<Value> {
        let conv = query::uuid("conversation id", conv_id)?;
        let since = since
            .filter(|s| !s.trim().is_empty())
            .map(|s| pull::timestamp("since", s))
            .transpose()?;
        let me = cloud.auth.context().user_id().map(String::from);
        self.track(Kind::Conversations, async {
            let pulled = pull::pull(cloud, &conv, since.as_deref(), me.as_deref(), PAGE).await?;
            let last = pulled.last_created_at.or(since.clone());
            let mut out = json!({ "messages": pulled.messages });
            if let Some(last) = &last {
                out["lastCloudMessageAt"] = json!(last);
                if self.lock().link.is_some() {
                    let id = conv.to_string();
                    self.save_link(|l| {
                        l.conversation_mut(&id)
                            .insert("lastCloudMessageAt".into(), json!(last));
                    })?;
                }
            }
            Ok((out, SyncState::Synced))
        })
        .await
    }
}

fn gone(ws: &str) -> Error {
    Error::InvalidArgument(format!(
        "The linked workspace {ws} no longer exists or is not visible to you"
    ))
}

fn not_linked() -> Error {
    Error::InvalidArgument("No cloud workspace is linked: call linkWorkspace(id) first".into())
}

/// Failures that may pass by themselves: keep the work and try again later.
fn is_retryable(e: &Error) -> bool {
    match e {
        Error::Network { .. } | Error::NotLoggedIn | Error::SessionEnded(_) => true,
        Error::Http(h) => h.status >= 500 || matches!(h.status, 401 | 408 | 429),
        Error::InvalidResponse { .. } => true,
        _ => false,
    }
}

/// A row of the insert's representation (`select=id`).
#[derive(serde::Deserialize)]
struct Inserted {
    id: Uuid,
}

/// Inserts message rows in one statement; rows whose id exists are skipped. Returns how many
/// were new. The reply must be the representation asked for: an array of rows, each one we
/// sent, at most once. Anything else (HTML, an empty body, `null`, another shape) is
/// `INVALID_RESPONSE`, so nothing is taken as delivered that the cloud did not confirm.
async fn insert_rows(cloud: &Cloud, rows: &[Value]) -> Result<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let path = "/rest/v1/messages?on_conflict=id&select=id";
    let req = Request::new(Method::POST, path)
        .json(Value::Array(rows.to_vec()))
        .header(
            "Prefer",
            "return=representation,resolution=ignore-duplicates",
        );
    let reply = cloud.client.send(&req).await?;
    let invalid = |reason: String| Error::InvalidResponse {
        url: path.to_string(),
        status: reply.status,
        reason,
    };
    let got: Vec<Inserted> = serde_json::from_value(reply.body.clone())
        .map_err(|e| invalid(format!("expected the inserted message rows ({e})")))?;
    let mut sent: std::collections::HashSet<&str> = rows
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str))
        .collect();
    for row in &got {
        if !sent.remove(row.id.to_string().as_str()) {
            return Err(invalid(format!(
                "the reply names a row that was not sent, or one twice ({})",
                row.id
            )));
        }
    }
    Ok(got.len())
}

/// A refusal that belongs to the data of some row, not to the request: PostgreSQL's class
/// 22 (data exception: a character the database cannot store, a value too long or out of
/// range). The other rows of the batch may still be stored.
fn refused_for_data(e: &Error) -> bool {
    matches!(e, Error::Http(h) if (400..500).contains(&h.status)
        && h.code.as_deref().is_some_and(|c| c.len() == 5 && c.starts_with("22")))
}

/// Inserts `rows`; a batch refused for its data is split in halves until each refused row
/// stands alone, so one message the cloud can never accept does not hold back the others.
/// Returns how many rows were new, and the refused rows' ids with the refusal. Any other
/// failure is returned as it is (the caller keeps or queues the batch; ids make a resend
/// harmless).
async fn insert_isolating(cloud: &Cloud, rows: &[Value]) -> Result<(usize, Vec<(String, Error)>)> {
    let mut new = 0;
    let mut refused = Vec::new();
    // Ranges still to insert, the next one last, so rows go in their order.
    let mut todo = vec![(0, rows.len())];
    while let Some((from, to)) = todo.pop() {
        match insert_rows(cloud, &rows[from..to]).await {
            Ok(n) => new += n,
            Err(e) if refused_for_data(&e) && to - from > 1 => {
                let mid = from + (to - from) / 2;
                todo.push((mid, to));
                todo.push((from, mid));
            }
            Err(e) if refused_for_data(&e) => {
                let id = rows[from].get("id").and_then(Value::as_str).unwrap_or("");
                refused.push((id.to_string(), e));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((new, refused))
}

/// A row of the recent-rows lookup.
#[derive(serde::Deserialize)]
struct RecentRow {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    sender_user_id: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `(role, content)` of `user`'s most recent user and assistant rows in the conversation,
/// oldest first ([`push::in_push_order`]). Other senders' rows are left out: a message of theirs that reads like one
/// of ours must not pass for ours. Anything but an array of rows is `INVALID_RESPONSE`
/// (taken as "no rows", it would send every message again).
async fn recent_rows(cloud: &Cloud, conv: &Uuid, user: &str) -> Result<Vec<(String, String)>> {
    let limit = RECENT_ROWS.to_string();
    let conv_filter = format!("eq.{conv}");
    let path = query::build(
        "/rest/v1/messages",
        &[
            ("conversation_id", conv_filter.as_str()),
            ("role", "in.(user,assistant)"),
            ("select", "role,content,sender_user_id,metadata"),
            ("order", "created_at.desc,id.desc"),
            ("limit", limit.as_str()),
        ],
    );
    let reply = cloud
        .client
        .send(&Request::new(Method::GET, path.clone()))
        .await?;
    let rows: Vec<RecentRow> =
        serde_json::from_value(reply.body).map_err(|e| Error::InvalidResponse {
            url: path,
            status: reply.status,
            reason: format!("expected an array of message rows ({e})"),
        })?;
    let own: Vec<(Option<u64>, (String, String))> = rows
        .into_iter()
        .filter(|r| {
            r.sender_user_id.as_deref() == Some(user)
                || r.metadata
                    .as_ref()
                    .and_then(|m| m.get("pushedBy"))
                    .and_then(Value::as_str)
                    == Some(user)
        })
        .map(|r| {
            let ordinal = r
                .metadata
                .as_ref()
                .and_then(|m| m.get("ordinal"))
                .and_then(Value::as_u64);
            (ordinal, (r.role, r.content.unwrap_or_default()))
        })
        .collect();
    Ok(push::in_push_order(own))
}
