//! The socket task against a tiny Phoenix server (tokio-tungstenite on a random port) that
//! answers heartbeats and joins the way Supabase Realtime does and lets a test push any
//! frame: live delivery, bad frames, heartbeat timeouts, oversized frames, token expiry;
//! and, with a tiny PostgREST for the REST side, the catch-up after gaps in the subscription.

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
use crate::rest::mock::Rest;
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
    /// While set, the next join's reply is kept in `held_reply` rather than sent.
    hold_join: Arc<AtomicBool>,
    held_reply: Arc<Mutex<Option<String>>>,
    /// While set, new connections are dropped before the websocket handshake.
    refuse: Arc<AtomicBool>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, sent) = mpsc::unbounded_channel();
        let inject: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>> = Arc::default();
        let answer_heartbeats = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(AtomicUsize::new(0));
        let hold_join = Arc::new(AtomicBool::new(false));
        let held_reply: Arc<Mutex<Option<String>>> = Arc::default();
        let refuse = Arc::new(AtomicBool::new(false));
        let (inj, ans, conns, hold, held, refusing) = (
            inject.clone(),
            answer_heartbeats.clone(),
            connections.clone(),
            hold_join.clone(),
            held_reply.clone(),
            refuse.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
                let (itx, mut irx) = mpsc::unbounded_channel();
                *inj.lock().unwrap() = Some(itx);
                let (tx, ans, hold, held) = (tx.clone(), ans.clone(), hold.clone(), held.clone());
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
                                        if hold.swap(false, Ordering::SeqCst) {
                                            *held.lock().unwrap() = Some(r);
                                        } else if ws.send(Message::Text(r.into())).await.is_err() { return }
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
            hold_join,
            held_reply,
            refuse,
        }
    }

    /// Closes the newest connection from the server's side.
    fn close_connection(&self) {
        let g = self.inject.lock().unwrap();
        g.as_ref().unwrap().send(Message::Close(None)).unwrap();
    }

    /// Sends the join reply held back since `hold_join` was set.
    fn release_join(&self) {
        let r = self
            .held_reply
            .lock()
            .unwrap()
            .take()
            .expect("a held join reply");
        self.push_text(r);
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

    /// The next frame the client sent with `event` on connection `n`.
    async fn next_on(&mut self, n: usize, event: &str) -> Sent {
        loop {
            let sent = self.next(event).await;
            if sent.0 == n {
                return sent;
            }
        }
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
        // REST goes nowhere: the catch-up and conversation list fail fast and are logged.
        Client::start_with_rest(server, heartbeat, "http://127.0.0.1:1")
    }

    fn start_with_rest(server: &Server, heartbeat: Duration, rest: &str) -> Client {
        Client::start_with(server, heartbeat, rest, Duration::from_secs(60))
    }

    fn start_with(
        server: &Server,
        heartbeat: Duration,
        rest: &str,
        presence_interval: Duration,
    ) -> Client {
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
        let http = Arc::new(Http::new(rest, "anon", Timeouts::default()).unwrap());
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
            presence_interval,
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
    assert_eq!(pcs.len(), 5);
    assert_eq!(
        pcs[2]["filter"],
        json!(format!("conversation_id=in.({})", Uuid::from_u128(7)))
    );
    assert_eq!(
        (&pcs[4]["event"], &pcs[4]["filter"]),
        (
            &json!("DELETE"),
            &json!(format!("id=in.({})", Uuid::from_u128(7)))
        )
    );
}

/// The DELETE change of conversation `id` (the deletion binding is the fifth: id 104).
fn delete_of(id: Value) -> Value {
    json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
    "ids": [104], "data": {"schema": "public", "table": "conversations", "type": "DELETE",
    "commit_timestamp": "2026-01-01T00:00:00.000Z", "record": null, "old_record": {"id": id}}}})
}

/// An UPDATE change of a conversation whose record is `record`.
fn conversation_update(record: Value) -> Value {
    json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
    "ids": [101], "data": {"schema": "public", "table": "conversations", "type": "UPDATE",
    "commit_timestamp": "2026-01-01T00:00:00.000Z", "record": record, "old_record": {}}}})
}

/// Asserts that none of the events so far announces a deleted conversation.
fn no_deletion_announced(client: &mut Client) {
    let left = client.drain();
    assert!(
        left.iter().all(|(n, _)| n != "cloud:conversation:deleted"),
        "{left:?}"
    );
}

/// The events of the frames the client sent until everything pushed before was handled:
/// frames are handled in order, so once a broadcast pushed now comes back as an event, and
/// one the client sends after that reaches the server, whatever came before is done.
/// Events the client emitted meanwhile are consumed up to the broadcast's.
async fn sent_meanwhile(server: &mut Server, client: &mut Client) -> Vec<String> {
    server.push(json!({"topic": topic(), "event": "broadcast", "ref": null, "payload": {"type": "broadcast", "event": "typing", "payload": {}}}));
    client.event("cloud:broadcast:typing").await;
    client.rt().broadcast("mark".into(), json!({}));
    let mut sent = vec![];
    loop {
        let (_, f) = tokio::time::timeout(Duration::from_secs(10), server.sent.recv())
            .await
            .expect("the mark within 10 s")
            .unwrap();
        let event = f["event"].as_str().unwrap_or("").to_string();
        if event == "broadcast" && f["payload"]["event"] == "mark" {
            return sent;
        }
        sent.push(event);
    }
}

/// Wait until the stand-in has been asked for `n` conversation lists in all.
async fn lists_reach(rest: &Rest, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while rest.db.lock().unwrap().lists < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {n} conversation lists within 10 s"));
}

/// A DELETE carries the primary key alone: a watched conversation's is announced once and
/// ends its watch; another's, or a repeat, changes nothing. The id left in the join's filter
/// matches nothing more, so the channel stays as it is: no leave, no join.
#[tokio::test]
async fn a_deleted_conversation_is_announced_once() {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_secs(25));
    joined_with_messages(&mut server, &mut client).await;
    server.push(delete_of(json!(Uuid::from_u128(8).to_string())));
    server.push(delete_of(json!(42)));
    server.push(delete_of(json!(Uuid::from_u128(7).to_string())));
    let gone = client.event("cloud:conversation:deleted").await;
    assert_eq!(
        gone,
        json!({"workspaceId": WS.to_string(), "conversationId": Uuid::from_u128(7).to_string()})
    );
    server.push(delete_of(json!(Uuid::from_u128(7).to_string())));
    let sent = sent_meanwhile(&mut server, &mut client).await;
    assert!(
        sent.iter().all(|e| e != "phx_leave" && e != "phx_join"),
        "{sent:?}"
    );
    no_deletion_announced(&mut client);
    // Its messages are no longer delivered, though the join's filter still names it.
    server.push(message(1, BOB));
    let sent = sent_meanwhile(&mut server, &mut client).await;
    assert!(sent.is_empty(), "{sent:?}");
    let left = client.drain();
    assert!(
        left.iter().all(|(n, _)| n != "cloud:message:received"),
        "{left:?}"
    );
}

/// A live deletion is no gap: nothing is read over REST, the sync engine is not woken, and
/// the other conversations go on arriving live.
#[tokio::test]
async fn a_live_deletion_costs_no_rejoin_nor_reads() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, _) = watching(&[c7, c8]).await;
    let reads = rest.db.lock().unwrap().requests.clone();
    let hooks = client.hooks.0.load(Ordering::SeqCst);
    server.push(delete_of(json!(c8.to_string())));
    assert_eq!(
        client.event("cloud:conversation:deleted").await["conversationId"],
        json!(c8.to_string())
    );
    let live = row_at(1, c7, BOB, chrono::Utc::now());
    server.push(insert_of(&live));
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m1")
    );
    let sent = sent_meanwhile(&mut server, &mut client).await;
    assert!(
        sent.iter().all(|e| e != "phx_leave" && e != "phx_join"),
        "{sent:?}"
    );
    assert_eq!(rest.db.lock().unwrap().requests, reads);
    assert_eq!(client.hooks.0.load(Ordering::SeqCst), hooks);
}

/// A change of a watched conversation whose record names no workspace (or none readable)
/// does not say it moved away: the list says where it is. One that names another
/// workspace does.
#[tokio::test]
async fn a_conversation_change_without_its_workspace_is_no_deletion() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, _) = watching(&[c7, c8]).await;
    let lists = rest.db.lock().unwrap().lists;
    server.push(conversation_update(
        json!({"id": c7.to_string(), "title": "x"}),
    ));
    server.push(conversation_update(
        json!({"id": c8.to_string(), "workspace_id": 42}),
    ));
    server.push(conversation_update(
        json!({"id": c8.to_string(), "workspace_id": "not-a-uuid"}),
    ));
    let sent = sent_meanwhile(&mut server, &mut client).await;
    assert!(
        sent.iter().all(|e| e != "phx_leave" && e != "phx_join"),
        "{sent:?}"
    );
    no_deletion_announced(&mut client);
    lists_reach(&rest, lists + 1).await;

    let elsewhere = Uuid::from_u128(0xcc);
    server.push(conversation_update(
        json!({"id": c8.to_string(), "workspace_id": elsewhere.to_string()}),
    ));
    assert_eq!(
        client.event("cloud:conversation:deleted").await["conversationId"],
        json!(c8.to_string())
    );
}

/// A change the client cannot place: it lists the conversations again.
fn unplaceable_change() -> Value {
    let mut change = conversation_update(json!({"id": Uuid::from_u128(7).to_string()}));
    change["payload"]["data"]["errors"] = json!(["Error 500: whatever"]);
    change
}

/// Lets the held list go, then has another list started and waits for it: the client
/// starts it only once it handled the one before (a list asked for while one runs waits
/// for its end), so everything that list brought is done.
async fn list_handled(rest: &Rest, server: &Server) {
    rest.release_list();
    server.push(unplaceable_change());
    rest.list_arrived().await;
}

/// A member removed from the workspace is answered an empty list (RLS hides every row):
/// nothing was deleted, and nothing is announced, after a lost channel or a lost socket.
#[tokio::test]
async fn an_empty_list_of_a_hidden_workspace_announces_no_deletion() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, _) = watching(&[c7, c8]).await;
    {
        let mut db = rest.db.lock().unwrap();
        db.conversations = vec![];
        db.workspace_visible = false;
        db.hold_lists = true;
    }
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": null, "payload": {}}));
    server.next("phx_join").await;
    rest.list_arrived().await;
    list_handled(&rest, &server).await;
    rest.release_list();

    // The socket is lost: the list on connecting finds nothing either, nor the one after
    // the join.
    server.close_connection();
    rest.list_arrived().await;
    rest.release_list();
    server.next_on(2, "phx_join").await;
    rest.list_arrived().await;
    list_handled(&rest, &server).await;
    rest.release_list();
    no_deletion_announced(&mut client);
}

/// A list read before a conversation's live DELETE and answered after it still holds the
/// conversation: it is not watched again, and the next list, without it, announces nothing.
#[tokio::test]
async fn a_list_older_than_a_live_deletion_does_not_bring_it_back() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, _) = watching(&[c7, c8]).await;
    rest.db.lock().unwrap().hold_lists = true;
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": null, "payload": {}}));
    server.next("phx_join").await;
    rest.list_arrived().await;
    server.push(delete_of(json!(c8.to_string())));
    assert_eq!(
        client.event("cloud:conversation:deleted").await["conversationId"],
        json!(c8.to_string())
    );
    // The list answers with c8, as read before the deletion.
    list_handled(&rest, &server).await;
    let sent = sent_meanwhile(&mut server, &mut client).await;
    assert!(
        sent.iter().all(|e| e != "phx_leave" && e != "phx_join"),
        "c8 watched again: {sent:?}"
    );
    rest.db.lock().unwrap().conversations = vec![c7];
    rest.release_list();

    // A later gap's list, without c8.
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": null, "payload": {}}));
    server.next("phx_join").await;
    rest.list_arrived().await;
    list_handled(&rest, &server).await;
    rest.release_list();
    no_deletion_announced(&mut client);
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

    // A workspace change reaches the sync engine's hook (the rejoin for the conversation
    // already called it once, for what the rejoin might have missed).
    let hooks = client.hooks.0.load(Ordering::SeqCst);
    server.push(json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [100], "data": {"schema": "public", "table": "workspaces", "type": "UPDATE", "record": {"id": WS.to_string()}}}}));
    hooks_reach(&client, hooks + 1).await;
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

/// A `postgres_changes` system message of the current join.
fn changes_system(status: &str, message: &str) -> Value {
    json!({"topic": topic(), "event": "system", "ref": null, "payload": {
        "extension": "postgres_changes", "status": status, "message": message, "channel": "x"}})
}

#[tokio::test]
async fn a_refused_subscription_is_polled_until_the_server_confirms_it() {
    let c7 = Uuid::from_u128(7);
    let (rest, server, mut client, _) = watching(&[c7]).await;
    assert_eq!(client.rt().status(), Status::Live);
    let hooks = client.hooks.0.load(Ordering::SeqCst);
    // Joined, but no change will come: the engine must not rely on the socket.
    server.push(changes_system(
        "error",
        "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [schema: public, table: messages]",
    ));
    status_becomes(&client, Status::Connected).await;
    // A row committed meanwhile never comes as a change.
    let missed = row_at(1, c7, BOB, chrono::Utc::now());
    rest.db.lock().unwrap().messages.push(missed);
    server.push(changes_system("ok", "Subscribed to PostgreSQL"));
    status_becomes(&client, Status::Live).await;
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m1"),
        "caught up once the changes come again"
    );
    hooks_reach(&client, hooks + 1).await;
    // An `ok` that confirms nothing refused changes nothing.
    server.push(changes_system("ok", "Subscribed to PostgreSQL"));
    assert!(messages_within(&mut client, Duration::from_millis(300))
        .await
        .is_empty());
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

/// Holds the host (nothing it is given counts as handled) until `release_host`.
fn hold_host(client: &Client) {
    *client.held.lock().unwrap() = Some(Vec::new());
}

fn release_host(client: &Client) {
    let held = client.held.lock().unwrap().take().unwrap();
    drop(held);
}

/// Waits until the status is `want` (generously), panicking otherwise.
async fn status_becomes(client: &Client, want: Status) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.rt().status() != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not {want:?} within 10 s"));
}

/// A joined client (200 ms heartbeat) whose host stopped taking events with
/// `HOST_BACKLOG` of them delivered and 10 more sent; with how many were delivered and sent.
async fn paused_behind_a_full_backlog() -> (Server, Client, usize, usize) {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_millis(200));
    joined_with_messages(&mut server, &mut client).await;
    client.drain();
    hold_host(&client);
    let sent = HOST_BACKLOG + 10;
    for i in 0..sent {
        server.push(message(10_000 + i as u128, BOB));
    }
    let got = messages_until(&mut client, 0, HOST_BACKLOG).await;
    (server, client, got, sent)
}

#[tokio::test]
async fn a_host_that_falls_behind_causes_no_heartbeat_timeout() {
    let (server, mut client, got, sent) = paused_behind_a_full_backlog().await;
    // Many heartbeat intervals with reading paused: the replies wait, unread, behind the
    // messages the host has not made room for.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    release_host(&client);
    assert_eq!(messages_until(&mut client, got, sent).await, sent);
    // And a few intervals more of normal reading.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let more = client.drain();
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(client.rt().status(), Status::Live);
}

#[tokio::test]
async fn a_server_gone_silent_during_a_host_pause_is_found_once_reading_resumes() {
    let (mut server, mut client, got, sent) = paused_behind_a_full_backlog().await;
    server.answer_heartbeats.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Paused, the client cannot know yet.
    let during = client.drain();
    assert!(during.is_empty(), "{during:?}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    release_host(&client);
    assert_eq!(messages_until(&mut client, got, sent).await, sent);
    client.event("cloud:realtime:disconnected").await;
    server.answer_heartbeats.store(true, Ordering::SeqCst);
    let (n, _) = server.next_on(2, "phx_join").await;
    assert_eq!(n, 2, "reconnected");
}

#[tokio::test]
async fn a_join_reply_behind_a_host_pause_does_not_time_out() {
    let mut server = Server::start().await;
    let mut client = Client::start(&server, Duration::from_millis(200));
    let (_, join) = server.next("phx_join").await;
    let join_ref = join["join_ref"].as_str().unwrap().to_string();
    client.event("cloud:realtime:connected").await;
    client.drain();
    // The channel closes; broadcasts (delivered joined or not) fill the host's backlog
    // before the rejoin, whose reply then waits behind them.
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    hold_host(&client);
    let sent = HOST_BACKLOG + 10;
    for i in 0..sent {
        server.push(json!({"topic": topic(), "event": "broadcast", "ref": null,
            "payload": {"type": "broadcast", "event": "typing", "payload": {"n": i}}}));
    }
    let (_, rejoin) = server.next("phx_join").await;
    let wait = super::channel::JOIN_TIMEOUT + Duration::from_secs(1);
    tokio::time::sleep(wait).await;
    let mut frames = vec![];
    while let Ok((_, f)) = server.sent.try_recv() {
        frames.push(f["event"].clone());
    }
    assert!(
        !frames.contains(&json!("phx_leave")),
        "the join was given up while its reply could not be read: {frames:?}"
    );

    release_host(&client);
    status_becomes(&client, Status::Live).await;
    let broadcasts = client
        .drain()
        .iter()
        .filter(|(n, _)| n == "cloud:broadcast:typing")
        .count();
    let more = messages_until_named(&mut client, broadcasts, sent, "cloud:broadcast:typing").await;
    assert_eq!(more, sent);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    let (_, track) = server.next("presence").await;
    assert_eq!(track["join_ref"], rejoin["join_ref"]);
}

/// Counts `name` events from `got` until there are `until`.
async fn messages_until_named(
    client: &mut Client,
    mut got: usize,
    until: usize,
    name: &str,
) -> usize {
    while got < until {
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), client.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{got} of {until} {name} within 10 s"))
            .unwrap();
        got += usize::from(n == name);
    }
    got
}

fn presence_meta(r: &str, user: &str, name: &str) -> Value {
    json!({"phx_ref": r, "user_id": user, "display_name": name, "status": "active",
           "online_at": "2026-01-01T00:00:00Z"})
}

fn user_ids(members: &Value) -> Vec<String> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_string())
        .collect()
}

/// Alice (this client) and Bob, with the `phx_ref`s `a` and `b`.
fn presence_state(a: &str, b: &str) -> Value {
    json!({"topic": topic(), "event": "presence_state", "ref": null, "payload": {
        ME: {"metas": [presence_meta(a, ME, "Alice")]},
        BOB: {"metas": [presence_meta(b, BOB, "Bob")]},
    }})
}

#[tokio::test]
async fn presence_is_withdrawn_while_the_socket_stays_down() {
    let mut server = Server::start().await;
    let mut client = Client::start_with(
        &server,
        Duration::from_secs(25),
        "http://127.0.0.1:1",
        Duration::from_millis(300),
    );
    server.next("phx_join").await;
    client.event("cloud:realtime:connected").await;
    server.next("presence").await;
    server.push(presence_state("a1", "b1"));
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(user_ids(&p["members"]), vec![ME, BOB]);

    // The socket goes and cannot come back; neither can the REST poll reach the cloud.
    server.refuse.store(true, Ordering::SeqCst);
    server.close_connection();
    client.event("cloud:realtime:disconnected").await;
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(p["members"], json!([]), "nobody is known to be online");
    assert!(client.rt().members().is_empty());

    // Back: the new join's state lists them again, though it equals the one before.
    server.refuse.store(false, Ordering::SeqCst);
    server.next_on(2, "presence").await;
    server.push(presence_state("a1", "b1"));
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(user_ids(&p["members"]), vec![ME, BOB]);
    assert_eq!(client.rt().members().len(), 2);
}

#[tokio::test]
async fn a_closed_channel_drops_its_presence() {
    let mut server = Server::start().await;
    let mut client = Client::start_with(
        &server,
        Duration::from_secs(25),
        "http://127.0.0.1:1",
        Duration::from_millis(300),
    );
    let (_, join) = server.next("phx_join").await;
    let join_ref = join["join_ref"].as_str().unwrap().to_string();
    client.event("cloud:realtime:connected").await;
    server.next("presence").await;
    server.push(presence_state("a1", "b1"));
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(user_ids(&p["members"]), vec![ME, BOB]);

    // The server closes the channel and answers the rejoin late.
    server.hold_join.store(true, Ordering::SeqCst);
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    server.next("phx_join").await;
    // A diff of the closed join, still on its way: Carol joined it.
    const CAROL: &str = "33333333-3333-4333-8333-333333333333";
    server.push(
        json!({"topic": topic(), "event": "presence_diff", "ref": null, "payload": {
        "joins": {CAROL: {"metas": [presence_meta("c1", CAROL, "Carol")]}}, "leaves": {}}}),
    );
    // Without a channel for longer than the presence interval, and the REST poll failing,
    // nobody is known to be online.
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(p["members"], json!([]));

    server.release_join();
    server.next("presence").await;
    server.push(presence_state("a2", "b2"));
    let p = client.event("cloud:presence:updated").await;
    assert_eq!(
        user_ids(&p["members"]),
        vec![ME, BOB],
        "only the new join's presence"
    );
    server.push(json!({"topic": topic(), "event": "broadcast", "ref": null, "payload": {"event": "sync", "payload": {}}}));
    client.event("cloud:broadcast:sync").await;
    assert_eq!(client.rt().members().len(), 2);
}

/// A message row of `conversation` written at `at`.
fn row_at(id: u128, conversation: Uuid, sender: &str, at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"id": Uuid::from_u128(id).to_string(), "conversation_id": conversation.to_string(),
           "role": "user", "content": format!("m{id}"), "sender_user_id": sender,
           "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "metadata": {}})
}

/// The INSERT change that carries `row` (the messages binding is the third: id 102).
fn insert_of(row: &Value) -> Value {
    json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [102],
        "data": {"schema": "public", "table": "messages", "type": "INSERT",
                 "commit_timestamp": row["created_at"], "columns": [],
                 "record": row, "old_record": null, "errors": null}}})
}

/// Counts the `cloud:message:received` events that arrive within `wait`.
async fn messages_within(client: &mut Client, wait: Duration) -> Vec<Value> {
    tokio::time::sleep(wait).await;
    client
        .drain()
        .into_iter()
        .filter(|(n, _)| n == "cloud:message:received")
        .map(|(_, p)| p)
        .collect()
}

async fn hooks_reach(client: &Client, n: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while client.hooks.0.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("workspace_changed not called {n} times within 5 s"));
}

/// Asserts that `join` watches the messages of `conversations`, in that order.
fn watches(join: &Value, conversations: &[Uuid]) {
    let ids: Vec<String> = conversations.iter().map(Uuid::to_string).collect();
    assert_eq!(
        join["payload"]["config"]["postgres_changes"][2]["filter"],
        json!(format!("conversation_id=in.({})", ids.join(",")))
    );
}

/// The client leaves and joins again to watch `conversations`.
async fn rejoined_watching(server: &mut Server, conversations: &[Uuid]) {
    server.next("phx_leave").await;
    let (_, join) = server.next("phx_join").await;
    watches(&join, conversations);
}

/// Joined on a first connection whose conversation list held `conversations`.
async fn first_join(server: &mut Server, client: &mut Client, conversations: &[Uuid]) -> String {
    let (_, join) = server.next("phx_join").await;
    watches(&join, conversations);
    client.event("cloud:realtime:connected").await;
    server.next("presence").await;
    join["join_ref"].as_str().unwrap().to_string()
}

/// A joined client (25 s heartbeat) whose stand-in cloud lists `conversations`, watched
/// from the first join; with that join's ref.
async fn watching(conversations: &[Uuid]) -> (Rest, Server, Client, String) {
    let rest = Rest::start().await;
    rest.db.lock().unwrap().conversations = conversations.to_vec();
    let mut server = Server::start().await;
    let mut client = Client::start_with_rest(&server, Duration::from_secs(25), &rest.base);
    let join_ref = first_join(&mut server, &mut client, conversations).await;
    (rest, server, client, join_ref)
}

#[tokio::test]
async fn a_rejoin_for_a_new_conversation_misses_nothing() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, _) = watching(&[c7]).await;
    let t0 = chrono::Utc::now();
    let live = row_at(1, c7, BOB, t0);
    rest.db.lock().unwrap().messages.push(live.clone());
    server.push(insert_of(&live));
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m1")
    );
    let hooks = client.hooks.0.load(Ordering::SeqCst);

    // A conversation is created: the client leaves and joins again with the new filter, and
    // the server answers the new join late. Between the leave and that answer the client
    // has no subscription, so whatever is written then reaches it only through a pull.
    server.hold_join.store(true, Ordering::SeqCst);
    rest.db.lock().unwrap().conversations.push(c8);
    server.push(
        json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [101], "data": {"schema": "public", "table": "conversations", "type": "INSERT",
        "record": {"id": c8.to_string(), "workspace_id": WS.to_string()}}}}),
    );
    server.next("phx_leave").await;
    server.next("phx_join").await;
    let gap = row_at(2, c7, BOB, t0 + chrono::Duration::seconds(1));
    rest.db.lock().unwrap().messages.push(gap.clone());
    server.push(insert_of(&gap));
    server.push(json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [100], "data": {"schema": "public", "table": "workspaces", "type": "UPDATE", "record": {"id": WS.to_string()}}}}));
    server.release_join();
    server.next("presence").await;

    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m2")
    );
    hooks_reach(&client, hooks + 1).await;
    let more = messages_within(&mut client, Duration::from_millis(300)).await;
    assert!(more.is_empty(), "delivered twice: {more:?}");
}

/// A conversation deleted while the channel was down (its DELETE unseen) is let go of by
/// the list after the gap, and announced once; a DELETE of it arriving later is no second.
#[tokio::test]
async fn a_conversation_deleted_in_a_gap_is_found_by_the_list() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, join_ref) = watching(&[c7, c8]).await;
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    rest.db.lock().unwrap().conversations = vec![c7];
    server.next("phx_join").await;
    server.next("presence").await;
    assert_eq!(
        client.event("cloud:conversation:deleted").await["conversationId"],
        json!(c8.to_string())
    );
    server.push(
        json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [104], "data": {"schema": "public", "table": "conversations", "type": "DELETE",
        "record": null, "old_record": {"id": c8.to_string()}}}}),
    );
    server.push(json!({"topic": topic(), "event": "broadcast", "ref": null, "payload": {"type": "broadcast", "event": "typing", "payload": {}}}));
    client.event("cloud:broadcast:typing").await;
    no_deletion_announced(&mut client);
}

/// A client joined on `conversation` whose next REST reads fail with 503, more of them than
/// the transport retries a read; with the join's ref and the number of failures.
async fn joined_with_failing_reads(conversation: Uuid) -> (Rest, Server, Client, String, usize) {
    let rest = Rest::start().await;
    let failures = 1 + crate::rest::http::MAX_RETRIES as usize;
    {
        let mut db = rest.db.lock().unwrap();
        db.conversations = vec![conversation];
        db.fail_reads = 0..failures;
    }
    let mut server = Server::start().await;
    let mut client = Client::start_with_rest(&server, Duration::from_secs(25), &rest.base);
    let join_ref = first_join(&mut server, &mut client, &[conversation]).await;
    (rest, server, client, join_ref, failures)
}

#[tokio::test]
async fn a_failed_catch_up_is_retried_from_before_the_gap() {
    let c7 = Uuid::from_u128(7);
    let (rest, mut server, mut client, join_ref, failures) = joined_with_failing_reads(c7).await;
    let t0 = chrono::Utc::now();

    // The server closes the channel; a message is written before the client is back.
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    let missed = row_at(2, c7, BOB, t0 + chrono::Duration::seconds(1));
    rest.db.lock().unwrap().messages.push(missed.clone());
    server.next("phx_join").await;
    server.next("presence").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while rest.db.lock().unwrap().message_reads < failures {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the catch-up pull runs after the rejoin");

    // A newer live row moves the conversation's cursor well past the missed one.
    let live = row_at(3, c7, BOB, t0 + chrono::Duration::seconds(60));
    rest.db.lock().unwrap().messages.push(live.clone());
    server.push(insert_of(&live));
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m3")
    );

    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m2")
    );
    let more = messages_within(&mut client, Duration::from_millis(300)).await;
    assert!(more.is_empty(), "delivered twice: {more:?}");
}

#[tokio::test]
async fn a_conversation_created_in_the_rejoin_gap_is_watched() {
    let (c7, c8, c9) = (Uuid::from_u128(7), Uuid::from_u128(8), Uuid::from_u128(9));
    let (rest, mut server, mut client, _) = watching(&[c7]).await;
    let t0 = chrono::Utc::now();
    let insert = |c: Uuid| {
        json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [101], "data": {"schema": "public", "table": "conversations", "type": "INSERT",
        "record": {"id": c.to_string(), "workspace_id": WS.to_string()}}}})
    };

    server.hold_join.store(true, Ordering::SeqCst);
    rest.db.lock().unwrap().conversations.push(c8);
    server.push(insert(c8));
    server.next("phx_leave").await;
    server.next("phx_join").await;
    // Another conversation, and a message in it, while the client has no subscription.
    let gap = row_at(4, c9, BOB, t0 + chrono::Duration::seconds(1));
    {
        let mut db = rest.db.lock().unwrap();
        db.conversations.push(c9);
        db.messages.push(gap.clone());
    }
    server.push(insert(c9));
    server.release_join();

    // The client finds it by listing the conversations again, and joins to watch it too.
    rejoined_watching(&mut server, &[c7, c8, c9]).await;
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m4")
    );
    let more = messages_within(&mut client, Duration::from_millis(300)).await;
    assert!(more.is_empty(), "delivered twice: {more:?}");
}

/// The change Supabase sends for a row over its `max_record_bytes`: only the columns small
/// enough are in the record, and `errors` says why.
fn too_large_insert_of(row: &Value) -> Value {
    let small: serde_json::Map<String, Value> = row
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.to_string().len() <= 64)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut change = insert_of(&Value::Object(small));
    change["payload"]["data"]["errors"] = json!(["Error 413: Payload Too Large"]);
    change
}

#[tokio::test]
async fn a_message_too_large_for_the_socket_is_read_over_rest() {
    let c7 = Uuid::from_u128(7);
    let (rest, server, mut client, _) = watching(&[c7]).await;
    let t0 = chrono::Utc::now();

    let mut big = row_at(5, c7, BOB, t0);
    big["content"] = json!("x".repeat(100_000));
    rest.db.lock().unwrap().messages.push(big.clone());
    let change = too_large_insert_of(&big);
    assert!(change["payload"]["data"]["record"].get("content").is_none());
    server.push(change.clone());
    let m = client.event("cloud:message:received").await;
    assert_eq!(m["id"], big["id"]);
    assert_eq!(m["content"], big["content"]);
    let asked = rest.requests("/rest/v1/messages");
    let by_id = format!("id=in.({})&select=*", big["id"].as_str().unwrap());
    assert!(asked.iter().any(|p| p.contains(&by_id)), "{asked:?}");

    // This client's own row, cut short the same way: its record still has the content but
    // not the metadata that says who pushed it. Read whole, it is not delivered.
    let mut own = row_at(6, c7, BOB, t0 + chrono::Duration::seconds(1));
    own["role"] = json!("assistant");
    own["sender_user_id"] = Value::Null;
    own["metadata"] = json!({"pushedBy": ME, "trace": "y".repeat(1000)});
    rest.db.lock().unwrap().messages.push(own.clone());
    let change_own = too_large_insert_of(&own);
    assert!(change_own["payload"]["data"]["record"]
        .get("content")
        .is_some());
    server.push(change_own);

    // The same change again, then a row that fits: each once, the own one never.
    server.push(change);
    let live = row_at(7, c7, BOB, t0 + chrono::Duration::seconds(2));
    rest.db.lock().unwrap().messages.push(live.clone());
    server.push(insert_of(&live));
    let mut got = vec![client.event("cloud:message:received").await["content"].clone()];
    got.extend(
        messages_within(&mut client, Duration::from_millis(500))
            .await
            .into_iter()
            .map(|m| m["content"].clone()),
    );
    assert_eq!(got, vec![json!("m7")]);
}

#[tokio::test]
async fn a_message_too_large_for_the_socket_is_caught_up_when_its_read_fails() {
    let c7 = Uuid::from_u128(7);
    let (rest, server, mut client, _, _) = joined_with_failing_reads(c7).await;
    let t0 = chrono::Utc::now();

    let mut big = row_at(5, c7, BOB, t0);
    big["content"] = json!("x".repeat(100_000));
    rest.db.lock().unwrap().messages.push(big.clone());
    server.push(too_large_insert_of(&big));
    let m = client.event("cloud:message:received").await;
    assert_eq!(m["content"], big["content"]);
    let more = messages_within(&mut client, Duration::from_millis(500)).await;
    assert!(more.is_empty(), "delivered twice: {more:?}");
    let pulls = rest.requests("/rest/v1/messages?conversation_id=");
    assert!(!pulls.is_empty(), "caught up by a pull");
}

/// Catch-up cursors are the server's time: a conversation created while this machine's
/// clock runs five minutes ahead is still pulled from its creation after a gap.
#[tokio::test]
async fn a_new_conversation_is_watched_from_the_servers_time() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, join_ref) = watching(&[c7]).await;
    let server_now = chrono::Utc::now() - chrono::Duration::minutes(5);
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);

    rest.db.lock().unwrap().conversations.push(c8);
    server.push(
        json!({"topic": topic(), "event": "postgres_changes", "ref": null, "payload": {
        "ids": [101], "data": {"schema": "public", "table": "conversations", "type": "INSERT",
        "commit_timestamp": stamp(server_now),
        "record": {"id": c8.to_string(), "workspace_id": WS.to_string()}}}}),
    );
    server.next("phx_leave").await;
    server.next("phx_join").await;
    server.next("presence").await;

    // The channel is lost; a message is written in the new conversation meanwhile.
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    let missed = row_at(5, c8, BOB, server_now + chrono::Duration::seconds(30));
    rest.db.lock().unwrap().messages.push(missed);
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m5")
    );
}

/// `insert_of(row)` with `errors` set, and the record as the server cut it.
fn insert_with_errors(record: &Value, errors: Value) -> Value {
    let mut change = insert_of(record);
    change["payload"]["data"]["errors"] = errors;
    change
}

#[tokio::test]
async fn a_change_whose_errors_say_it_is_incomplete_is_never_emitted_as_it_came() {
    let c7 = Uuid::from_u128(7);
    let (rest, server, mut client, _) = watching(&[c7]).await;
    let t0 = chrono::Utc::now();

    // 401: the server says this subscriber may not see the row. Whatever the record holds,
    // it is not shown, nor read over REST.
    let hidden = row_at(5, c7, BOB, t0);
    rest.db.lock().unwrap().messages.push(hidden.clone());
    server.push(insert_with_errors(
        &hidden,
        json!(["Error 401: Unauthorized"]),
    ));
    // An error the client does not know: the record is not trusted to be whole; the row
    // is read over REST, where the server's own checks decide.
    let odd = row_at(6, c7, BOB, t0 + chrono::Duration::seconds(1));
    rest.db.lock().unwrap().messages.push(odd.clone());
    let mut cut = odd.clone();
    cut["content"] = json!("cut sho");
    server.push(insert_with_errors(&cut, json!(["Error 500: whatever"])));
    // Not even an array: the same.
    let odder = row_at(7, c7, BOB, t0 + chrono::Duration::seconds(2));
    rest.db.lock().unwrap().messages.push(odder.clone());
    let mut cut = odder.clone();
    cut["content"] = json!("cut too");
    server.push(insert_with_errors(&cut, json!("Error 500: whatever")));
    let fine = row_at(8, c7, BOB, t0 + chrono::Duration::seconds(3));
    server.push(insert_of(&fine));

    let mut got: Vec<Value> = Vec::new();
    while got.len() < 3 {
        got.push(client.event("cloud:message:received").await["content"].clone());
    }
    got.extend(
        messages_within(&mut client, Duration::from_millis(500))
            .await
            .into_iter()
            .map(|m| m["content"].clone()),
    );
    got.sort_by_key(|c| c.to_string());
    assert_eq!(got, vec![json!("m6"), json!("m7"), json!("m8")]);
    let hidden_read = format!("/rest/v1/messages?id=eq.{}", hidden["id"].as_str().unwrap());
    assert!(
        rest.requests(&hidden_read).is_empty(),
        "a row the server hides is not asked for"
    );
}

/// Waits (up to `secs`) until `pred` holds of the message contents received so far, which it
/// returns.
async fn contents_until(
    client: &mut Client,
    secs: u64,
    got: &mut Vec<Value>,
    pred: impl Fn(&[Value]) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(secs), async {
        while !pred(got) {
            let (n, p) = client.events.recv().await.unwrap();
            if n == "cloud:message:received" {
                got.push(p["content"].clone());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within {secs} s; {} messages", got.len()));
}

#[tokio::test]
async fn a_catch_up_failing_while_many_rows_arrive_live_delivers_nothing_twice() {
    let (c7, c8) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (rest, mut server, mut client, join_ref) = watching(&[c7, c8]).await;
    let t0 = chrono::Utc::now();
    let before = row_at(1, c7, BOB, t0);
    rest.db.lock().unwrap().messages.push(before.clone());
    server.push(insert_of(&before));
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m1")
    );

    // The channel is lost; a row is written in the gap; every pull fails from now on.
    rest.db.lock().unwrap().fail_reads = 0..usize::MAX;
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    let missed = row_at(2, c7, BOB, t0 + chrono::Duration::seconds(1));
    rest.db.lock().unwrap().messages.push(missed);
    server.next("phx_join").await;
    server.next("presence").await;
    // More live rows than the client remembers ids for, in the other conversation.
    let many = 50_001u128;
    for i in 0..many {
        let r = row_at(1_000_000 + i, c8, BOB, t0 + chrono::Duration::seconds(2));
        server.push(insert_of(&r));
    }
    let mut got = Vec::new();
    contents_until(&mut client, 120, &mut got, |g| g.len() as u128 >= many).await;

    // The pull succeeds at last: the row of the gap arrives, the one before it not again.
    rest.db.lock().unwrap().fail_reads = 0..0;
    let mut got = Vec::new();
    contents_until(&mut client, 120, &mut got, |g| g.contains(&json!("m2"))).await;
    got.extend(
        messages_within(&mut client, Duration::from_millis(500))
            .await
            .into_iter()
            .map(|m| m["content"].clone()),
    );
    assert_eq!(got, vec![json!("m2")], "delivered twice");
}

#[tokio::test]
async fn a_long_catch_up_goes_on_past_a_round_of_pages() {
    let c7 = Uuid::from_u128(7);
    let (rest, server, mut client, join_ref) = watching(&[c7]).await;
    let t0 = chrono::Utc::now();
    // One row a page: the gap holds more pages than a round reads.
    let n = 60u128;
    {
        let mut db = rest.db.lock().unwrap();
        db.max_rows = 1;
        for i in 0..n {
            let at = t0 + chrono::Duration::milliseconds(i as i64);
            db.messages.push(row_at(100 + i, c7, BOB, at));
        }
    }
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    let mut got = Vec::new();
    contents_until(&mut client, 30, &mut got, |g| g.len() as u128 >= n).await;
    got.extend(
        messages_within(&mut client, Duration::from_millis(300))
            .await
            .into_iter()
            .map(|m| m["content"].clone()),
    );
    let want: Vec<Value> = (0..n).map(|i| json!(format!("m{}", 100 + i))).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_failed_list_of_conversations_is_retried() {
    let (c7, c9) = (Uuid::from_u128(7), Uuid::from_u128(9));
    let (rest, mut server, mut client, join_ref) = watching(&[c7]).await;
    let t0 = chrono::Utc::now();

    // The channel is lost; a conversation and a message in it are created meanwhile; the
    // list after the rejoin fails (every retry of the transport too).
    let failures = 1 + crate::rest::http::MAX_RETRIES as usize;
    let gap = row_at(4, c9, BOB, t0 + chrono::Duration::seconds(1));
    {
        let mut db = rest.db.lock().unwrap();
        let lists = db.lists;
        db.fail_lists = lists..lists + failures;
        db.conversations.push(c9);
        db.messages.push(gap.clone());
    }
    server.push(json!({"topic": topic(), "event": "phx_close", "ref": join_ref, "payload": {}}));
    server.next("phx_join").await;
    server.next("presence").await;

    // A later list finds it: the client joins to watch it, and catches up on it.
    rejoined_watching(&mut server, &[c7, c9]).await;
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m4")
    );
}

/// A conversation a list finds after the join while the join already takes every message
/// (`FULL_JOIN` conversations): no rejoin comes to catch it up, so the list must.
#[tokio::test]
async fn a_conversation_found_by_a_list_past_a_full_join_is_caught_up() {
    let many: Vec<Uuid> = (1..=channel::FULL_JOIN as u128)
        .map(|i| Uuid::from_u128(0x1_0000 + i))
        .collect();
    let rest = Rest::start().await;
    rest.db.lock().unwrap().conversations = many.clone();
    let mut server = Server::start().await;
    let mut client = Client::start_with_rest(&server, Duration::from_secs(25), &rest.base);
    let (_, join) = server.next("phx_join").await;
    assert_eq!(
        join["payload"]["config"]["postgres_changes"][2]["filter"],
        Value::Null,
        "messages unfiltered"
    );
    client.event("cloud:realtime:connected").await;
    server.next("presence").await;

    // A conversation created with a message, announced by a change the client cannot place.
    let c = Uuid::from_u128(0x9_0000);
    let row = row_at(1, c, BOB, chrono::Utc::now());
    {
        let mut db = rest.db.lock().unwrap();
        db.conversations.push(c);
        db.messages.push(row);
    }
    server.push(conversation_update(json!({"id": c.to_string()})));
    assert_eq!(
        client.event("cloud:message:received").await["content"],
        json!("m1")
    );
}
