//! OpenAI's streaming format: `data: <json>\n\n` events ending with `data: [DONE]\n\n`.

use bytes::Bytes;
use serde_json::{json, Value};

pub const DONE: &[u8] = b"data: [DONE]\n\n";

pub fn event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// A `chat.completion.chunk`.
pub fn chunk(
    id: &str,
    created: i64,
    model: &str,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
}

/// Reads the JSON events out of an SSE byte stream that arrives in arbitrary pieces (an
/// upstream's stream passing through, so its usage can be metered).
#[derive(Default)]
pub struct Scanner {
    buf: Vec<u8>,
    /// Whether `data: [DONE]` went by.
    pub done: bool,
}

impl Scanner {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Value> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            if data.trim() == "[DONE]" {
                self.done = true;
            } else if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                events.push(v);
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_events() {
        let c = chunk("id1", 7, "m", json!({"content": "hi"}), None);
        let e = event(&c);
        assert!(e.starts_with(b"data: {") && e.ends_with(b"}\n\n"));
        let back: Value = serde_json::from_slice(&e[6..e.len() - 2]).unwrap();
        assert_eq!(back["choices"][0]["delta"]["content"], "hi");
        assert_eq!(back["object"], "chat.completion.chunk");
    }

    #[test]
    fn scans_split_streams() {
        let mut s = Scanner::default();
        let whole = [
            event(&json!({"a": 1})).to_vec(),
            b": comment\n\n".to_vec(),
            event(&json!({"a": 2})).to_vec(),
            DONE.to_vec(),
        ]
        .concat();
        let mut got = Vec::new();
        for piece in whole.chunks(5) {
            got.extend(s.feed(piece));
        }
        assert_eq!(got, [json!({"a": 1}), json!({"a": 2})]);
        assert!(s.done);
    }
}
