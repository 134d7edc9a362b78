//! What the socket cannot deliver: after a gap in the subscription (a reconnect, or a
//! rejoin on the same socket), the messages written meanwhile (one keyset pull per
//! conversation, from the last row seen before the gap) and the conversations created
//! meanwhile; and while the socket stays down, presence from
//! `workspace_members.last_seen_at`. Runs beside the socket task and hands it rows; the task
//! owns deduplication, so each row reaches the host once.

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    delivered::{At, Ended, Plan},
    presence::Member,
};
use crate::{
    error::{Error, Result},
    rest::{pages, query, Client, Request},
};

/// Rows asked for per page. A server may cap pages below this (PostgREST's `db-max-rows`),
/// so only an empty page ends a listing, never a short one.
const PAGE: usize = 1000;
/// A round of a catch-up reads at most this many pages; the next round goes on from there.
const MAX_PAGES: usize = 50;
/// Pages of the conversation list a client follows at most: a server that never sends an
/// empty page must not grow the list without end.
const MAX_CONVERSATION_PAGES: usize = 1000;
/// The path of one page of at most `limit` of a conversation's messages from `at`, up to
/// `until` (inclusive) when given.
pub fn page_path(conversation: &Uuid, at: &At, until: Option<&str>, limit: usize) -> String {
    columns_path(conversation, at, until, limit, "*")
}

/// [`page_path`] with only the columns `select` names.
fn columns_path(
    conversation: &Uuid,
    at: &At,
    until: Option<&str>,
    limit: usize,
    select: &str,
) -> String {
    let conv = format!("eq.{conversation}");
    let limit = limit.to_string();
    let mut params: Vec<(&str, String)> = vec![
        ("conversation_id", conv),
        ("select", select.into()),
        ("order", "created_at.asc,id.asc".into()),
        ("limit", limit),
    ];
    match at {
        At::Since(since) => params.push(("created_at", format!("gte.{since}"))),
        At::After(t, id) => params.push((
            "or",
            format!("(created_at.gt.{t},and(created_at.eq.{t},id.gt.{id}))"),
        )),
    }
    if let Some(until) = until {
        params.push(("and", format!("(created_at.lte.{until})")));
    }
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    query::build("/rest/v1/messages", &borrowed)
}

/// What a round of a catch-up got: the rows of every page read, even when a later page
/// failed (the socket task deduplicates, so handing them on is safe), the keyset of the
/// last of them, and how the round ended.
pub struct Pulled {
    pub rows: Vec<Value>,
    pub reached: Option<(String, Uuid)>,
    pub ended: Ended,
    pub failed: Option<Error>,
    /// Rows passed over because even alone they are larger than a reply may be.
    pub too_large: Vec<Uuid>,
}

/// One round of a catch-up of `conversation`: at most [`MAX_PAGES`] pages as `plan` says,
/// oldest first.
pub async fn messages_since(client: &Client, conversation: &Uuid, plan: &Plan) -> Pulled {
    let mut pulled = Pulled {
        rows: Vec::new(),
        reached: None,
        ended: Ended::Failed,
        failed: None,
        too_large: Vec::new(),
    };
    match pull_pages(client, conversation, plan, &mut pulled).await {
        Ok(ended) => pulled.ended = ended,
        Err(e) => pulled.failed = Some(e),
    }
    pulled
}

async fn pull_pages(
    client: &Client,
    conversation: &Uuid,
    plan: &Plan,
    out: &mut Pulled,
) -> Result<Ended> {
    let mut limit = PAGE;
    let mut pages = 0;
    while pages < MAX_PAGES {
        let at = match &out.reached {
            Some((t, id)) => At::After(t.clone(), *id),
            None => plan.at.clone(),
        };
        let path = page_path(conversation, &at, plan.until.as_deref(), limit);
        let body = match client.send(&Request::new(Method::GET, path.clone())).await {
            Ok(reply) => reply.body,
            // Large rows can make a page too big to read whatever the wait: smaller pages
            // get past them.
            Err(Error::ResponseTooLarge { .. }) if limit > 1 => {
                limit /= 2;
                continue;
            }
            // One row alone is too large: stopping at it would stop the catch-up for good,
            // so it is passed over, as a read by id passes over it.
            Err(Error::ResponseTooLarge { .. }) => {
                pages += 1;
                limit = PAGE;
                match past_oversized(client, conversation, &at, plan.until.as_deref()).await? {
                    Alone::Gone => return Ok(Ended::Done),
                    Alone::Read(key, row) => {
                        out.rows.push(row);
                        out.reached = Some(key);
                    }
                    Alone::Deleted(key) => out.reached = Some(key),
                    Alone::TooLarge(key) => {
                        out.too_large.push(key.1);
                        out.reached = Some(key);
                    }
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        pages += 1;
        let Value::Array(rows) = body else {
            return Err(Error::unexpected_reply(
                &path,
                "expected an array of messages",
            ));
        };
        if rows.is_empty() {
            return Ok(Ended::Done);
        }
        // The next page starts after the last row that can serve as a keyset: one bad row
        // (dropped later, when delivered) does not stop the pull.
        let next = rows.iter().rev().find_map(keyset).ok_or_else(|| {
            Error::unexpected_reply(&path, "no message row with a valid id and created_at")
        })?;
        // Each page must move the keyset on, or a server that ignores it would be asked for
        // the same page round after round.
        if let Some((t, id)) = out.reached.as_ref() {
            if !key_after(&next, (t, id)) {
                return Err(Error::unexpected_reply(
                    &path,
                    "messages out of keyset order",
                ));
            }
        }
        out.rows.extend(rows);
        out.reached = Some(next);
    }
    Ok(Ended::More)
}

/// The first row from a cursor, when a page of that one row was too large to read.
enum Alone {
    /// No row there any more.
    Gone,
    /// It could be read after all (a row committed since, sorting first, or one deleted and
    /// its place taken): delivered like any other.
    Read((String, Uuid), Value),
    /// Deleted since the key was read: nothing to deliver there.
    Deleted((String, Uuid)),
    /// Too large even alone, read by id: its keyset, to go on after it.
    TooLarge((String, Uuid)),
}

/// Learns the keyset of the row a page of one could not bring (only its id and
/// `created_at`, which always fit), then reads that row by id: only a row that is too large
/// on its own is ever passed over, never one that merely came first meanwhile.
async fn past_oversized(
    client: &Client,
    conversation: &Uuid,
    at: &At,
    until: Option<&str>,
) -> Result<Alone> {
    let path = columns_path(conversation, at, until, 1, "id,created_at");
    let body = client
        .send(&Request::new(Method::GET, path.clone()))
        .await?
        .body;
    let Value::Array(rows) = body else {
        return Err(Error::unexpected_reply(&path, "expected an array of keys"));
    };
    let Some(first) = rows.first() else {
        return Ok(Alone::Gone);
    };
    let key = keyset(first)
        .ok_or_else(|| Error::unexpected_reply(&path, "a key without a valid id and created_at"))?;
    // A server that ignored the cursor would hand back a row already passed.
    if let At::After(t, id) = at {
        if !key_after(&key, (t, id)) {
            return Err(Error::unexpected_reply(&path, "a key out of keyset order"));
        }
    }
    match by_ids(client, &[key.1]).await {
        Ok(rows) => {
            // Only the row asked for: a server that ignored the filter sends others.
            match rows.into_iter().find(|r| row_id(r) == Some(key.1)) {
                Some(row) => Ok(Alone::Read(key, row)),
                None => Ok(Alone::Deleted(key)),
            }
        }
        Err(Error::ResponseTooLarge { .. }) => Ok(Alone::TooLarge(key)),
        Err(e) => Err(e),
    }
}

/// Whether keyset `a` comes after `b` (`created_at` as instants, then id).
fn key_after(a: &(String, Uuid), b: (&String, &Uuid)) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(&a.0),
        chrono::DateTime::parse_from_rfc3339(b.0),
    ) {
        (Ok(x), Ok(y)) => (x, a.1) > (y, *b.1),
        _ => false,
    }
}

/// The `(created_at, id)` of a message row, when both are valid.
fn keyset(row: &Value) -> Option<(String, Uuid)> {
    let id = row_id(row)?;
    let t = row
        .get("created_at")
        .and_then(Value::as_str)
        .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())?;
    Some((t.to_string(), id))
}

/// What a read by id got: the rows (a server may send others than those asked for), the
/// ids too large to read even alone, and the ids whose read failed, with why.
pub struct ById {
    pub rows: Vec<Value>,
    pub too_large: Vec<Uuid>,
    pub failed: Option<(Vec<Uuid>, Error)>,
}

/// The message rows `ids`, in one read, or in halves when the reply would be too large (the
/// rows were too large for the socket: some may be large for one reply too). A row gone or
/// not readable is simply not among the rows.
pub async fn messages_by_id(client: &Client, ids: &[Uuid]) -> ById {
    let mut out = ById {
        rows: Vec::new(),
        too_large: Vec::new(),
        failed: None,
    };
    let mut todo: Vec<&[Uuid]> = vec![ids];
    while let Some(part) = todo.pop() {
        if part.is_empty() {
            continue;
        }
        match by_ids(client, part).await {
            Ok(rows) => out.rows.extend(rows),
            Err(Error::ResponseTooLarge { .. }) if part.len() > 1 => {
                let (a, b) = part.split_at(part.len() / 2);
                todo.push(b);
                todo.push(a);
            }
            // A catch-up could not read it either: it is passed over.
            Err(Error::ResponseTooLarge { .. }) => out.too_large.extend_from_slice(part),
            Err(e) => {
                // The server is failing: the rest are not tried, they are caught up.
                let mut rest = part.to_vec();
                for p in todo.drain(..) {
                    rest.extend_from_slice(p);
                }
                out.failed = Some((rest, e));
            }
        }
    }
    out
}

async fn by_ids(client: &Client, ids: &[Uuid]) -> Result<Vec<Value>> {
    let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let filter = format!("in.({})", list.join(","));
    let path = query::build("/rest/v1/messages", &[("id", &filter), ("select", "*")]);
    rows_of(client, &path, "messages").await
}

/// The workspace's conversations as the session sees them, and whether it still sees the
/// workspace.
pub struct Listing {
    pub conversations: Vec<Uuid>,
    /// The workspace row was visible when read, after the list. Row-level security shows a
    /// conversation exactly when it shows its workspace (both ask for membership of its
    /// organization), so a member removed meanwhile is answered no conversations at all:
    /// only a list of a workspace still visible says that one it lacks was deleted.
    pub workspace_visible: bool,
}

/// Lists the conversations, then reads the workspace row: read after, a workspace still
/// visible was visible during the list too (a membership that ends stays ended).
pub async fn listing(client: &Client, workspace: &Uuid) -> Result<Listing> {
    let conversations = conversations(client, workspace).await?;
    let workspace_visible = workspace_visible(client, workspace).await?;
    Ok(Listing {
        conversations,
        workspace_visible,
    })
}

async fn workspace_visible(client: &Client, workspace: &Uuid) -> Result<bool> {
    let id = format!("eq.{workspace}");
    let path = query::build("/rest/v1/workspaces", &[("id", &id), ("select", "id")]);
    let rows = rows_of(client, &path, "workspaces").await?;
    // A row of another id (a server that ignored the filter) does not show this one.
    Ok(rows.iter().any(|r| row_id(r) == Some(*workspace)))
}

/// The rows of `GET path`: an array of `what`, or an error.
async fn rows_of(client: &Client, path: &str, what: &str) -> Result<Vec<Value>> {
    match client.send(&Request::new(Method::GET, path)).await?.body {
        Value::Array(rows) => Ok(rows),
        _ => Err(Error::unexpected_reply(
            path,
            format!("expected an array of {what}"),
        )),
    }
}

/// The ids of the workspace's conversations, in id order.
pub async fn conversations(client: &Client, workspace: &Uuid) -> Result<Vec<Uuid>> {
    let ws = format!("eq.{workspace}");
    let limit = PAGE.to_string();
    let mut out: Vec<Uuid> = Vec::new();
    for _ in 0..MAX_CONVERSATION_PAGES {
        let after = out.last().map(|id| format!("gt.{id}"));
        let mut params = vec![
            ("workspace_id", ws.as_str()),
            ("select", "id"),
            ("order", "id.asc"),
            ("limit", limit.as_str()),
        ];
        if let Some(after) = &after {
            params.push(("id", after.as_str()));
        }
        let path = query::build("/rest/v1/conversations", &params);
        let rows = rows_of(client, &path, "conversations").await?;
        if rows.is_empty() {
            return Ok(out);
        }
        let page = rows
            .iter()
            .map(|r| {
                row_id(r).ok_or_else(|| {
                    Error::unexpected_reply(&path, "conversation without a valid id")
                })
            })
            .collect::<Result<Vec<Uuid>>>()?;
        // Each page must move the keyset on, or a server that ignores it would be asked for
        // the same page again and again.
        if let (Some(prev), Some(last)) = (out.last(), page.last()) {
            if last <= prev {
                return Err(Error::unexpected_reply(
                    &path,
                    "conversations out of id order",
                ));
            }
        }
        out.extend(page);
    }
    Err(Error::unexpected_reply(
        "/rest/v1/conversations",
        "more conversations than the client follows",
    ))
}

/// The key of a member row, which pages the listing.
#[derive(serde::Deserialize)]
struct MemberKey {
    user_id: Uuid,
}

/// Members seen within `window` by their `last_seen_at`, one per user (the presence of the
/// polling fallback). Also stamps this user's own `last_seen_at`, so others polling see it.
pub async fn poll_presence(
    client: &Client,
    workspace: &Uuid,
    me: &str,
    window: chrono::Duration,
) -> Result<Vec<Member>> {
    let now = chrono::Utc::now();
    let ws = query::eq(&workspace.to_string());
    if let Ok(me) = query::uuid("user id", me) {
        let path = format!(
            "/rest/v1/workspace_members?workspace_id={ws}&user_id={}",
            query::eq(&me.to_string())
        );
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let req = Request::new(Method::PATCH, path).json(json!({"last_seen_at": stamp}));
        if let Err(e) = client.send(&req).await {
            tracing::debug!(error = %e, "cannot stamp own last_seen_at");
        }
    }
    let ws = format!("eq.{workspace}");
    let listing = pages::Listing {
        path: "/rest/v1/workspace_members",
        params: &[
            ("workspace_id", &ws),
            (
                "select",
                "user_id,last_seen_at,profiles(display_name,avatar_url)",
            ),
            // One row per user in a workspace: the user id orders the pages.
            ("order", "user_id.asc"),
        ],
        what: "workspace members",
        after: |m: &MemberKey| Some(("user_id", format!("gt.{}", m.user_id))),
    };
    let rows = pages::read_all(client, &listing, pages::PAGE, pages::MAX_ROWS).await?;
    Ok(rows
        .iter()
        .map(|r| &r.raw)
        .filter_map(|r| {
            let user_id = r.get("user_id").and_then(Value::as_str)?.to_string();
            let seen = r.get("last_seen_at").and_then(Value::as_str)?;
            let at = chrono::DateTime::parse_from_rfc3339(seen).ok()?;
            if now.signed_duration_since(at) > window {
                return None;
            }
            let profile = r.get("profiles");
            let s = |k: &str| {
                profile
                    .and_then(|p| p.get(k))
                    .and_then(Value::as_str)
                    .map(String::from)
            };
            Some(Member {
                user_id,
                display_name: s("display_name"),
                avatar_url: s("avatar_url"),
                status: "online".into(),
                last_seen: Some(seen.to_string()),
            })
        })
        .collect())
}

fn row_id(row: &Value) -> Option<Uuid> {
    row.get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::mock::Rest;

    fn message(id: u128, conversation: Uuid, second: u32) -> Value {
        json!({"id": Uuid::from_u128(id).to_string(), "conversation_id": conversation.to_string(),
               "created_at": format!("2026-01-01T00:00:{second:02}.000000Z"), "role": "user", "content": "x"})
    }

    #[tokio::test]
    async fn the_conversation_list_pages_past_a_server_cap() {
        let rest = Rest::start().await;
        {
            let mut db = rest.db.lock().unwrap();
            // PostgREST's db-max-rows below the limit asked for: every page comes back short.
            db.max_rows = 2;
            db.conversations = (1..=5).rev().map(Uuid::from_u128).collect();
        }
        let ws = Uuid::from_u128(0xaa);
        let got = conversations(&rest.client(), &ws).await.unwrap();
        assert_eq!(got, (1..=5).map(Uuid::from_u128).collect::<Vec<_>>());
        let asked = rest.requests("/rest/v1/conversations");
        assert_eq!(asked.len(), 4, "three pages and an empty one: {asked:?}");
        assert!(
            asked[3].contains(&format!("id=gt.{}", Uuid::from_u128(5))),
            "{asked:?}"
        );
    }

    #[tokio::test]
    async fn the_member_list_pages_past_a_server_cap() {
        let rest = Rest::start().await;
        let seen = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        {
            let mut db = rest.db.lock().unwrap();
            db.max_rows = 2;
            db.members = (1..=5)
                .rev()
                .map(|i| {
                    json!({"user_id": Uuid::from_u128(i).to_string(), "last_seen_at": seen,
                                "profiles": {"display_name": format!("m{i}"), "avatar_url": null}})
                })
                .collect();
        }
        let ws = Uuid::from_u128(0xaa);
        let me = Uuid::from_u128(1).to_string();
        let got = poll_presence(&rest.client(), &ws, &me, chrono::Duration::minutes(1))
            .await
            .unwrap();
        let ids: Vec<String> = got.iter().map(|m| m.user_id.clone()).collect();
        let want: Vec<String> = (1..=5).map(|i| Uuid::from_u128(i).to_string()).collect();
        assert_eq!(ids, want);
        let asked = rest.requests("/rest/v1/workspace_members");
        // The stamp of one's own last_seen_at, three pages and an empty one.
        assert_eq!(asked.len(), 5, "{asked:?}");
    }

    #[tokio::test]
    async fn message_pages_continue_past_a_short_page() {
        let rest = Rest::start().await;
        let (conv, other) = (Uuid::from_u128(9), Uuid::from_u128(10));
        {
            let mut db = rest.db.lock().unwrap();
            db.max_rows = 2;
            // Two rows share a timestamp: the keyset must page through them by id.
            db.messages = vec![
                message(5, conv, 4),
                message(1, conv, 1),
                message(3, conv, 3),
                message(2, conv, 3),
                message(4, conv, 3),
                message(6, other, 2),
            ];
        }
        let pulled = messages_since(&rest.client(), &conv, &since_start()).await;
        assert!(pulled.failed.is_none());
        assert_eq!(ids(&pulled.rows), vec![1, 2, 3, 4, 5]);
        assert_eq!(rest.requests("/rest/v1/messages").len(), 4);
    }

    fn ids(rows: &[Value]) -> Vec<u128> {
        rows.iter()
            .map(|r| {
                Uuid::parse_str(r["id"].as_str().unwrap())
                    .unwrap()
                    .as_u128()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_failed_page_keeps_the_rows_already_read() {
        let rest = Rest::start().await;
        let conv = Uuid::from_u128(9);
        let failures = 1 + crate::rest::http::MAX_RETRIES as usize;
        {
            let mut db = rest.db.lock().unwrap();
            db.max_rows = 2;
            db.messages = (1..=5).map(|i| message(i, conv, i as u32)).collect();
            db.fail_reads = 1..1 + failures;
        }
        let pulled = messages_since(&rest.client(), &conv, &since_start()).await;
        assert_eq!(pulled.failed.map(|e| e.status()), Some(Some(503)));
        assert_eq!(ids(&pulled.rows), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_bad_row_does_not_stop_the_pull() {
        let rest = Rest::start().await;
        let conv = Uuid::from_u128(9);
        {
            let mut db = rest.db.lock().unwrap();
            db.max_rows = 2;
            db.messages = (1..=5).map(|i| message(i, conv, i as u32)).collect();
            // The last row of the first page cannot serve as the keyset.
            db.messages[1]["id"] = json!("not-a-uuid");
        }
        let pulled = messages_since(&rest.client(), &conv, &since_start()).await;
        assert!(pulled.failed.is_none(), "{:?}", pulled.failed);
        let valid: Vec<u128> = pulled
            .rows
            .iter()
            .filter_map(row_id)
            .map(|id| id.as_u128())
            .collect();
        assert_eq!(valid, vec![1, 3, 4, 5]);
    }

    #[tokio::test]
    async fn an_oversized_page_is_read_in_smaller_pages() {
        let rest = Rest::start().await;
        let conv = Uuid::from_u128(9);
        {
            let mut db = rest.db.lock().unwrap();
            db.messages = (1..=5).map(|i| message(i, conv, i as u32)).collect();
        }
        // Room for about two rows per reply.
        let client = rest.client_over(rest.http().with_max_response_bytes(400));
        let pulled = messages_since(&client, &conv, &since_start()).await;
        assert!(pulled.failed.is_none(), "{:?}", pulled.failed);
        assert_eq!(ids(&pulled.rows), vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_row_too_large_alone_is_passed_over_and_named() {
        let rest = Rest::start().await;
        let conv = Uuid::from_u128(9);
        {
            let mut db = rest.db.lock().unwrap();
            db.messages = (1..=5).map(|i| message(i, conv, i as u32)).collect();
            db.messages[2]["content"] = json!("y".repeat(1000));
        }
        let client = rest.client_over(rest.http().with_max_response_bytes(400));
        let pulled = messages_since(&client, &conv, &since_start()).await;
        assert!(pulled.failed.is_none(), "{:?}", pulled.failed);
        assert!(matches!(pulled.ended, Ended::Done));
        assert_eq!(ids(&pulled.rows), vec![1, 2, 4, 5]);
        assert_eq!(pulled.too_large, vec![Uuid::from_u128(3)]);
        // The next round starts after the last row, not at the large one.
        let last = pulled.reached.map(|(_, id)| id);
        assert_eq!(last, Some(Uuid::from_u128(5)));
    }

    /// Ids read together are read in halves when the reply would be too large, and one
    /// too large alone is named, not retried.
    #[tokio::test]
    async fn reads_by_id_are_merged_and_halved_past_large_rows() {
        let rest = Rest::start().await;
        let conv = Uuid::from_u128(9);
        {
            let mut db = rest.db.lock().unwrap();
            db.messages = (1..=4).map(|i| message(i, conv, i as u32)).collect();
            db.messages[2]["content"] = json!("y".repeat(1000));
        }
        let ids: Vec<Uuid> = (1..=4).map(Uuid::from_u128).collect();
        let read = messages_by_id(&rest.client(), &ids).await;
        assert!(read.failed.is_none() && read.too_large.is_empty());
        assert_eq!(ids_of_sorted(&read.rows), vec![1, 2, 3, 4]);
        assert_eq!(rest.requests("/rest/v1/messages").len(), 1, "one read");

        let client = rest.client_over(rest.http().with_max_response_bytes(400));
        let read = messages_by_id(&client, &ids).await;
        assert!(read.failed.is_none());
        assert_eq!(ids_of_sorted(&read.rows), vec![1, 2, 4]);
        assert_eq!(read.too_large, vec![Uuid::from_u128(3)]);
    }

    fn ids_of_sorted(rows: &[Value]) -> Vec<u128> {
        let mut v = ids(rows);
        v.sort_unstable();
        v
    }

    fn since_start() -> Plan {
        Plan {
            at: At::Since("2026-01-01T00:00:00Z".into()),
            until: None,
        }
    }

    #[test]
    fn pages_follow_the_keyset() {
        let conv = Uuid::from_u128(9);
        let first = page_path(&conv, &At::Since("2026-01-01T00:00:00Z".into()), None, PAGE);
        assert!(
            first.contains("created_at=gte.2026-01-01T00%3A00%3A00Z"),
            "{first}"
        );
        assert!(first.contains("order=created_at.asc%2Cid.asc"));
        let id = Uuid::from_u128(4);
        let next = page_path(
            &conv,
            &At::After("2026-01-01T00:00:01Z".into(), id),
            Some("2026-01-01T00:00:09Z"),
            PAGE,
        );
        assert!(
            next.contains("and=%28created_at.lte.2026-01-01T00%3A00%3A09Z%29"),
            "{next}"
        );
        assert!(!next.contains("gte."), "{next}");
        assert!(
            next.contains("or=%28created_at.gt.2026-01-01T00%3A00%3A01Z"),
            "{next}"
        );
    }
}
