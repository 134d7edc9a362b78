//! The workspace channel, `realtime:workspace:{id}`: what it subscribes to, its join and
//! rejoin bookkeeping, and which of its bindings a `postgres_changes` frame belongs to.
//! No I/O: the socket task sends what this decides.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    backoff::{Backoff, REJOIN},
    frame::{ChangeData, JoinResponse, Reply, ServerBinding},
    presence::Presence,
};

/// Above this many conversations the messages binding goes without a filter (row-level
/// security still limits it to what the user may read) and rows are filtered here, so a
/// join never carries an unbounded filter.
pub const MAX_FILTERED_CONVERSATIONS: usize = 100;

/// The most bindings watching conversations' deletions (each up to
/// `MAX_FILTERED_CONVERSATIONS` ids), so a join stays well inside a server's 100
/// postgres_changes entries per socket.
pub const MAX_DELETION_BINDINGS: usize = 20;

/// From this many conversations a join takes every message unfiltered and watches as many
/// deletions as it may: a new conversation needs no rejoin (its messages arrive through the
/// unfiltered binding; its deletion, as those of the others beyond the bindings, is found
/// by the list after the next gap).
pub const FULL_JOIN: usize = MAX_FILTERED_CONVERSATIONS * MAX_DELETION_BINDINGS;

/// The most conversations watched from live INSERTs: each is a frame from the server, and
/// each costs a little memory and a catch-up at every gap. A workspace larger than this
/// keeps those watched; messages of one created beyond it are not delivered live (the host
/// still reads them when it pulls the conversation).
pub const MAX_WATCHED: usize = 10_000;

/// How long a join may wait for its reply (Phoenix's push timeout).
pub const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What this client tracks as its presence (cloud-api.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Me {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Workspaces,
    Conversations,
    Messages,
    WorkspaceFiles,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Workspaces => "workspaces",
            Table::Conversations => "conversations",
            Table::Messages => "messages",
            Table::WorkspaceFiles => "workspace_files",
        }
    }
}

/// A postgres_changes binding as sent in the join.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub table: Table,
    pub event: &'static str,
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not joined; `rejoin_at` says when to try (None: at once, when connected).
    Closed {
        rejoin_at: Option<Instant>,
    },
    Joining {
        join_ref: String,
        deadline: Instant,
    },
    Joined {
        join_ref: String,
    },
}

pub struct Channel {
    pub topic: String,
    pub workspace_id: Uuid,
    pub me: Me,
    conversations: BTreeSet<Uuid>,
    pub state: State,
    bindings: Vec<Binding>,
    /// The conversations watched when the current join was made.
    joined_with: usize,
    /// The server's id for each binding of the current join, in binding order.
    ids: Vec<i64>,
    pub presence: Presence,
    attempts: u32,
    /// The token of the current join, or the last `access_token` sent on it.
    pub token: Option<String>,
    /// Set when the last join or close was about the token: rejoin with a renewed one.
    pub token_rejected: bool,
}

impl Channel {
    pub fn new(workspace_id: Uuid, me: Me) -> Channel {
        Channel {
            topic: format!("realtime:workspace:{workspace_id}"),
            workspace_id,
            me,
            conversations: BTreeSet::new(),
            state: State::Closed { rejoin_at: None },
            bindings: Vec::new(),
            joined_with: 0,
            ids: Vec::new(),
            presence: Presence::default(),
            attempts: 0,
            token: None,
            token_rejected: false,
        }
    }

    pub fn conversations(&self) -> &BTreeSet<Uuid> {
        &self.conversations
    }

    /// Replaces the conversation set; returns whether it changed (then the channel must
    /// rejoin to change its messages binding).
    pub fn set_conversations(&mut self, set: BTreeSet<Uuid>) -> bool {
        if set == self.conversations {
            return false;
        }
        self.conversations = set;
        true
    }

    pub fn bindings_for(&self) -> Vec<Binding> {
        let ws = self.workspace_id;
        let mut b = vec![
            Binding {
                table: Table::Workspaces,
                event: "*",
                filter: Some(format!("id=eq.{ws}")),
            },
            Binding {
                table: Table::Conversations,
                event: "*",
                filter: Some(format!("workspace_id=eq.{ws}")),
            },
        ];
        if !self.conversations.is_empty() {
            let filter = (self.conversations.len() <= MAX_FILTERED_CONVERSATIONS).then(|| {
                let ids: Vec<String> = self.conversations.iter().map(Uuid::to_string).collect();
                format!("conversation_id=in.({})", ids.join(","))
            });
            b.push(Binding {
                table: Table::Messages,
                event: "INSERT",
                filter,
            });
        }
        // File sync reacts to another machine's upload or delete (the metadata row).
        b.push(Binding {
            table: Table::WorkspaceFiles,
            event: "*",
            filter: Some(format!("workspace_id=eq.{ws}")),
        });
        b.extend(self.deletion_bindings());
        b
    }

    /// A DELETE's filters are evaluated on the old row's primary key alone (it is all its
    /// `old_record` holds on an RLS table), so the `workspace_id` binding above never sees
    /// one: the known conversations are watched by id, at most the server's 100 `in` values
    /// per binding. Never unfiltered, which would bring the id of every conversation any
    /// tenant deletes (a DELETE is not checked against policies). Beyond
    /// `MAX_DELETION_BINDINGS` the rest are found gone by the list after the next gap.
    fn deletion_bindings(&self) -> Vec<Binding> {
        let ids: Vec<String> = self.conversations.iter().map(Uuid::to_string).collect();
        ids.chunks(MAX_FILTERED_CONVERSATIONS)
            .take(MAX_DELETION_BINDINGS)
            .map(|chunk| Binding {
                table: Table::Conversations,
                event: "DELETE",
                filter: Some(format!("id=in.({})", chunk.join(","))),
            })
            .collect()
    }

    /// Whether the join in place takes a new conversation as well as a rejoin would (see
    /// [`FULL_JOIN`]).
    pub fn join_takes_new_conversations(&self) -> bool {
        self.joined_with >= FULL_JOIN
    }

    pub fn is_joined(&self) -> bool {
        matches!(self.state, State::Joined { .. })
    }

    pub fn join_ref(&self) -> Option<&str> {
        match &self.state {
            State::Joining { join_ref, .. } | State::Joined { join_ref } => Some(join_ref),
            State::Closed { .. } => None,
        }
    }

    /// Starts a join with `join_ref`; returns its payload.
    pub fn join(&mut self, join_ref: String, token: Option<&str>, now: Instant) -> Value {
        self.bindings = self.bindings_for();
        self.joined_with = self.conversations.len();
        self.ids.clear();
        self.presence.clear();
        self.token = token.map(String::from);
        self.state = State::Joining {
            join_ref,
            deadline: now + JOIN_TIMEOUT,
        };
        let changes: Vec<Value> = self
            .bindings
            .iter()
            .map(|b| {
                let mut v = json!({"event": b.event, "schema": "public", "table": b.table.name()});
                if let Some(f) = &b.filter {
                    v["filter"] = json!(f);
                }
                v
            })
            .collect();
        let mut payload = json!({
            "config": {
                "broadcast": {"ack": false, "self": false},
                "presence": {"key": self.me.user_id, "enabled": true},
                "postgres_changes": changes,
                "private": false,
            }
        });
        if let Some(t) = token {
            payload["access_token"] = json!(t);
        }
        payload
    }

    /// The presence this client tracks once joined.
    pub fn track_payload(&self, online_at: &str) -> Value {
        json!({
            "type": "presence",
            "event": "track",
            "payload": {
                "user_id": self.me.user_id,
                "display_name": self.me.display_name,
                "avatar_url": self.me.avatar_url,
                "status": "active",
                "connected_from": "desktop",
                "online_at": online_at,
            }
        })
    }

    /// The reply to the join `reference`. `Ok(true)`: joined; `Ok(false)`: not this join's
    /// reply; `Err`: the join failed (a rejoin is scheduled).
    pub fn on_join_reply(
        &mut self,
        reference: &str,
        reply: &Reply,
        now: Instant,
    ) -> Result<bool, String> {
        let State::Joining { join_ref, .. } = &self.state else {
            return Ok(false);
        };
        if join_ref != reference {
            return Ok(false);
        }
        let join_ref = join_ref.clone();
        if reply.status != "ok" {
            let reason = reply
                .response
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("join refused")
                .chars()
                .take(200)
                .collect::<String>();
            self.token_rejected = is_token_problem(&reason);
            self.errored(now);
            return Err(reason);
        }
        let response: JoinResponse = match serde_json::from_value(reply.response.clone()) {
            Ok(r) => r,
            Err(e) => {
                self.errored(now);
                return Err(format!("unreadable join reply ({e})"));
            }
        };
        match pair(&self.bindings, &response.postgres_changes) {
            Some(ids) => self.ids = ids,
            None => {
                self.errored(now);
                return Err("mismatch between server and client bindings".into());
            }
        }
        self.attempts = 0;
        self.token_rejected = false;
        self.state = State::Joined { join_ref };
        Ok(true)
    }

    /// The channel failed (error reply, `phx_error`, unexpected `phx_close`, join timeout):
    /// rejoin after the next step of the rejoin backoff.
    pub fn errored(&mut self, now: Instant) {
        self.attempts = self.attempts.saturating_add(1);
        self.ids.clear();
        self.state = State::Closed {
            rejoin_at: Some(now + REJOIN.sleep_duration(self.attempts)),
        };
    }

    /// The socket went away: rejoin as soon as it is back.
    pub fn disconnected(&mut self) {
        self.ids.clear();
        self.state = State::Closed { rejoin_at: None };
    }

    /// When the channel next needs attention (a join timeout or a scheduled rejoin).
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Joining { deadline, .. } => Some(*deadline),
            State::Closed { rejoin_at } => *rejoin_at,
            State::Joined { .. } => None,
        }
    }

    /// Whether a closed channel should join now.
    pub fn wants_join(&self, now: Instant) -> bool {
        matches!(self.state, State::Closed { rejoin_at } if rejoin_at.is_none_or(|t| t <= now))
    }

    /// Reading was paused from `since` to `now`: a join under way gets back the part of
    /// its wait that passed while its reply could not have been read.
    pub fn join_paused(&mut self, since: Instant, now: Instant) {
        if let State::Joining { deadline, .. } = &mut self.state {
            let sent = deadline.checked_sub(JOIN_TIMEOUT).unwrap_or(*deadline);
            *deadline += now.saturating_duration_since(since.max(sent));
        }
    }

    pub fn join_timed_out(&self, now: Instant) -> bool {
        matches!(self.state, State::Joining { deadline, .. } if deadline <= now)
    }

    /// Which table a change belongs to: that of a binding of its table and event whose id
    /// the server listed (realtime-js fires a binding the same way). A change for a binding
    /// of an earlier join is not ours.
    pub fn route(&self, ids: &[i64], data: &ChangeData) -> Option<Table> {
        if data.schema != "public" {
            return None;
        }
        self.bindings
            .iter()
            .zip(&self.ids)
            .find(|(b, id)| {
                b.table.name() == data.table
                    && (b.event == "*" || b.event == data.kind.as_str())
                    && ids.contains(id)
            })
            .map(|(b, _)| b.table)
    }
}

/// realtime-js pairs the reply's entries with its bindings in order; the server must echo
/// each (event, table, filter) back.
fn pair(bindings: &[Binding], server: &[ServerBinding]) -> Option<Vec<i64>> {
    if bindings.len() != server.len() {
        return None;
    }
    bindings
        .iter()
        .zip(server)
        .map(|(b, s)| {
            let same = s.table == b.table.name()
                && (s.schema.is_empty() || s.schema == "public")
                && s.event.eq_ignore_ascii_case(b.event)
                && s.filter.as_deref().filter(|f| !f.is_empty()) == b.filter.as_deref();
            same.then_some(s.id)
        })
        .collect()
}

/// Join errors and close reasons that a renewed token cures.
pub fn is_token_problem(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("token") || r.contains("jwt") || r.contains("expired")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: Uuid = Uuid::from_u128(0xbbbbbbbb_0000_4000_8000_000000000001);

    fn me() -> Me {
        Me {
            user_id: "u1".into(),
            display_name: Some("Alice".into()),
            avatar_url: None,
        }
    }

    fn ok_reply(ids: &[(i64, &str, &str, Option<&str>)]) -> Reply {
        let pcs: Vec<Value> = ids
            .iter()
            .map(|(id, ev, t, f)| json!({"id": id, "event": ev, "schema": "public", "table": t, "filter": f}))
            .collect();
        Reply {
            status: "ok".into(),
            response: json!({"postgres_changes": pcs}),
        }
    }

    #[test]
    fn join_payload_subscribes_the_workspace() {
        let mut c = Channel::new(WS, me());
        let conv = Uuid::from_u128(5);
        c.set_conversations([conv].into());
        let p = c.join("1".into(), Some("tok"), Instant::now());
        assert_eq!(c.topic, format!("realtime:workspace:{WS}"));
        assert_eq!(p["access_token"], json!("tok"));
        assert_eq!(
            p["config"]["broadcast"],
            json!({"ack": false, "self": false})
        );
        assert_eq!(
            p["config"]["presence"],
            json!({"key": "u1", "enabled": true})
        );
        let pc = p["config"]["postgres_changes"].as_array().unwrap();
        assert_eq!(pc.len(), 5);
        assert_eq!(
            pc[4],
            json!({"event": "DELETE", "schema": "public", "table": "conversations",
                   "filter": format!("id=in.({conv})")})
        );
        assert_eq!(pc[0]["filter"], json!(format!("id=eq.{WS}")));
        assert_eq!(pc[3]["table"], json!("workspace_files"));
        assert_eq!(
            pc[2]["filter"],
            json!(format!("conversation_id=in.({conv})"))
        );
    }

    #[test]
    fn replies_pair_in_order() {
        let mut c = Channel::new(WS, me());
        let now = Instant::now();
        c.join("1".into(), None, now);
        let wf = format!("id=eq.{WS}");
        let cf = format!("workspace_id=eq.{WS}");
        // A reply to another ref is not this join's.
        assert_eq!(c.on_join_reply("2", &ok_reply(&[]), now), Ok(false));
        assert!(c
            .on_join_reply("1", &ok_reply(&[(7, "*", "workspaces", Some(&wf))]), now)
            .is_err());
        assert!(matches!(c.state, State::Closed { rejoin_at: Some(_) }));
        c.join("3".into(), None, now);
        let r = ok_reply(&[
            (7, "*", "workspaces", Some(&wf)),
            (8, "*", "conversations", Some(&cf)),
            (9, "*", "workspace_files", Some(&cf)),
        ]);
        assert_eq!(c.on_join_reply("3", &r, now), Ok(true));
        let data = |table: &str| ChangeData {
            schema: "public".into(),
            table: table.into(),
            kind: super::super::frame::ChangeType::Update,
            commit_timestamp: None,
            record: None,
            old_record: None,
            errors: None,
        };
        assert_eq!(c.route(&[7], &data("workspaces")), Some(Table::Workspaces));
        assert_eq!(c.route(&[9], &data("workspaces")), None);
        assert_eq!(
            c.route(&[9], &data("workspace_files")),
            Some(Table::WorkspaceFiles)
        );
        assert_eq!(c.route(&[8], &data("messages")), None);
    }

    #[test]
    fn token_errors_are_recognized() {
        let mut c = Channel::new(WS, me());
        let now = Instant::now();
        c.join("1".into(), None, now);
        let r = Reply {
            status: "error".into(),
            response: json!({"reason": "InvalidJWTToken: Token has expired 12 seconds ago"}),
        };
        assert!(c.on_join_reply("1", &r, now).is_err());
        assert!(c.token_rejected);
        assert!(!c.wants_join(now));
        assert!(c.wants_join(now + std::time::Duration::from_secs(2)));
    }

    #[test]
    fn a_pause_gives_a_join_its_wait_back() {
        let mut c = Channel::new(WS, me());
        let t0 = Instant::now();
        let s = std::time::Duration::from_secs;
        c.join("1".into(), None, t0);
        // Paused from 2 s after the join until 30 s: 28 s more.
        c.join_paused(t0 + s(2), t0 + s(30));
        assert!(!c.join_timed_out(t0 + s(37)));
        assert!(c.join_timed_out(t0 + s(38)));
        // A join sent during a pause has its whole wait from the end of the pause.
        c.join("2".into(), None, t0 + s(40));
        c.join_paused(t0 + s(35), t0 + s(45));
        assert_eq!(c.deadline(), Some(t0 + s(55)));
        // Nothing to give back once joined or closed.
        c.errored(t0 + s(60));
        let before = c.deadline();
        c.join_paused(t0, t0 + s(100));
        assert_eq!(c.deadline(), before);
    }

    /// A DELETE is filtered on the primary key alone: the known conversations are watched
    /// by id, 100 per binding, never by an unfiltered binding.
    #[test]
    fn deletions_are_watched_by_id_in_bounded_filters() {
        let mut c = Channel::new(WS, me());
        assert!(c.bindings_for().iter().all(|b| b.event != "DELETE"));
        let ids: Vec<Uuid> = (1..=250u128).map(Uuid::from_u128).collect();
        c.set_conversations(ids.iter().copied().collect());
        let deletes: Vec<Binding> = c
            .bindings_for()
            .into_iter()
            .filter(|b| b.event == "DELETE")
            .collect();
        assert_eq!(deletes.len(), 3);
        let mut watched = Vec::new();
        for b in &deletes {
            assert_eq!(b.table, Table::Conversations);
            let f = b.filter.as_deref().unwrap();
            let list = f
                .strip_prefix("id=in.(")
                .unwrap()
                .strip_suffix(')')
                .unwrap();
            let n = list.split(',').count();
            assert!(n <= MAX_FILTERED_CONVERSATIONS);
            watched.extend(list.split(',').map(|s| Uuid::parse_str(s).unwrap()));
        }
        assert_eq!(watched, ids);
        // However many conversations, a join carries a bounded number of bindings.
        let many = MAX_FILTERED_CONVERSATIONS * MAX_DELETION_BINDINGS + 1;
        c.set_conversations((0..many as u128).map(Uuid::from_u128).collect());
        let b = c.bindings_for();
        assert_eq!(
            b.iter().filter(|b| b.event == "DELETE").count(),
            MAX_DELETION_BINDINGS
        );
        assert!(b
            .iter()
            .all(|b| b.filter.is_some() || b.table == Table::Messages));
    }

    #[test]
    fn a_change_goes_to_a_binding_of_its_event() {
        let mut c = Channel::new(WS, me());
        let conv = Uuid::from_u128(5);
        c.set_conversations([conv].into());
        let now = Instant::now();
        c.join("1".into(), None, now);
        let (wf, cf) = (format!("id=eq.{WS}"), format!("workspace_id=eq.{WS}"));
        let (mf, df) = (
            format!("conversation_id=in.({conv})"),
            format!("id=in.({conv})"),
        );
        let r = ok_reply(&[
            (7, "*", "workspaces", Some(&wf)),
            (8, "*", "conversations", Some(&cf)),
            (9, "INSERT", "messages", Some(&mf)),
            (10, "*", "workspace_files", Some(&cf)),
            (11, "DELETE", "conversations", Some(&df)),
        ]);
        assert_eq!(c.on_join_reply("1", &r, now), Ok(true));
        let data = |table: &str, kind| ChangeData {
            schema: "public".into(),
            table: table.into(),
            kind,
            commit_timestamp: None,
            record: None,
            old_record: None,
            errors: None,
        };
        use super::super::frame::ChangeType::{Delete, Insert, Update};
        assert_eq!(
            c.route(&[11], &data("conversations", Delete)),
            Some(Table::Conversations)
        );
        assert_eq!(
            c.route(&[8, 11], &data("conversations", Delete)),
            Some(Table::Conversations)
        );
        // The deletion binding's id on another event, or another binding's id: not ours.
        assert_eq!(c.route(&[11], &data("conversations", Update)), None);
        assert_eq!(c.route(&[11], &data("messages", Insert)), None);
        assert_eq!(c.route(&[9], &data("messages", Update)), None);
        assert_eq!(
            c.route(&[9], &data("messages", Insert)),
            Some(Table::Messages)
        );
    }

    #[test]
    fn many_conversations_go_unfiltered() {
        let mut c = Channel::new(WS, me());
        c.set_conversations(
            (0..=MAX_FILTERED_CONVERSATIONS as u128)
                .map(Uuid::from_u128)
                .collect(),
        );
        let b = c.bindings_for();
        assert_eq!(b[2].filter, None);
    }

    /// A join of `FULL_JOIN` conversations or more already takes a new one as a rejoin
    /// would (unfiltered messages, every deletion binding a join may have): none is needed.
    #[test]
    fn a_full_join_takes_new_conversations_without_a_rejoin() {
        let mut c = Channel::new(WS, me());
        let set = |n: usize| (0..n as u128).map(Uuid::from_u128).collect();
        c.set_conversations(set(FULL_JOIN - 1));
        c.join("1".into(), None, Instant::now());
        assert!(!c.join_takes_new_conversations());
        let before = c.bindings_for();
        c.set_conversations(set(FULL_JOIN));
        assert_ne!(c.bindings_for(), before, "one more deletion watched");
        c.join("2".into(), None, Instant::now());
        assert!(c.join_takes_new_conversations());
        let full = c.bindings_for();
        c.set_conversations(set(FULL_JOIN + 500));
        let more = c.bindings_for();
        let messages = |b: &[Binding]| b.iter().find(|b| b.table == Table::Messages).cloned();
        assert_eq!(messages(&more), messages(&full));
        let deletions = |b: &[Binding]| b.iter().filter(|b| b.event == "DELETE").count();
        assert_eq!(deletions(&more), deletions(&full));
    }
}
