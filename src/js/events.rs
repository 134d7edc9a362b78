//! Forwards core events to the JS callback through a *weak* threadsafe function: a pending
//! event never keeps Node running, and dropping the sink (on `destroy()`) releases it.
//!
//! An event crosses as one JSON text that the JS layer parses with `JSON.parse`: building
//! the object property by property through N-API cost the JS thread about twice as much per
//! event (a message burst is tens of thousands of them), and the text is written here, on a
//! runtime thread.

use napi::{
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue},
    Status,
};
use serde_json::value::RawValue;

use crate::events::{EventSink, Pending};

/// `(event: string) => void` (the JSON of a `CloudEvent`), weak.
pub type EventCallback =
    ThreadsafeFunction<String, UnknownReturnValue, String, Status, false, true>;

pub struct JsEventSink(pub EventCallback);

impl EventSink for JsEventSink {
    fn emit(&self, name: &str, payload: Box<RawValue>, handled: Pending) {
        // `{"type": name, "payload": payload}`, the payload as it is.
        let Ok(name_json) = serde_json::to_string(name) else {
            tracing::warn!(event = name, "event not serialized");
            return;
        };
        let payload = payload.get();
        let mut text = String::with_capacity(name_json.len() + payload.len() + 24);
        text.push_str("{\"type\":");
        text.push_str(&name_json);
        text.push_str(",\"payload\":");
        text.push_str(payload);
        text.push('}');
        // `handled` lives until the JS callback has returned (or the call is refused).
        let status = self.0.call_with_return_value(
            text,
            ThreadsafeFunctionCallMode::NonBlocking,
            move |_, _| {
                drop(handled);
                Ok(())
            },
        );
        if status != Status::Ok {
            tracing::debug!(event = name, ?status, "event not delivered");
        }
    }
}
