//! Message rows: inserted exactly as the push planned them, and read back when a rewritten
//! history is matched against the cloud.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use super::push;
use crate::{
    error::{Error, Result},
    rest::{query, Client, Request},
};

/// Cloud rows a rewritten history is matched against.
const RECENT_ROWS: usize = 1000;

/// A row of the insert's representation (`select=id`).
#[derive(serde::Deserialize)]
struct Inserted {
    id: Uuid,
}

/// Inserts message rows in one statement; rows whose id exists are skipped. Returns how many
/// were new. The reply must be the representation asked for: an array of rows, each one we
/// sent, at most once. Anything else (HTML, an empty body, `null`, another shape) is
/// `INVALID_RESPONSE`, so nothing is taken as delivered that the cloud did not confirm.
async fn insert_rows(client: &Client, rows: &[Value]) -> Result<usize> {
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
    let reply = client.send(&req).await?;
    let invalid = |reason: String| Error::InvalidResponse {
        url: path.to_string(),
        status: reply.status,
        reason,
    };
    let got: Vec<Inserted> = serde_json::from_value(reply.body.clone())
        .map_err(|e| invalid(format!("expected the inserted message rows ({e})")))?;
    let mut sent: HashSet<&str> = rows
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
pub async fn insert_isolating(
    client: &Client,
    rows: &[Value],
) -> Result<(usize, Vec<(String, Error)>)> {
    let mut new = 0;
    let mut refused = Vec::new();
    // Ranges still to insert, the next one last, so rows go in their order.
    let mut todo = vec![(0, rows.len())];
    while let Some((from, to)) = todo.pop() {
        match insert_rows(client, &rows[from..to]).await {
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
pub async fn recent_rows(
    client: &Client,
    conv: &Uuid,
    user: &str,
) -> Result<Vec<(String, String)>> {
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
    let reply = client
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
