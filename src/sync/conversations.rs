//! Conversations of the linked workspace: pushed exactly once (through the outbox when
//! the cloud is unreachable) and pulled page by page.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    link::not_linked,
    now_iso,
    outbox::{Entry, Outbox},
    Kind, SyncState, Syncer,
};
use crate::{
    connection::Connection,
    conversations::{
        self,
        messages::{insert_isolating, own_rows},
        pull::{self, PAGE},
        push::{self, Plan, PushState, Synced, Tracker, BATCH, BATCH_BYTES},
        PullResult, PushResult,
    },
    error::{Error, Result},
    events::Event,
    rest::query,
};

impl Syncer {
    pub async fn list_conversations(&self, conn: &Connection) -> Result<Value> {
        match self.linked_workspace_id() {
            Some(ws) => conversations::list(&conn.client, &ws).await,
            None => Ok(json!([])),
        }
    }

    /// Creates a cloud conversation in the linked workspace and maps `name` to it.
    pub async fn create_conversation(
        &self,
        conn: &Connection,
        name: &str,
        conversation_type: Option<&str>,
    ) -> Result<Value> {
        let ws = self.linked_workspace_id().ok_or_else(not_linked)?;
        let user = conn.user_id();
        let kind = conversation_type.unwrap_or("chat");
        let row = conversations::create(&conn.client, &ws, name, kind, user.as_deref()).await?;
        if let Some(id) = row.get("id").and_then(Value::as_str) {
            let id = id.to_string();
            self.save_link(|l| l.link_conversation(name, &id))?;
        }
        Ok(row)
    }

    pub(super) fn push_state(&self, conv: &Uuid) -> PushState {
        let i = self.lock();
        match &i.link {
            Some(link) => link
                .conversation(&conv.to_string())
                .and_then(|e| serde_json::from_value(Value::Object(e.clone())).ok())
                .unwrap_or_default(),
            None => i.push_states.get(conv).cloned().unwrap_or_default(),
        }
    }

    pub(super) fn save_push_state(&self, conv: &Uuid, st: PushState, now: &str) -> Result<()> {
        let linked = self.lock().link.is_some();
        if !linked {
            self.lock().push_states.insert(*conv, st);
            return Ok(());
        }
        let id = conv.to_string();
        self.save_link(|l| {
            let e = l.conversation_mut(&id);
            if let Ok(Value::Object(fields)) = serde_json::to_value(&st) {
                e.extend(fields);
            }
            e.insert("lastSyncAt".into(), json!(now));
        })
    }

    /// `pushConversation`: the new user/assistant messages, in batches, exactly once; queued
    /// in the outbox when the cloud is unreachable.
    pub async fn push_conversation(
        &self,
        conn: &Arc<Connection>,
        conv_id: &str,
        messages: &Value,
    ) -> Result<PushResult> {
        let conv = query::uuid("conversation id", conv_id)?;
        let msgs = push::synced_messages(messages)?;
        let user = conn.user_id().ok_or(Error::NotLoggedIn)?;
        let _g = self.conversations_guard.lock().await;
        self.track(
            Kind::Conversations,
            self.push_inner(conn, conv, &user, &msgs),
        )
        .await
    }

    pub(super) fn tracker(&self, conv: &Uuid) -> Tracker {
        let state = self.push_state(conv);
        let prefixes = self.lock().prefixes.get(conv).cloned();
        Tracker::new(state, prefixes)
    }

    pub(super) fn save_tracker(&self, conv: &Uuid, t: &Tracker, now: &str) -> Result<()> {
        self.save_push_state(conv, t.state().clone(), now)?;
        let mut i = self.lock();
        match t.prefixes() {
            Some(p) => i.prefixes.insert(*conv, p.to_vec()),
            None => i.prefixes.remove(conv),
        };
        Ok(())
    }

    pub(super) async fn push_inner(
        &self,
        conn: &Arc<Connection>,
        conv: Uuid,
        user: &str,
        msgs: &[Synced],
    ) -> Result<(PushResult, SyncState)> {
        let mut tracker = self.tracker(&conv);
        let plan = tracker.plan(msgs);
        let recent = if plan == Plan::Rewritten {
            tracing::info!(conversation = %conv, "local history was rewritten; matching against its cloud rows");
            // Rows still queued are not in the cloud yet: matched without them, their
            // messages would be sent again under new ordinals. The file says, not this
            // process's count: another process on the directory may have queued them.
            if self.outbox().is_some_and(|ob| ob.pending(user) > 0) {
                let flushed = self.flush_outbox(conn).await?;
                let id = conv.to_string();
                if let Some((_, e)) = flushed.held.into_iter().find(|(k, _)| *k == id) {
                    return Err(e);
                }
            }
            own_rows(&conn.client, &conv, user, PAGE).await?
        } else {
            Vec::new()
        };
        let out = tracker.outgoing(&plan, msgs, &recent);
        let rows = push::rows(&conv, user, out.first_ordinal, &out.messages);
        let now = now_iso();
        let ob = self.outbox();
        // Anything queued earlier goes first, so the cloud sees messages in order. What the
        // cloud refused for the user's identity stays queued and was reported; the rows of
        // this push may still pass.
        let mut offline = false;
        if !rows.is_empty() && ob.as_ref().is_some_and(|ob| ob.pending(user) > 0) {
            if let Err(e) = self.flush_outbox(conn).await {
                if !is_retryable(&e) {
                    return Err(e);
                }
                offline = true;
            }
        }
        let mut pushed = 0usize;
        let mut queued = 0usize;
        let mut refused = Vec::new();
        let batches = push::batches(&rows, BATCH, BATCH_BYTES);
        for (i, batch) in batches.iter().enumerate() {
            if !offline {
                match insert_isolating(&conn.client, batch).await {
                    Ok((n, mut r)) => {
                        pushed += n;
                        refused.append(&mut r);
                        continue;
                    }
                    // Unreachable: this batch and the rest go to the outbox below.
                    Err(e) if e.is_network() && ob.is_some() => {}
                    Err(e) => return Err(e),
                }
            }
            let rest: Vec<Entry> = batches[i..]
                .iter()
                .map(|b| Entry::Messages {
                    conversation_id: conv.to_string(),
                    rows: b.to_vec(),
                })
                .collect();
            queued = batches[i..].iter().map(|b| b.len()).sum();
            if let Some(ob) = &ob {
                self.enqueue(ob, user, rest).await?;
            }
            break;
        }
        tracker.pushed(msgs, &out);
        self.save_tracker(&conv, &tracker, &now)?;
        if !refused.is_empty() {
            self.report_refused(&conv, &refused);
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let out = PushResult {
            pushed: count(pushed),
            last_sync_at: Some(now),
            queued: (queued > 0).then(|| count(queued)),
            refused: (!refused.is_empty()).then(|| count(refused.len())),
        };
        let end = if queued > 0 {
            SyncState::Offline
        } else {
            SyncState::Synced
        };
        Ok((out, end))
    }

    /// Rows the cloud refused for their data or their size are not sent again (they never
    /// could be stored as they are), and so that this is never silent, each push that met
    /// some says so: one event per kind of refusal, each with its code and its rows' ids.
    pub(super) fn report_refused(&self, conv: &Uuid, refused: &[(String, Error)]) {
        let mut kinds: Vec<(String, &Error, Vec<&str>)> = Vec::new();
        for (id, e) in refused {
            let code = e.code();
            match kinds.iter_mut().find(|(c, ..)| *c == code) {
                Some((_, _, ids)) => ids.push(id),
                None => kinds.push((code, e, vec![id])),
            }
        }
        for (code, first, ids) in kinds {
            tracing::warn!(conversation = %conv, count = ids.len(), error = %first, "the cloud refused some messages");
            let mut detail = serde_json::Map::new();
            detail.insert("conversationId".into(), json!(conv.to_string()));
            detail.insert("refusedIds".into(), json!(ids));
            self.events.emit(Event::SyncError {
                r#type: "conversations",
                code,
                error: first.to_string(),
                detail,
            });
        }
    }

    /// Queues `entries` as `user`'s: only a session of `user` sends them.
    pub(super) async fn enqueue(&self, ob: &Outbox, user: &str, entries: Vec<Entry>) -> Result<()> {
        match ob.append(user, entries).await {
            Ok(n) => {
                self.update_board(|b| b.outbox_pending = n);
                // The engine may be idle until its next poll, which never comes while the
                // socket is live (it can come back before that poll): a cycle now fails
                // while the cloud is away and is retried on its backoff until the outbox
                // drains.
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                self.report_outbox(ob, &e);
                Err(e)
            }
        }
    }

    /// A full outbox, or one whose lock another process holds past the wait, is the file's
    /// problem and not the cloud's: besides the failed operation's own `cloud:sync:error`,
    /// the host is told which file (`{type: 'outbox', code, path}`).
    fn report_outbox(&self, ob: &Outbox, e: &Error) {
        if matches!(e, Error::OutboxFull(_) | Error::OutboxLocked(_)) {
            let mut detail = serde_json::Map::new();
            detail.insert("path".into(), json!(ob.path().display().to_string()));
            self.events.emit(Event::SyncError {
                r#type: "outbox",
                code: e.code(),
                error: e.to_string(),
                detail,
            });
        }
    }

    /// Sends the session user's outbox entries in order (see [`outbox`](super::outbox) for
    /// whose they are), and keeps every other user's for that user's next login. Stops at
    /// the first failure that may pass (offline, 5xx, rate limit, 401) and keeps the rest.
    /// An entry refused with 403 (RLS: the cloud does not take it from this user, now) is
    /// kept and reported, and the later entries of its conversation wait behind it, so rows
    /// stay in order; it is sent again at the next flush. An entry the server refuses for
    /// good otherwise is dropped and reported, so it cannot block everything behind it.
    ///
    /// Another process on the same working directory may flush the same entries at the same
    /// time, and both then send them. That stores nothing twice: message rows carry
    /// deterministic ids and are inserted with `ignore-duplicates`, and a workspace state is
    /// a conditional update of the one row, not a new row. Each removes what it handled by
    /// id, so neither drops an entry the other queued meanwhile. A workspace state is sent
    /// only while the link's base is the one it was queued on: once the base has moved, a
    /// state was pushed (it, or a newer one) or pulled since, and it would overwrite that.
    pub(super) async fn flush_outbox(&self, conn: &Arc<Connection>) -> Result<Flushed> {
        let Some(ob) = self.outbox() else {
            return Ok(Flushed::default());
        };
        let user = conn.user_id().ok_or(Error::NotLoggedIn)?;
        let _g = self.outbox_guard.lock().await;
        let queued = ob.load()?;
        let mine: Vec<usize> = (0..queued.len())
            .filter(|&i| queued[i].belongs_to(&user))
            .collect();
        if mine.is_empty() {
            self.update_board(|b| b.outbox_pending = 0);
            return Ok(Flushed::default());
        }
        let linked = self.linked_workspace_id();
        // Only the newest queued state of the linked workspace is worth sending.
        let last_state = mine.iter().rev().copied().find(|&i| {
            matches!(&queued[i].entry, Entry::Workspace { workspace_id, .. } if Some(workspace_id) == linked.as_ref())
        });
        let mut done = Vec::new();
        let mut held: Vec<(String, Error)> = Vec::new();
        let mut failure = None;
        for &i in &mine {
            let entry = &queued[i].entry;
            if held.iter().any(|(k, _)| k == entry.key()) {
                continue;
            }
            let r = match entry {
                Entry::Messages {
                    rows,
                    conversation_id,
                } => insert_isolating(&conn.client, rows)
                    .await
                    .map(|(_, refused)| {
                        if let (false, Ok(conv)) =
                            (refused.is_empty(), Uuid::parse_str(conversation_id))
                        {
                            self.report_refused(&conv, &refused);
                        }
                    }),
                Entry::Workspace { state, base, .. } if Some(i) == last_state => {
                    let _g = self.workspace_guard.lock().await;
                    // A newer local state, if any, supersedes the queued one.
                    let newer = self.lock().pending_state.take();
                    match newer {
                        Some(local) => self
                            .sync_workspace_inner(conn, false, Some(local), false)
                            .await
                            .map(|_| ()),
                        None if self.base_moved_from(base.as_ref()) => {
                            tracing::debug!(
                                "a queued workspace state older than the cloud's base is dropped"
                            );
                            Ok(())
                        }
                        None => self
                            .sync_workspace_inner(conn, false, Some(state.clone()), false)
                            .await
                            .map(|_| ()),
                    }
                }
                Entry::Workspace { .. } => Ok(()),
            };
            match r {
                Ok(()) => done.push(queued[i].id),
                Err(e) if is_retryable(&e) => {
                    failure = Some(e);
                    break;
                }
                Err(e) if refused_for_identity(&e) => {
                    tracing::warn!(error = %e, "keeping an outbox entry the cloud refused for the user's identity");
                    let mut detail = serde_json::Map::new();
                    let key = match entry {
                        Entry::Messages { .. } => "conversationId",
                        Entry::Workspace { .. } => "workspaceId",
                    };
                    detail.insert(key.into(), json!(entry.key()));
                    detail.insert("kept".into(), json!(true));
                    self.events.emit(Event::SyncError {
                        r#type: "outbox",
                        code: e.code(),
                        error: e.to_string(),
                        detail,
                    });
                    held.push((entry.key().to_string(), e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dropping an outbox entry the cloud refused");
                    self.events.emit(Event::sync_error("outbox", &e));
                    done.push(queued[i].id);
                }
            }
        }
        // Locked: what was sent stays queued for the next flush, which the engine's backoff
        // brings. Its message rows' fixed ids store them once; a workspace state is not sent
        // again, as its own push moved the base on from the one it was queued on (and a
        // newer state pushed since would otherwise be overwritten by the older one).
        let sent = done.len();
        let left = ob
            .remove(done)
            .await
            .inspect_err(|e| self.report_outbox(&ob, e))?;
        let pending = left.iter().filter(|q| q.belongs_to(&user)).count();
        self.update_board(|b| b.outbox_pending = pending);
        match failure {
            Some(e) => Err(e),
            None => Ok(Flushed { sent, held }),
        }
    }

    /// `pullConversation`: every message after `since` from other senders, until drained.
    pub async fn pull_conversation(
        &self,
        conn: &Arc<Connection>,
        conv_id: &str,
        since: Option<&str>,
    ) -> Result<PullResult> {
        let conv = query::uuid("conversation id", conv_id)?;
        let since = since
            .filter(|s| !s.trim().is_empty())
            .map(|s| pull::timestamp("since", s))
            .transpose()?;
        let me = conn.user_id();
        self.track(Kind::Conversations, async {
            let pulled =
                pull::pull(&conn.client, &conv, since.as_deref(), me.as_deref(), PAGE).await?;
            let last = pulled.last_created_at.or(since.clone());
            if let Some(last) = &last {
                if self.lock().link.is_some() {
                    let id = conv.to_string();
                    self.save_link(|l| {
                        l.conversation_mut(&id)
                            .insert("lastCloudMessageAt".into(), json!(last));
                    })?;
                }
            }
            let out = PullResult {
                messages: pulled.messages,
                last_cloud_message_at: last,
            };
            Ok((out, SyncState::Synced))
        })
        .await
    }
}

/// What [`Syncer::flush_outbox`] did.
#[derive(Default)]
pub(super) struct Flushed {
    /// Entries delivered, or given up and reported.
    pub sent: usize,
    /// The conversations (or workspace) whose entries the cloud refused for the user's
    /// identity, each with its refusal: kept queued, with the later entries of the same key.
    pub held: Vec<(String, Error)>,
}

/// The cloud does not take the entry from this user (HTTP 403, such as RLS's 42501): it
/// may once the user's access is restored, and the rows are theirs, so they are kept.
fn refused_for_identity(e: &Error) -> bool {
    matches!(e, Error::Http(h) if h.status == 403)
}

/// Failures that may pass by themselves: keep the work and try again later.
fn is_retryable(e: &Error) -> bool {
    match e {
        Error::Network { .. } | Error::NotLoggedIn | Error::SessionEnded(_) => true,
        Error::Http(h) => h.status >= 500 || matches!(h.status, 401 | 408 | 429),
        Error::InvalidResponse { .. } => true,
        _ => false,
    }
}
