//! Conversations and their messages: list and create conversations, push local history
//! exactly once (`push`), pull what others wrote (`pull`).

pub mod messages;
pub mod pull;
pub mod push;

use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    error::Result,
    rest::{query, Client, Request},
};

/// The conversations of a workspace, oldest first.
/// `pushConversation`'s result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushResult {
    /// Rows newly inserted (a repeated push inserts none).
    pub pushed: u32,
    pub last_sync_at: Option<String>,
    /// Messages queued in the offline outbox because the cloud was unreachable.
    pub queued: Option<u32>,
    /// Messages the cloud refused for their content (reported in `cloud:sync:error`).
    pub refused: Option<u32>,
}

/// `pullConversation`'s result: messages mapped for the host (`pull::map_row`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullResult {
    pub messages: Vec<Value>,
    pub last_cloud_message_at: Option<String>,
}

pub async fn list(client: &Client, workspace_id: &str) -> Result<Value> {
    let ws = query::uuid("workspace id", workspace_id)?;
    let path = format!(
        "/rest/v1/conversations?workspace_id={}&select=id,name,conversation_type,is_archived,created_at&order=created_at.asc",
        query::eq(&ws.to_string())
    );
    Ok(client.send(&Request::new(Method::GET, path)).await?.body)
}

/// Creates a conversation in the workspace and returns its row.
pub async fn create(
    client: &Client,
    workspace_id: &str,
    name: &str,
    conversation_type: &str,
    started_by: Option<&str>,
) -> Result<Value> {
    let ws = query::uuid("workspace id", workspace_id)?;
    let body = json!({
        "workspace_id": ws.to_string(),
        "name": name,
        "conversation_type": conversation_type,
        "started_by": started_by,
    });
    let req = Request::new(
        Method::POST,
        "/rest/v1/conversations?select=id,name,conversation_type,is_archived,created_at",
    )
    .json(body)
    .header("Prefer", "return=representation");
    let rows = client.send(&req).await?.body;
    Ok(match rows {
        Value::Array(mut r) if !r.is_empty() => r.swap_remove(0),
        other => other,
    })
}
