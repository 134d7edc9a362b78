//! Events for the host (`cloud:auth:logged-in`, …): every name and payload of interface.md,
//! as one enum serialized here and nowhere else. The core only knows the sink; the JS
//! boundary installs one that forwards to a weak threadsafe function.

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
};

use serde::Serialize;
use serde_json::{value::RawValue, Value};
use tokio::sync::Notify;

use crate::heap::AfterBurst;

pub trait EventSink: Send + Sync {
    /// `payload` is always the text of a JSON object (the host spreads it into
    /// `{...payload, timestamp}`). `handled` is dropped once the host has handled the event
    /// (or could not be given it).
    fn emit(&self, name: &str, payload: Box<RawValue>, handled: Pending);
}

/// How many events may wait for the host before a producer that can wait (the realtime
/// socket) stops reading: the rest wait in the kernel and at the server, as they do for a
/// JS client, instead of in this process's memory.
pub const HOST_BACKLOG: usize = 1024;

/// A burst's memory goes back to the system once the host has handled it.
static AFTER_BURST: AfterBurst = AfterBurst::new();

#[derive(Default)]
struct Backlog {
    waiting: AtomicUsize,
    drained: Notify,
}

/// An event given to the sink and not yet handled by the host.
pub struct Pending(Arc<Backlog>);

impl Drop for Pending {
    fn drop(&mut self) {
        // Waiters resume once half the backlog is handled, not at every event.
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == HOST_BACKLOG / 2 {
            self.0.drained.notify_waiters();
        }
        if AFTER_BURST.handled() {
            AFTER_BURST.trim();
        }
    }
}

/// One event. A variant's fields are its payload's keys (camelCase); a newtype variant's
/// payload is the row it carries, as the cloud sent it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum Event {
    /// `cloud:auth:logged-in`: the status snapshot of the new session (never a token).
    LoggedIn(Value),
    LoggedOut {},
    AuthError {
        error: String,
    },
    /// `cloud:sync-status`: the overall state changed.
    SyncStatus {
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    SyncStarted {
        r#type: &'static str,
    },
    SyncCompleted {
        r#type: &'static str,
        state: &'static str,
    },
    SyncResolved {
        r#type: &'static str,
    },
    /// `cloud:sync:error`; `detail` adds the keys of the failure's kind (`conversationId`
    /// and `refusedIds`, `path`).
    SyncError {
        r#type: &'static str,
        code: String,
        error: String,
        #[serde(flatten)]
        detail: serde_json::Map<String, Value>,
    },
    WorkspaceConflict {
        r#type: &'static str,
        workspace_id: String,
        resolution: &'static str,
        local: Value,
        cloud: Value,
    },
    FileConflict {
        r#type: &'static str,
        workspace_id: String,
        file_path: String,
        conflict_path: String,
        resolution: &'static str,
    },
    WorkspaceLinked {
        local_dir: String,
        cloud_workspace_id: String,
        cloud_workspace_name: String,
    },
    WorkspaceUnlinked {
        local_dir: String,
        cloud_workspace_id: Option<String>,
    },
    WorkspacePushed {
        workspace_id: String,
    },
    WorkspacePulled {
        workspace_id: String,
        state: Value,
    },
    /// `cloud:workspace:remote-update`: the workspace row someone else changed.
    WorkspaceRemoteUpdate(Value),
    AgentInvoked {
        slug: String,
        agent_name: Option<String>,
        message_id: Option<String>,
    },
    /// `cloud:usage-update`: the usage of a finished stream.
    UsageUpdate(Value),
    FileUploaded {
        file_path: String,
        cloud_path: String,
        size: u64,
    },
    FileDownloaded {
        file_path: String,
        cloud_path: String,
        size: u64,
    },
    FileDeleted {
        file_path: String,
        cloud_path: String,
    },
    FileProgress {
        file_path: String,
        bytes: u64,
        total: u64,
    },
    /// `cloud:conversation:deleted`: a conversation of the linked workspace is gone
    /// (deleted, or moved to another workspace), seen live or by a list after a gap.
    ConversationDeleted {
        workspace_id: String,
        conversation_id: String,
    },
    /// `cloud:message:received`: a message row another sender wrote, as the cloud sent it.
    MessageReceived(Box<RawValue>),
    PresenceUpdated {
        workspace_id: String,
        /// The merged members, one per user (`realtime::Member`).
        members: Value,
    },
    RealtimeConnected {
        workspace_id: String,
    },
    RealtimeDisconnected {
        workspace_id: String,
    },
    /// `cloud:broadcast:<event>`: another member's broadcast, its payload as sent.
    #[serde(skip)]
    Broadcast {
        event: String,
        payload: Value,
    },
}

impl Event {
    pub fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Event::LoggedIn(_) => "cloud:auth:logged-in",
            Event::LoggedOut {} => "cloud:auth:logged-out",
            Event::AuthError { .. } => "cloud:auth:error",
            Event::SyncStatus { .. } => "cloud:sync-status",
            Event::SyncStarted { .. } => "cloud:sync:started",
            Event::SyncCompleted { .. } => "cloud:sync:completed",
            Event::SyncResolved { .. } => "cloud:sync:resolved",
            Event::SyncError { .. } => "cloud:sync:error",
            Event::WorkspaceConflict { .. } | Event::FileConflict { .. } => "cloud:sync:conflict",
            Event::WorkspaceLinked { .. } => "cloud:workspace:linked",
            Event::WorkspaceUnlinked { .. } => "cloud:workspace:unlinked",
            Event::WorkspacePushed { .. } => "cloud:workspace:pushed",
            Event::WorkspacePulled { .. } => "cloud:workspace:pulled",
            Event::WorkspaceRemoteUpdate(_) => "cloud:workspace:remote-update",
            Event::AgentInvoked { .. } => "cloud:agent:invoked",
            Event::UsageUpdate(_) => "cloud:usage-update",
            Event::FileUploaded { .. } => "cloud:file:uploaded",
            Event::FileDownloaded { .. } => "cloud:file:downloaded",
            Event::FileDeleted { .. } => "cloud:file:deleted",
            Event::FileProgress { .. } => "cloud:file:progress",
            Event::ConversationDeleted { .. } => "cloud:conversation:deleted",
            Event::MessageReceived(_) => "cloud:message:received",
            Event::PresenceUpdated { .. } => "cloud:presence:updated",
            Event::RealtimeConnected { .. } => "cloud:realtime:connected",
            Event::RealtimeDisconnected { .. } => "cloud:realtime:disconnected",
            Event::Broadcast { event, .. } => {
                return Cow::Owned(format!("cloud:broadcast:{event}"))
            }
        })
    }

    /// The payload object's text. A row that is not an object (the cloud's reply is
    /// untrusted, and the host spreads payloads) goes out as `{}` rather than as something
    /// else.
    pub fn into_payload(self) -> Box<RawValue> {
        let raw = match self {
            // Passed on as it came (a message burst is tens of thousands of these).
            Event::MessageReceived(row) => Ok(row),
            Event::Broadcast { payload, .. }
            | Event::LoggedIn(payload)
            | Event::WorkspaceRemoteUpdate(payload)
            | Event::UsageUpdate(payload) => serde_json::value::to_raw_value(&payload),
            other => serde_json::value::to_raw_value(&other),
        };
        match raw {
            Ok(raw) if raw.get().starts_with('{') => raw,
            _ => empty_object(),
        }
    }

    /// `cloud:sync:error` without details.
    pub fn sync_error(r#type: &'static str, e: &crate::error::Error) -> Event {
        Event::SyncError {
            r#type,
            code: e.code(),
            error: e.to_string(),
            detail: Default::default(),
        }
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).unwrap_or_else(|_| unreachable!("{{}} is JSON"))
}

#[derive(Default)]
pub struct Events {
    sink: RwLock<Option<Arc<dyn EventSink>>>,
    backlog: Arc<Backlog>,
}

impl Events {
    pub fn set_sink(&self, sink: Option<Arc<dyn EventSink>>) {
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    pub fn emit(&self, event: Event) {
        let sink = self.sink.read().unwrap_or_else(|p| p.into_inner()).clone();
        let name = event.name();
        tracing::debug!(event = %name, "emit");
        if let Some(sink) = sink {
            self.backlog.waiting.fetch_add(1, Ordering::AcqRel);
            sink.emit(&name, event.into_payload(), Pending(self.backlog.clone()));
        }
    }

    /// Whether fewer than [`HOST_BACKLOG`] events wait for the host.
    pub fn has_room(&self) -> bool {
        self.backlog.waiting.load(Ordering::Acquire) < HOST_BACKLOG
    }

    /// Resolves once the host has handled enough of its backlog.
    pub async fn room(&self) {
        loop {
            let drained = self.backlog.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.has_room() {
                return;
            }
            drained.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(e: Event) -> Value {
        serde_json::from_str(e.into_payload().get()).unwrap()
    }

    #[test]
    fn payload_keys_are_those_of_interface_md() {
        let e = Event::WorkspaceLinked {
            local_dir: "/w".into(),
            cloud_workspace_id: "id".into(),
            cloud_workspace_name: "n".into(),
        };
        assert_eq!(e.name(), "cloud:workspace:linked");
        assert_eq!(
            payload(e),
            json!({"localDir": "/w", "cloudWorkspaceId": "id", "cloudWorkspaceName": "n"})
        );
        let s = Event::SyncStatus {
            state: "synced",
            error: None,
        };
        assert_eq!(payload(s), json!({"state": "synced"}));
        assert_eq!(payload(Event::LoggedOut {}), json!({}));
    }

    #[test]
    fn details_of_a_sync_error_sit_beside_its_fields() {
        let mut detail = serde_json::Map::new();
        detail.insert("path".into(), json!("/o"));
        let e = Event::SyncError {
            r#type: "outbox",
            code: "OUTBOX_FULL".into(),
            error: "full".into(),
            detail,
        };
        assert_eq!(
            payload(e),
            json!({"type": "outbox", "code": "OUTBOX_FULL", "error": "full", "path": "/o"})
        );
    }

    #[test]
    fn a_broadcast_is_named_for_its_event_and_a_row_that_is_no_object_is_not_sent_as_one() {
        let b = Event::Broadcast {
            event: "typing".into(),
            payload: json!({"x": 1}),
        };
        assert_eq!(b.name(), "cloud:broadcast:typing");
        assert_eq!(payload(b), json!({"x": 1}));
        let row = serde_json::value::to_raw_value(&json!([1])).unwrap();
        assert_eq!(payload(Event::MessageReceived(row)), json!({}));
        let row = serde_json::value::to_raw_value(&json!({"id": "m"})).unwrap();
        assert_eq!(payload(Event::MessageReceived(row)), json!({"id": "m"}));
    }
}
