//! The status board: every sync operation reports into it, and `cloud:sync-status` and the
//! `cloud:sync:*` events follow from its changes.

use std::future::Future;

use super::{now_iso, Board, Kind, SyncState, Syncer};
use crate::{error::Result, events::Event};

/// `getStatus().syncEngineStatus`.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    pub board: Board,
    /// `.cloud-outbox.jsonl` beside `.cloud-link.json`, when there is a working directory.
    pub outbox_path: Option<String>,
}

impl Syncer {
    /// Changes the board and emits `cloud:sync-status` when the overall state changed.
    pub(super) fn update_board(&self, f: impl FnOnce(&mut Board)) {
        let (before, after, error) = {
            let mut i = self.lock();
            let b = &mut i.board;
            let before = (b.overall(), b.overall_error());
            f(b);
            (before, b.overall(), b.overall_error())
        };
        if before != (after, error.clone()) {
            self.events.emit(Event::SyncStatus {
                state: after.as_str(),
                error,
            });
        }
    }

    /// Runs one sync operation of `kind`, reporting it: `cloud:sync:started`, then
    /// `completed` (or `error`), the type's status, and `resolved` when a conflict or failure
    /// gives way to a clean sync. The future says which state it ended in.
    pub(super) async fn track<T>(
        &self,
        kind: Kind,
        fut: impl Future<Output = Result<(T, SyncState)>>,
    ) -> Result<T> {
        let ty = kind.as_str();
        let before = self.lock().board.get_mut(kind).state;
        // A retry while the cloud is away stays `offline` until it succeeds: the status
        // would otherwise flap on every backoff cycle.
        if before != SyncState::Offline {
            self.update_board(|b| b.get_mut(kind).state = SyncState::Syncing);
        }
        self.events.emit(Event::SyncStarted { r#type: ty });
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
                self.events.emit(Event::SyncCompleted {
                    r#type: ty,
                    state: end.as_str(),
                });
                if end == SyncState::Synced
                    && matches!(
                        before,
                        SyncState::Conflict | SyncState::Error | SyncState::Offline
                    )
                {
                    self.events.emit(Event::SyncResolved { r#type: ty });
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
                self.events.emit(Event::sync_error(ty, e));
            }
        }
        outcome.map(|(v, _)| v)
    }

    pub fn sync_state(&self) -> SyncState {
        self.lock().board.overall()
    }

    /// `getStatus().syncEngineStatus` (`null` while logged out).
    pub fn engine_status(&self) -> Option<EngineStatus> {
        let board = {
            let i = self.lock();
            i.conn.as_ref()?;
            i.board.clone()
        };
        Some(EngineStatus {
            board,
            outbox_path: self.outbox().map(|o| o.path().display().to_string()),
        })
    }
}
