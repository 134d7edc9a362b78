//! Conversations and their messages: list and create conversations, push local history
//! exactly once (`push`), pull what others wrote (`pull`).

pub mod messages;
pub mod pull;
pub mod push;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    error::Result,
    rest::{pages, query, raw_rows, Checked, Client, Request},
};

/// `pushConversation`'s result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushResult {
    /// Rows newly inserted (a repeated push inserts none).
    pub pushed: u32,
    pub last_sync_at: Option<String>,
    /// Messages queued in the offline outbox because the cloud was unreachable.
    pub queued: Option<u32>,
    /// Messages the cloud refused for their content or their size, even alone (reported in
    /// `cloud:sync:error`, and skipped).
    pub refused: Option<u32>,
}

/// `pullConversation`'s result: messages mapped for the host (`pull::map_row`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullResult {
    pub messages: Vec<Value>,
    pub last_cloud_message_at: Option<String>,
}

const SELECT: &str = "id,name,conversation_type,is_archived,created_at";

/// The columns the host reads; the row goes on as the cloud sent it.
#[derive(Deserialize)]
#[allow(dead_code)]
struct ConversationRow {
    id: Uuid,
    name: String,
    conversation_type: String,
    is_archived: bool,
    created_at: String,
}

/// The workspace's conversations, oldest first (ties by id), read page by page.
pub async fn list(client: &Client, workspace_id: &str) -> Result<Value> {
    let ws = format!("eq.{}", query::uuid("workspace id", workspace_id)?);
    let listing = pages::Listing {
        path: "/rest/v1/conversations",
        params: &[
            ("workspace_id", &ws),
            ("select", SELECT),
            ("order", "created_at.asc,id.asc"),
        ],
        what: "conversations",
        // The timestamp goes inside a logic tree only once it is known to be one.
        after: |c: &ConversationRow| {
            let t = pull::timestamp("created_at", &c.created_at).ok()?;
            Some((
                "or",
                format!("(created_at.gt.{t},and(created_at.eq.{t},id.gt.{}))", c.id),
            ))
        },
    };
    let rows = pages::read_all(client, &listing, pages::PAGE, pages::MAX_ROWS).await?;
    Ok(raw_rows(rows))
}

/// Creates a conversation; its row, exactly one, or `INVALID_RESPONSE`.
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
        format!("/rest/v1/conversations?select={SELECT}"),
    )
    .json(body)
    .header("Prefer", "return=representation");
    let reply = client.send(&req).await?;
    let invalid = reply.invalid("expected the one created conversation row".into());
    let mut rows: Vec<Checked<ConversationRow>> = reply.json()?;
    match (rows.pop(), rows.is_empty()) {
        (Some(row), true) => Ok(row.raw),
        _ => Err(invalid),
    }
}
