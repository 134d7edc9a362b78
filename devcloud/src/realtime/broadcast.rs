//! REST broadcasts (Realtime's `tenants/batch_broadcast.ex`): `POST /api/broadcast` with
//! `{"messages":[{topic,event,payload,private}]}` (topics without the `realtime:` prefix),
//! and `POST /api/broadcast/{topic}/events/{event}` with a raw body (realtime-js `httpSend`).
//! Both answer 202 with an empty body.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{serializer::Body, token, topic_key, Broadcast};
use crate::{caller, state::SharedState};

const MAX_MESSAGES: usize = 1000;

#[derive(Deserialize)]
struct Batch {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    topic: String,
    event: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    private: bool,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `Authorization: Bearer`, else the `apikey` header; the role decides private writes.
/// The error is the message of a 401.
fn role(state: &SharedState, headers: &HeaderMap) -> Result<String, String> {
    let token = caller::bearer(headers)
        .or_else(|| headers.get("apikey").and_then(|v| v.to_str().ok()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "Missing authorization".to_string())?;
    token::verify(&state.keys, token)
        .map(|a| a.role)
        .map_err(|e| e.to_string())
}

fn send(state: &SharedState, role: &str, topic: &str, private: bool, b: Broadcast) {
    // Like a private channel without a write policy for anon: dropped silently.
    if private && role == "anon" {
        return;
    }
    let key = topic_key(&format!("realtime:{topic}"), private);
    state.realtime.broadcast(&key, None, Arc::new(b));
}

pub async fn batch(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let role = match role(&state, &headers) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::UNAUTHORIZED, &message),
    };
    let Ok(batch) = serde_json::from_slice::<Batch>(&body) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid broadcast body");
    };
    if batch.messages.len() > MAX_MESSAGES {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Too many messages");
    }
    for m in batch.messages {
        let b = Broadcast::from_json(m.event, m.payload);
        send(&state, &role, &m.topic, m.private, b);
    }
    StatusCode::ACCEPTED.into_response()
}

pub async fn single(
    State(state): State<SharedState>,
    Path((topic, event)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let role = match role(&state, &headers) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::UNAUTHORIZED, &message),
    };
    let private = params.get("private").is_some_and(|p| p == "true");
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let b = if is_json {
        let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid JSON body");
        };
        Broadcast::from_json(event, payload)
    } else {
        Broadcast {
            event,
            body: Body::Raw(body),
            binary: true,
            json: None,
        }
    };
    send(&state, &role, &topic, private, b);
    StatusCode::ACCEPTED.into_response()
}
