//! The socket task: the only owner of the connection and of everything that changes with it.
//! While down it waits out the reconnect backoff; while up it runs one `select!` over the
//! socket, the heartbeat, the channel's timers, the owner's commands and the results of the
//! REST work it started. Down, or up without a joined channel, it polls presence once the
//! channel has been gone a while.

use std::{collections::BTreeSet, future::Future, sync::Arc};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    time::{sleep_until, Instant},
};
use tokio_tungstenite::{
    connect_async_with_config,
    tungstenite::{
        client::IntoClientRequest,
        protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig},
        Message,
    },
    MaybeTlsStream, WebSocketStream,
};
use uuid::Uuid;

use super::{
    backoff::{Backoff, RECONNECT},
    catchup,
    channel::{is_token_problem, Channel, State, Table, MAX_WATCHED},
    delivered::{Ledger, Next, Via},
    frame::{self, ChangeData, ChangeType, Incoming, Outgoing, RecordProblem},
    lists::{Listed, Lists, Ticket},
    presence::Member,
    reads::{Queued, Reads, Wanted},
    rejoins::Rejoins,
    row::Row,
    shown::Shown,
    token, Command, Params, Status, MAX_MESSAGE_BYTES,
};
use crate::{
    error::{Error, Result},
    events::Event,
    rest::{query, Client, Credentials, Request},
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Ids remembered for deduplication.
const SEEN_IDS: usize = 50_000;
/// Catch-up rounds under way at most: a gap catches up every watched conversation, and a
/// workspace may have thousands.
const MAX_PULLS: usize = 4;

/// Results of work the task started on the side (it never awaits the network itself while
/// the socket is up, so heartbeats and frames are never held up by a slow REST call).
enum Internal {
    Token(Result<Option<String>>),
    CaughtUp {
        conversation: Uuid,
        /// Which round of the conversation's catch-up.
        pull: u64,
        pulled: catchup::Pulled,
    },
    Polled(Result<Vec<Member>>),
    /// Message rows read by id, their changes having come without them.
    Fetched {
        batch: Vec<Wanted>,
        read: catchup::ById,
    },
    /// The workspace's conversations, listed after a gap.
    Listed(Ticket, Result<Listed>),
}

/// Why the connected phase ended.
enum Exit {
    Lost(String),
    Shutdown,
}

pub(crate) async fn run(
    params: Params,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<Status>,
    shown: Arc<Shown>,
) {
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let channel = Channel::new(params.workspace_id, params.me.clone());
    let mut task = Task {
        p: params,
        commands,
        internal_tx,
        internal_rx,
        status,
        shown,
        channel,
        next_ref: 0,
        token: None,
        token_check: None,
        fetching_token: false,
        pending_heartbeat: None,
        paused_since: None,
        ledger: Ledger::new(SEEN_IDS),
        reads: Reads::new(),
        rejoins: Rejoins::new(),
        catchup_retry: None,
        lists: Lists::new(),
        missed_workspace: false,
        announced: false,
        presence_poll: None,
        lost_at: None,
        changes_refused: false,
    };
    task.run().await;
    task.status.send_replace(Status::ShutDown);
    task.shown.close(false);
}

struct Task {
    p: Params,
    commands: mpsc::UnboundedReceiver<Command>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    status: watch::Sender<Status>,
    shown: Arc<Shown>,
    channel: Channel,
    next_ref: u64,
    /// The newest access token the session gave us.
    token: Option<String>,
    /// When to ask the session for the token again (shortly before it expires).
    token_check: Option<Instant>,
    fetching_token: bool,
    pending_heartbeat: Option<String>,
    /// Since when the socket has not been read because the host is behind (see
    /// `HOST_BACKLOG`). Replies wait unread meanwhile, so no reply counts as missed.
    paused_since: Option<Instant>,
    /// What reached the host, and the catch-ups of what may have been missed: pulled once
    /// joined, and again after a failure, until a round reads to the end.
    ledger: Ledger,
    /// The reads by id of rows whose changes came without them.
    reads: Reads,
    /// The spacing of rejoins for new conversations.
    rejoins: Rejoins,
    /// The earliest retry of a failed catch-up, or start of an owed list.
    catchup_retry: Option<Instant>,
    /// The conversation lists: which runs, which is owed, which answer still applies.
    lists: Lists,
    /// The workspace row may have changed unseen: reconcile after the next join.
    missed_workspace: bool,
    /// `cloud:realtime:connected` was emitted and `disconnected` not yet.
    announced: bool,
    /// While the channel is not joined: when to poll presence next.
    presence_poll: Option<Instant>,
    /// When the socket or the subscription was lost (the gap began), until the next join.
    lost_at: Option<String>,
    /// The server refused this join's postgres_changes (a `system` error): no change comes
    /// until it confirms them (`ok`, as it does after a token refresh), so the channel is
    /// not live meanwhile and the sync engine polls.
    changes_refused: bool,
}

impl Task {
    async fn run(&mut self) {
        let mut attempt = 0u32;
        loop {
            self.status.send_replace(Status::Connecting);
            let list = self.lists.connecting();
            let connecting = connect(
                self.p.base_url.clone(),
                self.p.anon_key.clone(),
                self.p.credentials.clone(),
                self.p.client.clone(),
                self.p.workspace_id,
            );
            match self.down(connecting).await {
                None => return,
                Some(Ok((ws, token, conversations))) => {
                    self.set_token(token);
                    // A conversation created while the socket was down is watched from the
                    // moment it went down (or from an earlier gap a list was owed for).
                    let applied = conversations.and_then(|c| {
                        let listed = Listed {
                            conversations: c.conversations,
                            workspace_visible: c.workspace_visible,
                        };
                        let current = self.channel.conversations().clone();
                        self.lists
                            .connected(list, listed, &current, self.lost_at.as_deref())
                    });
                    if let Some(a) = applied {
                        self.set_conversations(a.set, &a.origin);
                        if self.lost_at.is_some() {
                            self.missed(a.new);
                        }
                    }
                    match self.connected(ws).await {
                        Exit::Shutdown => return,
                        Exit::Lost(reason) => {
                            tracing::info!(%reason, "realtime socket lost; reconnecting")
                        }
                    }
                    if self.channel_was_joined() {
                        attempt = 0;
                    }
                }
                Some(Err(e)) => tracing::info!(error = %e, "realtime connection failed"),
            }
            self.socket_lost();
            attempt = attempt.saturating_add(1);
            self.status.send_replace(Status::WaitingToReconnect);
            let wait = RECONNECT.sleep_duration(attempt);
            if self.down(tokio::time::sleep(wait)).await.is_none() {
                return;
            }
        }
    }

    fn channel_was_joined(&self) -> bool {
        // A connection that got as far as a join resets the reconnect backoff.
        self.announced
    }

    /// Runs `fut` while the socket is down, serving commands and side results meanwhile.
    /// `None`: shut down.
    async fn down<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            let poll_at = self.presence_poll;
            tokio::select! {
                out = &mut fut => return Some(out),
                cmd = self.commands.recv() => match cmd {
                    None => {
                        self.announce_down();
                        return None;
                    }
                    Some(Command::Shutdown) => {
                        self.announce_down();
                        return None;
                    }
                    Some(Command::Broadcast { event, payload }) => self.broadcast_rest(event, payload),
                },
                Some(msg) = self.internal_rx.recv() => {
                    // Without a socket nothing is sent, so this cannot fail.
                    let _ = self.internal(None, msg).await;
                }
                _ = sleep_opt(poll_at) => self.poll_presence(),
            }
        }
    }

    async fn connected(&mut self, mut ws: Ws) -> Exit {
        self.status.send_replace(Status::Connected);
        self.pending_heartbeat = None;
        let period = self.p.heartbeat;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.channel.disconnected();
        if let Err(e) = self.maybe_join(&mut ws).await {
            return Exit::Lost(e);
        }
        // A host that falls behind holds the socket back (see `HOST_BACKLOG`).
        let events = self.p.events.clone();
        self.paused_since = None;
        loop {
            let reading = events.has_room();
            match (reading, self.paused_since) {
                (false, None) => self.paused_since = Some(Instant::now()),
                (true, Some(since)) => {
                    self.paused_since = None;
                    self.resumed(since, &mut heartbeat);
                }
                _ => {}
            }
            let deadline = earliest(
                earliest(
                    earliest(self.channel_deadline(), self.token_check),
                    earliest(self.catchup_retry, self.presence_poll),
                ),
                self.rejoins.due_at(),
            );
            let step = tokio::select! {
                _ = events.room(), if !reading => Ok(()),
                msg = ws.next(), if reading => match msg {
                    Some(Ok(Message::Text(text))) => self.on_text(&mut ws, text.as_str()).await,
                    Some(Ok(Message::Binary(b))) => {
                        tracing::warn!(bytes = b.len(), "dropping a binary realtime frame (vsn 1.0.0 has none)");
                        Ok(())
                    }
                    Some(Ok(Message::Close(c))) => Err(format!(
                        "closed by the server ({})",
                        c.map(|c| u16::from(c.code).to_string()).unwrap_or_else(|| "no code".into())
                    )),
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(format!("socket error: {e}")),
                    None => Err("socket closed".into()),
                },
                _ = heartbeat.tick() => self.heartbeat(&mut ws).await,
                cmd = self.commands.recv() => match cmd {
                    None => {
                        self.close(&mut ws).await;
                        return Exit::Shutdown;
                    }
                    Some(Command::Shutdown) => {
                        self.close(&mut ws).await;
                        return Exit::Shutdown;
                    }
                    Some(Command::Broadcast { event, payload }) => self.broadcast(&mut ws, event, payload).await,
                },
                Some(msg) = self.internal_rx.recv() => self.internal(Some(&mut ws), msg).await,
                _ = sleep_opt(deadline) => self.timers(&mut ws).await,
            };
            if let Err(reason) = step {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(None)).await;
                return Exit::Lost(reason);
            }
        }
    }

    /// Reading resumes after a pause that began at `since`. A reply that arrived meanwhile
    /// is still unread, behind the backlog: the pending heartbeat and join are each given
    /// their full wait again, of reading time, before their reply counts as missed. A server
    /// that died during the pause is then found one interval after reading resumes.
    fn resumed(&mut self, since: Instant, heartbeat: &mut tokio::time::Interval) {
        tracing::debug!(paused = ?since.elapsed(), "reading the socket again");
        heartbeat.reset();
        self.channel.join_paused(since, Instant::now());
    }

    /// The channel's timer; a join's timeout does not run while its reply cannot be read.
    fn channel_deadline(&self) -> Option<Instant> {
        match self.channel.state {
            State::Joining { .. } if self.paused_since.is_some() => None,
            _ => self.channel.deadline(),
        }
    }

    fn next_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    async fn send(
        &mut self,
        ws: &mut Ws,
        topic: &str,
        event: &str,
        payload: &Value,
        join_ref: Option<&str>,
    ) -> std::result::Result<String, String> {
        let reference = self.next_ref();
        let text = Outgoing {
            topic,
            event,
            payload,
            reference: Some(&reference),
            join_ref,
        }
        .encode();
        // The payload may hold a token: only the topic and event are ever logged.
        tracing::trace!(topic, event, reference = %reference, "realtime send");
        ws.send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        Ok(reference)
    }

    async fn heartbeat(&mut self, ws: &mut Ws) -> std::result::Result<(), String> {
        // While paused the reply may well be waiting unread: the timeout is judged after
        // reading resumes (see `resumed`). Heartbeats still go out meanwhile, the newest
        // replacing the one pending, so the server's idle timeout never closes a socket
        // that is only paused.
        if self.pending_heartbeat.is_some() && self.paused_since.is_none() {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "heartbeat timeout".into(),
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(Some(frame)))
                .await;
            return Err("heartbeat timeout".into());
        }
        let r = self
            .send(ws, "phoenix", "heartbeat", &json!({}), None)
            .await?;
        self.pending_heartbeat = Some(r);
        // Like realtime-js's setAuth on every heartbeat: a token refreshed by the session
        // reaches the channel within one interval.
        self.fetch_token(false);
        Ok(())
    }

    async fn maybe_join(&mut self, ws: &mut Ws) -> std::result::Result<(), String> {
        let now = Instant::now();
        if !self.channel.wants_join(now) {
            return Ok(());
        }
        self.rejoins.joining();
        let join_ref = self.next_ref();
        let payload = self
            .channel
            .join(join_ref.clone(), self.token.as_deref(), now);
        let text = Outgoing {
            topic: &self.channel.topic,
            event: "phx_join",
            payload: &payload,
            reference: Some(&join_ref),
            join_ref: Some(&join_ref),
        }
        .encode();
        tracing::debug!(topic = %self.channel.topic, join_ref = %join_ref, "joining");
        ws.send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send failed: {e}"))
    }

    /// New conversations need a join with them in its filters: a rejoin now, or one owed if
    /// one was made less than a spacing ago (see [`Rejoins`]).
    async fn want_rejoin(&mut self, ws: &mut Ws) -> std::result::Result<(), String> {
        if self.rejoins.want(Instant::now()) {
            self.rejoin_for_new(ws).await?;
        }
        Ok(())
    }

    async fn rejoin_for_new(&mut self, ws: &mut Ws) -> std::result::Result<(), String> {
        // A closed channel's next join takes them.
        if self.channel.join_ref().is_none() {
            return Ok(());
        }
        // The leave ends the server's subscription and nothing is taken until the new
        // join's reply: as across a reconnect, every watched conversation (a new one from
        // its creation) and the workspace may miss changes meanwhile.
        self.gap_began();
        self.rejoin(ws).await
    }

    /// Leaves the current join (if any) and joins again, for a new set of bindings.
    async fn rejoin(&mut self, ws: &mut Ws) -> std::result::Result<(), String> {
        if let Some(old) = self.channel.join_ref().map(String::from) {
            let topic = self.channel.topic.clone();
            self.send(ws, &topic, "phx_leave", &json!({}), Some(&old))
                .await?;
        }
        self.channel.disconnected();
        self.channel_lost();
        self.maybe_join(ws).await
    }

    async fn timers(&mut self, ws: &mut Ws) -> std::result::Result<(), String> {
        let now = Instant::now();
        if self.token_check.is_some_and(|t| t <= now) {
            self.token_check = None;
            self.fetch_token(false);
        }
        if self.paused_since.is_none() && self.channel.join_timed_out(now) {
            tracing::info!(topic = %self.channel.topic, "join timed out; rejoining later");
            if let Some(old) = self.channel.join_ref().map(String::from) {
                let topic = self.channel.topic.clone();
                self.send(ws, &topic, "phx_leave", &json!({}), Some(&old))
                    .await?;
            }
            self.channel.errored(now);
        }
        if self.presence_poll.is_some_and(|t| t <= now) {
            self.poll_presence();
        }
        if self.rejoins.take_due(now) {
            self.rejoin_for_new(ws).await?;
        }
        if self.catchup_retry.is_some_and(|t| t <= now) {
            self.catchup_retry = None;
            // Not joined: the join starts them.
            if self.channel.is_joined() {
                self.start_catchups();
                self.start_list();
            }
        }
        self.maybe_join(ws).await
    }

    async fn close(&mut self, ws: &mut Ws) {
        if let Some(jr) = self.channel.join_ref().map(String::from) {
            let topic = self.channel.topic.clone();
            let _ = self
                .send(ws, &topic, "phx_leave", &json!({}), Some(&jr))
                .await;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(None)).await;
        self.announce_down();
    }

    /// Changes stop arriving until the next join (or until the server confirms a refused
    /// subscription): whatever they would have brought is fetched then (`changes_live`).
    fn gap_began(&mut self) {
        self.lost_at.get_or_insert_with(now_iso);
        self.missed_all();
        self.missed_workspace = true;
    }

    fn announce_down(&mut self) {
        if std::mem::take(&mut self.announced) {
            self.p.events.emit(Event::RealtimeDisconnected {
                workspace_id: self.p.workspace_id.to_string(),
            });
        }
    }

    fn socket_lost(&mut self) {
        self.channel.disconnected();
        self.channel.presence.clear();
        self.pending_heartbeat = None;
        self.gap_began();
        if self.announced {
            self.presence_poll
                .get_or_insert(Instant::now() + self.p.presence_interval);
        }
        self.announce_down();
    }

    /// The joined channel is gone (the socket may stay). Its Phoenix presence goes with it:
    /// the next join's `presence_state` is the whole truth, and nothing of this join may be
    /// merged into it. The host keeps the members it was shown until that state arrives or,
    /// should the channel stay gone for `presence_interval`, until the REST poll replaces
    /// them (with nobody, when the poll fails). Until then the list is no staler than the
    /// poll's own, which counts members seen within twice the interval.
    fn channel_lost(&mut self) {
        self.channel.presence.clear();
        if self.status.borrow().is_live() {
            self.status.send_replace(Status::Connected);
            self.presence_poll
                .get_or_insert(Instant::now() + self.p.presence_interval);
        }
    }

    // ---- frames ------------------------------------------------------------------------

    async fn on_text(&mut self, ws: &mut Ws, text: &str) -> std::result::Result<(), String> {
        let (topic, incoming) = match frame::decode(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, bytes = text.len(), "dropping a realtime frame");
                return Ok(());
            }
        };
        if topic == "phoenix" {
            if let Incoming::Reply { reference, .. } = &incoming {
                if self.pending_heartbeat.as_deref() == Some(reference.as_str()) {
                    self.pending_heartbeat = None;
                }
            }
            return Ok(());
        }
        if topic != self.channel.topic {
            tracing::debug!(topic = %topic.chars().take(80).collect::<String>(), "frame for an unknown topic");
            return Ok(());
        }
        let now = Instant::now();
        match incoming {
            Incoming::Reply { reference, reply } => {
                match self.channel.on_join_reply(&reference, &reply, now) {
                    Ok(true) => self.joined(ws).await?,
                    Ok(false) => {
                        if reply.status != "ok" {
                            tracing::debug!(reference = %reference, "a push was refused");
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(topic = %self.channel.topic, %reason, "join refused; rejoining later");
                        if self.channel.token_rejected {
                            self.fetch_token(true);
                        }
                    }
                }
            }
            Incoming::Change(c) => {
                if !self.channel.is_joined() {
                    return Ok(());
                }
                match self.channel.route(&c.ids, &c.data) {
                    Some(table) => self.change(ws, table, c.data).await?,
                    None => {
                        tracing::debug!(table = %c.data.table, "change for no binding of this join")
                    }
                }
            }
            // Phoenix answers a join before it sends anything of it, and these frames carry
            // no join ref (vsn 1.0.0): one that comes before the reply is the previous join's.
            Incoming::PresenceState(s) => {
                if self.channel.is_joined() {
                    self.channel.presence.on_state(s);
                    // Even when the channel's view did not change: the host may still be
                    // shown the members from before the channel was lost, or the poll's.
                    self.publish_channel_presence();
                }
            }
            Incoming::PresenceDiff(d) => {
                if self.channel.is_joined() && self.channel.presence.on_diff(d) {
                    self.publish_channel_presence();
                }
            }
            Incoming::Broadcast(b) => self.deliver_broadcast(b.event, b.payload),
            Incoming::System(s) => {
                let message = match &s.message {
                    Value::String(m) => m.chars().take(200).collect(),
                    other => other.to_string().chars().take(200).collect::<String>(),
                };
                let changes = s.extension == "postgres_changes" && self.channel.is_joined();
                if s.status == "error" {
                    tracing::warn!(extension = %s.extension, %message, "realtime system error");
                    if is_token_problem(&message) {
                        self.channel.token_rejected = true;
                    } else if changes && !self.changes_refused {
                        self.changes_refused = true;
                        self.gap_began();
                        self.status.send_replace(Status::Connected);
                    }
                } else {
                    tracing::debug!(extension = %s.extension, %message, "realtime system message");
                    if changes && s.status == "ok" && std::mem::take(&mut self.changes_refused) {
                        self.changes_live();
                    }
                }
            }
            Incoming::Close { join_ref } | Incoming::Error { join_ref } => {
                let current = self.channel.join_ref();
                if join_ref.is_some() && join_ref.as_deref() != current {
                    return Ok(()); // an earlier join's
                }
                if current.is_none() {
                    return Ok(());
                }
                tracing::info!(topic = %self.channel.topic, token = self.channel.token_rejected, "channel closed by the server; rejoining");
                self.channel.errored(now);
                self.channel_lost();
                self.gap_began();
                if self.channel.token_rejected {
                    self.fetch_token(true);
                }
            }
        }
        Ok(())
    }

    async fn joined(&mut self, ws: &mut Ws) -> std::result::Result<(), String> {
        tracing::debug!(topic = %self.channel.topic, "joined");
        let track = self.channel.track_payload(&now_iso());
        let (topic, jr) = (
            self.channel.topic.clone(),
            self.channel.join_ref().map(String::from),
        );
        self.presence_poll = None;
        self.changes_refused = false;
        self.changes_live();
        if !self.announced {
            self.announced = true;
            self.p.events.emit(Event::RealtimeConnected {
                workspace_id: self.p.workspace_id.to_string(),
            });
        }
        self.send(ws, &topic, "presence", &track, jr.as_deref())
            .await?;
        Ok(())
    }

    /// Changes arrive from now on: catch up with what the gap (if any) may have missed.
    fn changes_live(&mut self) {
        self.status.send_replace(Status::Live);
        let gap = self.lost_at.take();
        self.start_catchups();
        if std::mem::take(&mut self.missed_workspace) {
            self.p.hooks.workspace_changed();
            self.p.hooks.files_changed();
            // A conversation created in the gap was announced while nothing listened.
            self.list_conversations(gap.unwrap_or_else(now_iso));
        }
    }

    async fn change(
        &mut self,
        ws: &mut Ws,
        table: Table,
        data: ChangeData,
    ) -> std::result::Result<(), String> {
        match table {
            Table::Workspaces => self.p.hooks.workspace_changed(),
            Table::WorkspaceFiles => self.p.hooks.files_changed(),
            Table::Conversations => {
                // Watched from the commit, in the server's time as the rows' `created_at`
                // are: this machine's clock may be off, and the frame may have waited unread.
                let origin = data
                    .commit_timestamp
                    .as_deref()
                    .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
                    .map_or_else(now_iso, str::to_string);
                // A record cut short for its size keeps its ids, which are small. One the
                // server withheld is of a conversation this user may not see; one it could
                // not send whole for another reason is not trusted to say where the
                // conversation is: the list read over REST does.
                match data.record_problem() {
                    RecordProblem::None | RecordProblem::TooLarge => {}
                    RecordProblem::Hidden(errors) => {
                        tracing::warn!(%errors, "a conversation change this user may not see; ignored");
                        return Ok(());
                    }
                    RecordProblem::Unknown(errors) => {
                        tracing::warn!(%errors, "a conversation change without a whole record; listing them");
                        self.list_conversations(origin);
                        return Ok(());
                    }
                }
                let mut set = self.channel.conversations().clone();
                match data.kind {
                    ChangeType::Insert | ChangeType::Update => {
                        let Some(row) = data.record.as_ref().map(Row::ids) else {
                            return Ok(());
                        };
                        let Some(conv) = row.id else {
                            return Ok(());
                        };
                        // Only a well-formed other workspace says it moved away: a record
                        // without a readable one says nothing of where it is.
                        match row.workspace_id {
                            Some(w) if w == self.p.workspace_id => {
                                if set.len() >= MAX_WATCHED && !set.contains(&conv) {
                                    tracing::warn!(%conv, "more conversations than watched; a new one is not");
                                    return Ok(());
                                }
                                set.insert(conv)
                            }
                            Some(_) => set.remove(&conv),
                            None => {
                                tracing::warn!("a conversation change without a readable workspace; listing them");
                                self.list_conversations(origin);
                                return Ok(());
                            }
                        };
                    }
                    ChangeType::Delete => {
                        if let Some(conv) = data.old_record.as_ref().and_then(|r| r.ids().id) {
                            set.remove(&conv);
                        }
                    }
                }
                let added = !set.is_subset(self.channel.conversations());
                self.set_conversations_live(set, &origin);
                // Only a new conversation needs the new filter. A conversation let go of
                // needs no rejoin: the id left in the join's filters matches nothing more,
                // and its messages are dropped here. The next join, for whatever reason,
                // takes the smaller set.
                if added && !self.channel.join_takes_new_conversations() {
                    self.want_rejoin(ws).await?;
                }
            }
            Table::Messages => {
                if data.kind == ChangeType::Insert {
                    match data.record_problem() {
                        RecordProblem::None => {
                            if let Some(row) = data.record {
                                self.message(row, Via::Socket);
                            }
                        }
                        RecordProblem::TooLarge => self.fetch_message(data.record.as_ref()),
                        RecordProblem::Hidden(errors) => {
                            tracing::warn!(%errors, "a new message this user may not see; not shown")
                        }
                        RecordProblem::Unknown(errors) => {
                            tracing::warn!(%errors, "a new message the server could not send whole; reading it");
                            self.fetch_message(data.record.as_ref());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A message row from the socket, a read by id or a catch-up pull: handed to the host
    /// once, unless this client wrote it.
    fn message(&mut self, row: Row, via: Via) {
        // The host shows the row as a chat message: it must be one.
        let Some(m) = row.message() else {
            tracing::warn!("dropping a message row that is no valid chat message");
            return;
        };
        // Of a conversation this channel watches: a server's filter is not taken on trust,
        // and an unfiltered binding (many conversations) brings the others too.
        if !self.channel.conversations().contains(&m.conversation_id) {
            tracing::debug!(id = %m.id, "dropping a message row of no watched conversation");
            return;
        }
        if !self
            .ledger
            .deliver(m.conversation_id, m.id, m.created_at.as_deref(), via)
        {
            return;
        }
        let me = Some(self.channel.me.user_id.as_str());
        let own = m.sender_user_id.as_deref() == me || m.pushed_by.as_deref() == me;
        if !own {
            self.p.events.emit(Event::MessageReceived(row.into_raw()));
        }
    }

    /// An INSERT the server sent without its row (too large): the row is read over REST
    /// and delivered through `message` like any other, so at most once. If the read fails,
    /// or too many wait to be read (see [`Reads`]), the conversation is caught up from
    /// where it stood when the change came.
    fn fetch_message(&mut self, record: Option<&Row>) {
        let (id, conversation) = record.map(Row::message_ids).unwrap_or((None, None));
        let Some(conversation) = conversation else {
            tracing::warn!("a message too large for the socket, of no given conversation");
            self.missed_all();
            self.start_catchups();
            return;
        };
        if !self.channel.conversations().contains(&conversation) {
            return;
        }
        let Some(from) = self.ledger.cursor(&conversation) else {
            return;
        };
        let Some(id) = id else {
            self.ledger.missed_since(conversation, from);
            self.start_catchups();
            return;
        };
        if self.ledger.seen(&id) {
            return;
        }
        let wanted = Wanted {
            conversation,
            id,
            from: from.clone(),
        };
        match self.reads.want(wanted) {
            Queued::Added => self.ledger.reading(conversation, &from),
            Queued::Already => {}
            Queued::Full => {
                tracing::debug!(%id, "too many messages waiting to be read by id; catching up");
                self.ledger.missed_since(conversation, from);
                self.start_catchups();
                return;
            }
        }
        self.start_reads();
    }

    /// Starts the reads by id there is room for.
    fn start_reads(&mut self) {
        while let Some(batch) = self.reads.start() {
            tracing::debug!(
                rows = batch.len(),
                "reading messages too large for the socket"
            );
            let client = self.p.client.clone();
            let tx = self.internal_tx.clone();
            tokio::spawn(async move {
                let ids: Vec<Uuid> = batch.iter().map(|w| w.id).collect();
                let read = catchup::messages_by_id(&client, &ids).await;
                let _ = tx.send(Internal::Fetched { batch, read });
            });
        }
    }

    fn fetched(&mut self, batch: Vec<Wanted>, read: catchup::ById) {
        let failed: Vec<Uuid> = match &read.failed {
            Some((ids, e)) => {
                tracing::warn!(error = %e, rows = ids.len(), "cannot read messages by id; catching up");
                ids.clone()
            }
            None => Vec::new(),
        };
        for w in batch.iter().filter(|w| failed.contains(&w.id)) {
            // Before the read lets go of what it kept remembered.
            self.ledger.missed_since(w.conversation, w.from.clone());
        }
        // Only the rows asked for: a server that ignored the filter sends others.
        for row in read.rows.iter().filter_map(Row::from_value) {
            let asked = row
                .message_ids()
                .0
                .is_some_and(|id| batch.iter().any(|w| w.id == id));
            if asked {
                self.message(row, Via::Read);
            }
        }
        // A catch-up could not read them either.
        for id in &read.too_large {
            tracing::warn!(%id, "a message too large to read; left out");
        }
        // Not joined: the join starts them.
        if !failed.is_empty() && self.channel.is_joined() {
            self.start_catchups();
        }
        // Only now: until the rows are checked against them, each read keeps remembered the
        // rows from its start on (a pull may have delivered one meanwhile).
        for w in &batch {
            self.ledger.read_done(w.conversation, &w.from);
        }
        self.reads.done(&batch);
        self.start_reads();
    }

    /// `set_conversations` for a live change: a list running meanwhile may have been read
    /// before it, and must not undo a conversation's end.
    fn set_conversations_live(&mut self, set: BTreeSet<Uuid>, origin: &str) {
        self.lists.live(self.channel.conversations(), &set);
        self.set_conversations(set, origin);
    }

    /// Replaces the watched conversations; new ones are watched from `origin`. Each one that
    /// leaves the set (deleted, or moved out of the workspace) is announced here, so once
    /// whichever way its end was learnt: live, or by a list after a gap.
    fn set_conversations(&mut self, set: BTreeSet<Uuid>, origin: &str) -> bool {
        let gone: Vec<Uuid> = self
            .channel
            .conversations()
            .difference(&set)
            .copied()
            .collect();
        self.ledger.watch(&set, origin);
        let changed = self.channel.set_conversations(set);
        for conversation in gone {
            tracing::debug!(%conversation, "a watched conversation is gone");
            self.p.events.emit(Event::ConversationDeleted {
                workspace_id: self.p.workspace_id.to_string(),
                conversation_id: conversation.to_string(),
            });
        }
        changed
    }

    fn deliver_broadcast(&mut self, event: String, payload: Value) {
        if event.is_empty() || event.len() > 255 {
            tracing::warn!("dropping a broadcast with an empty or oversized event name");
            return;
        }
        let payload = match payload {
            Value::Object(_) => payload,
            // The host spreads payloads into objects; anything else is wrapped.
            other => json!({ "payload": other }),
        };
        self.p.events.emit(Event::Broadcast { event, payload });
    }

    fn publish_channel_presence(&mut self) {
        let members = self.channel.presence.members();
        self.publish(members);
    }

    fn publish(&mut self, members: Vec<Member>) {
        self.shown.publish(members);
    }

    // ---- commands and side work --------------------------------------------------------

    async fn broadcast(
        &mut self,
        ws: &mut Ws,
        event: String,
        payload: Value,
    ) -> std::result::Result<(), String> {
        if !self.channel.is_joined() {
            self.broadcast_rest(event, payload);
            return Ok(());
        }
        let body = json!({"type": "broadcast", "event": event, "payload": payload});
        let (topic, jr) = (
            self.channel.topic.clone(),
            self.channel.join_ref().map(String::from),
        );
        self.send(ws, &topic, "broadcast", &body, jr.as_deref())
            .await
            .map(|_| ())
    }

    /// Not joined: the REST endpoint delivers it (realtime-js does the same).
    fn broadcast_rest(&self, event: String, payload: Value) {
        let client = self.p.client.clone();
        let topic = format!("workspace:{}", self.p.workspace_id);
        tokio::spawn(async move {
            let body = json!({"messages": [{"topic": topic, "event": event, "payload": payload, "private": false}]});
            let req = Request::new(reqwest::Method::POST, "/realtime/v1/api/broadcast").json(body);
            if let Err(e) = client.send(&req).await {
                tracing::info!(error = %e, "broadcast through REST failed");
            }
        });
    }

    fn fetch_token(&mut self, renew: bool) {
        if self.fetching_token && !renew {
            return;
        }
        self.fetching_token = true;
        let creds = self.p.credentials.clone();
        let used = self.token.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let t = match (renew, used) {
                (true, Some(used)) => creds.renew(used).await,
                _ => creds.access_token().await,
            };
            let _ = tx.send(Internal::Token(t));
        });
    }

    fn set_token(&mut self, token: Option<String>) {
        self.token_check = token
            .as_deref()
            .and_then(|t| token::swap_in(t, chrono::Utc::now().timestamp()))
            .map(|d| Instant::now() + d);
        self.token = token;
    }

    /// Rows of `conversations` may be missed from now until the next join: each is pulled
    /// then, from its cursor as it is now.
    fn missed(&mut self, conversations: impl IntoIterator<Item = Uuid>) {
        for conv in conversations {
            self.ledger.missed(conv);
        }
    }

    fn missed_all(&mut self) {
        self.ledger.missed_all();
    }

    /// Starts the catch-ups that are due, [`MAX_PULLS`] at once at most (the others start
    /// as rounds end). Only once joined: rows written after the join arrive live, so a pull
    /// then closes the gap.
    fn start_catchups(&mut self) {
        let room = MAX_PULLS.saturating_sub(self.ledger.running());
        for conv in self.ledger.due(Instant::now()).into_iter().take(room) {
            self.start_pull(conv);
        }
        self.set_retry();
    }

    /// The earliest retry, of a catch-up or of the list of conversations. Without room for
    /// another pull, the end of a round starts the next, not a timer.
    fn set_retry(&mut self) {
        let pulls = (self.ledger.running() < MAX_PULLS)
            .then(|| self.ledger.next_retry())
            .flatten();
        self.catchup_retry = earliest(pulls, self.lists.due_at());
    }

    fn start_pull(&mut self, conversation: Uuid) {
        let Some((pull, plan)) = self.ledger.start(conversation) else {
            return;
        };
        let client = self.p.client.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let pulled = catchup::messages_since(&client, &conversation, &plan).await;
            let _ = tx.send(Internal::CaughtUp {
                conversation,
                pull,
                pulled,
            });
        });
    }

    /// The end of round `pull`: its rows are delivered even if it failed (deduplication
    /// makes any overlap harmless); the catch-up goes on from the last row read, at once
    /// after a full round, after a wait after a failure.
    fn caught_up(&mut self, conversation: Uuid, pull: u64, pulled: catchup::Pulled) {
        let n = pulled.rows.len();
        for row in pulled.rows.iter().filter_map(Row::from_value) {
            self.message(row, Via::Pull);
        }
        // Passed over, as `fetched` passes over one: the catch-up goes on after it.
        for id in &pulled.too_large {
            tracing::warn!(%id, %conversation, "a message too large to read; left out");
        }
        let failed = pulled.failed;
        match self
            .ledger
            .pulled(conversation, pull, pulled.reached, pulled.ended)
        {
            Next::Nothing => tracing::debug!(%conversation, rows = n, "catch-up round ended"),
            Next::Pull => {
                if self.channel.is_joined() {
                    self.start_pull(conversation);
                }
            }
            Next::RetryAt(at) => {
                self.catchup_retry = earliest(self.catchup_retry, Some(at));
                if let Some(e) = failed {
                    tracing::warn!(error = %e, %conversation, rows = n, "catch-up pull failed");
                }
            }
        }
        // Room for a catch-up waiting for one.
        if self.channel.is_joined() {
            self.start_catchups();
        }
    }

    /// Asks for a list of the conversations, for a gap that began at `origin` (or a change
    /// not placed): it starts once none runs and the spacing allows, and is retried with
    /// backoff until one succeeds.
    fn list_conversations(&mut self, origin: String) {
        self.lists.want(&origin);
        self.start_list();
    }

    /// Starts the owed list if it is due (once joined: a join that comes lists anyway).
    fn start_list(&mut self) {
        if !self.channel.is_joined() {
            return;
        }
        if let Some(ticket) = self
            .lists
            .start(Instant::now(), self.channel.conversations())
        {
            let client = self.p.client.clone();
            let tx = self.internal_tx.clone();
            let ws = self.p.workspace_id;
            tokio::spawn(async move {
                let listed = catchup::listing(&client, &ws).await.map(|l| Listed {
                    conversations: l.conversations,
                    workspace_visible: l.workspace_visible,
                });
                let _ = tx.send(Internal::Listed(ticket, listed));
            });
        }
        self.set_retry();
    }

    /// A list answered: its conversations not watched yet are watched from its origin, and
    /// those watched when it began that it lacks are let go of (deleted in a gap, their
    /// DELETE unseen), unless something newer applied since overrides it (see [`Lists`]).
    async fn listed(
        &mut self,
        ws: Option<&mut Ws>,
        ticket: Ticket,
        listed: Result<Listed>,
    ) -> std::result::Result<(), String> {
        let listed = match listed {
            Ok(l) => l,
            Err(error) => {
                let origin = ticket.origin.clone();
                if let Some(wait) = self.lists.failed(&ticket, Instant::now()) {
                    tracing::warn!(error = %error, %origin, retry_in = ?wait, "cannot list the conversations after a gap");
                }
                self.start_list();
                return Ok(());
            }
        };
        let current = self.channel.conversations().clone();
        let applied = self.lists.answered(ticket, listed, &current);
        let Some(a) = applied else {
            tracing::debug!("a conversation list older than one applied since; dropped");
            self.start_list();
            return Ok(());
        };
        // A deletion alone needs no rejoin: the id left in a filter matches nothing more.
        self.set_conversations(a.set, &a.origin);
        if a.new.is_empty() {
            self.start_list();
            return Ok(());
        }
        tracing::debug!(
            conversations = a.new.len(),
            "conversations created in a gap"
        );
        self.missed(a.new);
        // A join that takes them already (see `FULL_JOIN`) brings their rows from now on:
        // no rejoin comes to start their catch-ups, so they start here.
        if self.channel.is_joined() && self.channel.join_takes_new_conversations() {
            self.start_catchups();
        }
        // A join made or under way has the old filter; a closed channel's next join takes
        // the new one, and without a socket the reconnect lists them anyway.
        if let Some(ws) = ws {
            if self.channel.join_ref().is_some() && !self.channel.join_takes_new_conversations() {
                self.lost_at.get_or_insert(a.origin);
                self.want_rejoin(ws).await?;
            }
        }
        self.start_list();
        Ok(())
    }

    fn poll_presence(&mut self) {
        let interval = self.p.presence_interval;
        self.presence_poll = Some(Instant::now() + interval);
        let client = self.p.client.clone();
        let tx = self.internal_tx.clone();
        let ws = self.p.workspace_id;
        let me = self.channel.me.user_id.clone();
        let window =
            chrono::Duration::from_std(interval * 2).unwrap_or(chrono::Duration::minutes(2));
        tokio::spawn(async move {
            let polled = catchup::poll_presence(&client, &ws, &me, window).await;
            let _ = tx.send(Internal::Polled(polled));
        });
    }

    async fn internal(
        &mut self,
        ws: Option<&mut Ws>,
        msg: Internal,
    ) -> std::result::Result<(), String> {
        match msg {
            Internal::Token(Ok(Some(t))) => {
                self.fetching_token = false;
                let changed = self.token.as_deref() != Some(t.as_str());
                self.set_token(Some(t.clone()));
                if !changed && !self.channel.token_rejected {
                    return Ok(());
                }
                if let Some(ws) = ws {
                    if self.channel.is_joined() && self.channel.token.as_deref() != Some(&t) {
                        let (topic, jr) = (
                            self.channel.topic.clone(),
                            self.channel.join_ref().map(String::from),
                        );
                        self.send(
                            ws,
                            &topic,
                            "access_token",
                            &json!({"access_token": t}),
                            jr.as_deref(),
                        )
                        .await?;
                        self.channel.token = Some(t);
                    } else if self.channel.token_rejected
                        && matches!(self.channel.state, super::channel::State::Closed { .. })
                    {
                        // The renewed token cures the failure: rejoin without waiting.
                        self.channel.disconnected();
                        self.maybe_join(ws).await?;
                    }
                }
            }
            Internal::Token(Ok(None)) => self.fetching_token = false,
            Internal::Token(Err(e)) => {
                self.fetching_token = false;
                tracing::info!(error = %e, "cannot get an access token for realtime");
            }
            Internal::CaughtUp {
                conversation,
                pull,
                pulled,
            } => self.caught_up(conversation, pull, pulled),
            Internal::Listed(ticket, listed) => self.listed(ws, ticket, listed).await?,
            Internal::Fetched { batch, read } => self.fetched(batch, read),
            Internal::Polled(polled) => {
                if !self.status.borrow().is_live() {
                    // Without the channel and without an answer, nobody is known to be
                    // online: the members shown before must not stay listed for good.
                    let members = polled.unwrap_or_else(|e| {
                        tracing::debug!(error = %e, "presence poll failed");
                        Vec::new()
                    });
                    self.publish(members);
                }
            }
        }
        Ok(())
    }
}

/// Lists the workspace's conversations, takes a token and opens the socket.
async fn connect(
    base_url: String,
    anon_key: String,
    credentials: Arc<dyn Credentials>,
    client: Arc<Client>,
    workspace: Uuid,
) -> Result<(Ws, Option<String>, Option<catchup::Listing>)> {
    let conversations = match catchup::listing(&client, &workspace).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::info!(error = %e, "cannot list the workspace's conversations");
            None
        }
    };
    let token = credentials.access_token().await?;
    let url = socket_url(&base_url, &anon_key)?;
    let request = url.into_client_request().map_err(|e| Error::Network {
        url: base_url.clone(),
        reason: format!("bad realtime request: {e}"),
        timeout: false,
    })?;
    // Each read zeroes the unused part of the read buffer first (tungstenite), so its
    // default 128 KiB cost more per frame than the frame itself; 16 KiB still takes a
    // burst's frames dozens at a time.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let open = connect_async_with_config(request, Some(config), true);
    let (ws, _) = tokio::time::timeout(std::time::Duration::from_secs(10), open)
        .await
        .map_err(|_| Error::Network {
            url: base_url.clone(),
            reason: "realtime connection timed out".into(),
            timeout: true,
        })?
        .map_err(|e| Error::Network {
            // The URL holds the API key: only the base is shown.
            url: base_url.clone(),
            reason: format!("realtime connection failed: {e}"),
            timeout: false,
        })?;
    Ok((ws, token, conversations))
}

/// `ws(s)://…/realtime/v1/websocket?apikey=…&vsn=1.0.0` for an `http(s)://` base URL.
pub fn socket_url(base_url: &str, anon_key: &str) -> Result<String> {
    let base = base_url.trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        return Err(Error::InvalidConfig(
            "baseUrl must be an http(s) URL".into(),
        ));
    };
    Ok(format!(
        "{rest}/realtime/v1/websocket?apikey={}&vsn=1.0.0",
        query::encode(anon_key)
    ))
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls() {
        assert_eq!(
            socket_url("http://127.0.0.1:54321/", "k+y").unwrap(),
            "ws://127.0.0.1:54321/realtime/v1/websocket?apikey=k%2By&vsn=1.0.0"
        );
        assert!(socket_url("https://x.supabase.co", "k")
            .unwrap()
            .starts_with("wss://x.supabase.co/"));
        assert!(socket_url("ftp://x", "k").is_err());
    }
}
