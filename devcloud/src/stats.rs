//! Counters behind `/devcloud/v1/stats`, so tests and benchmarks can count what a client
//! really sent (one refresh for twenty concurrent calls, two requests for a thousand messages).

use std::{collections::BTreeMap, sync::Mutex};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::json;

use crate::{caller, state::SharedState};

#[derive(Default)]
pub struct Stats {
    inner: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    requests: BTreeMap<String, u64>,
    grants: BTreeMap<String, u64>,
    realtime_open: u64,
    realtime_total: u64,
}

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
    pub fn request(&self, method: &str, path: &str) {
        self.with(|c| *c.requests.entry(format!("{method} {path}")).or_default() += 1);
    }
    pub fn grant(&self, grant_type: &str) {
        self.with(|c| *c.grants.entry(grant_type.to_string()).or_default() += 1);
    }
    pub fn realtime_opened(&self) {
        self.with(|c| {
            c.realtime_open += 1;
            c.realtime_total += 1;
        });
    }
    pub fn realtime_closed(&self) {
        self.with(|c| c.realtime_open = c.realtime_open.saturating_sub(1));
    }
    fn snapshot(&self) -> serde_json::Value {
        self.with(|c| {
            json!({
                "requests": c.requests,
                "grants": c.grants,
                "realtime": {"connections": c.realtime_open, "total": c.realtime_total},
            })
        })
    }
    fn reset(&self) {
        self.with(|c| {
            c.requests.clear();
            c.grants.clear();
            c.realtime_total = c.realtime_open;
        });
    }
}

/// Counts every request except the stats hooks themselves.
pub async fn count(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/devcloud/") {
        state.stats.request(req.method().as_str(), path);
    }
    next.run(req).await
}

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset))
}

fn is_service(state: &SharedState, headers: &axum::http::HeaderMap) -> bool {
    matches!(caller::resolve(&state.keys, headers, None), Ok(c) if c.is_service_role())
}

fn forbidden() -> Response {
    let body = json!({"message": "the devcloud hooks need the service-role key"});
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

async fn stats(State(state): State<SharedState>, headers: axum::http::HeaderMap) -> Response {
    if !is_service(&state, &headers) {
        return forbidden();
    }
    let mut snapshot = state.stats.snapshot();
    if let Some(rt) = snapshot.get_mut("realtime").and_then(|v| v.as_object_mut()) {
        if let Some(extra) = state.realtime.stats().as_object() {
            rt.extend(extra.clone());
        }
    }
    Json(snapshot).into_response()
}

async fn reset(State(state): State<SharedState>, headers: axum::http::HeaderMap) -> Response {
    if !is_service(&state, &headers) {
        return forbidden();
    }
    state.stats.reset();
    state.realtime.reset_stats();
    StatusCode::NO_CONTENT.into_response()
}
