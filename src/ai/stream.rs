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
const BUFFER: usize = 1024;
/// Most events handed over in one pull.
const MAX_BATCH: usize = 1024;
/// How long a pull of a stream arriving back to back may keep collecting.
const COALESCE: Duration = Duration::from_millis(1);

#[derive(PartialEq, Eq)]
enum More {
    /// The channel may bring more right away.
    Maybe,
    /// Stop collecting: the batch is full or an error is waiting.
    No,
}

/// One pull's chunks, as the text of a JSON array under construction.
struct Batch {
    text: String,
    len: usize,
    failed: Option<Error>,
}

impl Batch {
    fn new(first: String) -> Batch {
        let mut text = String::with_capacity(first.len() * 16 + 2);
        text.push('[');
        text.push_str(&first);
        Batch {
            text,
            len: 1,
            failed: None,
        }
    }

    fn take(&mut self, item: Item) -> More {
        match item {
            Item::Chunk(c) => {
                self.text.push(',');
                self.text.push_str(&c);
                self.len += 1;
                if self.len < MAX_BATCH {
                    More::Maybe
                } else {
                    More::No
                }
            }
            Item::Failed(e) => {
                self.failed = Some(e);
                More::No
            }
        }
    }

    /// Takes what is already buffered.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Item>) -> More {
        while let Ok(item) = rx.try_recv() {
            if self.take(item) == More::No {
                return More::No;
            }
        }
        More::Maybe
    }
}

enum Item {
    Chunk(String),
    Failed(Error),
}

pub struct AiStream {
    rx: tokio::sync::Mutex<mpsc::Receiver<Item>>,
    /// An error that arrived behind chunks of the same pull; reported by the next pull.
    deferred: Mutex<Option<Error>>,
    /// Whether a pull has returned chunks yet (the first one never waits to coalesce).
    pulled: std::sync::atomic::AtomicBool,
    task: tokio::task::AbortHandle,
}

impl AiStream {
    pub fn start(resp: reqwest::Response, idle: Duration, url: String) -> AiStream {
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(pump(resp, tx, idle, url)).abort_handle();
        AiStream {
            rx: tokio::sync::Mutex::new(rx),
            deferred: Mutex::new(None),
            pulled: Default::default(),
            task,
        }
    }

    /// The next chunks as the text of a JSON array, waiting for at least one; `None` once the
    /// stream has ended (`[DONE]` or the end of the body).
    ///
    /// Every pull crosses from the runtime to the JS thread, which costs far more than a
    /// chunk. So when chunks are arriving back to back (the first pull already found several),
    /// the pull keeps collecting for up to `COALESCE`; a slow stream, such as a model typing
    /// token by token, is handed over chunk by chunk at once, and so is the first chunk.
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
        let mut batch = Batch::new(first);
        let mut more = batch.drain(&mut rx);
        let first_pull = !self.pulled.swap(true, std::sync::atomic::Ordering::Relaxed);
        if batch.len > 1 && !first_pull {
            let deadline = tokio::time::Instant::now() + COALESCE;
            while more == More::Maybe && batch.len < MAX_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(item)) => {
                        more = batch.take(item);
                        if more == More::Maybe {
                            more = batch.drain(&mut rx);
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if let Some(e) = batch.failed.take() {
            *self.deferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
        batch.text.push(']');
        Ok(Some(batch.text))
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
