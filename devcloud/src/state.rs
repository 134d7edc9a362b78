//! State shared by every handler.

use std::{path::PathBuf, sync::Arc, time::Duration};

use deadpool_postgres::Pool;

use crate::{jwt::JwtKeys, stats::Stats};

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub db: Pool,
    pub keys: JwtKeys,
    pub settings: Settings,
    pub stats: Stats,
    /// Realtime's registry of sockets, channels and presence.
    pub realtime: crate::realtime::Realtime,
    /// PostgREST's schema cache, loaded after migrations.
    pub rest: crate::rest::RestState,
    /// Outbound HTTP (the optional AI upstream).
    pub http: reqwest::Client,
}

pub struct Settings {
    pub jwt_exp: Duration,
    pub refresh_reuse_interval: Duration,
    pub max_body_bytes: usize,
    pub max_upload_bytes: u64,
    /// At most this many rows per REST response.
    pub db_max_rows: u64,
    /// A realtime socket silent this long is closed.
    pub realtime_timeout: Duration,
    /// Channels per realtime socket (and refused joins awaiting their reply).
    pub realtime_max_channels: usize,
    /// postgres_changes entries over all the channels of a realtime socket.
    pub realtime_max_postgres_changes: usize,
    /// Where storage objects are kept.
    pub storage_dir: PathBuf,
    /// `DEVCLOUD_AI_UPSTREAM`: an OpenAI-compatible base URL for `ai-proxy`, if set.
    pub ai_upstream: Option<String>,
}
