//! The socket task against a tiny Phoenix server (tokio-tungstenite on a random port) that
//! answers heartbeats and joins the way Supabase Realtime does and lets a test push any
//! frame: live delivery, bad frames, heartbeat timeouts, oversized frames, token expiry.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures_util::{future::BoxFuture, SinkExt, StreamExt};
use serde_json::{json, value::RawValue, Value};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::*;
use crate::{
    error::Result,
    events::{EventSink, Pending, HOST_BACKLOG},
    rest::{Http, Timeouts},
};

const WS: Uuid = Uuid::from_u128(0xbbbbbbbb_0000_4000_8000_000000000001);
const ME: &str = "11111111-1111-4111-8111-111111111111";
const BOB: &str = "22222222-2222-4222-8222-222222222222";

struct Tokens {
    n: AtomicUsize,
    renewed: AtomicUsize,
}

impl Credentials for Tokens {
    fn access_token(&self) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move { Ok(Some(format!("tok-{}", self.n.load(Ordering::SeqCst)))) })
    }
    fn renew(&self, _rejected: String) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move {
            self.renewed.fetch_add(1, Ordering::SeqCst);
            let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Some(format!("tok-{n}")))
        })
    }
}

/// Records events; while `held` is `Some`, the host "has not handled" them yet.
struct Recorder {
    tx: mpsc::UnboundedSender<(String, Value)>,
    held: Arc<Mutex<Option<Vec<Pending>>>>,
}
impl EventSink for Recorder {
    fn emit(&self, name: &str, payload: Box<RawValue>, handled: Pending) {
        let payload = serde_json::from_str(payload.get()).expect("a payload is JSON");
        let _ = self.tx.send((name.to_string(), payload));
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push(handled);
        }
    }
}

struct NoHooks(AtomicUsize);
impl Hooks for NoHooks {
    fn workspace_changed(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn files_changed(&self) {}
}

/// A frame the client sent, with the number of the connection it came on.
type Sent = (usize, Value);

struct Server {
    port: u16,
    sent: mpsc::UnboundedReceiver<Sent>,
    /// Pushes text to the newest connection.
    inject: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>>,
    answer_heartbeats: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, sent) = mpsc::unbounded_channel();
        let inject: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>> = Arc::default();
        let answer_heartbeats = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(AtomicUsize::new(0));
        let (inj, ans, conns) = (
            inject.clone(),
            answer_heartbeats.clone(),
            connections.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
                let (itx, mut irx) = mpsc::unbounded_channel();
                *inj.lock().unwrap() = Some(itx);
                let (tx, ans) = (tx.clone(), ans.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            m = ws.next() => {
                                let Some(Ok(Message::Text(t))) = m else { return };
                                let f: Value = serde_json::from_str(t.as_str()).unwrap();
                                let reply = |payload: Value| {
                                    json!({"topic": f["topic"], "event": "phx_reply", "payload": payload, "ref": f["ref"]}).to_string()
                                };
                                match f["event"].as_str().unwrap() {
                                    "heartbeat" if ans.load(Ordering::SeqCst) => {
                                        let r = reply(json!({"status": "ok", "response": {}}));
                                        if ws.send(Message::Text(r.into())).await.is_err() { return }
                                    }
                                    "phx_join" => {
                                        let pcs: Vec<Value> = f["payload"]["config"]["postgres_changes"]
                                            .as_array().unwrap().iter().enumerate()
                                            .map(|(i, b)| { let mut b = b.clone(); b["id"] = json!(100 + i); b })
                                            .collect();
                                        let r = reply(json!({"status": "ok", "response": {"postgres_changes": pcs}}));
                                        if ws.send(Message::Text(r.into())).await.is_err() { return }
                                    }
                                    _ => {}
                                }
                                let _ = tx.send((n, f));
                            }
                            Some(m) = irx.recv() => {
                                if ws.send(m).await.is_err() { return }
                            }
                        }
                    }
                });
            }
        });
        Server {
            port,
            sent,
            inject,
            answer_heartbeats,
            connections,
        }
    }

    fn push(&self, frame: Value) {
        self.push_text(frame.to_string());
    }

    fn push_text(&self, text: String) {
        let g = self.inject.lock().unwrap();
        g.as_ref()
            .unwrap()
            .send(Message::Text(text.into()))
            .unwrap();
    }

    /// The next frame the client sent with `event`.
    async fn next(&mut self, event: &str) -> Sent {
        loop {
            let (n, f) = tokio::time::timeout(Duration::from_secs(10), self.sent.recv())
                .await
                .unwrap_or_else(|_| panic!("no {event} within 10 s"))
                .unwrap();
            if f["event"] == event {
                return (n, f);
            }
        }
    }
}

struct Client {
    rt: Option<Realtime>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    held: Arc<Mutex<Option<Vec<Pending>>>>,
    tokens: Arc<Tokens>,
    hooks: Arc<NoHooks>,
}

impl Client {
    fn start(server: &Server, heartbeat: Duration) -> Client {
        let (tx, events) = mpsc::unbounded_channel();
        let ev = Arc::new(Events::default());
        let held = Arc::default();
        ev.set_sink(Some(Arc::new(Recorder {
            tx,
            held: Arc::clone(&held),
        })));
        let tokens = Arc::new(Tokens {
            n: AtomicUsize::new(1),
            renewed: AtomicUsize::new(0),
        });
        // REST goes nowhere: the catch-up and conversation list fail fast and are logged.
        let http = Arc::new(Http::new("http://127.0.0.1:1", "anon", Timeouts::default()).unwrap());
        let hooks = Arc::new(NoHooks(AtomicUsize::new(0)));
        let params = Params {
            base_url: format!("http://127.0.0.1:{}", server.port),
            anon_key: "anon".into(),
            credentials: tokens.clone(),
            client: Arc::new(crate::rest::Client::new(http, tokens.clone())),
            events: ev,
            hooks: hooks.clone(),
            workspace_id: WS,
            me: Me {
                user_id: ME.into(),
                display_name: Some("Alice".into()),
                avatar_url: None,
            },
            heartbeat,
            presence_interval: Duration::from_secs(60),
        };
        Client {
            rt: Some(Realtime::start(params, &tokio::runtime::Handle::current())),
            events,
            held,
            tokens,
            hooks,
        }
    }

    fn rt(&self) -> &Realtime {
        self.rt.as_ref().unwrap()
    }

    async fn event(&mut self, name: &str) -> Value {
        loop {
            let (n, p) = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {name} within 10 s"))
                .unwrap();
            if n == name {
                return p;
            }
        }
    }

    /// Every event so far, without waiting.
    fn drain(&mut self) -> Vec<(String, Value)> {
        let mut out = vec![];
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

fn topic() -> String {
    format!("realtime:workspace:{WS}")
}

fn message(id: u128, sender: &str) -> Value {
    json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [102],
        "data": {"schema": "public", "table": "messages", "type": "INSERT",
                 "commit_timestamp": "2026-01-01T00:00:00.000Z",
                 "columns": [],
                 "record": {"id": Uuid::from_u128(id).to_string(), "conversation_id": Uuid::from_u128(7).to_string(),
                            "role": "user", "content": format!("m{id}"), "sender_user_id": sender,
                            "created_at": "2026-01-01T00:00:00.000Z", "metadata": {}},
                 "old_record": null, "errors": null}}})
}

/// Joined with a messages binding: the conversation set comes from a workspace INSERT
/// change, which makes the client rejoin.
async fn joined_with_messages(server: &mut Server, client: &mut Client) {
    let (_, join) = server.next("phx_join").await;
    assert_eq!(join["topic"], json!(topic()));
    assert_eq!(join["payload"]["access_token"], json!("tok-1"));
    client.event("cloud:realtime:connected").await;
    server.push(
        json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [101], "data": {"schema": "public", "table": "conversations", "type": "INSERT",
        "record": {"id": Uuid::from_u128(7).to_string(), "workspace_id": WS.to_string()}}}}),
    );
    server.next("phx_leave").await;
    let (_, join) = server.next("phx_join").await;
    server.next("presence").await;
    let pcs = join["payload"]["config"]["postgres_changes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(pcs.len(), 4);
    assert_eq!(
        pcs[2]["filter"],
        json!(format!("conversation_id=in.({})", Uuid::from_u128(7)))
    );
}

#[tokio::test]
async fn delivers_changes_presence_and_broadcasts_and_drops_bad_frames() {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_secs(25));
    joined_with_messages(&mut server, &mut client).await;
    assert_eq!(client.rt().status(), Status::Live);

    // Bad frames of every kind: logged and dropped, the socket stays.
    for bad in [
        "not json".to_string(),
        "[1,2,3]".into(),
        json!({"topic": topic(), "event": "made_up", "payload": {}}).to_string(),
        json!({"topic": topic(), "event": "postgres_changes", "payload": {"ids": "x"}}).to_string(),
        json!({"topic": topic(), "event": "presence_diff", "payload": [1]}).to_string(),
        json!({"topic": topic(), "event": "phx_reply", "payload": {"status": "ok"}}).to_string(),
        json!({"topic": "realtime:other", "event": "broadcast", "payload": {"event": "x"}})
            .to_string(),
    ] {
        server.push_text(bad);
    }
    server.push(message(1, BOB));
    server.push(message(2, ME)); // our own: not an event
    server.push(message(1, BOB)); // a duplicate: not again
    server.push(message(3, BOB));
    let m = client.event("cloud:message:received").await;
    assert_eq!(m["content"], json!("m1"));
    let m = client.event("cloud:message:received").await;
    assert_eq!(m["content"], json!("m3"));

    let meta = |r: &str, u: &str, name: &str| json!({"phx_ref": r, "user_id": u, "display_name": name, "status": "active", "online_at": "2026-01-01T00:00:00Z"});
    server.push(
        json!({"topic": topic(), "event": "presence_state", "ref": null, "payload": {
            ME: {"metas": [meta("a1", ME, "Alice")]},
            BOB: {"metas": [meta("b1", BOB, "Bob"), meta("b2", BOB, "Bob")]},
        }}),
    );
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(p["workspaceId"], json!(WS.to_string()));
    let members = p["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "one member per user: {members:?}");
    assert_eq!(members[1]["displayName"], json!("Bob"));
    assert_eq!(members[1]["lastSeen"], json!("2026-01-01T00:00:00Z"));
    server.push(json!({"topic": topic(), "event": "presence_diff", "ref": null, "payload": {
        "joins": {}, "leaves": {BOB: {"metas": [meta("b1", BOB, "Bob"), meta("b2", BOB, "Bob")]}}}}));
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(p["members"].as_array().unwrap().len(), 1);
    assert_eq!(client.rt().members().len(), 1);

    server.push(json!({"topic": topic(), "event": "broadcast", "ref": null, "payload": {"type": "broadcast", "event": "typing", "payload": {"who": "bob"}}}));
    assert_eq!(
        client.event("cloud:broadcast:typing").await,
        json!({"who": "bob"})
    );
    client.rt().broadcast("cursor".into(), json!({"x": 1}));
    let (_, b) = server.next("broadcast").await;
    assert_eq!(
        b["payload"],
        json!({"type": "broadcast", "event": "cursor", "payload": {"x": 1}})
    );

    // A workspace change reaches the sync engine's hook.
    server.push(json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [100], "data": {"schema": "public", "table": "workspaces", "type": "UPDATE", "record": {"id": WS.to_string()}}}}));
    tokio::time::timeout(Duration::from_secs(5), async {
        while client.hooks.0.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    let left = client.drain();
    assert!(
        left.iter().all(|(n, _)| n != "cloud:message:received"),
        "{left:?}"
    );

    drop(client.rt.take());
    server.next("phx_leave").await;
    assert_eq!(
        client.event("cloud:realtime:disconnected").await["workspaceId"],
        json!(WS.to_string())
    );
}

#[tokio::test]
async fn a_missed_heartbeat_reconnects_and_rejoins() {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_millis(200));
    server.next("phx_join").await;
    client.event("cloud:realtime:connected").await;
    server.next("heartbeat").await;
    server.answer_heartbeats.store(false, Ordering::SeqCst);
    client.event("cloud:realtime:disconnected").await;
    server.answer_heartbeats.store(true, Ordering::SeqCst);
    let (n, _) = server.next("phx_join").await;
    assert_eq!(n, 2, "rejoined on a new connection");
    client.event("cloud:realtime:connected").await;
    // The reconnect asks the sync engine to reconcile what it may have missed.
    assert!(client.hooks.0.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn an_oversized_frame_is_refused_without_a_crash() {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_secs(25));
    server.next("phx_join").await;
    client.event("cloud:realtime:connected").await;
    server.push_text(format!(
        "{{\"topic\":\"{}\",\"event\":\"broadcast\",\"payload\":{{\"event\":\"x\",\"payload\":\"{}\"}}}}",
        topic(),
        "a".repeat(MAX_MESSAGE_BYTES + 10)
    ));
    client.event("cloud:realtime:disconnected").await;
    let (n, _) = server.next("phx_join").await;
    assert_eq!(n, 2);
    client.event("cloud:realtime:connected").await;
    assert!(client.drain().iter().all(|(n, _)| n != "cloud:broadcast:x"));
}

#[tokio::test]
async fn an_expired_token_close_renews_and_rejoins() {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_secs(25));
    let (_, join) = server.next("phx_join").await;
    let join_ref = join["join_ref"].as_str().unwrap().to_string();
    client.event("cloud:realtime:connected").await;
    server.push(json!({"topic": topic(), "event": "system", "ref": null, "payload": {"extension": "system", "status": "error", "message": "Token has expired 0 seconds ago", "channel": "x"}}));
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    let (n, join) = server.next("phx_join").await;
    assert_eq!(n, 1, "the same socket");
    assert_eq!(join["payload"]["access_token"], json!("tok-2"));
    assert_eq!(client.tokens.renewed.load(Ordering::SeqCst), 1);
    // A phx_close of an earlier join changes nothing.
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    server.push(json!({"topic": topic(), "event": "broadcast", "ref": null, "payload": {"event": "still", "payload": {}}}));
    client.event("cloud:broadcast:still").await;
    assert_eq!(client.rt().status(), Status::Live);
}

/// Counts `cloud:message:received` events from `got` until there are `until`.
async fn messages_until(client: &mut Client, mut got: usize, until: usize) -> usize {
    while got < until {
        let (name, _) = tokio::time::timeout(Duration::from_secs(10), client.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{got} of {until} messages within 10 s"))
            .unwrap();
        got += usize::from(name == "cloud:message:received");
    }
    got
}

#[tokio::test]
async fn a_host_that_falls_behind_holds_the_socket_back() {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_secs(25));
    joined_with_messages(&mut server, &mut client).await;
    client.drain();
    // From here the host handles nothing until released.
    *client.held.lock().unwrap() = Some(Vec::new());
    let sent = HOST_BACKLOG * 3;
    for i in 0..sent {
        server.push(message(10_000 + i as u128, BOB));
    }
    let got = messages_until(&mut client, 0, HOST_BACKLOG).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let more = client.drain();
    assert!(
        more.is_empty(),
        "{} events beyond a backlog of {HOST_BACKLOG}",
        more.len()
    );

    // Handled: the socket reads again and everything arrives, once.
    let held = client.held.lock().unwrap().take().unwrap();
    drop(held);
    assert_eq!(messages_until(&mut client, got, sent).await, sent);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client
        .drain()
        .iter()
        .all(|(n, _)| n != "cloud:message:received"));
}
