//! The organization's cloud agents.

use serde_json::{json, Value};

use super::CloudSync;
use crate::error::Result;

impl CloudSync {
    /// `[]` when logged out.
    pub async fn list_agents(&self) -> Result<Value> {
        match self.signed_in()? {
            Some(cloud) => cloud.agents.list().await,
            None => Ok(json!([])),
        }
    }

    pub fn clear_agent_cache(&self) {
        if let Ok(cloud) = self.cloud() {
            cloud.agents.clear_cache();
        }
    }

    /// `options.conversationId`, when given, is where the cloud stores both messages.
    pub async fn invoke_agent(
        &self,
        slug: &str,
        message: &str,
        history: Option<Value>,
        options: Option<Value>,
    ) -> Result<Value> {
        let cloud = self.session()?;
        let conversation = options
            .as_ref()
            .and_then(|o| o.get("conversationId"))
            .and_then(Value::as_str);
        cloud
            .agents
            .invoke(slug, message, history.unwrap_or(Value::Null), conversation)
            .await
    }
}
