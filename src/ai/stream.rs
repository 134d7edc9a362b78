//! A streamed AI-proxy completion, read by a task and handed to the consumer in batches.
//!
//! A reader task owns the HTTP body: it parses SSE, checks each `data:` payload and appends
//! it to a buffer shared with the consumer, as the inside of a JSON array, so that a pull
//! hands over one string that the JS side parses once. The consumer pulls without waiting
//! ([`AiStream::try_pull`]): it takes everything buffered, or, when nothing is, leaves a
//! request to be woken, which the reader fulfils once when it has more or the stream ends.
//! So a model typing at 100 chunks/s costs one wake-up of the consumer per chunk and no task,
//! promise or threadsafe function made per pull, and a fast stream is taken many chunks per
//! pull with no wake-up at all. When the consumer stops pulling, the buffer fills, the reader
//! stops reading and TCP pushes back on the server. Cancelling or dropping the handle aborts
//! the task, which drops the body and closes the connection, so the server sees the
//! disconnect at once.
//!
//! A stream is whole only when it reaches `data: [DONE]`: a body that ends before it, or a
//! 2xx that is not an event stream, fails with a code, so a truncated answer never looks
//! complete.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use futures_util::StreamExt;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use tokio::sync::Notify;

use crate::{
    error::{Error, Result},
    events::{Event, Events},
    sse::{parser::TooLarge, Parser},
};

/// Chunk text buffered ahead of the consumer before the reader stops reading.
const BUFFER_BYTES: usize = 256 * 1024;

/// Called, from any thread, when a consumer that found nothing to take can take again.
pub type Wake = Box<dyn Fn() + Send + Sync>;

/// The reader's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A stream silent this long fails.
    pub idle: Duration,
    /// Bytes an SSE line, and an event's data, may hold.
    pub event_bytes: usize,
}

/// What a pull takes.
#[derive(Debug, PartialEq)]
pub enum Pull {
    /// The chunks buffered since the last pull, as the text of a JSON array.
    Chunks(String),
    /// Nothing yet: the waker is called once there is.
    Pending,
    /// The stream reached `[DONE]` and everything was taken (or the consumer cancelled).
    End,
}

enum End {
    /// `[DONE]` arrived; the usage the chunks carried is announced once the consumer has
    /// taken everything before it (the usage is that of the answer it has read).
    Done(Option<Value>),
    Failed(Error),
    /// Reported, or cancelled by the consumer: later pulls see the end.
    Over,
}

#[derive(Default)]
struct State {
    /// `[chunk,chunk…`: a JSON array but for its `]`; empty when nothing is buffered.
    buf: String,
    end: Option<End>,
    /// The consumer found nothing and waits for the waker.
    waiting: bool,
    /// The reader waits for the consumer to make room.
    reader_blocked: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: OnceLock<Wake>,
    /// Wakes the reader when the consumer made room.
    room: Notify,
    /// Wakes the opener on the first chunk or the end.
    started: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        if let Some(wake) = self.wake.get() {
            wake();
        }
    }

    /// Appends a network read's chunks (`a,b,c`) and possibly the end, and wakes a waiting
    /// consumer; `Stop` when the stream was ended meanwhile (cancelled or closed).
    fn publish(&self, chunks: &str, end: Option<End>) -> Publish {
        if chunks.is_empty() && end.is_none() {
            return Publish::Room; // a read that completed no event: nobody to wake
        }
        let mut st = self.lock();
        if st.end.is_some() {
            return Publish::Stop;
        }
        let first = st.buf.is_empty();
        if !chunks.is_empty() {
            st.buf.push(if first { '[' } else { ',' });
            st.buf.push_str(chunks);
        }
        let ended = end.is_some();
        st.end = end;
        let full = st.buf.len() >= BUFFER_BYTES;
        st.reader_blocked = full && !ended;
        let wake = std::mem::take(&mut st.waiting);
        drop(st);
        self.started.notify_one();
        if wake {
            self.wake();
        }
        if full && !ended {
            Publish::Full
        } else {
            Publish::Room
        }
    }

    fn end(&self, end: End) {
        let _ = self.publish("", Some(end));
    }
}

enum Publish {
    Room,
    Full,
    Stop,
}

pub struct AiStream {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
    events: Arc<Events>,
}

impl AiStream {
    /// Starts reading a 2xx answer; anything but `text/event-stream` fails the stream at once.
    /// Once the consumer has taken the whole answer, the last `_cloud_usage` a chunk carried
    /// is emitted as `cloud:usage-update`.
    pub fn start(
        resp: reqwest::Response,
        limits: Limits,
        url: String,
        events: Arc<Events>,
    ) -> AiStream {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: OnceLock::new(),
            room: Notify::new(),
            started: Notify::new(),
        });
        let reader = Reader {
            shared: shared.clone(),
            limits,
            url,
        };
        let task = tokio::spawn(reader.run(resp)).abort_handle();
        AiStream {
            shared,
            task,
            events,
        }
    }

    /// Sets what wakes a consumer that found nothing to take (once; later calls are ignored).
    pub fn set_waker(&self, wake: Wake) {
        let _ = self.shared.wake.set(wake);
    }

    /// Resolves once the first chunk is buffered or the stream has ended (either way the
    /// next pull does not wait): opening a stream this way hands the first chunk over with
    /// the opened stream.
    pub async fn started(&self) {
        loop {
            let started = self.shared.started.notified();
            {
                let st = self.shared.lock();
                if !st.buf.is_empty() || st.end.is_some() {
                    return;
                }
            }
            started.await;
        }
    }

    /// Takes what is buffered, never waiting. After a `Pending`, the waker is called once.
    pub fn try_pull(&self) -> Result<Pull> {
        let mut st = self.shared.lock();
        if !st.buf.is_empty() {
            let mut chunks = std::mem::take(&mut st.buf);
            chunks.push(']');
            let unblock = std::mem::take(&mut st.reader_blocked);
            drop(st);
            if unblock {
                self.shared.room.notify_one();
            }
            return Ok(Pull::Chunks(chunks));
        }
        match st.end.take() {
            None => {
                st.waiting = true;
                Ok(Pull::Pending)
            }
            Some(End::Failed(e)) => {
                st.end = Some(End::Over);
                Err(e)
            }
            Some(End::Done(usage)) => {
                st.end = Some(End::Done(None));
                drop(st);
                self.announce(usage);
                Ok(Pull::End)
            }
            Some(end) => {
                st.end = Some(end);
                Ok(Pull::End)
            }
        }
    }

    fn announce(&self, usage: Option<Value>) {
        if let Some(usage) = usage {
            self.events.emit(Event::UsageUpdate(usage));
        }
    }

    /// The consumer left: closes the connection; later pulls see the end. A consumer that
    /// leaves after the last chunk of a whole answer still gets its usage announced.
    pub fn cancel(&self) {
        self.task.abort();
        let usage = match &mut self.shared.lock().end {
            Some(End::Done(usage)) => usage.take(),
            _ => None,
        };
        self.announce(usage);
        self.shared.end(End::Over);
    }

    /// The session ended under the stream (logout, destroy): closes the connection, drops
    /// what is buffered and fails the next pull with `reason`, unless the answer was whole.
    pub fn close(&self, reason: Error) {
        self.task.abort();
        let mut st = self.shared.lock();
        if matches!(st.end, Some(End::Done(_))) {
            return;
        }
        st.buf = String::new();
        st.end = Some(End::Failed(reason));
        let wake = std::mem::take(&mut st.waiting);
        drop(st);
        self.shared.started.notify_one();
        if wake {
            self.shared.wake();
        }
    }
}

impl Drop for AiStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Reader {
    shared: Arc<Shared>,
    limits: Limits,
    url: String,
}

impl Reader {
    async fn run(self, resp: reqwest::Response) {
        let status = resp.status().as_u16();
        if let Err(e) = self.check_content_type(&resp, status) {
            return self.shared.end(End::Failed(e));
        }
        let mut body = resp.bytes_stream();
        let mut parser = Parser::with_limit(self.limits.event_bytes);
        let mut events = Vec::new();
        let mut chunks = String::new();
        let mut usage = None;
        let mut first = true;
        loop {
            let next = match tokio::time::timeout(self.limits.idle, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let reason = format!(
                        "the stream sent nothing for {} s",
                        self.limits.idle.as_secs()
                    );
                    return self.shared.end(End::Failed(self.network(reason, true)));
                }
            };
            let bytes = match next {
                Some(Ok(b)) => b,
                None => {
                    let e = self.invalid(status, "the stream ended before `data: [DONE]`".into());
                    return self.shared.end(End::Failed(e));
                }
                Some(Err(e)) => {
                    let e = self.network(format!("the stream broke off ({e})"), false);
                    return self.shared.end(End::Failed(e));
                }
            };
            let overflow = parser.feed(&bytes, &mut events).err();
            let mut end = None;
            chunks.clear();
            for event in events.drain(..) {
                if event.data == "[DONE]" {
                    end = Some(End::Done(None));
                    break;
                }
                match check(&event.event, &event.data, &self.url) {
                    Err(e) => {
                        end = Some(End::Failed(e));
                        break;
                    }
                    Ok(carries_usage) => {
                        if carries_usage {
                            usage = cloud_usage(&event.data).or(usage);
                        }
                    }
                }
                if !chunks.is_empty() {
                    chunks.push(',');
                }
                chunks.push_str(&event.data);
                if first {
                    // The first chunk goes ahead alone: its latency is what a user waits on.
                    first = false;
                    if let Publish::Stop = self.shared.publish(&chunks, None) {
                        return;
                    }
                    chunks.clear();
                }
            }
            if end.is_none() {
                if let Some(TooLarge { limit }) = overflow {
                    end = Some(End::Failed(Error::ResponseTooLarge {
                        url: self.url.clone(),
                        status,
                        limit: limit as u64,
                    }));
                }
            }
            if let Some(End::Done(announce)) = &mut end {
                *announce = usage.take();
            }
            let done = matches!(end, Some(End::Done(_)));
            let ended = end.is_some();
            match self.shared.publish(&chunks, end) {
                Publish::Stop => return,
                _ if ended => {
                    if done {
                        finish_body(body).await;
                    }
                    return;
                }
                Publish::Full => self.shared.room.notified().await,
                Publish::Room => {}
            }
        }
    }

    fn check_content_type(&self, resp: &reqwest::Response, status: u16) -> Result<()> {
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("text/event-stream") {
            return Ok(());
        }
        let got = if content_type.is_empty() {
            "no content type".to_string()
        } else {
            format!("`{content_type}`")
        };
        Err(self.invalid(
            status,
            format!("a stream was asked for and the answer is not one ({got})"),
        ))
    }

    fn invalid(&self, status: u16, reason: String) -> Error {
        Error::InvalidResponse {
            url: self.url.clone(),
            status,
            reason,
        }
    }

    fn network(&self, reason: String, timeout: bool) -> Error {
        Error::Network {
            url: self.url.clone(),
            reason,
            timeout,
        }
    }
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

/// The members of a chunk that matter to the reader, found in one pass that skips the rest
/// (no tree is built): whether it has an `error` or a `_cloud_usage`.
#[derive(Default)]
struct Members {
    error: bool,
    usage: bool,
}

enum Key {
    Error,
    Usage,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> std::result::Result<Key, E> {
                Ok(match key {
                    "error" => Key::Error,
                    "_cloud_usage" => Key::Usage,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Members, A::Error> {
                let mut m = Members::default();
                while let Some(key) = map.next_key::<Key>()? {
                    map.next_value::<IgnoredAny>()?;
                    match key {
                        Key::Error => m.error = true,
                        Key::Usage => m.usage = true,
                        Key::Other => {}
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

/// A chunk must be JSON; `{"error": …}` (or an `error` event) is the server failing
/// mid-stream. `Ok(true)`: the chunk carries `_cloud_usage`.
fn check(event: &str, data: &str, url: &str) -> Result<bool> {
    let invalid = |e: serde_json::Error| Error::InvalidResponse {
        url: url.to_string(),
        status: 200,
        reason: format!("a stream chunk is not JSON ({e})"),
    };
    let members = if data.trim_start().starts_with('{') {
        serde_json::from_str::<Members>(data)
    } else {
        serde_json::from_str::<IgnoredAny>(data).map(|_| Members::default())
    };
    let members = match members {
        Ok(m) => m,
        Err(_) if event == "error" => Members {
            error: true,
            usage: false,
        },
        Err(e) => return Err(invalid(e)),
    };
    if event != "error" && !members.error {
        return Ok(members.usage);
    }
    stream_error(event, data, url)
}

/// The server's failure in a chunk (rare: parsed into a tree to find its message).
fn stream_error(event: &str, data: &str, url: &str) -> Result<bool> {
    let value: Value =
        serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string()));
    let error = match &value {
        Value::Object(o) if o.get("error").is_some_and(|e| !e.is_null()) => &o["error"],
        Value::Object(_) if event != "error" => return Ok(false),
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

/// The `_cloud_usage` object of a chunk that has one (the last chunk of a metered stream).
fn cloud_usage(data: &str) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Carrier {
        #[serde(rename = "_cloud_usage")]
        usage: Value,
    }
    serde_json::from_str::<Carrier>(data)
        .ok()
        .map(|c| c.usage)
        .filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::{check, cloud_usage};
    use serde_json::json;

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
        for other in [r#"[1,"x"]"#, r#""text""#, "1e400", "null", r#"{"n":1e400}"#] {
            assert!(check("message", other, "u").is_ok(), "{other}");
        }
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
        let e = check("message", r#"{"\u0065rror":"boom"}"#, "u").unwrap_err();
        assert!(e.to_string().starts_with("boom"));
        assert_eq!(e.code(), "STREAM_ERROR");
        assert!(check("error", "plain words", "u")
            .unwrap_err()
            .to_string()
            .starts_with("plain words"));
        for bad in ["{oops", "", "[1,", r#"{"a":1}x"#] {
            assert_eq!(
                check("message", bad, "u").unwrap_err().code(),
                "INVALID_RESPONSE",
                "{bad}"
            );
        }
    }

    #[test]
    fn usage_is_found_in_the_chunk_that_carries_it() {
        let last = r#"{"choices":[],"usage":{"total_tokens":3},"_cloud_usage":{"tokens_used_today":40,"daily_limit":100,"remaining":60}}"#;
        assert!(check("message", last, "u").unwrap());
        assert_eq!(
            cloud_usage(last),
            Some(json!({"tokens_used_today": 40, "daily_limit": 100, "remaining": 60}))
        );
        assert!(!check("message", r#"{"choices":[]}"#, "u").unwrap());
        assert_eq!(cloud_usage(r#"{"_cloud_usage":7}"#), None);
    }
}
