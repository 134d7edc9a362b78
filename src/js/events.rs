//! Forwards core events to the JS callback through a *weak* threadsafe function: a pending
//! event never keeps Node running, and dropping the sink (on `destroy()`) releases it.

use napi::{
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue},
    Status,
};
use serde_json::{json, Value};

use crate::events::EventSink;

/// `(event: { type: string, payload: object }) => void`, weak.
pub type EventCallback = ThreadsafeFunction<Value, UnknownReturnValue, Value, Status, false, true>;

pub struct JsEventSink(pub EventCallback);

impl EventSink for JsEventSink {
    fn emit(&self, name: &str, payload: Value) {
        let status = self.0.call(json!({"type": name, "payload": payload}), ThreadsafeFunctionCallMode::NonBlocking);
        if status != Status::Ok {
            tracing::debug!(event = name, ?status, "event not delivered");
        }
    }
}
