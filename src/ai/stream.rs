//! A streamed AI-proxy completion as a pull handle.
//!
//! A reader task owns the HTTP body: it parses SSE, checks each `data:` payload, encodes it
//! against the stream's chunk shapes (`shapes.rs`), and sends each network read's chunks
//! into a bounded channel. The JS consumer pulls batches; when it stops pulling, the
//! channel fills, the task stops reading and TCP pushes back on the server. Dropping or
//! cancelling the handle aborts the task, which drops the body and closes the connection,
//! so the server sees the disconnect at once.

use std::{sync::Mutex, time::Duration};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::shapes::{self, NewShape, Shapes};
use crate::{
    error::{Error, Result},
    sse::Parser,
};

/// Network reads' worth of chunks buffered ahead of the consumer.
const BUFFER: usize = 32;
/// A pull takes no more reads once it holds this many chunks.
const MAX_BATCH: usize = 1024;

/// Chunks encoded for the JS side: the shapes they introduce and their values.
#[derive(Default)]
struct Encoded {
    shapes: Vec<NewShape>,
    /// `shape,slot…,shape,slot…`: the inside of a JSON array.
    values: String,
    len: usize,
}

impl Encoded {
    fn append(&mut self, more: Encoded) {
        if !self.values.is_empty() && !more.values.is_empty() {
            self.values.push(',');
        }
        self.values.push_str(&more.values);
        self.shapes.extend(more.shapes);
        self.len += more.len;
    }
}

enum Item {
    Chunks(Encoded),
    Failed(Error),
}

/// What a pull hands over.
pub struct Pulled {
    pub shapes: Vec<NewShape>,
    /// `[shape, slot…, shape, slot…]` as JSON text.
    pub values: String,
}

/// One pull under construction.
struct Batch {
    chunks: Encoded,
    failed: Option<Error>,
}

impl Batch {
    /// Takes what is already buffered, until the batch is full or an error is waiting.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Item>) {
        while self.chunks.len < MAX_BATCH && self.failed.is_none() {
            match rx.try_recv() {
                Ok(Item::Chunks(c)) => self.chunks.append(c),
                Ok(Item::Failed(e)) => self.failed = Some(e),
                Err(_) => return,
            }
        }
    }

    fn finish(self) -> Pulled {
        let mut values = String::with_capacity(self.chunks.values.len() + 2);
        values.push('[');
        values.push_str(&self.chunks.values);
        values.push(']');
        Pulled {
            shapes: self.chunks.shapes,
            values,
        }
    }
}

pub struct AiStream {
    rx: tokio::sync::Mutex<mpsc::Receiver<Item>>,
    /// An error that arrived behind chunks of the same pull; reported by the next pull.
    deferred: Mutex<Option<Error>>,
    task: tokio::task::AbortHandle,
}

impl AiStream {
    /// `shapes`: whether the consumer builds chunks from shapes; if not, every chunk travels
    /// whole (shape 0).
    pub fn start(resp: reqwest::Response, idle: Duration, url: String, shapes: bool) -> AiStream {
        let (tx, rx) = mpsc::channel(BUFFER);
        let shapes = shapes.then(Shapes::new);
        let task = tokio::spawn(pump(resp, tx, idle, url, shapes)).abort_handle();
        AiStream {
            rx: tokio::sync::Mutex::new(rx),
            deferred: Mutex::new(None),
            task,
        }
    }

    /// The next chunks, waiting for at least one; `None` once the stream has ended (`[DONE]`
    /// or the end of the body).
    ///
    /// A pull takes everything buffered and never waits for more: the JS side should not sit
    /// idle while chunks are ready. The channel carries a network read's chunks per item, so
    /// a fast stream still crosses to the JS thread once per many chunks, and a model typing
    /// token by token is handed over token by token.
    pub async fn next_batch(&self) -> Result<Option<Pulled>> {
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
            Some(Item::Chunks(c)) => c,
        };
        let mut batch = Batch {
            chunks: first,
            failed: None,
        };
        batch.drain(&mut rx);
        if let Some(e) = batch.failed.take() {
            *self.deferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
        Ok(Some(batch.finish()))
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

async fn pump(
    resp: reqwest::Response,
    tx: mpsc::Sender<Item>,
    idle: Duration,
    url: String,
    mut shapes: Option<Shapes>,
) {
    let mut body = resp.bytes_stream();
    let mut parser = Parser::new();
    let mut events = Vec::new();
    let mut first = true;
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
        let mut chunks = Encoded::default();
        let mut end = None;
        for event in events.drain(..) {
            if event.data == "[DONE]" {
                end = Some(End::Done);
                break;
            }
            if let Err(e) = check(&event.event, &event.data, &url) {
                end = Some(End::Failed(e));
                break;
            }
            let shape = match &mut shapes {
                Some(shapes) => shapes.encode(&event.data, &mut chunks.values),
                None => shapes::whole(&event.data, &mut chunks.values),
            };
            chunks.shapes.extend(shape);
            chunks.len += 1;
            if first {
                // The first chunk goes ahead alone: its latency is what a user waits on.
                first = false;
                if tx
                    .send(Item::Chunks(std::mem::take(&mut chunks)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if chunks.len > 0 && tx.send(Item::Chunks(chunks)).await.is_err() {
            return; // the consumer is gone
        }
        match end {
            None => {}
            Some(End::Failed(e)) => {
                let _ = tx.send(Item::Failed(e)).await;
                return;
            }
            Some(End::Done) => {
                drop(tx); // the consumer sees the end now, whatever follows
                return finish_body(body).await;
            }
        }
    }
}

/// How a network read's events ended the stream.
enum End {
    Done,
    Failed(Error),
}

/// After `[DONE]` the server is about to end the response: reading to its end lets the
/// connection go back to the pool instead of being closed (a new TLS handshake for the next
/// request), as long as the end comes soon and the rest is small.
async fn finish_body(
    mut body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
) {
    let mut left: usize = 64 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(bytes)) = body.next().await {
            left = match left.checked_sub(bytes.len()) {
                Some(left) => left,
                None => return,
            };
        }
    })
    .await;
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
