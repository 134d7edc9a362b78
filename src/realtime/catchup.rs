//! What the socket cannot deliver: after a reconnect, the messages written while it was
//! down (one keyset pull per conversation, from the last row seen), and while it stays down,
//! presence from `workspace_members.last_seen_at`. Runs beside the socket task and hands it
//! rows; the task owns deduplication, so each row reaches the host once.

use std::collections::{HashSet, VecDeque};

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use super::presence::Member;
use crate::{
    error::{Error, Result},
    rest::{query, Client, Request},
};

/// Rows per page (PostgREST's cap on Supabase and the devcloud).
const PAGE: usize = 1000;
/// A reconnect never pulls more than this many pages per conversation; the rest waits for
/// the next pull of the sync engine.
const MAX_PAGES: usize = 50;
/// The pull starts this long before the last row seen: rows commit out of `created_at`
/// order (it is taken at insert, not at commit), so a row stamped a little earlier than the
/// last one seen may still have been missed. Deduplication drops the overlap.
pub const SLACK: chrono::Duration = chrono::Duration::seconds(10);

/// The ids already handed to the host (or recognized as this client's own), bounded.
pub struct Seen {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    cap: usize,
}

impl Seen {
    pub fn new(cap: usize) -> Seen {
        Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// True the first time `id` is seen.
    pub fn insert(&mut self, id: Uuid) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// The path of one page of a conversation's messages after `(since, after)`.
pub fn page_path(conversation: &Uuid, since: &str, after: Option<(&str, &Uuid)>) -> String {
    let conv = format!("eq.{conversation}");
    let limit = PAGE.to_string();
    let mut params: Vec<(&str, String)> = vec![
        ("conversation_id", conv),
        ("select", "*".into()),
        ("order", "created_at.asc,id.asc".into()),
        ("limit", limit),
    ];
    match after {
        None => params.push(("created_at", format!("gte.{since}"))),
        Some((t, id)) => params.push((
            "or",
            format!("(created_at.gt.{t},and(created_at.eq.{t},id.gt.{id}))"),
        )),
    }
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    query::build("/rest/v1/messages", &borrowed)
}

/// Every message of `conversation` from `since` on, oldest first.
pub async fn messages_since(
    client: &Client,
    conversation: &Uuid,
    since: &str,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: Option<(String, Uuid)> = None;
    for _ in 0..MAX_PAGES {
        let path = page_path(
            conversation,
            since,
            after.as_ref().map(|(t, id)| (t.as_str(), id)),
        );
        let body = client
            .send(&Request::new(Method::GET, path.clone()))
            .await?
            .body;
        let Value::Array(rows) = body else {
            return Err(invalid(&path, "expected an array of messages"));
        };
        let n = rows.len();
        if let Some(last) = rows.last() {
            let id =
                row_id(last).ok_or_else(|| invalid(&path, "message row without a valid id"))?;
            let t = last
                .get("created_at")
                .and_then(Value::as_str)
                .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
                .ok_or_else(|| invalid(&path, "message row without a valid created_at"))?;
            after = Some((t.to_string(), id));
        }
        out.extend(rows);
        if n < PAGE {
            break;
        }
    }
    Ok(out)
}

/// The ids of the workspace's conversations.
pub async fn conversations(client: &Client, workspace: &Uuid) -> Result<Vec<Uuid>> {
    let path = format!(
        "/rest/v1/conversations?workspace_id={}&select=id",
        query::eq(&workspace.to_string())
    );
    let body = client
        .send(&Request::new(Method::GET, path.clone()))
        .await?
        .body;
    let Value::Array(rows) = body else {
        return Err(invalid(&path, "expected an array of conversations"));
    };
    rows.iter()
        .map(|r| row_id(r).ok_or_else(|| invalid(&path, "conversation without a valid id")))
        .collect()
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
    let path = format!(
        "/rest/v1/workspace_members?workspace_id={ws}&select=user_id,last_seen_at,profiles(display_name,avatar_url)&order=user_id.asc"
    );
    let body = client
        .send(&Request::new(Method::GET, path.clone()))
        .await?
        .body;
    let Value::Array(rows) = body else {
        return Err(invalid(&path, "expected an array of members"));
    };
    Ok(rows
        .iter()
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

/// `ts` moved back by the slack, as an RFC 3339 string; `None` if `ts` is unreadable.
pub fn with_slack(ts: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((t - SLACK).to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

fn invalid(url: &str, reason: &str) -> Error {
    Error::InvalidResponse {
        url: url.to_string(),
        status: 200,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_is_bounded_and_remembers() {
        let mut s = Seen::new(2);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert!(s.insert(a) && !s.insert(a) && s.insert(b) && s.insert(c));
        // `a` fell out of the window.
        assert!(s.insert(a));
        assert!(!s.insert(c));
    }

    #[test]
    fn pages_follow_the_keyset() {
        let conv = Uuid::from_u128(9);
        let first = page_path(&conv, "2026-01-01T00:00:00Z", None);
        assert!(
            first.contains("created_at=gte.2026-01-01T00%3A00%3A00Z"),
            "{first}"
        );
        assert!(first.contains("order=created_at.asc%2Cid.asc"));
        let id = Uuid::from_u128(4);
        let next = page_path(
            &conv,
            "2026-01-01T00:00:00Z",
            Some(("2026-01-01T00:00:01Z", &id)),
        );
        assert!(!next.contains("gte."), "{next}");
        assert!(
            next.contains("or=%28created_at.gt.2026-01-01T00%3A00%3A01Z"),
            "{next}"
        );
    }

    #[test]
    fn slack_moves_back() {
        assert_eq!(
            with_slack("2026-01-01T00:00:10.5Z").as_deref(),
            Some("2026-01-01T00:00:00.500000Z")
        );
        assert_eq!(with_slack("nope"), None);
    }
}
