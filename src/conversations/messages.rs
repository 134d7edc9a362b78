//! Message rows: inserted exactly as the push planned them, and read back when a rewritten
//! history is matched against the cloud.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use super::{pull, push};
use crate::{
    error::{Error, Result},
    rest::{query, range, Client, Request},
};

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

/// A row of the own-rows lookup.
#[derive(serde::Deserialize)]
struct OwnRow {
    id: Uuid,
    created_at: String,
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    sender_user_id: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// The own rows a rewritten history is matched against, at most: beyond them the push fails
/// (`TOO_MANY_ROWS`) rather than send again what the cloud may hold. A history that long
/// is far past what a host keeps before compacting; the bytes bound keeps the rows held in
/// memory bounded whatever their size. The rows count bounds every row received too, the
/// user's or not: the server filters by owner, so only one that ignores the filter sends more.
pub const MAX_OWN_ROWS: usize = 100_000;
pub const MAX_OWN_BYTES: usize = 64 * 1024 * 1024;

/// One page of `user`'s rows, newest first, after `cursor` (the last row of the page before).
pub fn own_rows_path(
    conv: &Uuid,
    user: &Uuid,
    cursor: Option<&pull::Cursor>,
    limit: usize,
) -> String {
    let conv = format!("eq.{conv}");
    let limit = limit.to_string();
    // The rows `push::rows` attributes to `user`: user rows carry the sender, assistant
    // rows name who pushed them in `metadata.pushedBy`.
    let mine = format!("or(sender_user_id.eq.{user},metadata->>pushedBy.eq.{user})");
    let tree = match cursor {
        Some(c) => format!(
            "({mine},or(created_at.lt.{t},and(created_at.eq.{t},id.lt.{id})))",
            t = c.created_at,
            id = c.id
        ),
        None => format!("({mine})"),
    };
    query::build(
        "/rest/v1/messages",
        &[
            ("conversation_id", conv.as_str()),
            ("role", "in.(user,assistant)"),
            ("and", tree.as_str()),
            (
                "select",
                "id,created_at,role,content,sender_user_id,metadata",
            ),
            ("order", "created_at.desc,id.desc"),
            ("limit", limit.as_str()),
        ],
    )
}

/// `(role, content)` of every row of `user`'s in the conversation, oldest first
/// ([`push::in_push_order`]), read page by page until an empty page (a server may cap pages
/// below `page`) or one whose count shows it holds every row left ([`range`]). Other senders' rows are left out, by the server and again here: a message
/// of theirs that reads like one of ours must not pass for ours. Anything but an array of
/// rows is `INVALID_RESPONSE` (taken as "no rows", it would send every message again).
pub async fn own_rows(
    client: &Client,
    conv: &Uuid,
    user: &str,
    page: usize,
) -> Result<Vec<(String, String)>> {
    own_rows_within(client, conv, user, page, MAX_OWN_ROWS, MAX_OWN_BYTES).await
}

async fn own_rows_within(
    client: &Client,
    conv: &Uuid,
    user: &str,
    page: usize,
    max_rows: usize,
    max_bytes: usize,
) -> Result<Vec<(String, String)>> {
    let user_id = query::uuid("user id", user)?;
    let mut own: Vec<(Option<u64>, (String, String))> = Vec::new();
    let mut bytes = 0usize;
    let mut total = 0usize;
    let mut cursor: Option<pull::Cursor> = None;
    // The first page counts the user's rows in the conversation: all of them are read anyway,
    // and when they fit in that page the read costs one request.
    let mut counting = range::Counting::default();
    loop {
        let path = own_rows_path(conv, &user_id, cursor.as_ref(), page);
        let mut req = Request::new(Method::GET, path.clone());
        if counting.asks() {
            req = req.header("Prefer", range::COUNT_EXACT);
        }
        let reply = client.send(&req).await?;
        let headers = reply.headers;
        let rows: Vec<OwnRow> =
            serde_json::from_value(reply.body).map_err(|e| Error::InvalidResponse {
                url: path.clone(),
                status: reply.status,
                reason: format!("expected an array of message rows ({e})"),
            })?;
        let Some(last) = rows.last() else {
            return Ok(push::in_push_order(own));
        };
        let next = pull::Cursor {
            created_at: pull::timestamp("created_at", &last.created_at)
                .map_err(|_| Error::unexpected_reply(&path, "unreadable created_at"))?,
            id: last.id,
        };
        // Newest first: each page must end before the last one did. A server that ignored
        // the cursor could otherwise send the same pages round after round, for ever.
        if let Some(prev) = &cursor {
            if !before(&next, prev) {
                return Err(Error::unexpected_reply(
                    &path,
                    "the page did not move past the last one",
                ));
            }
        }
        cursor = Some(next);
        let received = rows.len();
        // Every row counts, not only the user's: a server that ignores the owner filter
        // could send other users' rows without end, none of which would count.
        total = total.saturating_add(received);
        if total > max_rows {
            return Err(too_many_own(max_rows, max_bytes));
        }
        for r in rows {
            let pushed_by = r
                .metadata
                .as_ref()
                .and_then(|m| m.get("pushedBy"))
                .and_then(Value::as_str);
            if r.sender_user_id.as_deref() != Some(user) && pushed_by != Some(user) {
                continue;
            }
            let ordinal = r
                .metadata
                .as_ref()
                .and_then(|m| m.get("ordinal"))
                .and_then(Value::as_u64);
            let content = r.content.unwrap_or_default();
            bytes = bytes.saturating_add(content.len());
            own.push((ordinal, (r.role, content)));
            if own.len() > max_rows || bytes > max_bytes {
                return Err(too_many_own(max_rows, max_bytes));
            }
        }
        if counting.page(&headers, received) {
            return Ok(push::in_push_order(own));
        }
    }
}

fn too_many_own(max_rows: usize, max_bytes: usize) -> Error {
    Error::TooManyRows {
        what: "of this user's messages in the conversation to match a rewritten history \
               against; nothing was pushed"
            .into(),
        limit: format!("{max_rows} rows or {} MiB", max_bytes >> 20),
    }
}

/// Whether cursor `a` comes before `b` in the read's order (`created_at` as instants, then
/// id); never when either time is unreadable.
fn before(a: &pull::Cursor, b: &pull::Cursor) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(&a.created_at),
        chrono::DateTime::parse_from_rfc3339(&b.created_at),
    ) {
        (Ok(x), Ok(y)) => (x, a.id) < (y, b.id),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{error::HttpError, rest::mock::Rest};

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
    fn own_rows_are_filtered_by_the_server_and_paged_newest_first() {
        let conv = Uuid::from_u128(1);
        let user = Uuid::from_u128(2);
        let first = own_rows_path(&conv, &user, None, 10);
        assert!(
            first.contains(&query::encode(&format!(
                "(or(sender_user_id.eq.{user},metadata->>pushedBy.eq.{user}))"
            ))),
            "{first}"
        );
        assert!(
            first.contains("order=created_at.desc%2Cid.desc&limit=10"),
            "{first}"
        );
        let c = pull::Cursor {
            created_at: "2026-01-01T00:00:00.5+00:00".into(),
            id: Uuid::from_u128(7),
        };
        let next = own_rows_path(&conv, &user, Some(&c), 10);
        assert!(
            next.contains(&query::encode(&format!(
                ",or(created_at.lt.{t},and(created_at.eq.{t},id.lt.{id})))",
                t = c.created_at,
                id = c.id
            ))),
            "{next}"
        );
    }

    /// A stand-in that ignores the cursor (and the owner filter), holding `n` of `user`'s rows.
    async fn ignoring_the_cursor(conv: Uuid, user: &str, n: u128) -> Rest {
        let rest = Rest::start().await;
        {
            let mut db = rest.db.lock().unwrap();
            db.max_rows = 2;
            db.messages = (1..=n)
                .map(|i| {
                    serde_json::json!({"id": Uuid::from_u128(i).to_string(),
                        "conversation_id": conv.to_string(), "role": "user", "content": "x",
                        "created_at": format!("2026-01-01T00:00:{i:02}.000000Z"),
                        "sender_user_id": user, "metadata": {"pushedBy": user, "ordinal": i}})
                })
                .collect();
        }
        rest
    }

    #[tokio::test]
    async fn a_page_that_does_not_move_is_refused() {
        let (conv, user) = (Uuid::from_u128(9), Uuid::from_u128(2).to_string());
        let rest = ignoring_the_cursor(conv, &user, 3).await;
        let e = own_rows(&rest.client(), &conv, &user, 2).await.unwrap_err();
        assert_eq!(e.code(), "INVALID_RESPONSE", "{e}");
        assert!(e.to_string().contains("did not move"), "{e}");
    }

    #[tokio::test]
    async fn more_own_rows_than_the_bound_are_refused_not_cut() {
        let (conv, user) = (Uuid::from_u128(9), Uuid::from_u128(2).to_string());
        let rest = ignoring_the_cursor(conv, &user, 3).await;
        let client = rest.client();
        let e = own_rows_within(&client, &conv, &user, 2, 1, usize::MAX)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "TOO_MANY_ROWS", "{e}");
        let e = own_rows_within(&client, &conv, &user, 2, 100, 1)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "TOO_MANY_ROWS", "{e}");
    }

    /// Pages of other users' rows, newest first, `per` a page: page `p` holds the rows at
    /// seconds `50 - p * per` downwards.
    fn foreign_pages(conv: Uuid, pages: u32, per: u32) -> Vec<Vec<Value>> {
        let other = Uuid::from_u128(3).to_string();
        (0..pages)
            .map(|p| {
                (0..per)
                    .map(|i| {
                        let s = 50 - p * per - i;
                        serde_json::json!({"id": Uuid::from_u128(s.into()).to_string(),
                            "conversation_id": conv.to_string(), "role": "user", "content": "x",
                            "created_at": format!("2026-01-01T00:00:{s:02}.000000Z"),
                            "sender_user_id": other, "metadata": {}})
                    })
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn pages_that_go_back_and_forth_are_refused() {
        let (conv, user) = (Uuid::from_u128(9), Uuid::from_u128(2).to_string());
        let rest = Rest::start().await;
        // Two pages of other users' rows, again and again: each differs from the one before.
        rest.db.lock().unwrap().cycle = foreign_pages(conv, 2, 2);
        let client = rest.client();
        let read = own_rows(&client, &conv, &user, 2);
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("the read ends")
            .unwrap_err();
        assert_eq!(e.code(), "INVALID_RESPONSE", "{e}");
    }

    #[tokio::test]
    async fn rows_received_are_bounded_not_only_own_ones() {
        let (conv, user) = (Uuid::from_u128(9), Uuid::from_u128(2).to_string());
        let rest = Rest::start().await;
        // Every page moves the cursor on, and none holds a row of the user's.
        rest.db.lock().unwrap().cycle = foreign_pages(conv, 4, 2);
        let client = rest.client();
        let read = own_rows_within(&client, &conv, &user, 2, 4, usize::MAX);
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("the read ends")
            .unwrap_err();
        assert_eq!(e.code(), "TOO_MANY_ROWS", "{e}");
        assert_eq!(rest.requests("/rest/v1/messages").len(), 3);
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
