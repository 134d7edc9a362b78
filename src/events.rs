//! Events for the host (`cloud:auth:logged-in`, …). The core only knows this sink; the JS
//! boundary installs one that forwards to a weak threadsafe function.

use std::sync::{Arc, RwLock};

use serde_json::Value;

pub trait EventSink: Send + Sync {
    /// `payload` is always a JSON object (the host spreads it into `{...payload, timestamp}`).
    fn emit(&self, name: &str, payload: Value);
}

#[derive(Default)]
pub struct Events {
    sink: RwLock<Option<Arc<dyn EventSink>>>,
}

impl Events {
    pub fn set_sink(&self, sink: Option<Arc<dyn EventSink>>) {
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    pub fn emit(&self, name: &str, payload: Value) {
        debug_assert!(payload.is_object(), "event payloads are objects");
        let sink = self.sink.read().unwrap_or_else(|p| p.into_inner()).clone();
        tracing::debug!(event = name, "emit");
        if let Some(sink) = sink {
            sink.emit(name, payload);
        }
    }
}
