//! `GET /bucket` and `GET /bucket/{id}`, read as the caller.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, Method, Uri},
    response::Response,
    Json,
};
use serde_json::{json, Value};
use tokio_postgres::Row;

use super::{
    caller_of, connection, error::StorageError, iso, request_info, respond, StorageResult,
};
use crate::{db::begin_as, state::SharedState};

fn bucket_json(r: &Row) -> Result<Value, tokio_postgres::Error> {
    let id: String = r.try_get("id")?;
    Ok(json!({
        "id": id,
        "name": r.try_get::<_, String>("name")?,
        "owner": "",
        "public": r.try_get::<_, bool>("public")?,
        "file_size_limit": null,
        "allowed_mime_types": null,
        "created_at": iso(r.try_get("created_at")?),
        "updated_at": iso(r.try_get("updated_at")?),
    }))
}

async fn query(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    id: Option<&str>,
) -> StorageResult<Vec<Value>> {
    let caller = caller_of(state, headers)?;
    let mut conn = connection(state).await?;
    let tx = begin_as(&mut conn, &caller, true, &request_info(method, uri)).await?;
    let rows = tx
        .query(
            "SELECT id, name, public, created_at, updated_at FROM storage.buckets \
             WHERE $1::text IS NULL OR id = $1 ORDER BY name",
            &[&id],
        )
        .await?;
    tx.commit().await?;
    Ok(rows.iter().map(bucket_json).collect::<Result<_, _>>()?)
}

pub async fn list(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    respond(query(&state, &method, &uri, &headers, None).await.map(Json))
}

pub async fn get_one(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = query(&state, &method, &uri, &headers, Some(&id))
        .await
        .and_then(|mut v| {
            if v.is_empty() {
                Err(StorageError::no_such_bucket())
            } else {
                Ok(Json(v.swap_remove(0)))
            }
        });
    respond(r)
}
