//! Supabase Storage (`/storage/v1`), as storage-api answers storage-js.
//!
//! Metadata lives in `storage.objects`, and every read or write of it runs as the caller
//! (`db::begin_as`), so the RLS policies decide who sees and changes what; objects hidden by
//! RLS are simply "not found". Bytes live on disk (`disk`), streamed both ways.

mod buckets;
mod disk;
mod error;
mod key;
mod list;
mod objects;
mod upload;

use axum::{
    body::Body,
    extract::DefaultBodyLimit,
    http::{HeaderMap, Method, Uri},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Router,
};
use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Object;
use serde::de::DeserializeOwned;

use crate::{
    caller::{self, Caller},
    db::RequestInfo,
    state::SharedState,
};
pub use error::{StorageError, StorageResult};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/bucket", get(buckets::list))
        .route("/bucket/{id}", get(buckets::get_one))
        .route("/object/list/{bucket}", post(objects::list))
        .route("/object/move", post(objects::move_object))
        .route("/object/copy", post(objects::copy_object))
        .route(
            "/object/info/authenticated/{bucket}/{*path}",
            get(objects::info),
        )
        .route("/object/info/{bucket}/{*path}", get(objects::info))
        .route(
            "/object/authenticated/{bucket}/{*path}",
            get(objects::download),
        )
        .route(
            "/object/{bucket}/{*path}",
            get(objects::download)
                .post(upload::upload)
                .put(upload::upload)
                .delete(objects::delete_one),
        )
        .route("/object/{bucket}", delete(objects::delete_many))
        .fallback(not_found)
        // Uploads enforce `max_upload_bytes` while streaming and JSON bodies `max_body_bytes`
        // while reading; axum's blanket 2 MB limit would cut uploads short.
        .layer(DefaultBodyLimit::disable())
}

/// Unknown routes, as storage-api's framework answers them.
async fn not_found(method: Method, uri: Uri) -> Response {
    let body = serde_json::json!({
        "statusCode": "404",
        "error": "Not Found",
        "message": format!("Route {method}:{} not found", uri.path()),
    });
    (axum::http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// The caller behind the request, with gateway and JWT failures in storage's dialect.
fn caller_of(state: &SharedState, headers: &HeaderMap) -> StorageResult<Caller> {
    caller::resolve(&state.keys, headers, None).map_err(|e| StorageError::from_caller(&e))
}

async fn connection(state: &SharedState) -> StorageResult<Object> {
    Ok(state.db.get().await?)
}

fn request_info<'a>(method: &'a Method, uri: &'a Uri) -> RequestInfo<'a> {
    RequestInfo {
        method: method.as_str(),
        path: uri.path(),
    }
}

/// Reads a JSON body with the configured limit: 413 when too large, 400 when malformed.
async fn json_body<T: DeserializeOwned>(state: &SharedState, body: Body) -> StorageResult<T> {
    let bytes = crate::body::read_limited(body, state.settings.max_body_bytes)
        .await
        .map_err(|e| match e {
            crate::body::BodyError::TooLarge => StorageError::entity_too_large(),
            crate::body::BodyError::Read => {
                StorageError::invalid_request("Failed to read the request body")
            }
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StorageError::invalid_request(format!("Invalid JSON body: {e}")))
}

/// Timestamps as storage-api renders them (JavaScript's `toISOString`).
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn respond<T: IntoResponse>(r: StorageResult<T>) -> Response {
    match r {
        Ok(v) => v.into_response(),
        Err(e) => e.into_response(),
    }
}
