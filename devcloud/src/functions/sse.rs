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

/// Content chunks of one completion, written from a prepared head: a model streams one
/// event per token, so building and sorting a JSON map for each would dominate.
pub struct ChunkTemplate {
    head: String,
}

impl ChunkTemplate {
    pub fn new(id: &str, created: i64, model: &str) -> ChunkTemplate {
        let head = format!(
            r#"data: {{"id":{},"object":"chat.completion.chunk","created":{created},"model":{},"choices":[{{"index":0,"finish_reason":null,"delta":{{"#,
            Value::from(id),
            Value::from(model),
        );
        ChunkTemplate { head }
    }

    /// The event for one content delta (with the role on the first).
    pub fn event(&self, role: Option<&str>, content: &str) -> Bytes {
        let mut out = String::with_capacity(self.head.len() + content.len() + 48);
        out.push_str(&self.head);
        if let Some(role) = role {
            out.push_str(r#""role":"#);
            out.push_str(&Value::from(role).to_string());
            out.push(',');
        }
        out.push_str(r#""content":"#);
        out.push_str(&Value::from(content).to_string());
        out.push_str("}}]}\n\n");
        Bytes::from(out)
    }
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
    #[test]
    fn the_template_writes_the_same_chunk_as_json() {
        let t = super::ChunkTemplate::new("id\"1", 7, "m");
        for (role, content) in [(Some("assistant"), "Echo:"), (None, " a \"quoted\"\nword")] {
            let ev = t.event(role, content);
            let text = std::str::from_utf8(&ev).unwrap();
            let json = text
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            let mut delta = serde_json::json!({"content": content});
            if let Some(r) = role {
                delta["role"] = r.into();
            }
            let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(parsed, super::chunk("id\"1", 7, "m", delta, None));
        }
    }

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
