//! `POST`/`PUT /object/{bucket}/{path}`: raw or `multipart/form-data` uploads.
//!
//! 1. A dry run of the row write (rolled back) lets RLS and the duplicate check refuse the
//!    upload before any byte is read.
//! 2. The body streams into a temp file with a running size check.
//! 3. The row is written as the caller, pointing at a fresh version of the bytes; the
//!    previous version's bytes are removed once the new row is committed.

use axum::{
    extract::{
        multipart::Field, rejection::PathRejection, FromRequest, Multipart, Path, Request, State,
    },
    http::{header, HeaderMap, HeaderValue, Method, Uri},
    response::Response,
    Json,
};
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    caller_of, connection,
    disk::{self, ObjectWriter, Written},
    error::{StorageError, StorageResult},
    iso,
    objects::bucket_and_key,
    request_info, respond,
};
use crate::{
    caller::Caller,
    db::{pipeline_as, End, Param, RequestInfo},
    state::SharedState,
};

/// Where a write goes and whether it may replace an existing object.
pub(super) struct Target<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upsert: bool,
}

/// `PUT` always replaces (storage-api's update); `POST` only with `x-upsert: true`.
pub(super) fn wants_upsert(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::PUT
        || headers
            .get("x-upsert")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

pub async fn upload(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    respond(upload_inner(&state, &method, &uri, &headers, path, req).await)
}

async fn upload_inner(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> StorageResult<Json<Value>> {
    let caller = caller_of(state, headers)?;
    let (bucket, key) = bucket_and_key(path)?;
    let target = Target {
        bucket: &bucket,
        key: &key,
        upsert: wants_upsert(method, headers),
    };
    let max = state.settings.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(StorageError::entity_too_large());
    }
    let info = request_info(method, uri);
    dry_run(state, &caller, &info, &target).await?;

    let received = receive(state, headers, req).await?;
    let metadata = json!({
        "eTag": format!("\"{}\"", received.written.sha256),
        "size": received.written.size,
        "mimetype": received.content_type,
        "cacheControl": received.cache_control,
        "lastModified": iso(chrono::Utc::now()),
        "contentLength": received.written.size,
        "httpStatusCode": 200,
    });
    let root = &state.settings.storage_dir;
    let version = received.written.persist(root, &bucket).await?;
    match save_row(state, &caller, &info, &target, &metadata, &version).await {
        Ok(id) => Ok(Json(json!({"Id": id, "Key": format!("{bucket}/{key}")}))),
        Err(e) => {
            disk::remove(root, &bucket, &version).await;
            Err(e)
        }
    }
}

/// Tries the row write and rolls it back: refuses early what the real write would refuse.
/// One round trip (see [`pipeline_as`]); its statements are prepared once per connection.
async fn dry_run(
    state: &SharedState,
    caller: &Caller,
    info: &RequestInfo<'_>,
    t: &Target<'_>,
) -> StorageResult<()> {
    let conn = connection(state).await?;
    let exists = conn
        .prepare_cached("SELECT 1 FROM storage.buckets WHERE id = $1")
        .await?;
    let conflict = if t.upsert {
        "ON CONFLICT (bucket_id, name) DO UPDATE SET updated_at = now()"
    } else {
        ""
    };
    let insert = conn
        .prepare_cached(&format!(
            "INSERT INTO storage.objects (bucket_id, name, owner) VALUES ($1, $2, $3) {conflict}"
        ))
        .await?;
    let owner = caller.user_id();
    let bucket: [Param<'_>; 1] = [&t.bucket];
    let row: [Param<'_>; 3] = [&t.bucket, &t.key, &owner];
    // A missing bucket first: the insert then fails on its foreign key.
    let (found, inserted) = pipeline_as(&conn, caller, false, info, End::Rollback, |db| {
        futures_util::future::join(db.query(&exists, &bucket), db.execute(&insert, &row)).map(Ok)
    })
    .await?;
    if found?.is_empty() {
        return Err(StorageError::no_such_bucket());
    }
    inserted?;
    Ok(())
}

/// Writes the object's row as the caller and returns its id; on success the bytes of the
/// version it replaced are removed.
pub(super) async fn save_row(
    state: &SharedState,
    caller: &Caller,
    info: &RequestInfo<'_>,
    t: &Target<'_>,
    metadata: &Value,
    version: &str,
) -> StorageResult<Uuid> {
    let conn = connection(state).await?;
    let owner = caller.user_id();
    let params: [Param<'_>; 5] = [&t.bucket, &t.key, &owner, metadata, &version];
    let stmt = conn
        .prepare_cached(if t.upsert { UPSERT } else { INSERT })
        .await?;
    // One round trip per attempt (see `pipeline_as`). Update-then-insert instead of
    // `ON CONFLICT DO UPDATE`, because only the locked old row tells which bytes the new
    // version replaces. A concurrent first insert makes both miss; the retry then finds the
    // row.
    let mut attempt = 0;
    let (id, replaced) = loop {
        let row = pipeline_as(&conn, caller, false, info, End::Commit, |db| {
            db.query_opt(&stmt, &params)
        })
        .await?;
        if let Some(row) = row {
            break (
                row.try_get::<_, Uuid>(0)?,
                row.try_get::<_, Option<String>>(1)?,
            );
        }
        attempt += 1;
        if !t.upsert || attempt == 3 {
            // The row exists but this caller cannot update it.
            return Err(StorageError::access_denied(
                "new row violates row-level security policy",
            ));
        }
    };
    if let Some(old) = replaced.filter(|old| old != version) {
        disk::remove(&state.settings.storage_dir, t.bucket, &old).await;
    }
    Ok(id)
}

const INSERT: &str = "INSERT INTO storage.objects (bucket_id, name, owner, metadata, version) \
                      VALUES ($1, $2, $3, $4, $5) RETURNING id, NULL::text";

/// The update of the locked old row, else the insert of a new one. The updated row is found
/// by its key, not only by the join on `id`: with a generic plan the join alone let
/// PostgreSQL scan every object and run the update policy's functions on each (15 ms with a
/// few hundred objects, growing with the bucket).
const UPSERT: &str = "WITH old AS (SELECT id, version FROM storage.objects \
                                   WHERE bucket_id = $1 AND name = $2 FOR UPDATE), \
     updated AS (UPDATE storage.objects o SET owner = $3, metadata = $4, version = $5, \
                        updated_at = now(), last_accessed_at = now() \
                 FROM old WHERE o.bucket_id = $1 AND o.name = $2 AND o.id = old.id \
                 RETURNING o.id, old.version), \
     inserted AS (INSERT INTO storage.objects (bucket_id, name, owner, metadata, version) \
                  SELECT $1, $2, $3::uuid, $4::jsonb, $5::text \
                  WHERE NOT EXISTS (SELECT 1 FROM old) \
                  ON CONFLICT (bucket_id, name) DO NOTHING RETURNING id) \
     SELECT id, version FROM updated UNION ALL SELECT id, NULL::text FROM inserted";

struct Received {
    written: Written,
    content_type: String,
    cache_control: String,
}

/// Longest accepted non-file multipart field (`cacheControl`, `metadata`).
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Of a body refused as too large, this much more is read and thrown away, so that a client
/// still sending it gets the answer rather than a reset connection; past it (or a pause of
/// `DRAIN_WAIT`) the connection is closed.
const DRAIN_MAX: usize = 1024 * 1024;
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn receive(
    state: &SharedState,
    headers: &HeaderMap,
    req: Request,
) -> StorageResult<Received> {
    let root = &state.settings.storage_dir;
    let max = state.settings.max_upload_bytes;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let mut multipart = Multipart::from_request(req, state)
            .await
            .map_err(|e| StorageError::invalid_request(format!("Invalid multipart body: {e}")))?;
        let mut cache_control = None;
        while let Some(mut field) = multipart.next_field().await.map_err(body_error)? {
            let name = field.name().unwrap_or("").to_string();
            let is_file = field.file_name().is_some() || name.is_empty() || name == "file";
            if !is_file {
                let value = small_field(&mut field).await?;
                if name == "cacheControl" {
                    cache_control = Some(value);
                }
                continue;
            }
            let part_type = field.content_type().map(str::to_string);
            return Ok(Received {
                written: write_body(ObjectWriter::new(root, max), field).await?,
                content_type: valid_mime(part_type.as_deref()),
                cache_control: max_age(cache_control.as_deref()),
            });
        }
        return Err(StorageError::invalid_request("No content provided"));
    }
    let written = write_body(
        ObjectWriter::new(root, max),
        req.into_body().into_data_stream(),
    )
    .await?;
    let cache_control = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no-cache");
    Ok(Received {
        written,
        content_type: valid_mime(Some(content_type)),
        cache_control: cache_control.to_string(),
    })
}

/// Writes a body (raw, or one multipart field) through `writer`. A body refused as too large
/// is read on to its end (within `DRAIN_MAX` and `DRAIN_WAIT`) and thrown away first.
async fn write_body<E: std::fmt::Display>(
    mut writer: ObjectWriter,
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, E>>,
) -> StorageResult<Written> {
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        if let Err(e) = writer.write(&chunk.map_err(body_error)?).await {
            let mut read = 0;
            while let Ok(Some(Ok(c))) = tokio::time::timeout(DRAIN_WAIT, body.next()).await {
                read += c.len();
                if read > DRAIN_MAX {
                    break;
                }
            }
            return Err(e);
        }
    }
    writer.finish().await
}

async fn small_field(field: &mut Field<'_>) -> StorageResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(body_error)? {
        if buf.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(StorageError::entity_too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// storage-js sends `cacheControl` as seconds (`"3600"`); storage-api stores `max-age=3600`.
fn max_age(v: Option<&str>) -> String {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => format!("max-age={s}"),
        Some(s) if !s.is_empty() && HeaderValue::from_str(s).is_ok() => s.to_string(),
        _ => "no-cache".to_string(),
    }
}

/// The stored content type must be sendable back as a header.
fn valid_mime(v: Option<&str>) -> String {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() && s.contains('/') && HeaderValue::from_str(s).is_ok() => {
            s.to_string()
        }
        _ => "application/octet-stream".to_string(),
    }
}

fn body_error(e: impl std::fmt::Display) -> StorageError {
    tracing::debug!(error = %e, "storage: upload body");
    StorageError::invalid_request("Failed to read the request body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_the_client() {
        assert_eq!(max_age(Some("3600")), "max-age=3600");
        assert_eq!(max_age(Some("public, max-age=60")), "public, max-age=60");
        assert_eq!(max_age(None), "no-cache");
        assert_eq!(
            valid_mime(Some("text/plain;charset=UTF-8")),
            "text/plain;charset=UTF-8"
        );
        assert_eq!(valid_mime(Some("bad\nvalue/x")), "application/octet-stream");
        assert_eq!(valid_mime(Some("")), "application/octet-stream");
        assert!(wants_upsert(&Method::PUT, &HeaderMap::new()));
        let mut h = HeaderMap::new();
        h.insert("x-upsert", HeaderValue::from_static("true"));
        assert!(wants_upsert(&Method::POST, &h));
        assert!(!wants_upsert(&Method::POST, &HeaderMap::new()));
    }
}
