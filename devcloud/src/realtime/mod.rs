//! Supabase Realtime (`/realtime/v1`): the Phoenix-channels socket with broadcast, presence
//! and postgres_changes under per-subscriber row-level security. The wire reference is
//! `realtime-protocol.md`; realtime-js is the judge.
//!
//! - `serializer`: frames of vsn 1.0.0 and 2.0.0 (text and binary).
//! - `socket`: the upgrade (apikey, JWT) and one task per socket that owns its channels.
//! - `channel`: the join payload and its postgres_changes bindings; `filter`: their filters.
//! - `presence`, `broadcast`: per-topic state and fan-out, and the REST broadcast endpoint.
//! - `changes`: change capture (triggers → `realtime.changes`, LISTEN/NOTIFY as the wake-up)
//!   and dispatch; `rls`: which subscriber may see which row, one query per table per
//!   identity per batch.
//! - `limits`: what one channel may ask of presence before it is shut.
//! - `token`: the tokens of sockets and channels; `claims`: which of their claims the
//!   database's policies can read, so that sessions alike share one RLS evaluation.
//!
//! The [`Realtime`] hub is the registry every socket task and the dispatcher share: who is
//! joined to which topic, their presence, and a bounded queue into each socket task.

pub mod broadcast;
pub mod changes;
pub mod channel;
pub mod claims;
pub mod filter;
pub mod limits;
pub mod presence;
pub mod rls;
pub mod serializer;
pub mod socket;
pub mod token;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock, RwLock,
    },
};

use axum::{
    extract::ws::Utf8Bytes,
    routing::{get, post},
    Router,
};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Notify};

use self::{
    channel::Binding,
    claims::ClaimsRead,
    presence::Presence,
    serializer::{Body, Vsn},
    token::Auth,
};
use crate::state::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/websocket", get(socket::upgrade))
        .route("/websocket/", get(socket::upgrade))
        .route("/api/broadcast", post(broadcast::batch))
        .route(
            "/api/broadcast/{topic}/events/{event}",
            post(broadcast::single),
        )
}

/// Loads the captured tables and starts the change dispatcher (before the server listens,
/// so that the first join already knows which tables it may subscribe to).
pub async fn start(state: &SharedState, conn: String) -> Result<(), crate::db::DbError> {
    changes::start(state.clone(), conn).await
}

pub type MemberId = u64;

/// A user broadcast as it is fanned out.
#[derive(Debug)]
pub struct Broadcast {
    pub event: String,
    pub body: Body,
    /// Arrived as binary kind 3: v2 sockets get it back as kind 4.
    pub binary: bool,
    /// The JSON form `{"type":"broadcast","event",…,"payload",…}` (for text delivery).
    pub json: Option<String>,
}

impl Broadcast {
    pub fn from_json(event: String, payload: Value) -> Broadcast {
        let json = json!({"type": "broadcast", "event": event, "payload": payload}).to_string();
        Broadcast {
            event,
            body: Body::Json(payload),
            binary: false,
            json: Some(json),
        }
    }
}

/// What the hub hands a socket task for one of its channels.
#[derive(Debug, Clone)]
pub enum Push {
    Broadcast(Arc<Broadcast>),
    /// Pre-serialized `presence_diff` payload.
    PresenceDiff(Arc<str>),
    /// A `postgres_changes` frame (with this channel's ids).
    Change {
        frame: Arc<ChangeFrame>,
        /// Unix milliseconds of the commit, for the latency figure.
        commit_ms: i64,
    },
}

/// One change's `postgres_changes` frame for one topic, encoded once per serializer for
/// every socket of the topic: a fan-out sends each of them the same bytes.
#[derive(Debug)]
pub struct ChangeFrame {
    /// The wire topic (`realtime:…`).
    pub topic: String,
    pub payload: Arc<str>,
    encoded: [OnceLock<Utf8Bytes>; 2],
}

impl ChangeFrame {
    pub fn new(topic: String, payload: Arc<str>) -> ChangeFrame {
        ChangeFrame {
            topic,
            payload,
            encoded: Default::default(),
        }
    }

    pub fn encoded(&self, vsn: Vsn) -> Utf8Bytes {
        let slot = &self.encoded[usize::from(vsn == Vsn::V2)];
        slot.get_or_init(|| {
            let text = serializer::encode_text(
                vsn,
                None,
                None,
                &self.topic,
                "postgres_changes",
                &self.payload,
            );
            Utf8Bytes::from(text)
        })
        .clone()
    }
}

/// A bounded queue into one socket task; a socket that lets it fill up is closed (a slow
/// reader must not grow the server's memory).
#[derive(Clone)]
pub struct SocketHandle {
    tx: mpsc::Sender<(MemberId, Push)>,
    kill: Arc<Notify>,
}

impl SocketHandle {
    pub fn new(capacity: usize) -> (SocketHandle, mpsc::Receiver<(MemberId, Push)>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity);
        let kill = Arc::new(Notify::new());
        (
            SocketHandle {
                tx,
                kill: kill.clone(),
            },
            rx,
            kill,
        )
    }
    pub fn push(&self, member: MemberId, push: Push) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send((member, push)) {
            tracing::warn!("a realtime socket is not reading; closing it");
            self.kill.notify_one();
        }
    }
}

pub struct Member {
    pub socket: SocketHandle,
    pub self_broadcast: bool,
    pub auth: Arc<Auth>,
    /// What RLS decisions for this member depend on (the role and the claims the policies
    /// read); set by [`Realtime::join`].
    pub identity: Arc<str>,
    pub bindings: Arc<Vec<Binding>>,
}

#[derive(Default)]
struct Topic {
    members: HashMap<MemberId, Member>,
    presence: Presence,
}

/// A postgres_changes subscriber as the dispatcher sees it.
pub struct Subscriber {
    pub member: MemberId,
    pub topic: String,
    pub socket: SocketHandle,
    pub auth: Arc<Auth>,
    pub identity: Arc<str>,
    pub bindings: Arc<Vec<Binding>>,
}

#[derive(Default)]
pub struct Metrics {
    pub sockets: AtomicU64,
    pub channels: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub changes: AtomicU64,
    /// RLS probes run: one per identity and table per batch.
    pub rls_checks: AtomicU64,
    /// Commit to the socket's write, of the latest change sent, in microseconds.
    pub latency_us: AtomicU64,
}

#[derive(Default)]
pub struct Realtime {
    topics: Mutex<HashMap<String, Topic>>,
    next_member: AtomicU64,
    pub metrics: Metrics,
    /// `(schema, table)` of every table with change capture.
    captured: RwLock<BTreeSet<(String, String)>>,
    claims_read: RwLock<ClaimsRead>,
}

/// The registry key: public and private channels of one name are different topics.
pub fn topic_key(topic: &str, private: bool) -> String {
    if private {
        format!("private:{topic}")
    } else {
        topic.to_string()
    }
}

/// The wire topic of a [`topic_key`].
pub fn wire_topic(key: &str) -> &str {
    key.strip_prefix("private:").unwrap_or(key)
}

impl Realtime {
    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `member.identity` is set here, under the topics' lock, as [`Realtime::set_claims_read`]
    /// sets every member's: a member never keeps one made from claims read before a reload.
    pub fn join(&self, key: &str, mut member: Member) -> MemberId {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed) + 1;
        let mut topics = self.topics();
        member.identity = self.identity(&member.auth);
        topics
            .entry(key.to_string())
            .or_default()
            .members
            .insert(id, member);
        self.metrics.channels.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Leave, close or a dropped socket: the member goes, and so does its presence.
    pub fn leave(&self, key: &str, member: MemberId) {
        let mut topics = self.topics();
        let Some(topic) = topics.get_mut(key) else {
            return;
        };
        if topic.members.remove(&member).is_some() {
            self.metrics.channels.fetch_sub(1, Ordering::Relaxed);
        }
        let diff = topic.presence.untrack(member);
        if !diff.is_empty() {
            fan_out_diff(topic, &diff);
        }
        if topic.members.is_empty() && topic.presence.is_empty() {
            topics.remove(key);
        }
    }

    /// To every member of the topic but the sender (unless it asked for `self`).
    pub fn broadcast(&self, key: &str, from: Option<MemberId>, b: Arc<Broadcast>) {
        let topics = self.topics();
        let Some(topic) = topics.get(key) else {
            return;
        };
        for (id, m) in &topic.members {
            if Some(*id) == from && !m.self_broadcast {
                continue;
            }
            m.socket.push(*id, Push::Broadcast(b.clone()));
        }
    }

    pub fn track(&self, key: &str, member: MemberId, presence_key: &str, meta: Map<String, Value>) {
        let mut topics = self.topics();
        let Some(topic) = topics.get_mut(key) else {
            return;
        };
        let diff = topic.presence.track(member, presence_key, meta);
        fan_out_diff(topic, &diff);
    }

    pub fn untrack(&self, key: &str, member: MemberId) {
        let mut topics = self.topics();
        let Some(topic) = topics.get_mut(key) else {
            return;
        };
        let diff = topic.presence.untrack(member);
        if !diff.is_empty() {
            fan_out_diff(topic, &diff);
        }
    }

    pub fn presence_state(&self, key: &str) -> Value {
        self.topics()
            .get(key)
            .map(|t| t.presence.state())
            .unwrap_or_else(|| json!({}))
    }

    /// A channel's new token: its claims decide RLS from the next change on.
    pub fn set_auth(&self, key: &str, member: MemberId, auth: Arc<Auth>) {
        let mut topics = self.topics();
        if let Some(m) = topics.get_mut(key).and_then(|t| t.members.get_mut(&member)) {
            m.identity = self.identity(&auth);
            m.auth = auth;
        }
    }

    /// The role and the claims the database's policies can read: members with the same
    /// identity see the same rows. Lock order: the topics, then the claims read.
    fn identity(&self, auth: &Auth) -> Arc<str> {
        let read = self.claims_read.read().unwrap_or_else(|p| p.into_inner());
        format!("{}\n{}", auth.role, read.identity(&auth.claims)).into()
    }

    /// New claims read (at start, and after DDL): every member's identity is made again.
    pub fn set_claims_read(&self, read: ClaimsRead) {
        let mut topics = self.topics();
        *self.claims_read.write().unwrap_or_else(|p| p.into_inner()) = read;
        for m in topics.values_mut().flat_map(|t| t.members.values_mut()) {
            m.identity = self.identity(&m.auth);
        }
    }

    /// Every member with postgres_changes bindings, for one dispatch batch.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        let topics = self.topics();
        let mut out = Vec::new();
        for (key, topic) in topics.iter() {
            for (id, m) in &topic.members {
                if m.bindings.is_empty() {
                    continue;
                }
                out.push(Subscriber {
                    member: *id,
                    topic: key.clone(),
                    socket: m.socket.clone(),
                    auth: m.auth.clone(),
                    identity: m.identity.clone(),
                    bindings: m.bindings.clone(),
                });
            }
        }
        out
    }

    pub fn is_captured(&self, schema: &str, table: &str) -> bool {
        let captured = self.captured.read().unwrap_or_else(|p| p.into_inner());
        if table == "*" {
            return captured.iter().any(|(s, _)| s == schema);
        }
        captured.contains(&(schema.to_string(), table.to_string()))
    }

    pub fn set_captured(&self, tables: BTreeSet<(String, String)>) {
        *self.captured.write().unwrap_or_else(|p| p.into_inner()) = tables;
    }

    /// The realtime part of `/devcloud/v1/stats`.
    pub fn stats(&self) -> Value {
        let m = &self.metrics;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "sockets": get(&m.sockets),
            "channels": get(&m.channels),
            "framesIn": get(&m.frames_in),
            "framesOut": get(&m.frames_out),
            "changes": get(&m.changes),
            "rlsChecks": get(&m.rls_checks),
            "lastChangeLatencyMs": get(&m.latency_us) as f64 / 1000.0,
        })
    }

    pub fn reset_stats(&self) {
        let m = &self.metrics;
        for a in [
            &m.frames_in,
            &m.frames_out,
            &m.changes,
            &m.rls_checks,
            &m.latency_us,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

fn fan_out_diff(topic: &Topic, diff: &presence::Diff) {
    let payload: Arc<str> = diff.to_json().to_string().into();
    for (id, m) in &topic.members {
        m.socket.push(*id, Push::PresenceDiff(payload.clone()));
    }
}
