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

/// A refusal of the request's size (HTTP 413; PostgREST's `PGRST413`): fewer rows may pass.
fn refused_for_size(e: &Error) -> bool {
    matches!(e, Error::Http(h) if h.status == 413)
}

/// The refusal of a row too large to be sent even alone, saying so: the server's own
/// "Payload Too Large" does not tell the user that one message is the cause, or that it
/// was skipped. The code and status stay the server's.
fn too_large(e: Error, id: &str, bytes: usize) -> Error {
    match e {
        Error::Http(mut h) => {
            h.message = format!(
                "Message {id} is too large to sync ({bytes} bytes as JSON, more than Oboto Cloud \
                 accepts in one request); it was skipped, the rest of the conversation was \
                 synced ({})",
                h.message
            );
            Error::Http(h)
        }
        other => other,
    }
}

/// Inserts `rows`; a batch refused for its data or its size is split in halves until each
/// refused row stands alone, so that neither one message the cloud can never accept nor a
/// batch larger than the cloud's body limit holds back the others. Returns how many rows
/// were new, and the refused rows' ids with the refusal. Any other failure is returned as
/// it is (the caller keeps or queues the batch; ids make a resend harmless).
pub async fn insert_isolating(
    client: &Client,
    rows: &[Value],
) -> Result<(usize, Vec<(String, Error)>)> {
    let mut new = 0;
    let mut refused = Vec::new();
    // Ranges still to insert, the next one last, so rows go in their order. Splitting n rows
    // down to single ones takes at most 2n - 1 requests.
    let mut todo = vec![(0, rows.len())];
    while let Some((from, to)) = todo.pop() {
        match insert_rows(client, &rows[from..to]).await {
            Ok(n) => new += n,
            Err(e) if (refused_for_data(&e) || refused_for_size(&e)) && to - from > 1 => {
                let mid = from + (to - from) / 2;
                todo.push((mid, to));
                todo.push((from, mid));
            }
            Err(e) if refused_for_data(&e) || refused_for_size(&e) => {
                let row = &rows[from];
                let id = row
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let e = if refused_for_size(&e) {
                    too_large(e, &id, push::json_len(row))
                } else {
                    e
                };
                refused.push((id, e));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HttpError;

    fn http(status: u16, code: &str) -> Error {
        Error::Http(Box::new(HttpError {
            status,
            method: "POST".into(),
            url: "http://127.0.0.1:1/rest/v1/messages".into(),
            code: Some(code.into()),
            message: "Payload Too Large".into(),
            retry_after: None,
        }))
    }

    #[test]
    fn a_batch_too_large_is_split_like_one_refused_for_its_data() {
        assert!(refused_for_size(&http(413, "PGRST413")));
        assert!(!refused_for_data(&http(413, "PGRST413")));
        assert!(refused_for_data(&http(400, "22P05")));
        for other in [http(403, "42501"), http(409, "23503"), http(500, "XX000")] {
            assert!(
                !refused_for_size(&other) && !refused_for_data(&other),
                "{other}"
            );
        }
    }

    #[test]
    fn a_row_too_large_alone_is_named_with_the_servers_code() {
        let e = too_large(http(413, "PGRST413"), "row-1", 300_123);
        assert_eq!(e.code(), "PGRST413");
        assert_eq!(e.status(), Some(413));
        let text = e.to_string();
        assert!(
            text.contains("row-1") && text.contains("300123 bytes"),
            "{text}"
        );
        assert!(
            text.contains("too large") && text.contains("skipped"),
            "{text}"
        );
    }
}
