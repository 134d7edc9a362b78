//! The link between the working directory and a cloud workspace, kept in `.cloud-link.json`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{now_iso, outbox::Outbox, Board, Syncer, BASE_KEY};

/// `getStatus().linkedWorkspace`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedWorkspace {
    pub id: String,
    pub name: String,
}
use crate::{
    connection::Connection,
    error::{Error, Result},
    events::Event,
    link_file::{self, Link},
    rest::query,
    workspace,
};

impl Syncer {
    /// `getStatus().linkedWorkspace`.
    pub fn linked_workspace(&self) -> Option<LinkedWorkspace> {
        let i = self.lock();
        let l = i.link.as_ref()?;
        Some(LinkedWorkspace {
            id: l.workspace_id()?.to_string(),
            name: l.workspace_name().to_string(),
        })
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

    pub async fn link(&self, conn: &Arc<Connection>, id: &str, name: Option<&str>) -> Result<()> {
        let ws = query::uuid("workspace id", id)?.to_string();
        let dir = self.lock().dir.clone().ok_or(Error::NoWorkingDir)?;
        let Some(row) = workspace::find(&conn.client, &ws).await? else {
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
        let interval = conn.config.sync_interval_ms;
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
        self.events.emit(Event::WorkspaceLinked {
            local_dir: dir.display().to_string(),
            cloud_workspace_id: ws,
            cloud_workspace_name: name,
        });
        self.start_engine();
        Ok(())
    }

    pub fn unlink(&self) -> Result<()> {
        let Some(dir) = self.lock().dir.clone() else {
            return Ok(());
        };
        self.stop_engine_with(super::Withdraw::Presence);
        let had = self.lock().link.take();
        let corrupt = self.lock().board.link_error.is_some();
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
        self.events.emit(Event::WorkspaceUnlinked {
            local_dir: dir.display().to_string(),
            cloud_workspace_id: had
                .as_ref()
                .and_then(|l| l.workspace_id().map(String::from)),
        });
        Ok(())
    }

    /// Changes the in-memory link and writes it out; a no-op when not linked (so a late
    /// writer cannot recreate a file the user just unlinked).
    pub(super) fn save_link(&self, f: impl FnOnce(&mut Link)) -> Result<()> {
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

    pub(super) fn outbox(&self) -> Option<Outbox> {
        self.lock()
            .dir
            .as_ref()
            .map(|d| Outbox::new(d, self.max_outbox))
    }

    /// Maps a local conversation name to a cloud conversation in the link file.
    pub fn link_conversation(&self, name: &str, cloud_conv_id: &str) -> Result<()> {
        let id = query::uuid("conversation id", cloud_conv_id)?.to_string();
        if self.linked_workspace_id().is_none() {
            return Err(not_linked());
        }
        self.save_link(|l| l.link_conversation(name, &id))
    }
}

pub(super) fn not_linked() -> Error {
    Error::InvalidArgument("No cloud workspace is linked: call linkWorkspace(id) first".into())
}
