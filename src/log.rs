//! Logging is off unless `OBOTO_CLOUD_LOG=info|debug|trace` (to stderr). Nothing logged ever
//! carries a token or password: sessions redact themselves, credential headers are marked
//! sensitive, and request bodies are never logged.

use std::sync::Once;

pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(level) = std::env::var("OBOTO_CLOUD_LOG") else { return };
        let level = match level.trim() {
            "error" | "warn" | "info" | "debug" | "trace" => level.trim().to_string(),
            _ => return,
        };
        let filter = tracing_subscriber::EnvFilter::new(format!("oboto_cloud={level}"));
        let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false).try_init();
    });
}
