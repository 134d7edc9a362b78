//! The metered AI proxy, metered against the linked workspace.

use std::sync::Arc;

use serde_json::{json, Value};

use super::CloudSync;
use crate::{
    ai::{proxy_body, AiStream},
    error::Result,
};

/// A stream lets the cloud choose the provider for the model (`aiProxyStream` takes none).
const STREAM_PROVIDER: &str = "auto";

impl CloudSync {
    /// `[]` when logged out or on failure.
    pub async fn list_models(&self) -> Result<Value> {
        match self.signed_in()? {
            Some(cloud) => Ok(cloud.ai.list_models().await),
            None => Ok(json!([])),
        }
    }

    /// `null` when logged out or on failure.
    pub async fn usage(&self) -> Result<Value> {
        match self.signed_in()? {
            Some(cloud) => Ok(cloud.ai.usage().await),
            None => Ok(Value::Null),
        }
    }

    pub async fn ai_request(
        &self,
        provider: &str,
        model: &str,
        messages: Value,
        options: Option<Value>,
    ) -> Result<Value> {
        let cloud = self.session()?;
        let ws = self.linked_workspace_id();
        let body = proxy_body(
            provider,
            model,
            messages,
            false,
            ws.as_deref(),
            options.as_ref(),
        );
        cloud.ai.request(body).await
    }

    pub async fn ai_stream(
        &self,
        model: &str,
        messages: Value,
        options: Option<Value>,
    ) -> Result<Arc<AiStream>> {
        let cloud = self.session()?;
        let ws = self.linked_workspace_id();
        let body = proxy_body(
            STREAM_PROVIDER,
            model,
            messages,
            true,
            ws.as_deref(),
            options.as_ref(),
        );
        cloud.ai.open_stream(body).await
    }
}
