//! Edge Functions (`/functions/v1/{name}`): Oboto Cloud's functions, built in.
//!
//! Every function needs a user's access token, as Supabase's gateway with JWT verification
//! plus the functions' own "who is calling" check would demand. Errors are JSON.

mod agent_chat;
mod ai_proxy;
mod catalog;
mod echo;
mod sse;
pub mod tiers;
mod usage;

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::any,
    Json, Router,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    body::{read_limited, BodyError},
    caller::{self, Caller, CallerError, Role},
    state::SharedState,
};

pub fn router() -> Router<SharedState> {
    Router::new().route("/{name}", any(dispatch))
}

/// What a function needs to know about the request.
pub(crate) struct Call {
    pub state: SharedState,
    pub caller: Caller,
    pub user: Uuid,
    pub method: Method,
    pub uri: Uri,
}

async fn dispatch(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    #[derive(Clone, Copy)]
    enum F {
        AgentChat,
        AiProxy,
        Models,
        Usage,
    }
    let f = match name.as_str() {
        "agent-chat" => F::AgentChat,
        "ai-proxy" => F::AiProxy,
        "cloud-models" => F::Models,
        "cloud-usage" => F::Usage,
        _ => return error(StatusCode::NOT_FOUND, "Function not found").into_response(),
    };
    let (caller, user) = match user_caller(&state, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let writes = matches!(f, F::AgentChat | F::AiProxy);
    if writes && method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed").into_response();
    }
    let call = Call {
        state,
        caller,
        user,
        method,
        uri,
    };
    let r = match f {
        F::AgentChat => agent_chat::handle(call, body).await,
        F::AiProxy => ai_proxy::handle(call, body).await,
        F::Models => catalog::models(call).await,
        F::Usage => catalog::usage(call).await,
    };
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A function's error answer: a status and a JSON body.
#[derive(Debug)]
pub(crate) struct FnError {
    status: StatusCode,
    body: Value,
}

impl FnError {
    pub(crate) fn new(status: StatusCode, body: Value) -> FnError {
        FnError { status, body }
    }
}

impl IntoResponse for FnError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

pub(crate) type FnResult = Result<Response, FnError>;

/// The gateway's answer: `{"code":401,"message":…}`.
fn unauthorized(message: &str) -> FnError {
    FnError::new(
        StatusCode::UNAUTHORIZED,
        json!({"code": 401, "message": message}),
    )
}

/// A verified user access token, or the 401 the gateway would send.
fn user_caller(state: &SharedState, headers: &HeaderMap) -> Result<(Caller, Uuid), FnError> {
    let caller = caller::resolve(&state.keys, headers, None).map_err(|e| match e {
        CallerError::NoApiKey | CallerError::InvalidApiKey => unauthorized(&e.to_string()),
        CallerError::Expired | CallerError::BadJwt(_) => unauthorized("Invalid JWT"),
    })?;
    if caller.token.is_none() {
        return Err(unauthorized("Missing authorization header"));
    }
    match (caller.role, caller.user_id()) {
        (Role::Authenticated, Some(user)) => Ok((caller, user)),
        _ => Err(unauthorized("A user access token is required")),
    }
}

/// `{"error": message}` with a status.
pub(crate) fn error(status: StatusCode, message: &str) -> FnError {
    FnError::new(status, json!({"error": message}))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> FnError {
    tracing::error!(error = %e, "functions: internal error");
    error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// Reads the JSON body with the configured limit: 413 when too large, 400 when malformed.
pub(crate) async fn json_body<T: DeserializeOwned>(call: &Call, body: Body) -> Result<T, FnError> {
    let bytes = read_limited(body, call.state.settings.max_body_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
            BodyError::Read => error(StatusCode::BAD_REQUEST, "Could not read the request body"),
        })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "Invalid JSON body"))?;
    serde_json::from_value(value)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("Invalid request: {e}")))
}
