//! Reading, listing, deleting, moving and copying objects.

use axum::{
    body::Body,
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::Row;
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::{
    caller_of, connection, disk,
    error::{StorageError, StorageResult},
    iso, json_body,
    key::{check_bucket, check_key},
    list::{list_level, ListBody, ListOptions, ObjectRow},
    request_info, respond,
};
use crate::{
    db::{begin_as, pipeline_as, End, Param},
    state::SharedState,
};

/// The `{bucket}/{*path}` of a route, checked.
pub(super) fn bucket_and_key(
    path: Result<Path<(String, String)>, PathRejection>,
) -> StorageResult<(String, String)> {
    let Path((bucket, key)) = path.map_err(|_| StorageError::invalid_key("(undecodable)"))?;
    check_bucket(&bucket)?;
    check_key(&key)?;
    Ok((bucket, key))
}

const OBJECT_COLUMNS: &str =
    "id, bucket_id, name, owner, version, metadata, created_at, updated_at, last_accessed_at";

struct Object {
    id: Uuid,
    bucket_id: String,
    name: String,
    owner: Option<Uuid>,
    version: Option<String>,
    metadata: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_accessed_at: DateTime<Utc>,
}

impl Object {
    fn from_row(r: &Row) -> Result<Object, tokio_postgres::Error> {
        Ok(Object {
            id: r.try_get("id")?,
            bucket_id: r.try_get("bucket_id")?,
            name: r.try_get("name")?,
            owner: r.try_get("owner")?,
            version: r.try_get("version")?,
            metadata: r.try_get("metadata")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            last_accessed_at: r.try_get("last_accessed_at")?,
        })
    }

    /// The row as storage-api returns it from deletes.
    fn to_json(&self) -> Value {
        json!({
            "bucket_id": self.bucket_id,
            "name": self.name,
            "owner": self.owner,
            "owner_id": self.owner,
            "id": self.id,
            "version": self.version,
            "updated_at": iso(self.updated_at),
            "created_at": iso(self.created_at),
            "last_accessed_at": iso(self.last_accessed_at),
            "metadata": self.metadata,
        })
    }

    fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key)?.as_str()
    }
}

async fn find(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    bucket: &str,
    key: &str,
) -> StorageResult<Object> {
    let caller = caller_of(state, headers)?;
    let conn = connection(state).await?;
    // Prepared once per connection and read in one round trip: every download asks this.
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = $1 AND name = $2"
        ))
        .await?;
    let info = request_info(method, uri);
    let params: [Param<'_>; 2] = [&bucket, &key];
    let row = pipeline_as(&conn, &caller, true, &info, End::Commit, |db| {
        db.query_opt(&stmt, &params)
    })
    .await?
    .ok_or_else(StorageError::no_such_key)?;
    Ok(Object::from_row(&row)?)
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    download: Option<String>,
}

/// `GET /object/{bucket}/{path}` (and `/object/authenticated/…`; HEAD too): streams the bytes.
pub async fn download(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<DownloadQuery>, QueryRejection>,
) -> Response {
    let download = query.ok().and_then(|Query(q)| q.download);
    respond(download_inner(&state, &method, &uri, &headers, path, download).await)
}

async fn download_inner(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    download: Option<String>,
) -> StorageResult<Response> {
    let (bucket, key) = bucket_and_key(path)?;
    let obj = find(state, method, uri, headers, &bucket, &key).await?;
    let version = obj
        .version
        .as_deref()
        .ok_or_else(StorageError::no_such_key)?;
    let path = disk::object_path(&state.settings.storage_dir, &bucket, version);
    let (len, content) = match disk::open(path, method != Method::HEAD).await {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Overwritten (and the old bytes removed) between the lookup and the open.
            tracing::warn!(bucket, "storage: object bytes missing");
            return Err(StorageError::no_such_key());
        }
        Err(e) => {
            tracing::error!(error = %e, "storage: open failed");
            return Err(StorageError::internal());
        }
    };
    let mut out = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    set(
        header::CONTENT_TYPE,
        obj.meta_str("mimetype")
            .unwrap_or("application/octet-stream"),
    );
    set(
        header::CACHE_CONTROL,
        obj.meta_str("cacheControl").unwrap_or("no-cache"),
    );
    set(
        header::LAST_MODIFIED,
        &obj.updated_at
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    );
    set(header::ACCEPT_RANGES, "bytes");
    let etag = obj.meta_str("eTag").map(str::to_string);
    if let Some(etag) = &etag {
        set(header::ETAG, etag);
    }
    if let Some(name) = download {
        let name = if name.is_empty() {
            key.rsplit('/').next().unwrap_or(&key).to_string()
        } else {
            name
        };
        let encoded =
            percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
        set(
            header::CONTENT_DISPOSITION,
            &format!("attachment; filename*=UTF-8''{encoded}"),
        );
    }
    let not_modified = etag.as_deref().is_some_and(|etag| {
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    });
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = match content {
        disk::Content::Whole(bytes) => Body::from(bytes),
        disk::Content::File(file) => {
            Body::from_stream(ReaderStream::with_capacity(file, 64 * 1024))
        }
        disk::Content::None => Body::empty(),
    };
    Ok((StatusCode::OK, out, body).into_response())
}

/// `GET /object/info/{bucket}/{path}`: the object's row, as storage-api's `getObjectInfo`.
pub async fn info(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let r = async {
        let (bucket, key) = bucket_and_key(path)?;
        let obj = find(&state, &method, &uri, &headers, &bucket, &key).await?;
        Ok(Json(json!({
            "id": obj.id,
            "name": obj.name,
            "version": obj.version,
            "bucket_id": obj.bucket_id,
            "size": obj.metadata.get("size"),
            "content_type": obj.meta_str("mimetype"),
            "cache_control": obj.meta_str("cacheControl"),
            "etag": obj.meta_str("eTag"),
            "metadata": {},
            "last_modified": iso(obj.updated_at),
            "created_at": iso(obj.created_at),
        })))
    };
    respond(r.await)
}

/// `POST /object/list/{bucket}`.
pub async fn list(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(bucket): Path<String>,
    body: Body,
) -> Response {
    let r = async {
        let caller = caller_of(&state, &headers)?;
        check_bucket(&bucket)?;
        let opts = ListOptions::from_body(json_body::<ListBody>(&state, body).await?)?;
        let mut conn = connection(&state).await?;
        let tx = begin_as(&mut conn, &caller, true, &request_info(&method, &uri)).await?;
        let rows = tx
            .query(
                "SELECT name, id, updated_at, created_at, last_accessed_at, metadata FROM storage.objects \
                 WHERE bucket_id = $1 AND name LIKE $2 ESCAPE '\\'",
                &[&bucket, &opts.like_pattern()],
            )
            .await?;
        tx.commit().await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(ObjectRow {
                    name: r.try_get("name")?,
                    id: r.try_get("id")?,
                    updated_at: r.try_get("updated_at")?,
                    created_at: r.try_get("created_at")?,
                    last_accessed_at: r.try_get("last_accessed_at")?,
                    metadata: r.try_get("metadata")?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        Ok(Json(list_level(rows, &opts)))
    };
    respond(r.await)
}

/// Deletes rows as the caller (RLS hides what they may not delete) and then their bytes.
async fn delete_rows(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    bucket: &str,
    names: &[String],
) -> StorageResult<Vec<Object>> {
    let caller = caller_of(state, headers)?;
    let mut conn = connection(state).await?;
    let tx = begin_as(&mut conn, &caller, false, &request_info(method, uri)).await?;
    let sql = format!("DELETE FROM storage.objects WHERE bucket_id = $1 AND name = ANY($2) RETURNING {OBJECT_COLUMNS}");
    let rows = tx.query(&sql, &[&bucket, &names]).await?;
    tx.commit().await?;
    let deleted = rows
        .iter()
        .map(Object::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    for obj in &deleted {
        if let Some(v) = &obj.version {
            disk::remove(&state.settings.storage_dir, bucket, v).await;
        }
    }
    Ok(deleted)
}

/// `DELETE /object/{bucket}/{path}`.
pub async fn delete_one(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let r = async {
        let (bucket, key) = bucket_and_key(path)?;
        let deleted = delete_rows(&state, &method, &uri, &headers, &bucket, &[key]).await?;
        if deleted.is_empty() {
            return Err(StorageError::no_such_key());
        }
        Ok(Json(json!({"message": "Successfully deleted"})))
    };
    respond(r.await)
}

#[derive(Deserialize)]
struct DeleteMany {
    prefixes: Vec<String>,
}

/// `DELETE /object/{bucket}` `{prefixes:[…]}` → the deleted rows.
pub async fn delete_many(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(bucket): Path<String>,
    body: Body,
) -> Response {
    let r = async {
        caller_of(&state, &headers)?;
        check_bucket(&bucket)?;
        let DeleteMany { prefixes } = json_body(&state, body).await?;
        if prefixes.is_empty() || prefixes.len() > 1000 {
            return Err(StorageError::invalid_request(
                "prefixes must hold 1 to 1000 keys",
            ));
        }
        let deleted = delete_rows(&state, &method, &uri, &headers, &bucket, &prefixes).await?;
        Ok(Json(
            deleted.iter().map(Object::to_json).collect::<Vec<_>>(),
        ))
    };
    respond(r.await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoveBody {
    bucket_id: String,
    source_key: String,
    destination_key: String,
    destination_bucket: Option<String>,
}

impl MoveBody {
    fn checked(self) -> StorageResult<(String, String, String, String)> {
        let dest_bucket = self
            .destination_bucket
            .unwrap_or_else(|| self.bucket_id.clone());
        check_bucket(&self.bucket_id)?;
        check_bucket(&dest_bucket)?;
        check_key(&self.source_key)?;
        check_key(&self.destination_key)?;
        Ok((
            self.bucket_id,
            self.source_key,
            dest_bucket,
            self.destination_key,
        ))
    }
}

/// `POST /object/move`: renames the row (RLS checks both the old and the new name).
pub async fn move_object(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = async {
        let caller = caller_of(&state, &headers)?;
        let (bucket, source, dest_bucket, dest) =
            json_body::<MoveBody>(&state, body).await?.checked()?;
        let mut conn = connection(&state).await?;
        let tx = begin_as(&mut conn, &caller, false, &request_info(&method, &uri)).await?;
        let row = tx
            .query_opt(
                "UPDATE storage.objects SET bucket_id = $3, name = $4, updated_at = now() \
                 WHERE bucket_id = $1 AND name = $2 RETURNING version",
                &[&bucket, &source, &dest_bucket, &dest],
            )
            .await?
            .ok_or_else(StorageError::no_such_key)?;
        let version: Option<String> = row.try_get(0)?;
        let root = &state.settings.storage_dir;
        if let (Some(v), true) = (&version, bucket != dest_bucket) {
            let to = disk::object_path(root, &dest_bucket, v);
            if let Some(dir) = to.parent() {
                let _ = tokio::fs::create_dir_all(dir).await;
            }
            tokio::fs::rename(disk::object_path(root, &bucket, v), to)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "storage: move failed");
                    StorageError::internal()
                })?;
        }
        tx.commit().await?;
        Ok(Json(json!({"message": "Successfully moved"})))
    };
    respond(r.await)
}

/// `POST /object/copy`: a new object with a copy of the bytes.
pub async fn copy_object(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let upsert = super::upload::wants_upsert(&method, &headers);
    let r = async {
        let (bucket, source, dest_bucket, dest) =
            json_body::<MoveBody>(&state, body).await?.checked()?;
        let src = find(&state, &method, &uri, &headers, &bucket, &source).await?;
        let src_version = src
            .version
            .as_deref()
            .ok_or_else(StorageError::no_such_key)?;
        let root = &state.settings.storage_dir;
        let version = disk::copy(root, &bucket, src_version, &dest_bucket).await?;
        let caller = caller_of(&state, &headers)?;
        let target = super::upload::Target {
            bucket: &dest_bucket,
            key: &dest,
            upsert,
        };
        let saved = super::upload::save_row(
            &state,
            &caller,
            &request_info(&method, &uri),
            &target,
            &src.metadata,
            &version,
        )
        .await;
        let id = match saved {
            Ok(id) => id,
            Err(e) => {
                disk::remove(root, &dest_bucket, &version).await;
                return Err(e);
            }
        };
        Ok(Json(
            json!({"Id": id, "Key": format!("{dest_bucket}/{dest}")}),
        ))
    };
    respond(r.await)
}
