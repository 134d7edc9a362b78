//! Configuration: `loadCloudConfig()` from the environment, and the validated settings
//! `initialize()` works with.

use std::time::Duration;

use crate::{
    error::{Error, Result},
    rest::Timeouts,
    token_store::StoreKind,
};

pub const DEFAULT_SYNC_INTERVAL_MS: u32 = 30_000;
pub const DEFAULT_PRESENCE_INTERVAL_MS: u32 = 60_000;
pub const DEFAULT_SYNC_DEBOUNCE_MS: u32 = 2_000;
pub const DEFAULT_AI_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What `loadCloudConfig()` returns: exactly the legacy keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvConfig {
    pub base_url: String,
    pub anon_key: String,
    pub auto_login: bool,
    pub sync_interval: u32,
    pub presence_interval: u32,
}

/// Reads `OBOTO_CLOUD_*` through `get` (the process environment in production).
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<EnvConfig> {
    let non_empty = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let base_url = non_empty("OBOTO_CLOUD_URL")?;
    let anon_key = non_empty("OBOTO_CLOUD_KEY")?;
    Some(EnvConfig {
        base_url: base_url.trim_end_matches('/').to_string(),
        anon_key,
        auto_login: get("OBOTO_CLOUD_AUTO_LOGIN").as_deref().map(str::trim) != Some("false"),
        sync_interval: interval(get("OBOTO_CLOUD_SYNC_INTERVAL"), DEFAULT_SYNC_INTERVAL_MS),
        presence_interval: interval(
            get("OBOTO_CLOUD_PRESENCE_INTERVAL"),
            DEFAULT_PRESENCE_INTERVAL_MS,
        ),
    })
}

/// A positive whole number of milliseconds, else the default (the old code produced `NaN`).
pub fn interval(raw: Option<String>, default: u32) -> u32 {
    raw.and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// The validated settings of one `initialize()`.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub base_url: String,
    pub anon_key: String,
    pub auto_login: bool,
    pub sync_interval_ms: u32,
    pub presence_interval_ms: u32,
    pub sync_debounce_ms: u32,
    pub timeouts: Timeouts,
    /// Whole-request limit for AI proxy and agent calls, which take longer than REST.
    pub ai_timeout: Duration,
    /// A stream that sends no byte for this long is failed.
    pub stream_idle_timeout: Duration,
    /// Between realtime heartbeats; a heartbeat unanswered by the next one drops the socket.
    pub realtime_heartbeat: Duration,
    /// The largest SSE line or event of a stream (`RESPONSE_TOO_LARGE` beyond it).
    pub max_stream_event_bytes: usize,
    /// The largest reply body read whole (JSON, text): `RESPONSE_TOO_LARGE` beyond it.
    pub max_response_bytes: usize,
    pub token_store: StoreKind,
    /// Refresh ahead of expiry on a timer (on by default); otherwise only on demand.
    pub auto_refresh: bool,
    /// Open a realtime socket for the linked workspace (on by default); off, the engine
    /// polls every `sync_interval_ms` and presence stays empty.
    pub realtime: bool,
}

/// `initialize()`'s input before validation; `None` means "use the default".
#[derive(Debug, Clone, Default)]
pub struct ConfigInput {
    pub base_url: String,
    pub anon_key: String,
    pub auto_login: Option<bool>,
    pub sync_interval: Option<u32>,
    pub presence_interval: Option<u32>,
    pub sync_debounce_ms: Option<u32>,
    pub connect_timeout_ms: Option<u32>,
    pub request_timeout_ms: Option<u32>,
    pub ai_timeout_ms: Option<u32>,
    pub stream_idle_timeout_ms: Option<u32>,
    pub realtime_heartbeat_ms: Option<u32>,
    pub max_stream_event_bytes: Option<u32>,
    pub max_response_bytes: Option<u32>,
    pub token_store: Option<String>,
    pub auto_refresh: Option<bool>,
    pub realtime: Option<bool>,
}

impl ConfigInput {
    /// Validates, filling what the caller left out from the environment and the defaults.
    pub fn validate(self, get: impl Fn(&str) -> Option<String>) -> Result<CloudConfig> {
        let base_url = validate_base_url(&self.base_url)?;
        if self.anon_key.trim().is_empty() {
            return Err(Error::InvalidConfig(
                "anonKey is required (set OBOTO_CLOUD_KEY)".into(),
            ));
        }
        let env_ms = |k: &str| {
            get(k)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|v| *v > 0)
        };
        let ms = |v: Option<u32>, env: &str, default: Duration| {
            v.filter(|v| *v > 0)
                .or_else(|| env_ms(env))
                .map(|v| Duration::from_millis(v.into()))
                .unwrap_or(default)
        };
        let defaults = Timeouts::default();
        let token_store = match self.token_store.or_else(|| get("OBOTO_CLOUD_TOKEN_STORE")) {
            Some(s) => s.trim().parse().map_err(Error::InvalidConfig)?,
            None => StoreKind::Auto,
        };
        Ok(CloudConfig {
            base_url,
            anon_key: self.anon_key.trim().to_string(),
            auto_login: self.auto_login.unwrap_or(true),
            sync_interval_ms: self
                .sync_interval
                .filter(|v| *v > 0)
                .unwrap_or(DEFAULT_SYNC_INTERVAL_MS),
            presence_interval_ms: self
                .presence_interval
                .filter(|v| *v > 0)
                .unwrap_or(DEFAULT_PRESENCE_INTERVAL_MS),
            sync_debounce_ms: self.sync_debounce_ms.unwrap_or(DEFAULT_SYNC_DEBOUNCE_MS),
            timeouts: Timeouts {
                connect: ms(
                    self.connect_timeout_ms,
                    "OBOTO_CLOUD_CONNECT_TIMEOUT_MS",
                    defaults.connect,
                ),
                request: ms(
                    self.request_timeout_ms,
                    "OBOTO_CLOUD_REQUEST_TIMEOUT_MS",
                    defaults.request,
                ),
            },
            ai_timeout: ms(
                self.ai_timeout_ms,
                "OBOTO_CLOUD_AI_TIMEOUT_MS",
                DEFAULT_AI_TIMEOUT,
            ),
            stream_idle_timeout: ms(
                self.stream_idle_timeout_ms,
                "OBOTO_CLOUD_STREAM_IDLE_TIMEOUT_MS",
                DEFAULT_STREAM_IDLE_TIMEOUT,
            ),
            realtime_heartbeat: ms(
                self.realtime_heartbeat_ms,
                "OBOTO_CLOUD_REALTIME_HEARTBEAT_MS",
                crate::realtime::DEFAULT_HEARTBEAT,
            ),
            max_stream_event_bytes: self
                .max_stream_event_bytes
                .filter(|v| *v > 0)
                .or_else(|| env_ms("OBOTO_CLOUD_MAX_STREAM_EVENT_BYTES"))
                .map(|v| v as usize)
                .unwrap_or(crate::sse::parser::DEFAULT_LIMIT),
            max_response_bytes: self
                .max_response_bytes
                .filter(|v| *v > 0)
                .or_else(|| env_ms("OBOTO_CLOUD_MAX_RESPONSE_BYTES"))
                .map(|v| v as usize)
                .unwrap_or(crate::rest::http::DEFAULT_MAX_RESPONSE_BYTES),
            token_store,
            auto_refresh: self.auto_refresh.unwrap_or(true),
            // As OBOTO_CLOUD_AUTO_LOGIN: only an explicit `false` turns it off.
            realtime: self.realtime.unwrap_or_else(|| {
                get("OBOTO_CLOUD_REALTIME").as_deref().map(str::trim) != Some("false")
            }),
        })
    }
}

/// An absolute http(s) URL with a host, returned without a trailing slash.
pub fn validate_base_url(raw: &str) -> Result<String> {
    let trimmed = raw.trim();
    let shown: String = trimmed.chars().take(80).collect();
    let url = url::Url::parse(trimmed).map_err(|_| {
        Error::InvalidConfig(format!("baseUrl must be an http(s) URL, got {shown:?}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::InvalidConfig(format!(
            "baseUrl must be an http(s) URL, got {shown:?}"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::InvalidConfig(
            "baseUrl must not contain credentials".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidConfig(
            "baseUrl must not have a query or fragment".into(),
        ));
    }
    Ok(trimmed.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn env_config_needs_url_and_key() {
        assert_eq!(from_env(env(&[])), None);
        assert_eq!(from_env(env(&[("OBOTO_CLOUD_URL", "http://x")])), None);
        assert_eq!(
            from_env(env(&[("OBOTO_CLOUD_URL", ""), ("OBOTO_CLOUD_KEY", "k")])),
            None
        );
        let c = from_env(env(&[
            ("OBOTO_CLOUD_URL", "https://x.test//"),
            ("OBOTO_CLOUD_KEY", "k"),
        ]))
        .unwrap();
        assert_eq!(c.base_url, "https://x.test");
        assert!(c.auto_login);
        assert_eq!((c.sync_interval, c.presence_interval), (30_000, 60_000));
    }

    #[test]
    fn env_config_reads_flags_and_falls_back_on_garbage() {
        let c = from_env(env(&[
            ("OBOTO_CLOUD_URL", "http://x"),
            ("OBOTO_CLOUD_KEY", "k"),
            ("OBOTO_CLOUD_AUTO_LOGIN", "false"),
            ("OBOTO_CLOUD_SYNC_INTERVAL", "abc"),
            ("OBOTO_CLOUD_PRESENCE_INTERVAL", "1500"),
        ]))
        .unwrap();
        assert!(!c.auto_login);
        assert_eq!((c.sync_interval, c.presence_interval), (30_000, 1500));
        assert_eq!(interval(Some("-5".into()), 7), 7);
        assert_eq!(interval(Some("0".into()), 7), 7);
        assert_eq!(interval(Some("12.5".into()), 7), 7);
    }

    #[test]
    fn base_url_must_be_http() {
        assert_eq!(
            validate_base_url("http://127.0.0.1:54321/").unwrap(),
            "http://127.0.0.1:54321"
        );
        assert!(validate_base_url("https://abc.supabase.co").is_ok());
        for bad in [
            "",
            "localhost:54321",
            "ftp://x",
            "file:///etc/passwd",
            "http://u:p@x",
            "javascript:alert(1)",
        ] {
            let e = validate_base_url(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_CONFIG", "{bad}");
        }
        assert!(validate_base_url("nope")
            .unwrap_err()
            .to_string()
            .contains("http(s) URL"));
    }

    #[test]
    fn input_defaults_and_timeouts() {
        let input = ConfigInput {
            base_url: "http://x".into(),
            anon_key: "k".into(),
            ..Default::default()
        };
        let c = input.clone().validate(env(&[])).unwrap();
        assert_eq!(c.timeouts.connect, Duration::from_secs(10));
        assert_eq!(c.timeouts.request, Duration::from_secs(30));
        assert_eq!(c.token_store, StoreKind::Auto);
        assert_eq!(c.max_response_bytes, 8 * 1024 * 1024);
        assert!(c.realtime);
        assert_eq!(c.realtime_heartbeat, Duration::from_secs(25));
        let off = |v: &str| {
            input
                .clone()
                .validate(env(&[("OBOTO_CLOUD_REALTIME", v)]))
                .unwrap()
                .realtime
        };
        assert!(!off("false"));
        assert!(off("no"), "only an explicit false turns it off");
        let given = ConfigInput {
            realtime: Some(true),
            ..input.clone()
        };
        assert!(
            given
                .validate(env(&[("OBOTO_CLOUD_REALTIME", "false")]))
                .unwrap()
                .realtime
        );
        let c = input
            .clone()
            .validate(env(&[
                ("OBOTO_CLOUD_REQUEST_TIMEOUT_MS", "1500"),
                ("OBOTO_CLOUD_TOKEN_STORE", "memory"),
                ("OBOTO_CLOUD_MAX_RESPONSE_BYTES", "65536"),
            ]))
            .unwrap();
        assert_eq!(c.max_response_bytes, 65536);
        let given = ConfigInput {
            max_response_bytes: Some(1000),
            ..input.clone()
        };
        assert_eq!(
            given
                .validate(env(&[("OBOTO_CLOUD_MAX_RESPONSE_BYTES", "65536")]))
                .unwrap()
                .max_response_bytes,
            1000
        );
        assert_eq!(
            (c.timeouts.request, c.token_store),
            (Duration::from_millis(1500), StoreKind::Memory)
        );
        let bad = ConfigInput {
            token_store: Some("floppy".into()),
            ..input.clone()
        };
        assert!(bad.validate(env(&[])).is_err());
        let no_key = ConfigInput {
            anon_key: " ".into(),
            ..input
        };
        assert!(no_key.validate(env(&[])).is_err());
    }
}
