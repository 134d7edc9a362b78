//! The link of the working directory and the linked workspace's state.

use serde_json::{json, Value};

use super::CloudSync;
use crate::{error::Result, workspace};

impl CloudSync {
    /// The organization's workspaces, most recently active first; `[]` when logged out.
    pub async fn list_workspaces(&self) -> Result<Value> {
        let Some(cloud) = self.signed_in()? else {
            return Ok(json!([]));
        };
        let org = cloud.conn.auth.context().org_id();
        workspace::list(&cloud.conn.client, org).await
    }

    /// Links the working directory to a workspace the user can see; a no-op when logged out.
    pub async fn link_workspace(&self, id: &str, name: Option<&str>) -> Result<()> {
        let Some(cloud) = self.signed_in()? else {
            return Ok(());
        };
        self.sync.link(&cloud.conn, id, name).await
    }

    /// A no-op when logged out or not linked.
    pub fn unlink_workspace(&self) -> Result<()> {
        if self.signed_in()?.is_none() {
            return Ok(());
        }
        self.sync.unlink()
    }

    /// The updated row, or `null`: logged out, nothing linked, debounced by the engine, a
    /// conflict kept the cloud version, or the cloud was unreachable (the state is queued).
    pub async fn push_workspace_state(&self, local: Value) -> Result<Value> {
        let Some(cloud) = self.signed_in()? else {
            return Ok(Value::Null);
        };
        match self.sync.push_workspace_state(&cloud.conn, local).await {
            Err(e) if e.is_network() => Ok(Value::Null),
            other => other,
        }
    }

    /// The linked workspace's state row; `null` when logged out or not linked.
    pub async fn pull_workspace_state(&self) -> Result<Value> {
        let Some(cloud) = self.signed_in()? else {
            return Ok(Value::Null);
        };
        self.sync.pull_workspace_state(&cloud.conn).await
    }

    /// The linked workspace's id (what AI requests are metered against).
    pub fn linked_workspace_id(&self) -> Option<String> {
        self.sync.linked_workspace_id()
    }

    /// `.cloud-link.json` as it is, or `null` when not linked.
    pub fn link_data(&self) -> Value {
        self.sync.link_data()
    }

    /// `cloudSync.workspaceSync` exists only while logged in.
    pub fn has_session(&self) -> bool {
        self.session().is_ok()
    }
}
