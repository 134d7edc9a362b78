//! `ai-proxy`: OpenAI-shaped chat completions, metered per organization and UTC day.
//!
//! Without `DEVCLOUD_AI_UPSTREAM` every model id is answered by the local `echo` model;
//! with it, requests are forwarded to `{upstream}/chat/completions` (streams pass through).
//! Streams are real: a client that disconnects drops the body stream, which stops the work,
//! and usage is recorded for the chunks produced until then (`Meter`).

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::Duration,
};

use axum::{
    body::Body,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    echo::{self, Echo},
    internal, json_body, sse,
    tiers::{self, Tier, ECHO_MODEL},
    usage::{self, Record},
    Call, FnError, FnResult,
};

/// Longest local completion, in tokens (the echo model's `max_output_tokens`).
const MAX_LOCAL_TOKENS: u64 = 65_536;

/// Streams ended by the client before `[DONE]` (logged with each cancellation).
static CANCELLED_STREAMS: AtomicU64 = AtomicU64::new(0);

/// `DEVCLOUD_AI_CHUNK_DELAY_MS`: a pause between streamed chunks (default 0: just yield).
fn chunk_delay() -> Duration {
    static DELAY: OnceLock<Duration> = OnceLock::new();
    *DELAY.get_or_init(|| {
        let ms = std::env::var("DEVCLOUD_AI_CHUNK_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Duration::from_millis(ms)
    })
}

/// `DEVCLOUD_AI_UPSTREAM_KEY`: the bearer token for the upstream, if it needs one.
fn upstream_key() -> Option<&'static str> {
    static KEY: OnceLock<Option<String>> = OnceLock::new();
    KEY.get_or_init(|| {
        std::env::var("DEVCLOUD_AI_UPSTREAM_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    })
    .as_deref()
}

/// OpenAI's error shape.
fn oai_error(status: StatusCode, message: &str, kind: &str, code: &str) -> FnError {
    FnError::new(
        status,
        json!({"error": {"message": message, "type": kind, "code": code}}),
    )
}

pub async fn handle(call: Call, body: Body) -> FnResult {
    let req: Value = json_body(&call, body).await?;
    let Some(messages) = req.get("messages").and_then(Value::as_array).cloned() else {
        return Err(oai_error(
            StatusCode::BAD_REQUEST,
            "messages must be an array",
            "invalid_request_error",
            "invalid_messages",
        ));
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(ECHO_MODEL)
        .to_string();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let max_tokens = req
        .get("max_tokens")
        .or_else(|| req.get("max_completion_tokens"))
        .and_then(Value::as_u64);

    let db = &call.state.db;
    let org = match usage::org_of(db, call.user).await {
        Ok(Some(org)) => org,
        Ok(None) => {
            return Err(oai_error(
                StatusCode::FORBIDDEN,
                "No organization",
                "invalid_request_error",
                "no_organization",
            ))
        }
        Err(e) => return Err(internal(e)),
    };
    if let Some(m) = tiers::model(&model) {
        if !tiers::allows(org.tier, m) {
            let msg = format!("{model} requires the {} tier", m.tier_required);
            return Err(oai_error(
                StatusCode::FORBIDDEN,
                &msg,
                "invalid_request_error",
                "model_not_available",
            ));
        }
    }
    let used = match usage::today(db, org.id).await {
        Ok(t) => t.tokens,
        Err(e) => return Err(internal(e)),
    };
    if org.tier.daily_tokens.is_some_and(|limit| used >= limit) {
        return Err(oai_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Daily token limit reached",
            "rate_limit",
            "daily_limit_reached",
        ));
    }
    let workspace = req.get("workspace_id").and_then(Value::as_str);
    let workspace = match usage::workspace_in_org(db, org.id, workspace).await {
        Ok(w) => w,
        Err(e) => return Err(internal(e)),
    };
    let record = Record {
        org: org.id,
        user: call.user,
        workspace,
        provider: req
            .get("provider")
            .and_then(Value::as_str)
            .unwrap_or("cloud")
            .to_string(),
        model: model.clone(),
        prompt_tokens: echo::prompt_tokens(&messages),
        completion_tokens: 0,
    };
    let ctx = Ctx {
        pool: db.clone(),
        tier: org.tier,
        used_before: used,
        record,
    };
    match call.state.settings.ai_upstream.clone() {
        Some(base) => upstream(&call, &base, req, stream, ctx).await,
        None => {
            let echo = Echo::new(&messages, max_tokens.map(|n| n.min(MAX_LOCAL_TOKENS)));
            if stream {
                Ok(local_stream(echo, model, ctx))
            } else {
                local_json(echo, model, ctx).await
            }
        }
    }
}

struct Ctx {
    pool: Pool,
    tier: Tier,
    used_before: i64,
    record: Record,
}

impl Ctx {
    fn cloud_usage(&self) -> Value {
        let total = self
            .record
            .prompt_tokens
            .saturating_add(self.record.completion_tokens);
        usage::cloud_usage_json(
            self.tier,
            self.used_before
                .saturating_add(i64::try_from(total).unwrap_or(i64::MAX)),
        )
    }
}

fn completion_id() -> String {
    format!("chatcmpl-{}", Uuid::new_v4().simple())
}

fn usage_json(r: &Record) -> Value {
    json!({
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens.saturating_add(r.completion_tokens),
    })
}

async fn local_json(echo: Echo, model: String, mut ctx: Ctx) -> FnResult {
    ctx.record.completion_tokens = echo.tokens();
    if let Err(e) = usage::record(&ctx.pool, &ctx.record).await {
        return Err(internal(e));
    }
    Ok(Json(json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": crate::jwt::now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": echo.text()},
            "finish_reason": echo.finish_reason(),
        }],
        "usage": usage_json(&ctx.record),
        "_cloud_usage": ctx.cloud_usage(),
    }))
    .into_response())
}

/// Records usage exactly once: explicitly at the end of a stream, or, when the stream is
/// dropped first (the client went away), from `Drop` with what was produced so far.
struct Meter {
    ctx: Ctx,
    recorded: bool,
    /// Whether the stream reached its natural end (only then is a drop not a cancellation).
    finished: bool,
}

impl Meter {
    async fn flush(&mut self) {
        self.recorded = true;
        if let Err(e) = usage::record(&self.ctx.pool, &self.ctx.record).await {
            tracing::error!(error = %e, "ai-proxy: could not record usage");
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if !self.finished {
            let n = CANCELLED_STREAMS.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(
                completion_tokens = self.ctx.record.completion_tokens,
                cancelled_streams = n,
                "ai-proxy stream cancelled by the client"
            );
        }
        if self.recorded {
            return;
        }
        self.recorded = true;
        let (pool, record) = (self.ctx.pool.clone(), self.ctx.record.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = usage::record(&pool, &record).await {
                    tracing::error!(error = %e, "ai-proxy: could not record usage");
                }
            });
        }
    }
}

enum Phase {
    Content,
    Final,
    Done,
    End,
}

/// Unpaced, the local model writes this many events at a time.
const UNPACED_EVENTS_PER_WRITE: usize = 64;

struct LocalStream {
    echo: Echo,
    template: sse::ChunkTemplate,
    next: u64,
    phase: Phase,
    id: String,
    created: i64,
    model: String,
    meter: Meter,
}

fn sse_response(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn local_stream(echo: Echo, model: String, ctx: Ctx) -> Response {
    let id = completion_id();
    let created = crate::jwt::now();
    let st = LocalStream {
        echo,
        template: sse::ChunkTemplate::new(&id, created, &model),
        next: 0,
        phase: Phase::Content,
        id,
        created,
        model,
        meter: Meter {
            ctx,
            recorded: false,
            finished: false,
        },
    };
    let delay = chunk_delay();
    let stream = futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            match st.phase {
                Phase::Content if st.next < st.echo.tokens() => {
                    // Paced: one event per write, as a model types. Unpaced (the default):
                    // as fast as the tokens are made, several events to a write, so that a
                    // benchmark measures the client rather than this server.
                    let per_write = if delay.is_zero() {
                        UNPACED_EVENTS_PER_WRITE
                    } else {
                        1
                    };
                    if delay.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(delay).await;
                    }
                    let mut out = bytes::BytesMut::new();
                    for _ in 0..per_write {
                        if st.next >= st.echo.tokens() {
                            break;
                        }
                        let content = st.echo.chunk(st.next);
                        let role = if st.next == 0 {
                            Some("assistant")
                        } else {
                            None
                        };
                        out.extend_from_slice(&st.template.event(role, &content));
                        st.next += 1;
                    }
                    st.meter.ctx.record.completion_tokens = st.next;
                    return Some((Ok::<Bytes, Infallible>(out.freeze()), st));
                }
                Phase::Content => st.phase = Phase::Final,
                Phase::Final => {
                    st.meter.flush().await;
                    let mut last = sse::chunk(
                        &st.id,
                        st.created,
                        &st.model,
                        json!({}),
                        Some(st.echo.finish_reason()),
                    );
                    last["usage"] = usage_json(&st.meter.ctx.record);
                    last["_cloud_usage"] = st.meter.ctx.cloud_usage();
                    st.phase = Phase::Done;
                    return Some((Ok(sse::event(&last)), st));
                }
                Phase::Done => {
                    st.phase = Phase::End;
                    st.meter.finished = true;
                    return Some((Ok(Bytes::from_static(sse::DONE)), st));
                }
                Phase::End => return None,
            }
        }
    });
    sse_response(Body::from_stream(stream))
}

/// Forwards to an OpenAI-compatible server. JSON answers get `_cloud_usage`; streams pass
/// through untouched while their events are counted for metering.
async fn upstream(call: &Call, base: &str, mut req: Value, stream: bool, mut ctx: Ctx) -> FnResult {
    if let Some(obj) = req.as_object_mut() {
        obj.remove("provider");
        obj.remove("workspace_id");
    }
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let mut rb = call.state.http.post(url).json(&req);
    if let Some(key) = upstream_key() {
        rb = rb.bearer_auth(key);
    }
    let unreachable = |e: reqwest::Error| {
        tracing::warn!(error = %e, "ai-proxy: upstream failed");
        oai_error(
            StatusCode::BAD_GATEWAY,
            "The upstream model server is unreachable",
            "upstream_error",
            "upstream_unreachable",
        )
    };
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return Err(unreachable(e)),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if stream && status.is_success() {
        let mut meter = Meter {
            ctx,
            recorded: false,
            finished: false,
        };
        let mut scanner = sse::Scanner::default();
        let body = resp.bytes_stream().map(move |chunk| {
            if let Ok(bytes) = &chunk {
                for ev in scanner.feed(bytes) {
                    count_event(&mut meter, &ev);
                }
                meter.finished = scanner.done;
            }
            chunk
        });
        return Ok(sse_response(Body::from_stream(body)));
    }
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Err(unreachable(e)),
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response());
    };
    if status.is_success() {
        let n = |k: &str| {
            v.get("usage")
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
        };
        if let Some(p) = n("prompt_tokens") {
            ctx.record.prompt_tokens = p;
        }
        ctx.record.completion_tokens = n("completion_tokens").unwrap_or(0);
        if let Err(e) = usage::record(&ctx.pool, &ctx.record).await {
            return Err(internal(e));
        }
        if v.is_object() {
            v["_cloud_usage"] = ctx.cloud_usage();
        }
    }
    Ok((status, Json(v)).into_response())
}

/// One upstream event: a content delta counts a token, a `usage` object overrides the count.
fn count_event(meter: &mut Meter, ev: &Value) {
    let record = &mut meter.ctx.record;
    if let Some(u) = ev.get("usage").filter(|u| u.is_object()) {
        if let Some(p) = u.get("prompt_tokens").and_then(Value::as_u64) {
            record.prompt_tokens = p;
        }
        if let Some(c) = u.get("completion_tokens").and_then(Value::as_u64) {
            record.completion_tokens = c;
            return;
        }
    }
    let has_content = ev
        .pointer("/choices/0/delta/content")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if has_content {
        record.completion_tokens += 1;
    }
}
