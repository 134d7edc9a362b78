//! A tiny PostgREST for unit tests of paged reads (the realtime catch-up, the presence poll,
//! the own-rows read): `conversations`, `messages`, `workspace_members` and `workspaces` served
//! from rows in memory, filtered, ordered and paged the way PostgREST does it, with every page capped
//! at `max_rows` (its `db-max-rows`, which may be below the `limit` asked for).
use std::{
    ops::Range,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::Semaphore,
};
use uuid::Uuid;

use super::{Client, Credentials, Http, Timeouts};
use crate::error::Result;

pub(crate) struct Db {
    pub conversations: Vec<Uuid>,
    pub messages: Vec<Value>,
    /// `workspace_members` rows (any workspace).
    pub members: Vec<Value>,
    pub max_rows: usize,
    /// Message reads (0-based, counted over the mock's life) answered with 503.
    pub fail_reads: Range<usize>,
    pub message_reads: usize,
    /// When not empty, message reads are answered with these pages in turn whatever they
    /// ask: a server that ignores every filter and cursor.
    pub cycle: Vec<Vec<Value>>,
    /// Conversation lists (0-based, counted like `fail_reads`) answered with 503.
    pub fail_lists: Range<usize>,
    pub lists: usize,
    /// Whether RLS lets the session see the workspace row (a removed member sees none, nor
    /// any of its conversations).
    pub workspace_visible: bool,
    /// While set, each conversation list waits for [`Rest::release_list`] before its first
    /// page is read.
    pub hold_lists: bool,
    /// Every path asked for, with its query, decoded.
    pub requests: Vec<String>,
}

pub(crate) struct Rest {
    pub base: String,
    pub db: Arc<Mutex<Db>>,
    /// A permit for each conversation list that arrived while held.
    lists_held: Arc<Semaphore>,
    /// A permit for each held list that may go on.
    list_gate: Arc<Semaphore>,
}

impl Rest {
    pub(crate) async fn start() -> Rest {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let db = Arc::new(Mutex::new(Db {
            conversations: vec![],
            messages: vec![],
            members: vec![],
            max_rows: 1000,
            fail_reads: 0..0,
            message_reads: 0,
            cycle: vec![],
            fail_lists: 0..0,
            lists: 0,
            workspace_visible: true,
            hold_lists: false,
            requests: vec![],
        }));
        let lists_held = Arc::new(Semaphore::new(0));
        let list_gate = Arc::new(Semaphore::new(0));
        let (d, held, gate) = (db.clone(), lists_held.clone(), list_gate.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (d, held, gate) = (d.clone(), held.clone(), gate.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if head.is_empty() {
                            head = line;
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = stream.read_exact(&mut body).await;
                    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                    // A list's first page: its later pages (`id=gt.`) go on at once.
                    let hold = target.starts_with("/rest/v1/conversations?")
                        && !target.contains("id=gt.")
                        && d.lock().unwrap().hold_lists;
                    if hold {
                        held.add_permits(1);
                        if let Ok(p) = gate.acquire().await {
                            p.forget();
                        }
                    }
                    let (status, reply) = answer(&mut d.lock().unwrap(), &target);
                    let text = reply.to_string();
                    let out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.get_mut().write_all(out.as_bytes()).await;
                    let _ = stream.get_mut().shutdown().await;
                });
            }
        });
        Rest {
            base,
            db,
            lists_held,
            list_gate,
        }
    }

    /// Waits until a conversation list held by `hold_lists` has arrived.
    pub(crate) async fn list_arrived(&self) {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.lists_held.acquire(),
        )
        .await
        .expect("a conversation list within 10 s")
        .unwrap()
        .forget();
    }

    /// Lets one held conversation list be read and answered.
    pub(crate) fn release_list(&self) {
        self.list_gate.add_permits(1);
    }

    pub(crate) fn requests(&self, prefix: &str) -> Vec<String> {
        let db = self.db.lock().unwrap();
        db.requests
            .iter()
            .filter(|r| r.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn answer(db: &mut Db, target: &str) -> (u16, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            (k.to_string(), v.into_owned())
        })
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    db.requests.push(format!("{path}?{}", {
        let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        p.join("&")
    }));
    let limit = param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX)
        .min(db.max_rows);
    match path {
        "/rest/v1/conversations" => {
            let n = db.lists;
            db.lists += 1;
            if db.fail_lists.contains(&n) {
                return (503, json!({"message": "unavailable"}));
            }
            let mut ids = db.conversations.clone();
            if param("order") == Some("id.asc") {
                ids.sort();
            }
            if let Some(after) = param("id").and_then(|v| v.strip_prefix("gt.")) {
                let after = Uuid::parse_str(after).unwrap();
                ids.retain(|id| *id > after);
            }
            let rows: Vec<Value> = ids
                .iter()
                .take(limit)
                .map(|id| json!({"id": id.to_string()}))
                .collect();
            (200, json!(rows))
        }
        "/rest/v1/workspaces" => {
            let id = param("id")
                .and_then(|v| v.strip_prefix("eq."))
                .unwrap_or("");
            if db.workspace_visible {
                (200, json!([{ "id": id }]))
            } else {
                (200, json!([]))
            }
        }
        "/rest/v1/workspace_members" => {
            // The stamp of one's own `last_seen_at` (a PATCH) names the user.
            if param("user_id").is_some_and(|v| v.starts_with("eq.")) {
                return (200, json!([]));
            }
            let key = |r: &Value| r["user_id"].as_str().unwrap_or("").to_string();
            let mut rows: Vec<&Value> = db.members.iter().collect();
            if let Some(after) = param("user_id").and_then(|v| v.strip_prefix("gt.")) {
                rows.retain(|r| key(r).as_str() > after);
            }
            rows.sort_by_key(|r| key(r));
            let rows: Vec<Value> = rows.into_iter().take(limit).cloned().collect();
            (200, json!(rows))
        }
        "/rest/v1/messages" => {
            let n = db.message_reads;
            db.message_reads += 1;
            if db.fail_reads.contains(&n) {
                return (503, json!({"message": "unavailable"}));
            }
            if !db.cycle.is_empty() {
                return (200, json!(db.cycle[n % db.cycle.len()]));
            }
            if let Some(id) = param("id") {
                let ids: Vec<Value> = match id.strip_prefix("eq.") {
                    Some(one) => vec![json!(one)],
                    None => id
                        .strip_prefix("in.(")
                        .and_then(|l| l.strip_suffix(')'))
                        .unwrap_or_default()
                        .split(',')
                        .map(|i| json!(i))
                        .collect(),
                };
                let rows: Vec<Value> = db
                    .messages
                    .iter()
                    .filter(|r| ids.contains(&r["id"]))
                    .cloned()
                    .collect();
                return (200, json!(rows));
            }
            let conv = param("conversation_id")
                .and_then(|v| v.strip_prefix("eq."))
                .unwrap()
                .to_string();
            let key = |r: &Value| {
                let t = chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().unwrap())
                    .unwrap();
                // A row whose id is no uuid (a bad row) sorts first among its instant's.
                let id = r["id"].as_str().and_then(|i| Uuid::parse_str(i).ok());
                (t, id.unwrap_or(Uuid::nil()))
            };
            let mut rows: Vec<&Value> = db
                .messages
                .iter()
                .filter(|r| r["conversation_id"] == json!(conv))
                .collect();
            if let Some(since) = param("created_at").and_then(|v| v.strip_prefix("gte.")) {
                let since = chrono::DateTime::parse_from_rfc3339(since).unwrap();
                rows.retain(|r| key(r).0 >= since);
            }
            if let Some(or) = param("or") {
                // (created_at.gt.T,and(created_at.eq.T,id.gt.ID))
                let rest = or.strip_prefix("(created_at.gt.").unwrap();
                let (t, rest) = rest.split_once(",and(created_at.eq.").unwrap();
                let id = rest.split_once(",id.gt.").unwrap().1.trim_end_matches(')');
                let after = (
                    chrono::DateTime::parse_from_rfc3339(t).unwrap(),
                    Uuid::parse_str(id).unwrap(),
                );
                rows.retain(|r| key(r) > after);
            }
            // (created_at.lte.T), a catch-up's end; any other tree (the own-rows read's
            // owner and cursor) is ignored, as a server that ignores a cursor would.
            if let Some(t) = param("and").and_then(|a| a.strip_prefix("(created_at.lte.")) {
                let t = t.trim_end_matches(')');
                let until = chrono::DateTime::parse_from_rfc3339(t).unwrap();
                rows.retain(|r| key(r).0 <= until);
            }
            rows.sort_by_key(|r| key(r));
            let rows: Vec<Value> = rows
                .into_iter()
                .take(limit)
                .map(|r| select(r, param("select")))
                .collect();
            (200, json!(rows))
        }
        _ => (404, json!({"message": "no such table"})),
    }
}

/// `row` with only the columns `select` names (all of them for `*` or none).
fn select(row: &Value, select: Option<&str>) -> Value {
    match (select, row) {
        (Some(cols), Value::Object(fields)) if cols != "*" => {
            let cols: Vec<&str> = cols.split(',').collect();
            Value::Object(
                fields
                    .iter()
                    .filter(|(k, _)| cols.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
        _ => row.clone(),
    }
}

/// No session: the stand-in checks no token.
struct Anon;

impl Credentials for Anon {
    fn access_token(&self) -> futures_util::future::BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }
    fn renew(&self, _: String) -> futures_util::future::BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }
}

impl Rest {
    /// A REST client of this stand-in.
    pub fn client(&self) -> Client {
        self.client_over(self.http())
    }

    /// The HTTP layer `client` uses, to be adjusted before [`Rest::client_over`].
    pub fn http(&self) -> Http {
        Http::new(&self.base, "anon", Timeouts::default()).expect("an HTTP client")
    }

    pub fn client_over(&self, http: Http) -> Client {
        Client::new(Arc::new(http), Arc::new(Anon))
    }
}
