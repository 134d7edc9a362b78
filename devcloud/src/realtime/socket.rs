//! `GET /realtime/v1/websocket`: the upgrade checks the API key (Realtime's `UserSocket`
//! `connect/3`), then one task owns the socket: it reads frames, answers heartbeats, joins
//! and leaves channels, and writes what the hub queues for its channels. A socket silent for
//! 60 s (`--realtime-timeout-ms`) is closed (Phoenix's idle timeout), and so is each channel
//! whose token expires.
//!
//! What a client controls is bounded per socket: channels (`--realtime-max-channels`),
//! refused joins waiting for their delayed reply (as many; beyond that a refused join gets
//! none, and the client's join timeout retries it), postgres_changes entries
//! (`--realtime-max-postgres-changes`), and per channel the presence calls and the tracked
//! payload's size ([`limits`](super::limits)).

use std::{
    collections::{HashMap, VecDeque},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures_util::SinkExt as _;
use serde_json::{json, Value};
use tokio::time::{sleep_until, timeout, Instant};

use super::{
    channel::{self, Binding, JoinConfig},
    limits::{self, RateWindow},
    serializer::{self, Body, Incoming, Payload, Vsn},
    token::{self, Auth},
    topic_key, Broadcast, Member, MemberId, Push, SocketHandle,
};
use crate::{jwt, state::SharedState};

const JOIN_ERROR_DELAY: Duration = Duration::from_secs(5);
const AUTH_ERROR_DELAY: Duration = Duration::from_secs(2);
/// How long a closing socket waits for its close frame to be taken.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
const QUEUE: usize = 16_384;
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// tungstenite zeroes the free part of its read buffer before every read attempt, and a
/// socket task attempts one each time it wakes, for a push as well (the default 128 KiB made
/// that a fifth of the server's CPU in a fan-out). Clients send small frames; a larger one
/// grows the buffer as it needs.
const READ_BUFFER: usize = 8 * 1024;

pub async fn upgrade(
    State(state): State<SharedState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or(params.get("apikey").map(String::as_str))
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        let body = Json(json!({"error": "API key is missing"}));
        return (StatusCode::UNAUTHORIZED, body).into_response();
    };
    let auth = match token::verify(&state.keys, key) {
        Ok(a) => a,
        Err(e) => {
            // Realtime delays a refused connect so that a misconfigured client cannot spin.
            tokio::time::sleep(AUTH_ERROR_DELAY).await;
            let body = Json(json!({"error": e.to_string()}));
            return (StatusCode::FORBIDDEN, body).into_response();
        }
    };
    let Some(vsn) = Vsn::parse(params.get("vsn").map(String::as_str)) else {
        let body = Json(json!({"error": "unsupported serializer version"}));
        return (StatusCode::BAD_REQUEST, body).into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let token = key.to_string();
    ws.max_message_size(MAX_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let metrics = &state.realtime.metrics;
            metrics.sockets.fetch_add(1, Ordering::Relaxed);
            state.stats.realtime_opened();
            let mut conn = Conn::new(state.clone(), vsn, token, auth);
            conn.run(socket).await;
            conn.close_all();
            state.stats.realtime_closed();
            state
                .realtime
                .metrics
                .sockets
                .fetch_sub(1, Ordering::Relaxed);
        })
}

/// One joined channel of this socket.
struct Chan {
    join_ref: Option<String>,
    key: String,
    member: MemberId,
    config: JoinConfig,
    presence_key: String,
    bindings: usize,
    /// The token the channel acts with (to spot an unchanged refresh), never logged.
    token: String,
    exp: i64,
    presence_calls: RateWindow,
}

struct Conn {
    state: SharedState,
    vsn: Vsn,
    socket_token: String,
    socket_auth: Auth,
    handle: SocketHandle,
    rx: tokio::sync::mpsc::Receiver<(MemberId, Push)>,
    kill: Arc<tokio::sync::Notify>,
    /// By wire topic.
    channels: HashMap<String, Chan>,
    /// Member id → wire topic, to route the hub's pushes.
    members: HashMap<MemberId, String>,
    /// Refused joins' replies, due in this order (each after the same pause).
    refusals: VecDeque<(Instant, String)>,
    out: Vec<Message>,
}

fn reply(status: &str, response: Value) -> String {
    json!({"status": status, "response": response}).to_string()
}

fn system(extension: &str, status: &str, message: &str, channel: &str) -> String {
    json!({"extension": extension, "status": status, "message": message, "channel": channel})
        .to_string()
}

impl Conn {
    fn new(state: SharedState, vsn: Vsn, socket_token: String, socket_auth: Auth) -> Conn {
        let (handle, rx, kill) = SocketHandle::new(QUEUE);
        Conn {
            state,
            vsn,
            socket_token,
            socket_auth,
            handle,
            rx,
            kill,
            channels: HashMap::new(),
            members: HashMap::new(),
            refusals: VecDeque::new(),
            out: Vec::new(),
        }
    }

    fn text(
        &mut self,
        join_ref: Option<&str>,
        reference: Option<&str>,
        topic: &str,
        event: &str,
        payload: &str,
    ) {
        let frame = serializer::encode_text(self.vsn, join_ref, reference, topic, event, payload);
        self.out.push(Message::text(frame));
    }

    async fn flush(&mut self, ws: &mut WebSocket) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let n = self.out.len() as u64;
        for m in self.out.drain(..) {
            if ws.feed(m).await.is_err() {
                return false;
            }
        }
        self.state
            .realtime
            .metrics
            .frames_out
            .fetch_add(n, Ordering::Relaxed);
        ws.flush().await.is_ok()
    }

    fn next_expiry(&self) -> Option<i64> {
        self.channels.values().map(|c| c.exp).min()
    }

    async fn run(&mut self, mut ws: WebSocket) {
        let idle = self.state.settings.realtime_timeout;
        let mut deadline = Instant::now() + idle;
        loop {
            let expiry = self.next_expiry();
            let expiry_at = expiry.map(|exp| {
                let secs = (exp - jwt::now()).max(0) as u64;
                Instant::now() + Duration::from_secs(secs)
            });
            let refusal_at = self.refusals.front().map(|(at, _)| *at);
            tokio::select! {
                msg = ws.recv() => {
                    let Some(Ok(msg)) = msg else { return };
                    deadline = Instant::now() + idle;
                    match msg {
                        Message::Text(t) => self.on_text(t.as_str()),
                        Message::Binary(b) => self.on_binary(&b),
                        Message::Close(_) => return,
                        Message::Ping(_) | Message::Pong(_) => continue,
                    }
                }
                Some((member, push)) = self.rx.recv() => {
                    self.on_push(member, push);
                    // Drain what is queued so that one flush carries it.
                    while self.out.len() < 256 {
                        match self.rx.try_recv() {
                            Ok((member, push)) => self.on_push(member, push),
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until(deadline) => {
                    close(&mut ws, 1000, "idle timeout").await;
                    return;
                }
                _ = async { sleep_until(expiry_at.unwrap_or(deadline)).await }, if expiry_at.is_some() => {
                    self.expire_channels();
                }
                _ = async { sleep_until(refusal_at.unwrap_or(deadline)).await }, if refusal_at.is_some() => {
                    self.send_refusals();
                }
                _ = self.kill.notified() => {
                    close(&mut ws, 1011, "too slow").await;
                    return;
                }
            }
            // A peer that stops reading fills the socket's buffers, and a write then waits
            // for as long as the peer lives: no longer than the idle timeout, or the task
            // (with its presence and its queue) would outlive the client for good.
            if !matches!(timeout(idle, self.flush(&mut ws)).await, Ok(true)) {
                return;
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        self.state
            .realtime
            .metrics
            .frames_in
            .fetch_add(1, Ordering::Relaxed);
        match serializer::decode_text(self.vsn, text) {
            Ok(f) => self.on_frame(f),
            Err(e) => tracing::debug!(error = %e, "dropping a realtime frame"),
        }
    }

    fn on_binary(&mut self, data: &[u8]) {
        self.state
            .realtime
            .metrics
            .frames_in
            .fetch_add(1, Ordering::Relaxed);
        match serializer::decode_binary(self.vsn, data) {
            Ok(f) => self.on_frame(f),
            Err(e) => tracing::debug!(error = %e, "dropping a binary realtime frame"),
        }
    }

    fn reply_to(&mut self, f: &Incoming, status: &str, response: Value) {
        let payload = reply(status, response);
        self.text(
            f.join_ref.as_deref(),
            f.reference.as_deref(),
            &f.topic,
            "phx_reply",
            &payload,
        );
    }

    fn on_frame(&mut self, f: Incoming) {
        if f.topic == "phoenix" && f.event == "heartbeat" {
            return self.reply_to(&f, "ok", json!({}));
        }
        if f.event == "phx_join" {
            return self.join(f);
        }
        let Some(chan) = self.channels.get(&f.topic) else {
            return self.reply_to(&f, "error", json!({"reason": "unmatched topic"}));
        };
        // A push of an earlier join of this topic (Phoenix ignores stale join refs).
        if f.join_ref.is_some() && f.join_ref != chan.join_ref {
            return;
        }
        match f.event.as_str() {
            "phx_leave" => {
                self.reply_to(&f, "ok", json!({}));
                self.close_channel(&f.topic);
            }
            "broadcast" => self.broadcast(f),
            "presence" => self.presence(f),
            "access_token" => self.access_token(f),
            _ => {}
        }
    }

    fn join(&mut self, f: Incoming) {
        let Some(sub) = f.topic.strip_prefix("realtime:").map(str::to_string) else {
            return self.reply_to(&f, "error", json!({"reason": "unmatched topic"}));
        };
        let payload = match &f.payload {
            Payload::Json(v) => v.clone(),
            Payload::Broadcast { .. } => Value::Null,
        };
        let config = JoinConfig::parse(&payload);
        let token = config
            .access_token
            .clone()
            .filter(|t| !t.starts_with("sb_"))
            .unwrap_or_else(|| self.socket_token.clone());
        let auth = if token == self.socket_token {
            Ok(self.socket_auth.clone())
        } else {
            token::verify(&self.state.keys, &token)
        };
        let auth = match auth.and_then(|a| a.live(jwt::now())) {
            Ok(a) if config.private && a.role == "anon" => Err(format!(
                "Unauthorized: You do not have permissions to read from this Channel topic: {sub}"
            )),
            Ok(a) => Ok(a),
            Err(e) => Err(e.join_reason()),
        };
        if self.channels.contains_key(&f.topic) {
            // A duplicate join closes the old channel first (Phoenix).
            self.close_channel(&f.topic);
        }
        let auth = match auth {
            Ok(a) if self.channels.len() < self.state.settings.realtime_max_channels => a,
            Ok(_) => {
                return self.join_error(&f, "ChannelRateLimitReached: Too many channels".into())
            }
            Err(reason) => return self.join_error(&f, reason),
        };
        let (bindings, pg_status) = self.bindings(&config);
        let key = topic_key(&f.topic, config.private);
        let presence_key = if config.presence_key.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            config.presence_key.clone()
        };
        let binding_count = bindings.len();
        let member = self.state.realtime.join(
            &key,
            Member {
                socket: self.handle.clone(),
                self_broadcast: config.broadcast_self,
                // Made by `join`, under its lock.
                identity: Arc::default(),
                auth: Arc::new(auth.clone()),
                bindings: Arc::new(bindings),
            },
        );
        self.reply_to(&f, "ok", channel::join_response(&config));
        let join_ref = f.join_ref.clone();
        if config.presence_enabled {
            let state = self.state.realtime.presence_state(&key).to_string();
            self.text(
                join_ref.as_deref(),
                None,
                &f.topic,
                "presence_state",
                &state,
            );
        }
        if config.replication_ready {
            // Broadcasts need no replication here: the hub is ready as soon as the join is.
            let payload = system("system", "ok", "Replication connection established", &sub);
            self.text(join_ref.as_deref(), None, &f.topic, "system", &payload);
        }
        if let Some((status, message)) = pg_status {
            let payload = system("postgres_changes", status, &message, &sub);
            self.text(join_ref.as_deref(), None, &f.topic, "system", &payload);
        }
        self.members.insert(member, f.topic.clone());
        self.channels.insert(
            f.topic.clone(),
            Chan {
                join_ref,
                key,
                member,
                presence_key,
                bindings: binding_count,
                config,
                token,
                exp: auth.exp,
                presence_calls: RateWindow::presence(),
            },
        );
    }

    /// The bindings of a join and the `system` message about them (none without entries). A
    /// bad entry subscribes none of them, and the join still succeeds.
    fn bindings(&self, config: &JoinConfig) -> (Vec<Binding>, Option<(&'static str, String)>) {
        if config.postgres_changes.is_empty() {
            return (Vec::new(), None);
        }
        let max = self.state.settings.realtime_max_postgres_changes;
        let held: usize = self.channels.values().map(|c| c.bindings).sum();
        if held.saturating_add(config.postgres_changes.len()) > max {
            let msg =
                format!("Too many postgres_changes subscriptions on this socket (at most {max})");
            return (Vec::new(), Some(("error", msg)));
        }
        let mut out = Vec::new();
        for entry in &config.postgres_changes {
            let b = match Binding::parse(entry) {
                Ok(b) => b,
                Err(e) => {
                    let msg = format!("Error parsing `filter` params: {e}");
                    return (Vec::new(), Some(("error", msg)));
                }
            };
            if !self.state.realtime.is_captured(&b.schema, &b.table) {
                let filter = entry.get("filter").and_then(Value::as_str).unwrap_or("");
                let msg = format!(
                    "Unable to subscribe to changes with given parameters. Please check Realtime \
                     is enabled for the given connect parameters: [schema: {}, table: {}, \
                     filters: [{}]]",
                    b.schema, b.table, filter
                );
                return (Vec::new(), Some(("error", msg)));
            }
            out.push(b);
        }
        (out, Some(("ok", "Subscribed to PostgreSQL".to_string())))
    }

    /// Realtime answers a refused join only after a pause, so that rejoins do not spin. A
    /// client never has more refusals pending than it may have channels, unless it spins
    /// itself: those beyond get no reply.
    fn join_error(&mut self, f: &Incoming, reason: String) {
        if self.refusals.len() >= self.state.settings.realtime_max_channels {
            tracing::debug!("too many refused joins pending on a realtime socket; dropping one");
            return;
        }
        let frame = serializer::encode_text(
            self.vsn,
            f.join_ref.as_deref(),
            f.reference.as_deref(),
            &f.topic,
            "phx_reply",
            &reply("error", json!({ "reason": reason })),
        );
        self.refusals
            .push_back((Instant::now() + JOIN_ERROR_DELAY, frame));
    }

    fn send_refusals(&mut self) {
        let now = Instant::now();
        while self.refusals.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, frame)) = self.refusals.pop_front() {
                self.out.push(Message::text(frame));
            }
        }
    }

    fn broadcast(&mut self, f: Incoming) {
        let Some(chan) = self.channels.get(&f.topic) else {
            return;
        };
        let b = match f.payload.clone() {
            Payload::Broadcast { event, body } => Broadcast {
                event,
                body,
                binary: true,
                json: None,
            },
            Payload::Json(v) => {
                let Some(event) = v.get("event").and_then(Value::as_str) else {
                    return;
                };
                let body = v.get("payload").cloned().unwrap_or(Value::Null);
                Broadcast {
                    event: event.to_string(),
                    body: Body::Json(body),
                    binary: false,
                    json: Some(v.to_string()),
                }
            }
        };
        // A private channel's write needs a signed-in (or service) role.
        let may_write = !chan.config.private || self.role_of(chan) != "anon";
        let (key, member, ack) = (chan.key.clone(), chan.member, chan.config.broadcast_ack);
        if may_write {
            self.state
                .realtime
                .broadcast(&key, Some(member), Arc::new(b));
        }
        if ack {
            self.reply_to(&f, "ok", json!({}));
        }
    }

    fn role_of(&self, chan: &Chan) -> String {
        if chan.token == self.socket_token {
            return self.socket_auth.role.clone();
        }
        token::verify(&self.state.keys, &chan.token)
            .map(|a| a.role)
            .unwrap_or_default()
    }

    fn presence(&mut self, f: Incoming) {
        let Some(chan) = self.channels.get(&f.topic) else {
            return;
        };
        let Payload::Json(v) = &f.payload else {
            return;
        };
        let (key, member, pkey) = (chan.key.clone(), chan.member, chan.presence_key.clone());
        // Realtime counts every call that names an event, before looking at it.
        if v.get("event").is_some() {
            let allowed = self
                .channels
                .get_mut(&f.topic)
                .is_some_and(|c| c.presence_calls.allow(std::time::Instant::now()));
            if !allowed {
                return self.shutdown_channel(&f.topic, "Client presence rate limit exceeded");
            }
        }
        match v.get("event").and_then(Value::as_str) {
            Some("track") => match v.get("payload") {
                Some(Value::Object(meta)) => {
                    let size = serde_json::to_string(meta).map_or(usize::MAX, |t| t.len());
                    if size > limits::MAX_TRACK_BYTES {
                        return self.shutdown_channel(&f.topic, "Track message size exceeded");
                    }
                    self.state.realtime.track(&key, member, &pkey, meta.clone());
                    self.reply_to(&f, "ok", json!({}));
                }
                _ => self.reply_to(
                    &f,
                    "error",
                    json!({"reason": "Presence track payload must be a map"}),
                ),
            },
            Some("untrack") => {
                self.state.realtime.untrack(&key, member);
                self.reply_to(&f, "ok", json!({}));
            }
            _ => self.reply_to(&f, "error", json!({"reason": "unknown presence event"})),
        }
    }

    /// Never replied to; a token that fails closes the channel.
    fn access_token(&mut self, f: Incoming) {
        let Payload::Json(v) = &f.payload else {
            return;
        };
        let Some(new) = v.get("access_token").and_then(Value::as_str) else {
            return;
        };
        let Some(chan) = self.channels.get(&f.topic) else {
            return;
        };
        if new.starts_with("sb_") || new == chan.token {
            return;
        }
        match token::verify(&self.state.keys, new).and_then(|a| a.live(jwt::now())) {
            Ok(auth) if !(chan.config.private && auth.role == "anon") => {
                let (key, member, bindings) = (chan.key.clone(), chan.member, chan.bindings);
                let join_ref = chan.join_ref.clone();
                self.state
                    .realtime
                    .set_auth(&key, member, Arc::new(auth.clone()));
                if let Some(chan) = self.channels.get_mut(&f.topic) {
                    chan.token = new.to_string();
                    chan.exp = auth.exp;
                }
                if bindings > 0 {
                    let sub = f.topic.trim_start_matches("realtime:");
                    let payload = system("postgres_changes", "ok", "Subscribed to PostgreSQL", sub);
                    self.text(join_ref.as_deref(), None, &f.topic, "system", &payload);
                }
            }
            Ok(_) => self.shutdown_channel(
                &f.topic,
                "You do not have permissions to read from this Channel topic",
            ),
            Err(e) => self.shutdown_channel(&f.topic, &e.to_string()),
        }
    }

    fn expire_channels(&mut self) {
        let now = jwt::now();
        let expired: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.exp <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for topic in expired {
            self.shutdown_channel(&topic, "Token has expired 0 seconds ago");
        }
    }

    /// A server-initiated close: the `system` error, then `phx_close`.
    fn shutdown_channel(&mut self, topic: &str, message: &str) {
        let Some(chan) = self.channels.get(topic) else {
            return;
        };
        let join_ref = chan.join_ref.clone();
        let sub = topic.trim_start_matches("realtime:");
        let payload = system("system", "error", message, sub);
        self.text(join_ref.as_deref(), None, topic, "system", &payload);
        self.close_channel(topic);
    }

    /// `phx_close` carries the join ref as its ref, and the channel leaves the hub.
    fn close_channel(&mut self, topic: &str) {
        let Some(chan) = self.channels.remove(topic) else {
            return;
        };
        self.members.remove(&chan.member);
        self.state.realtime.leave(&chan.key, chan.member);
        let jr = chan.join_ref.as_deref();
        self.text(jr, jr, topic, "phx_close", "{}");
    }

    fn close_all(&mut self) {
        for (_, chan) in self.channels.drain() {
            self.state.realtime.leave(&chan.key, chan.member);
        }
        self.members.clear();
    }

    fn on_push(&mut self, member: MemberId, push: Push) {
        let topic = match self.members.get(&member) {
            Some(t) => t.clone(),
            // A channel that has left since.
            None => return,
        };
        match push {
            Push::Broadcast(b) => self.deliver_broadcast(&topic, &b),
            Push::PresenceDiff(p) => self.text(None, None, &topic, "presence_diff", &p),
            Push::Change { frame, commit_ms } => {
                if frame.topic == topic {
                    self.out.push(Message::Text(frame.encoded(self.vsn)));
                } else {
                    self.text(None, None, &topic, "postgres_changes", &frame.payload);
                }
                let now_us = chrono::Utc::now().timestamp_micros();
                let latency = (now_us - commit_ms * 1000).max(0) as u64;
                let m = &self.state.realtime.metrics;
                m.latency_us.store(latency, Ordering::Relaxed);
                m.changes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn deliver_broadcast(&mut self, topic: &str, b: &Broadcast) {
        if b.binary && self.vsn == Vsn::V2 {
            if let Some(frame) = serializer::encode_broadcast_binary(topic, &b.event, &b.body) {
                self.out.push(Message::binary(frame));
            }
            return;
        }
        let json = match (&b.json, &b.body) {
            (Some(j), _) => j.clone(),
            (None, Body::Json(v)) => {
                json!({"type": "broadcast", "event": b.event, "payload": v}).to_string()
            }
            // Raw bytes have no JSON form: a v1 socket cannot receive them.
            (None, Body::Raw(_)) => return,
        };
        self.text(None, None, topic, "broadcast", &json);
    }
}

/// Sends a close frame, if the peer takes it soon: one that reads nothing must not hold the
/// task.
async fn close(ws: &mut WebSocket, code: u16, reason: &str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }));
    let _ = timeout(CLOSE_WAIT, ws.send(frame)).await;
}
