//! The metered AI proxy (`/functions/v1/ai-proxy`), streamed or not, and the cloud's model
//! catalogue and usage, shaped as Oboto's UI reads them.

pub mod stream;

use std::{
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    connection::Connection,
    error::{Error, Result},
    events::Event,
    rest::{Checked, Request},
};
pub use stream::AiStream;

const PROXY: &str = "/functions/v1/ai-proxy";
/// A stream has no whole-request deadline, only the idle timeout; this bounds the rest.
const STREAM_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// The options Oboto's adapter may pass; only those given are sent.
const OPTIONS: [&str; 4] = ["tools", "temperature", "max_tokens", "response_format"];

pub fn proxy_body(
    provider: &str,
    model: &str,
    messages: Value,
    stream: bool,
    workspace_id: Option<&str>,
    options: Option<&Value>,
) -> Value {
    let mut body = Map::new();
    body.insert("provider".into(), json!(provider));
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), messages);
    body.insert("stream".into(), json!(stream));
    if let Some(ws) = workspace_id {
        body.insert("workspace_id".into(), json!(ws));
    }
    if let Some(Value::Object(o)) = options {
        for key in OPTIONS {
            if let Some(v) = o.get(key).filter(|v| !v.is_null()) {
                body.insert(key.into(), v.clone());
            }
        }
    }
    Value::Object(body)
}

fn check_messages(messages: &Value) -> Result<()> {
    match messages {
        Value::Array(_) => Ok(()),
        _ => Err(Error::InvalidArgument(
            "messages must be an array of chat messages".into(),
        )),
    }
}

// The parts of the server's answers the client relies on; the rest is handed on as sent.
#[derive(Deserialize)]
struct Completion {
    #[allow(dead_code)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[allow(dead_code)]
    message: Map<String, Value>,
}

#[derive(Deserialize)]
struct Models {
    models: Vec<Checked<ModelRow>>,
}

#[derive(Deserialize)]
struct ModelRow {
    #[allow(dead_code)]
    id: String,
}

#[derive(Deserialize)]
struct UsageReply {
    #[allow(dead_code)]
    today: UsageToday,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct UsageToday {
    tokens_used: u64,
    tokens_limit: Option<u64>,
}

/// The AI proxy for one connection: the open streams (closed when the session ends) and
/// the quiet logging of the catalogue's failures.
pub struct Ai {
    conn: Arc<Connection>,
    models_failures: QuietFailures,
    usage_failures: QuietFailures,
    streams: Mutex<Vec<Weak<AiStream>>>,
}

impl Ai {
    pub fn new(conn: Arc<Connection>) -> Ai {
        Ai {
            conn,
            models_failures: QuietFailures::default(),
            usage_failures: QuietFailures::default(),
            streams: Mutex::default(),
        }
    }

    /// One completion, returned as the server sent it (`_cloud_usage` included). No
    /// `cloud:usage-update`: Oboto's AI adapter emits it from `_cloud_usage`, and a second
    /// one would count every figure twice in the UI.
    pub async fn request(&self, body: Value) -> Result<Value> {
        check_messages(&body["messages"])?;
        let req = Request::new(Method::POST, PROXY)
            .json(body)
            .timeout(self.conn.config.ai_timeout);
        let completion: Checked<Completion> = self.conn.client.send(&req).await?.json()?;
        Ok(completion.raw)
    }

    /// Opens a streamed completion once the server has answered 2xx (else rejects with its
    /// message) and its first chunk has arrived (or it ended); the answer must arrive within
    /// the AI timeout, then each byte within the idle timeout. The stream is closed when the
    /// session ends.
    pub async fn open_stream(&self, body: Value) -> Result<Arc<AiStream>> {
        check_messages(&body["messages"])?;
        let cfg = &self.conn.config;
        let url = format!("{}{PROXY}", self.conn.client.http().base_url());
        let req = Request::new(Method::POST, PROXY)
            .json(body)
            .header("Accept", "text/event-stream")
            .timeout(STREAM_LIMIT);
        let resp = tokio::time::timeout(cfg.ai_timeout, self.conn.client.open(&req))
            .await
            .map_err(|_| Error::Network {
                url: url.clone(),
                reason: "the AI proxy did not start answering in time".into(),
                timeout: true,
            })??;
        let limits = stream::Limits {
            idle: cfg.stream_idle_timeout,
            event_bytes: cfg.max_stream_event_bytes,
        };
        let stream = Arc::new(AiStream::start(resp, limits, url, self.conn.events.clone()));
        self.track(&stream);
        stream.started().await;
        Ok(stream)
    }

    fn track(&self, stream: &Arc<AiStream>) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        streams.push(Arc::downgrade(stream));
    }

    /// Fails the open streams with `reason` (`SESSION_ENDED`, `DESTROYED`).
    pub fn close_streams(&self, reason: impl Fn() -> Error) {
        let streams = std::mem::take(&mut *self.streams.lock().unwrap_or_else(|p| p.into_inner()));
        for s in streams.iter().filter_map(Weak::upgrade) {
            s.close(reason());
        }
    }

    /// The tier's models with the UI fields; `[]` when the cloud fails (logged once per burst).
    pub async fn list_models(&self) -> Value {
        let req = Request::new(Method::GET, "/functions/v1/cloud-models");
        let models = self
            .conn
            .client
            .send(&req)
            .await
            .and_then(|r| r.json::<Models>())
            .map(|m| Value::Array(m.models.into_iter().map(|m| model_view(m.raw)).collect()));
        self.models_failures
            .settle("listCloudModels", models)
            .unwrap_or_else(|| json!([]))
    }

    /// Today's usage with the UI fields, also emitted as `cloud:usage-update`; `null` when the
    /// cloud fails (logged once per burst).
    pub async fn usage(&self) -> Value {
        let req = Request::new(Method::GET, "/functions/v1/cloud-usage");
        let role = self.conn.auth.context().role().map(String::from);
        let usage = self.conn.client.send(&req).await.and_then(|r| {
            let invalid = r.invalid("not a usage object".into());
            let checked: Checked<UsageReply> = r.json()?;
            usage_view(checked.raw, role.as_deref()).ok_or(invalid)
        });
        let usage = self.usage_failures.settle("getUsage", usage);
        if let Some(u) = &usage {
            self.conn.events.emit(Event::UsageUpdate(u.clone()));
        }
        usage.unwrap_or(Value::Null)
    }
}

/// A server model plus the fields the UI renders.
pub fn model_view(mut m: Value) -> Value {
    let flag = |m: &Value, k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    let name = m
        .get("display_name")
        .cloned()
        .or_else(|| m.get("id").cloned())
        .unwrap_or(Value::Null);
    let provider = m
        .get("id")
        .and_then(Value::as_str)
        .map(|id| id.split_once('/').map(|(p, _)| p).unwrap_or(id).to_string());
    let capabilities = json!({
        "tools": flag(&m, "supports_tool_calling"),
        "streaming": flag(&m, "supports_streaming"),
        "reasoning": flag(&m, "reasoning"),
    });
    if let Value::Object(o) = &mut m {
        o.insert("name".into(), name);
        o.insert(
            "provider".into(),
            provider.map(Value::String).unwrap_or(Value::Null),
        );
        o.insert("capabilities".into(), capabilities);
    }
    m
}

/// The server's usage plus the flat fields the UI renders. Owners and admins are unlimited.
pub fn usage_view(server: Value, role: Option<&str>) -> Option<Value> {
    let Value::Object(mut o) = server else {
        return None;
    };
    let today = o.get("today").cloned().unwrap_or(Value::Null);
    let num = |k: &str| today.get(k).and_then(Value::as_u64);
    let used = num("tokens_used").unwrap_or(0);
    let limit = num("tokens_limit");
    let day = o
        .get("period")
        .and_then(|p| p.get("start"))
        .and_then(Value::as_str)
        .map(|s| s.chars().take(10).collect::<String>());
    o.insert("tokens_used".into(), json!(used));
    o.insert("daily_limit".into(), json!(limit));
    o.insert(
        "remaining".into(),
        json!(limit.map(|l| l.saturating_sub(used))),
    );
    o.insert("period".into(), json!(day));
    o.insert(
        "request_count".into(),
        json!(num("request_count").unwrap_or(0)),
    );
    o.insert(
        "is_unlimited".into(),
        json!(matches!(role, Some("owner" | "admin"))),
    );
    Some(Value::Object(o))
}

/// Logs a failing call once per burst rather than on every call.
#[derive(Default)]
struct QuietFailures {
    since: Mutex<Option<Instant>>,
}

impl QuietFailures {
    const BURST: Duration = Duration::from_secs(60);

    /// The value on success; on failure `None`, logged unless this burst already was.
    fn settle<T>(&self, what: &str, outcome: Result<T>) -> Option<T> {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(v) => {
                *since = None;
                Some(v)
            }
            Err(e) => {
                if since.is_none_or(|t| t.elapsed() > Self::BURST) {
                    tracing::warn!(error = %e, "{what} failed; further failures are not logged for a minute");
                    *since = Some(Instant::now());
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_options_are_sent() {
        let b = proxy_body(
            "auto",
            "oboto/echo-1",
            json!([]),
            false,
            None,
            Some(&json!({"temperature": 0.2, "tools": null, "seed": 1})),
        );
        assert_eq!(
            b,
            json!({"provider": "auto", "model": "oboto/echo-1", "messages": [], "stream": false, "temperature": 0.2})
        );
        let b = proxy_body("auto", "m", json!([]), true, Some("ws"), None);
        assert_eq!(b["workspace_id"], "ws");
        assert_eq!(b["stream"], true);
    }

    #[test]
    fn models_gain_ui_fields() {
        let m = model_view(
            json!({"id": "openai/gpt-x", "display_name": "GPT X", "supports_tool_calling": true, "supports_streaming": true, "reasoning": false}),
        );
        assert_eq!(m["name"], "GPT X");
        assert_eq!(m["provider"], "openai");
        assert_eq!(
            m["capabilities"],
            json!({"tools": true, "streaming": true, "reasoning": false})
        );
        assert_eq!(model_view(json!({"id": "local"}))["provider"], "local");
    }

    #[test]
    fn usage_gains_flat_fields() {
        let server = json!({"today": {"tokens_used": 30, "tokens_limit": 100, "request_count": 2, "models_used": ["m"]},
                            "tier": "pro", "subscription_status": "active",
                            "period": {"start": "2026-11-26T00:00:00Z", "end": "2026-11-27T00:00:00Z"}});
        let u = usage_view(server.clone(), Some("member")).unwrap();
        assert_eq!(
            (
                u["tokens_used"].clone(),
                u["daily_limit"].clone(),
                u["remaining"].clone()
            ),
            (json!(30), json!(100), json!(70))
        );
        assert_eq!(
            (u["period"].clone(), u["is_unlimited"].clone()),
            (json!("2026-11-26"), json!(false))
        );
        assert_eq!(
            u["today"]["models_used"],
            json!(["m"]),
            "the server's own fields stay"
        );
        assert_eq!(
            usage_view(server, Some("owner")).unwrap()["is_unlimited"],
            true
        );
        assert_eq!(usage_view(json!([1]), None), None);
        let unlimited = usage_view(
            json!({"today": {"tokens_used": 5, "tokens_limit": null}}),
            Some("admin"),
        )
        .unwrap();
        assert_eq!(unlimited["remaining"], Value::Null);
    }
}
