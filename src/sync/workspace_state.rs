//! The linked workspace's state row: pushed only while the cloud still holds the base it
//! was changed from (otherwise a conflict the cloud wins), pulled when the cloud is newer.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    conflict::{decide, Action},
    now_iso,
    outbox::Entry,
    Kind, SyncState, Syncer, BASE_KEY,
};
use crate::{
    connection::Connection,
    error::{Error, Result},
    events::Event,
    workspace,
};

impl Syncer {
    /// `pushWorkspaceState`: `null` when the engine takes it (debounced), the updated row
    /// when pushed now, `null` when a conflict kept the cloud version or the cloud was
    /// unreachable and the state was queued.
    pub async fn push_workspace_state(
        &self,
        conn: &Arc<Connection>,
        local: Value,
    ) -> Result<Value> {
        workspace::check_state(&local)?;
        if self.linked_workspace_id().is_none() {
            return Ok(Value::Null);
        }
        if self.engine_running() && conn.config.sync_debounce_ms > 0 {
            self.lock().pending_state = Some(local);
            self.wake.notify_one();
            return Ok(Value::Null);
        }
        // Pushed now, by this call: handed over directly, so an engine cycle running at the
        // same time cannot take it and leave this caller without its row.
        self.sync_workspace(conn, true, Some(local)).await
    }

    /// Reconciles the workspace state once: pushes a pending local state unless the cloud
    /// changed since the base (a conflict), otherwise pulls a newer cloud state.
    /// `local`: a state to push now; otherwise the pending one, if any.
    pub(super) async fn sync_workspace(
        &self,
        conn: &Arc<Connection>,
        queue_offline: bool,
        local: Option<Value>,
    ) -> Result<Value> {
        let _g = self.workspace_guard.lock().await;
        let in_conflict = self.lock().board.get_mut(Kind::Workspace).state == SyncState::Conflict;
        self.track(
            Kind::Workspace,
            self.sync_workspace_inner(conn, queue_offline, local, in_conflict),
        )
        .await
    }

    pub(super) async fn sync_workspace_inner(
        &self,
        conn: &Arc<Connection>,
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
            let Some(row) = workspace::pull(&conn.client, &ws).await? else {
                return Err(gone(&ws));
            };
            let current = workspace::updated_at(&row);
            if decide(base.as_deref(), current.as_deref(), false) == Action::Pull {
                self.save_link(|l| {
                    l.set(BASE_KEY, json!(current));
                    l.set("lastSyncAt", json!(now));
                })?;
                self.events.emit(Event::WorkspaceRemoteUpdate(row.clone()));
                self.events.emit(Event::WorkspacePulled {
                    workspace_id: ws,
                    state: row,
                });
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
        match workspace::push(&conn.client, &ws, &local, base.as_deref(), &now).await {
            Ok(Some(row)) => {
                let updated = workspace::updated_at(&row);
                self.save_link(|l| {
                    l.set(BASE_KEY, json!(updated));
                    l.set("lastSyncAt", json!(now));
                })?;
                self.events
                    .emit(Event::WorkspacePushed { workspace_id: ws });
                Ok((row, SyncState::Synced))
            }
            Ok(None) => {
                let Some(row) = workspace::pull(&conn.client, &ws).await? else {
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
                self.events.emit(Event::WorkspaceConflict {
                    r#type: "workspace",
                    workspace_id: ws.clone(),
                    resolution: "cloud",
                    local,
                    cloud: row.clone(),
                });
                self.events.emit(Event::WorkspacePulled {
                    workspace_id: ws,
                    state: row,
                });
                Ok((Value::Null, SyncState::Conflict))
            }
            Err(e) if e.is_network() && queue_offline => {
                let user = conn.user_id();
                match (self.outbox(), user) {
                    (Some(ob), Some(user)) => {
                        let entry = Entry::Workspace {
                            workspace_id: ws,
                            state: local.clone(),
                            base: Some(base),
                        };
                        if let Err(queueing) = self.enqueue(&ob, &user, vec![entry]).await {
                            // Not queued (the outbox locked by another process, or full):
                            // kept for the next cycle, and that failure is the one reported,
                            // since it is what stands between the state and the cloud.
                            self.restore_pending(local);
                            return Err(queueing);
                        }
                    }
                    // Queued without an owner, the state would go to whoever logs in next.
                    _ => self.restore_pending(local),
                }
                Err(e)
            }
            Err(e) => {
                self.restore_pending(local);
                Err(e)
            }
        }
    }

    /// Whether the link's base has moved on from `queued_on`, the base a queued state was
    /// made on (`None`: a line of an earlier version, which does not say).
    pub(super) fn base_moved_from(&self, queued_on: Option<&Option<String>>) -> bool {
        let Some(queued_on) = queued_on else {
            return false;
        };
        let i = self.lock();
        let now = i.link.as_ref().and_then(|l| l.get(BASE_KEY));
        now.and_then(Value::as_str) != queued_on.as_deref()
    }

    /// Puts a state that could not be pushed back, unless a newer one arrived meanwhile.
    pub(super) fn restore_pending(&self, local: Value) {
        let mut i = self.lock();
        if i.pending_state.is_none() {
            i.pending_state = Some(local);
        }
    }

    pub async fn pull_workspace_state(&self, conn: &Arc<Connection>) -> Result<Value> {
        let Some(ws) = self.linked_workspace_id() else {
            return Ok(Value::Null);
        };
        let _g = self.workspace_guard.lock().await;
        self.track(Kind::Workspace, async {
            let Some(row) = workspace::pull(&conn.client, &ws).await? else {
                return Err(gone(&ws));
            };
            let now = now_iso();
            let updated = workspace::updated_at(&row);
            self.save_link(|l| {
                l.set(BASE_KEY, json!(updated));
                l.set("lastSyncAt", json!(now));
            })?;
            self.events.emit(Event::WorkspacePulled {
                workspace_id: ws.clone(),
                state: row.clone(),
            });
            Ok((row, SyncState::Synced))
        })
        .await
    }
}

fn gone(ws: &str) -> Error {
    Error::InvalidArgument(format!(
        "The linked workspace {ws} no longer exists or is not visible to you"
    ))
}
