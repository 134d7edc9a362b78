//! Paginated message pull with a keyset cursor on `(created_at, id)`.
//!
//! Paging on `created_at=gt.{last}` alone skips every row that shares the last row's
//! timestamp but fell on the next page; the cursor `created_at > t OR (created_at = t AND
//! id > last_id)` with `order=created_at.asc,id.asc` visits each row exactly once.
//!
//! The first page asks for the count of the rows after `since` ([`range`]): a pull is
//! usually incremental, a few rows after the last one seen, so that count is cheap and a
//! pull whose rows fit in one page costs one request instead of two (a first pull counts the
//! whole history, which it goes on to read anyway).

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    rest::{query, range, Client, Request},
};

/// Rows asked for per page: PostgREST's `db-max-rows` on Supabase (and the devcloud's
/// default cap). A server may cap pages lower, so only an empty page, or a page whose count
/// shows it holds every row left, ends a pull.
pub const PAGE: usize = 1000;
/// A pull reads at most this many pages (its rows are held until it returns): the rest of a
/// history that long comes with the next pull, from `lastCloudMessageAt`.
const MAX_PAGES: usize = 100;
/// cloud-api.md's columns plus `metadata`, which tells one's own pushed assistant messages.
const SELECT: &str =
    "id,content,role,sender_user_id,sender_agent_id,model_used,created_at,metadata";

/// The last row seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: String,
    pub id: Uuid,
}

/// Checks that `ts` is an RFC 3339 timestamp, so it can go inside a PostgREST logic tree
/// (which a comma or parenthesis would break) and means what the caller thinks.
pub fn timestamp(what: &str, ts: &str) -> Result<String> {
    chrono::DateTime::parse_from_rfc3339(ts.trim())
        .map(|_| ts.trim().to_string())
        .map_err(|_| {
            let shown: String = ts.chars().take(40).collect();
            Error::InvalidArgument(format!("Invalid {what}: {shown:?} is not an ISO timestamp"))
        })
}

/// One page's path.
pub fn page_path(
    conversation: &Uuid,
    since: Option<&str>,
    cursor: Option<&Cursor>,
    limit: usize,
) -> String {
    let conv = conversation.to_string();
    let limit = limit.to_string();
    let mut params: Vec<(&str, String)> = vec![
        ("conversation_id", format!("eq.{conv}")),
        ("select", SELECT.to_string()),
        ("order", "created_at.asc,id.asc".to_string()),
        ("limit", limit),
    ];
    if let Some(since) = since {
        params.push(("created_at", format!("gt.{since}")));
    }
    if let Some(c) = cursor {
        params.push((
            "or",
            format!(
                "(created_at.gt.{t},and(created_at.eq.{t},id.gt.{id}))",
                t = c.created_at,
                id = c.id
            ),
        ));
    }
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    query::build("/rest/v1/messages", &borrowed)
}

/// A row as the host sees it.
pub fn map_row(row: &Value) -> Value {
    json!({
        "role": row.get("role").cloned().unwrap_or(Value::Null),
        "content": row.get("content").cloned().unwrap_or(json!("")),
        "_cloudId": row.get("id").cloned().unwrap_or(Value::Null),
        "_cloudSenderAgent": row.get("sender_agent_id").cloned().unwrap_or(Value::Null),
        "_cloudCreatedAt": row.get("created_at").cloned().unwrap_or(Value::Null),
    })
}

/// Whether a row has what the host shows of a chat message: a role and text content.
fn is_message(row: &Value) -> bool {
    row.get("role").is_some_and(Value::is_string)
        && row.get("content").is_some_and(Value::is_string)
}

/// The cursor after `row`, or why the server's row cannot serve as one.
fn cursor_of(row: &Value, url: &str) -> Result<Cursor> {
    let bad = |reason: &str| Error::unexpected_reply(url, reason);
    let id = row
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| bad("message row without a valid id"))?;
    let created_at = row
        .get("created_at")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("message row without created_at"))?;
    let created_at =
        timestamp("created_at", created_at).map_err(|_| bad("unreadable created_at"))?;
    Ok(Cursor { created_at, id })
}

pub struct Pulled {
    /// Mapped rows of other senders, oldest first.
    pub messages: Vec<Value>,
    /// The newest row's `created_at` (own rows included), if any row was seen.
    pub last_created_at: Option<String>,
}

/// Pulls every message after `since` until drained, leaving out `me`'s own.
pub async fn pull(
    client: &Client,
    conversation: &Uuid,
    since: Option<&str>,
    me: Option<&str>,
    page: usize,
) -> Result<Pulled> {
    let mut out = Pulled {
        messages: Vec::new(),
        last_created_at: None,
    };
    let mut cursor: Option<Cursor> = None;
    // The rows of the newest `created_at` so far start here in `out.messages`, and `before`
    // is the `created_at` before them: a pull cut short stops there, because the next one
    // continues after a timestamp alone and would skip the rest of that group.
    let mut group_start = 0;
    let mut before: Option<String> = None;
    let mut pages = 0;
    let mut counting = range::Counting::default();
    loop {
        let path = page_path(conversation, since, cursor.as_ref(), page);
        let mut req = Request::new(Method::GET, path.clone());
        if counting.asks() {
            req = req.header("Prefer", range::COUNT_EXACT);
        }
        let reply = client.send(&req).await?;
        let Value::Array(rows) = reply.body else {
            return Err(Error::unexpected_reply(
                &path,
                "expected an array of messages",
            ));
        };
        if rows.is_empty() {
            return Ok(out);
        }
        pages += 1;
        // A server that ignores the cursor would send the same page for ever.
        let end = rows.last().map(|r| cursor_of(r, &path)).transpose()?;
        if end.is_some() && end == cursor {
            return Err(Error::unexpected_reply(
                &path,
                "the page did not move past the last one",
            ));
        }
        for row in &rows {
            let c = cursor_of(row, &path)?;
            if !is_message(row) {
                return Err(Error::unexpected_reply(
                    &path,
                    "a message row without a role or text content",
                ));
            }
            if cursor
                .as_ref()
                .is_some_and(|prev| prev.created_at != c.created_at)
            {
                before = cursor.as_ref().map(|prev| prev.created_at.clone());
                group_start = out.messages.len();
            }
            let own = me.is_some()
                && (row.get("sender_user_id").and_then(Value::as_str) == me
                    || row.pointer("/metadata/pushedBy").and_then(Value::as_str) == me);
            if !own {
                out.messages.push(map_row(row));
            }
            out.last_created_at = Some(c.created_at.clone());
            cursor = Some(c);
        }
        if counting.page(&reply.headers, rows.len()) {
            return Ok(out);
        }
        if pages >= MAX_PAGES {
            if let Some(before) = before.take() {
                tracing::info!(%conversation, pages, "pull stopped; the next one continues");
                out.messages.truncate(group_start);
                out.last_created_at = Some(before);
                return Ok(out);
            }
            // One timestamp throughout: only its end is a place to stop.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONV: Uuid = Uuid::from_u128(0xcccccccc_0000_4000_8000_000000000001);

    #[test]
    fn first_page_without_cursor() {
        assert_eq!(
            page_path(&CONV, None, None, 200),
            "/rest/v1/messages?conversation_id=eq.cccccccc-0000-4000-8000-000000000001\
             &select=id%2Ccontent%2Crole%2Csender_user_id%2Csender_agent_id%2Cmodel_used%2Ccreated_at%2Cmetadata\
             &order=created_at.asc%2Cid.asc&limit=200"
        );
    }

    #[test]
    fn the_cursor_breaks_timestamp_ties_by_id() {
        let c = Cursor {
            created_at: "2026-01-01T00:00:00.5+00:00".into(),
            id: Uuid::from_u128(7),
        };
        let p = page_path(&CONV, Some("2025-12-31T00:00:00Z"), Some(&c), 10);
        assert!(p.contains("&created_at=gt.2025-12-31T00%3A00%3A00Z"), "{p}");
        assert!(p.ends_with(
            "&or=%28created_at.gt.2026-01-01T00%3A00%3A00.5%2B00%3A00%2Cand%28created_at.eq.\
             2026-01-01T00%3A00%3A00.5%2B00%3A00%2Cid.gt.00000000-0000-0000-0000-000000000007%29%29"
        ), "{p}");
    }

    #[test]
    fn timestamps_are_validated() {
        assert!(timestamp("since", "2026-01-01T00:00:00Z").is_ok());
        for bad in [
            "",
            "yesterday",
            "2026-01-01T00:00:00Z,id.gt.0",
            "x&org_id=neq.0",
        ] {
            assert_eq!(
                timestamp("since", bad).unwrap_err().code(),
                "INVALID_ARGUMENT"
            );
        }
    }

    #[test]
    fn rows_are_mapped_for_the_host() {
        let row = json!({"id": "i", "content": "c", "role": "assistant", "sender_user_id": null,
                         "sender_agent_id": "a", "model_used": "m", "created_at": "t"});
        assert_eq!(
            map_row(&row),
            json!({"role": "assistant", "content": "c", "_cloudId": "i",
                   "_cloudSenderAgent": "a", "_cloudCreatedAt": "t"})
        );
    }
}
