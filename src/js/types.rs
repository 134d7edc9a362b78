//! Plain objects crossing the boundary, and `loadCloudConfig()`.

use std::collections::HashMap;

use napi_derive::napi;
use serde_json::Value;

use crate::{
    cloud_sync,
    config::{self, ConfigInput},
    conversations, files, realtime, sync,
};

/// What `loadCloudConfig()` returns (exactly the legacy keys).
#[napi(object)]
pub struct LoadedCloudConfig {
    pub base_url: String,
    pub anon_key: String,
    pub auto_login: bool,
    pub sync_interval: u32,
    pub presence_interval: u32,
}

/// Reads `OBOTO_CLOUD_URL`, `OBOTO_CLOUD_KEY`, `OBOTO_CLOUD_AUTO_LOGIN`,
/// `OBOTO_CLOUD_SYNC_INTERVAL` and `OBOTO_CLOUD_PRESENCE_INTERVAL`; `null` when the URL or
/// the key is missing or empty.
#[napi]
pub fn load_cloud_config() -> Option<LoadedCloudConfig> {
    config::from_env(|k| std::env::var(k).ok()).map(|c| LoadedCloudConfig {
        base_url: c.base_url,
        anon_key: c.anon_key,
        auto_login: c.auto_login,
        sync_interval: c.sync_interval,
        presence_interval: c.presence_interval,
    })
}

/// `initialize()`'s argument: `loadCloudConfig()`'s object plus optional settings.
#[napi(object)]
pub struct CloudSyncConfig {
    /// `https://<project>.supabase.co`, or the local cloud's URL.
    pub base_url: String,
    pub anon_key: String,
    /// `tryAutoLogin()` does nothing when false. Default true.
    pub auto_login: Option<bool>,
    /// Milliseconds. Default 30000.
    pub sync_interval: Option<f64>,
    /// Milliseconds. Default 60000.
    pub presence_interval: Option<f64>,
    /// Milliseconds. Default 2000.
    pub sync_debounce_ms: Option<f64>,
    /// Milliseconds to establish a connection. Default 10000 (or `OBOTO_CLOUD_CONNECT_TIMEOUT_MS`).
    pub connect_timeout_ms: Option<f64>,
    /// Milliseconds for a whole request. Default 30000 (or `OBOTO_CLOUD_REQUEST_TIMEOUT_MS`).
    pub request_timeout_ms: Option<f64>,
    /// Milliseconds for an AI proxy or agent call. Default 120000 (or `OBOTO_CLOUD_AI_TIMEOUT_MS`).
    pub ai_timeout_ms: Option<f64>,
    /// Milliseconds a stream may stay silent. Default 60000 (or `OBOTO_CLOUD_STREAM_IDLE_TIMEOUT_MS`).
    pub stream_idle_timeout_ms: Option<f64>,
    /// Milliseconds between realtime heartbeats; one left unanswered until the next drops the
    /// socket, which then reconnects. Default 25000 (or `OBOTO_CLOUD_REALTIME_HEARTBEAT_MS`).
    pub realtime_heartbeat_ms: Option<f64>,
    /// Bytes an AI stream's SSE line or event may hold. Default 1 MiB (or
    /// `OBOTO_CLOUD_MAX_STREAM_EVENT_BYTES`); beyond it the stream fails with `RESPONSE_TOO_LARGE`.
    pub max_stream_event_bytes: Option<f64>,
    /// Bytes a reply body read whole (JSON or text) may hold. Default 8 MiB (or
    /// `OBOTO_CLOUD_MAX_RESPONSE_BYTES`); beyond it the call fails with `RESPONSE_TOO_LARGE`.
    pub max_response_bytes: Option<f64>,
    /// Where the refresh token is kept. Default `auto` (or `OBOTO_CLOUD_TOKEN_STORE`).
    #[napi(ts_type = "'auto' | 'keychain' | 'secrets' | 'memory'")]
    pub token_store: Option<String>,
    /// Refresh the session on a timer ahead of expiry. Default true; when false, tokens are
    /// refreshed on demand only.
    pub auto_refresh: Option<bool>,
    /// Open a realtime socket for the linked workspace (live messages, presence, broadcasts,
    /// no polling while it is up). Default true; `OBOTO_CLOUD_REALTIME=false` turns it off.
    pub realtime: Option<bool>,
}

/// A JS number as whole milliseconds; `NaN`, negative or absurd values mean "default".
fn millis(v: Option<f64>) -> Option<u32> {
    v.filter(|v| v.is_finite() && *v >= 0.0 && *v <= u32::MAX as f64)
        .map(|v| v as u32)
}

impl From<CloudSyncConfig> for ConfigInput {
    fn from(c: CloudSyncConfig) -> ConfigInput {
        ConfigInput {
            base_url: c.base_url,
            anon_key: c.anon_key,
            auto_login: c.auto_login,
            sync_interval: millis(c.sync_interval),
            presence_interval: millis(c.presence_interval),
            sync_debounce_ms: millis(c.sync_debounce_ms),
            connect_timeout_ms: millis(c.connect_timeout_ms),
            request_timeout_ms: millis(c.request_timeout_ms),
            ai_timeout_ms: millis(c.ai_timeout_ms),
            stream_idle_timeout_ms: millis(c.stream_idle_timeout_ms),
            realtime_heartbeat_ms: millis(c.realtime_heartbeat_ms),
            max_stream_event_bytes: millis(c.max_stream_event_bytes),
            max_response_bytes: millis(c.max_response_bytes),
            token_store: c.token_store,
            auto_refresh: c.auto_refresh,
            realtime: c.realtime,
        }
    }
}

/// `client.request(path, options)`.
#[napi(object)]
pub struct RequestOptions {
    #[napi(ts_type = "'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE' | 'HEAD'")]
    pub method: Option<String>,
    #[napi(ts_type = "unknown")]
    pub body: Option<Value>,
    pub headers: Option<HashMap<String, String>>,
}

/// `pushConversation()`'s result.
#[napi(object)]
pub struct PushConversationResult {
    /// Rows newly inserted (a repeated push inserts none).
    pub pushed: u32,
    pub last_sync_at: Option<String>,
    /// Messages queued in the offline outbox because the cloud was unreachable.
    pub queued: Option<u32>,
    /// Messages the cloud refused for their content or, even alone, for their size
    /// (`PGRST413`), reported in `cloud:sync:error` (`refusedIds`) and never sent again.
    pub refused: Option<u32>,
}

impl From<conversations::PushResult> for PushConversationResult {
    fn from(r: conversations::PushResult) -> Self {
        PushConversationResult {
            pushed: r.pushed,
            last_sync_at: r.last_sync_at,
            queued: r.queued,
            refused: r.refused,
        }
    }
}

/// `pullConversation()`'s result: others' messages after `since`, oldest first.
#[napi(object)]
pub struct PullConversationResult {
    #[napi(ts_type = "PulledMessage[]")]
    pub messages: Vec<Value>,
    /// The newest row seen (own rows included), to pass as the next `since`.
    pub last_cloud_message_at: Option<String>,
}

impl From<conversations::PullResult> for PullConversationResult {
    fn from(r: conversations::PullResult) -> Self {
        PullConversationResult {
            messages: r.messages,
            last_cloud_message_at: r.last_cloud_message_at,
        }
    }
}

/// A member online in the linked workspace (`getPresence()`, `cloud:presence:updated`),
/// one entry per user however many machines it is on.
#[napi(object, use_nullable = true)]
pub struct PresenceMember {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub status: String,
    pub last_seen: Option<String>,
}

impl From<realtime::Member> for PresenceMember {
    fn from(m: realtime::Member) -> Self {
        PresenceMember {
            user_id: m.user_id,
            display_name: m.display_name,
            avatar_url: m.avatar_url,
            status: m.status,
            last_seen: m.last_seen,
        }
    }
}

/// `getStatus()`: exactly these keys, never a token.
#[napi(object, use_nullable = true)]
pub struct CloudStatus {
    pub logged_in: bool,
    pub user: Option<StatusUser>,
    pub profile: Option<StatusProfile>,
    pub org: Option<StatusOrg>,
    #[napi(ts_type = "'owner' | 'admin' | 'member' | 'viewer'")]
    pub role: Option<String>,
    pub configured: bool,
    pub linked_workspace: Option<LinkedWorkspace>,
    #[napi(ts_type = "SyncState")]
    pub sync_state: String,
    /// `null` while logged out.
    pub sync_engine_status: Option<SyncEngineStatus>,
}

#[napi(object, use_nullable = true)]
pub struct StatusUser {
    pub id: String,
    pub email: Option<String>,
}

#[napi(object, use_nullable = true)]
pub struct StatusProfile {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

#[napi(object, use_nullable = true)]
pub struct StatusOrg {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub tier: String,
}

#[napi(object)]
pub struct LinkedWorkspace {
    pub id: String,
    pub name: String,
}

#[napi(object, use_nullable = true)]
pub struct SyncEngineStatus {
    pub running: bool,
    #[napi(ts_type = "SyncState")]
    pub state: String,
    pub workspace: SyncTypeStatus,
    pub conversations: SyncTypeStatus,
    /// Entries of the logged-in user waiting in the offline outbox (another user's wait
    /// for that user's next login).
    pub outbox_pending: u32,
    /// `.cloud-outbox.jsonl` beside `.cloud-link.json`.
    pub outbox_path: Option<String>,
    pub consecutive_failures: u32,
    /// Why `.cloud-link.json` was ignored (unreadable), if it was.
    pub link_error: Option<String>,
}

#[napi(object, use_nullable = true)]
pub struct SyncTypeStatus {
    #[napi(ts_type = "SyncState")]
    pub state: String,
    pub last_sync_at: Option<String>,
    pub error: Option<String>,
}

impl From<cloud_sync::Status> for CloudStatus {
    fn from(s: cloud_sync::Status) -> Self {
        let a = s.auth;
        CloudStatus {
            logged_in: a.logged_in,
            user: a.user.map(|u| StatusUser {
                id: u.id,
                email: u.email,
            }),
            profile: a.profile.map(|p| StatusProfile {
                display_name: p.display_name,
                avatar_url: p.avatar_url,
            }),
            org: a.org.map(|o| StatusOrg {
                id: o.id,
                name: o.name,
                slug: o.slug,
                tier: o.tier,
            }),
            role: a.role,
            configured: s.configured,
            linked_workspace: s.linked_workspace.map(|l| LinkedWorkspace {
                id: l.id,
                name: l.name,
            }),
            sync_state: s.sync_state.as_str().into(),
            sync_engine_status: s.engine.map(Into::into),
        }
    }
}

impl From<sync::EngineStatus> for SyncEngineStatus {
    fn from(e: sync::EngineStatus) -> Self {
        let b = e.board;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        SyncEngineStatus {
            running: b.running,
            state: b.overall().as_str().into(),
            workspace: b.workspace.into(),
            conversations: b.conversations.into(),
            outbox_pending: count(b.outbox_pending),
            outbox_path: e.outbox_path,
            consecutive_failures: b.failures,
            link_error: b.link_error,
        }
    }
}

impl From<sync::TypeStatus> for SyncTypeStatus {
    fn from(t: sync::TypeStatus) -> Self {
        SyncTypeStatus {
            state: t.state.as_str().into(),
            last_sync_at: t.last_sync_at,
            error: t.error,
        }
    }
}

/// `fileSync.uploadFile()` and `downloadFile()`: the file as recorded in the cloud.
#[napi(object, use_nullable = true)]
pub struct TransferredFile {
    /// Workspace-relative, `/`-separated.
    pub file_path: String,
    /// `{workspaceId}/{filePath}` in the `workspace-files` bucket.
    pub storage_path: String,
    pub size: i64,
    /// SHA-256, hex.
    pub checksum: Option<String>,
    pub version: i64,
}

impl From<files::transfer::Transferred> for TransferredFile {
    fn from(t: files::transfer::Transferred) -> Self {
        TransferredFile {
            file_path: t.file_path,
            storage_path: t.storage_path,
            size: t.size,
            checksum: t.checksum,
            version: t.version,
        }
    }
}

/// `fileSync.deleteFile()`.
#[napi(object)]
pub struct DeletedFile {
    pub file_path: String,
    /// `false` when there was no live file at that path.
    pub deleted: bool,
}

/// `fileSync.computeDelta()`: workspace-relative paths per action.
#[napi(object)]
pub struct FileDelta {
    pub to_upload: Vec<String>,
    pub to_download: Vec<String>,
    pub synced: Vec<String>,
    pub to_delete_local: Vec<String>,
    pub to_delete_remote: Vec<String>,
    pub conflicts: Vec<String>,
    /// Synced before and unchanged here, but the cloud has no row for them and no record
    /// of their deletion (rows removed outside the sync): left as they are, not uploaded
    /// again. Only a deletion recorded in the cloud deletes a local file.
    pub kept_local: Vec<String>,
    /// Files whose contents the scan read (the rest came from the size + mtime cache).
    pub hashed: u32,
    /// What a sync would not act on, and why, as in `FileSyncResult.failed`: files here that
    /// cannot be stat-ed or read, directories that cannot be read, and ignore files that
    /// cannot be used (`IO_ERROR`), each left alone both ways with all under it; and cloud
    /// files whose object did not match this very row (`CONTENT_MISMATCH`), not in
    /// `toDownload` or `conflicts` until the row changes.
    pub failed: Vec<FileFailure>,
}

/// A path a file sync does not act on, and why.
#[napi(object)]
pub struct FileFailure {
    pub file_path: String,
    pub code: String,
    pub error: String,
}

impl From<files::sync::Delta> for FileDelta {
    fn from(d: files::sync::Delta) -> Self {
        use files::delta::Class;
        FileDelta {
            to_upload: d.paths(Class::Upload),
            to_download: d.paths(Class::Download),
            synced: d.paths(Class::InSync),
            to_delete_local: d.paths(Class::DeleteLocal),
            to_delete_remote: d.paths(Class::DeleteRemote),
            conflicts: d.paths(Class::Conflict),
            kept_local: d.paths(Class::KeepLocal),
            hashed: u32::try_from(d.hashed).unwrap_or(u32::MAX),
            failed: d
                .unreadable
                .iter()
                .map(|(path, why)| (path, crate::error::Error::Io(why.clone())))
                .chain(d.refusals())
                .map(|(path, e)| FileFailure {
                    file_path: path.as_str().to_string(),
                    code: e.code(),
                    error: e.to_string(),
                })
                .collect(),
        }
    }
}
