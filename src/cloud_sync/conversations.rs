//! Conversations of the linked workspace.

use serde_json::{json, Value};

use super::CloudSync;
use crate::{
    conversations::{PullResult, PushResult},
    error::Result,
};

impl CloudSync {
    /// `{pushed: 0}` when logged out.
    pub async fn push_conversation(&self, conv_id: &str, messages: &Value) -> Result<PushResult> {
        let Some(cloud) = self.signed_in()? else {
            return Ok(PushResult::default());
        };
        self.sync
            .push_conversation(&cloud.conn, conv_id, messages)
            .await
    }

    /// `{messages: []}` when logged out.
    pub async fn pull_conversation(
        &self,
        conv_id: &str,
        since: Option<&str>,
    ) -> Result<PullResult> {
        let Some(cloud) = self.signed_in()? else {
            return Ok(PullResult::default());
        };
        self.sync
            .pull_conversation(&cloud.conn, conv_id, since)
            .await
    }

    /// The linked workspace's conversations; `[]` when logged out or not linked.
    pub async fn list_conversations(&self) -> Result<Value> {
        let Some(cloud) = self.signed_in()? else {
            return Ok(json!([]));
        };
        self.sync.list_conversations(&cloud.conn).await
    }

    /// Creates a conversation in the linked workspace and maps `name` to it.
    pub async fn create_conversation(&self, name: &str, kind: Option<&str>) -> Result<Value> {
        let cloud = self.session()?;
        self.sync.create_conversation(&cloud.conn, name, kind).await
    }

    /// Maps a local conversation name to a cloud conversation in the link file.
    pub fn link_conversation(&self, name: &str, conv_id: &str) -> Result<()> {
        self.sync.link_conversation(name, conv_id)
    }
}
