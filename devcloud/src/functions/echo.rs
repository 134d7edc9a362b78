//! `oboto/echo-1`, the built-in model: deterministic and local, so tests and benchmarks are
//! exact. Its completion is `Echo: <last user message>`; a token is a whitespace-separated
//! word, and each streamed chunk is one token. With `max_tokens: N` it produces exactly N
//! tokens, repeating the words if the echo is shorter.

use serde_json::Value;

/// The text of a chat message's `content`: a string, or OpenAI's array of parts.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Prompt tokens: the words of every message's content.
pub fn prompt_tokens(messages: &[Value]) -> u64 {
    messages
        .iter()
        .map(|m| count_tokens(&content_text(m.get("content").unwrap_or(&Value::Null))))
        .sum()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    words: Vec<String>,
    tokens: u64,
    truncated_or_padded: bool,
}

impl Echo {
    pub fn new(messages: &[Value], max_tokens: Option<u64>) -> Echo {
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
            .unwrap_or_default();
        let words: Vec<String> = format!("Echo: {last_user}")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let natural = words.len() as u64;
        let tokens = max_tokens.unwrap_or(natural);
        Echo {
            words,
            tokens,
            truncated_or_padded: tokens != natural,
        }
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The i-th streamed piece: the word, with the space that separates it from the previous.
    pub fn chunk(&self, i: u64) -> String {
        // `words` always holds at least "Echo:".
        let n = self.words.len().max(1) as u64;
        let Some(word) = self.words.get(usize::try_from(i % n).unwrap_or(0)) else {
            return String::new();
        };
        if i == 0 {
            word.clone()
        } else {
            format!(" {word}")
        }
    }

    pub fn text(&self) -> String {
        (0..self.tokens).map(|i| self.chunk(i)).collect()
    }

    pub fn finish_reason(&self) -> &'static str {
        if self.truncated_or_padded {
            "length"
        } else {
            "stop"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(text: &str) -> Vec<Value> {
        vec![
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": "first question"}),
            json!({"role": "assistant", "content": "answer"}),
            json!({"role": "user", "content": [{"type": "text", "text": text}]}),
        ]
    }

    #[test]
    fn echoes_the_last_user_message() {
        let e = Echo::new(&msgs("hello  there world"), None);
        assert_eq!(e.text(), "Echo: hello there world");
        assert_eq!(e.tokens(), 4);
        assert_eq!(e.finish_reason(), "stop");
        assert_eq!(prompt_tokens(&msgs("hello there world")), 2 + 2 + 1 + 3);
    }

    #[test]
    fn max_tokens_is_exact() {
        let e = Echo::new(&msgs("a b"), Some(2));
        assert_eq!(e.text(), "Echo: a");
        assert_eq!(e.finish_reason(), "length");
        let e = Echo::new(&msgs("a b"), Some(7));
        let chunks: Vec<String> = (0..e.tokens()).map(|i| e.chunk(i)).collect();
        assert_eq!(
            chunks,
            ["Echo:", " a", " b", " Echo:", " a", " b", " Echo:"]
        );
        assert_eq!(count_tokens(&e.text()), 7);
        assert_eq!(Echo::new(&msgs("x"), Some(0)).text(), "");
        // No user message at all still answers.
        assert_eq!(Echo::new(&[], None).text(), "Echo:");
    }
}
