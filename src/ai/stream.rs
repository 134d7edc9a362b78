//! A streamed AI-proxy completion as a pull handle.
//!
//! A reader task owns the HTTP body: it parses SSE, checks each `data:` payload, and sends
//! it into a bounded channel. The JS consumer pulls batches; when it stops pulling, the
//! channel fills, the task stops reading and TCP pushes back on the server. Dropping or
//! cancelling the handle aborts the task, which drops the body and closes the connection,
//! so the server sees the disconnect at once.

use std::{sync::Mutex, time::Duration};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{
    error::{Error, Result},
    sse::Parser,
};

/// Events buffered ahead of the consumer.
const BUFFER: usize = 256;
/// Most events handed over in one pull.
const MAX_BATCH: usize = 512;

enum Item {
    Chunk(String),
    Failed(Error),
}

pub struct AiStream {
    rx: tokio::sync::Mutex<mpsc::Receiver<Item>>,
    /// An error that arrived behind chunks of the same pull; reported by the next pull.
    deferred: Mutex<Option<Error>>,
    task: tokio::task::AbortHandle,
}

impl AiStream {
    pub fn start(resp: reqwest::Response, idle: Duration, url: String) -> AiStream {
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(pump(resp, tx, idle, url)).abort_handle();
        AiStream {
            rx: tokio::sync::Mutex::new(rx),
            deferred: Mutex::new(None),
            task,
        }
    }

    /// The next chunks as the text of a JSON array, waiting for at least one; `None` once the
    /// stream has ended (`[DONE]` or the end of the body).
    pub async fn next_batch(&self) -> Result<Option<String>> {
        if let Some(e) = self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(e);
        }
        let mut rx = self.rx.lock().await;
        let first = match rx.recv().await {
            None => return Ok(None),
            Some(Item::Failed(e)) => return Err(e),
            Some(Item::Chunk(c)) => c,
        };
        let mut batch = String::with_capacity(first.len() * 8 + 2);
        batch.push('[');
        batch.push_str(&first);
        for _ in 1..MAX_BATCH {
            match rx.try_recv() {
                Ok(Item::Chunk(c)) => {
                    batch.push(',');
                    batch.push_str(&c);
                }
                Ok(Item::Failed(e)) => {
                    *self.deferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        batch.push(']');
        Ok(Some(batch))
    }

    /// Closes the connection; later pulls report the end of the stream.
    pub fn cancel(&self) {
        self.task.abort();
    }
}

impl Drop for AiStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(resp: reqwest::Response, tx: mpsc::Sender<Item>, idle: Duration, url: String) {
    let mut body = resp.bytes_stream();
    let mut parser = Parser::new();
    let mut events = Vec::new();
    loop {
        let next = match tokio::time::timeout(idle, body.next()).await {
            Ok(next) => next,
            Err(_) => {
                let reason = format!("the stream sent nothing for {} s", idle.as_secs());
                let _ = tx
                    .send(Item::Failed(Error::Network {
                        url,
                        reason,
                        timeout: true,
                    }))
                    .await;
                return;
            }
        };
        let bytes = match next {
            None => return,
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                let reason = format!("the stream broke off ({e})");
                let _ = tx
                    .send(Item::Failed(Error::Network {
                        url,
                        reason,
                        timeout: false,
                    }))
                    .await;
                return;
            }
        };
        parser.feed(&bytes, &mut events);
        for event in events.drain(..) {
            if event.data == "[DONE]" {
                return;
            }
            let item = match check(&event.event, &event.data, &url) {
                Ok(()) => Item::Chunk(event.data),
                Err(e) => Item::Failed(e),
            };
            let failed = matches!(item, Item::Failed(_));
            if tx.send(item).await.is_err() || failed {
                return; // the consumer is gone, or the stream failed
            }
        }
    }
}

/// A chunk must be JSON; `{"error": …}` (or an `error` event) is the server failing mid-stream.
fn check(event: &str, data: &str, url: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidResponse {
        url: url.to_string(),
        status: 200,
        reason,
    };
    if event != "error" && !data.contains("\"error\"") {
        return serde_json::from_str::<serde::de::IgnoredAny>(data)
            .map(|_| ())
            .map_err(|e| invalid(format!("a stream chunk is not JSON ({e})")));
    }
    let value: Value =
        serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string()));
    let error = match &value {
        Value::Object(o) if o.contains_key("error") => &o["error"],
        Value::Object(_) if event != "error" => return Ok(()),
        other => other,
    };
    let message = match error {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| error.to_string()),
        other => other.to_string(),
    };
    let code = error.get("code").and_then(Value::as_str).map(String::from);
    Err(Error::Http(Box::new(crate::error::HttpError {
        status: 200,
        method: "POST".into(),
        url: url.to_string(),
        code: code.or_else(|| Some("STREAM_ERROR".into())),
        message,
        retry_after: None,
    })))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn chunks_must_be_json_and_errors_are_recognized() {
        assert!(check(
            "message",
            r#"{"choices":[{"delta":{"content":"hi"}}]}"#,
            "u"
        )
        .is_ok());
        assert!(check(
            "message",
            r#"{"choices":[{"delta":{"content":"the \"error\" word"}}]}"#,
            "u"
        )
        .is_ok());
        let e = check(
            "message",
            r#"{"error":{"message":"model overloaded","code":"overloaded"}}"#,
            "u",
        )
        .unwrap_err();
        assert_eq!(
            (e.to_string().starts_with("model overloaded"), e.code()),
            (true, "overloaded".into())
        );
        let e = check("message", r#"{"error":"boom"}"#, "u").unwrap_err();
        assert!(e.to_string().starts_with("boom"));
        assert_eq!(e.code(), "STREAM_ERROR");
        assert!(check("error", "plain words", "u")
            .unwrap_err()
            .to_string()
            .starts_with("plain words"));
        assert_eq!(
            check("message", "{oops", "u").unwrap_err().code(),
            "INVALID_RESPONSE"
        );
    }
}
