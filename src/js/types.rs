//! Plain objects crossing the boundary, and `loadCloudConfig()`.

use std::collections::HashMap;

use napi_derive::napi;
use serde_json::Value;

use crate::config::{self, ConfigInput};

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
