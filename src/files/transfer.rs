//! One file at a time: upload (object, then row at version + 1), download (to a temporary
//! file, verified against the row's checksum and size, then renamed into place), delete (row
//! soft-deleted at version + 1, then the object removed).

use std::path::{Path, PathBuf};

use reqwest::Method;
use uuid::Uuid;

use super::{
    metadata::{self, FileRow, NewContent, RowState},
    paths::{self, RelPath},
    progress, scan, Ctx, BUCKET, TEMP_DIR,
};
use crate::{
    error::{Error, Result},
    events::Event,
    rest::{query, transfer, Request},
};

/// Compare-and-set attempts before an upload or delete gives up on a busy path.
const ATTEMPTS: usize = 3;

pub fn workspace(ws: &str) -> Result<Uuid> {
    query::uuid("workspace id", ws)
}

fn object_path(ws: &Uuid, rel: &RelPath) -> String {
    format!("/storage/v1/object/{BUCKET}/{}", rel.encoded_key(ws))
}

/// How an upload treats the row it replaces.
#[derive(Clone, Copy)]
pub enum Expect<'a> {
    /// Whatever version is current (`uploadFile`).
    Latest,
    /// Exactly this row (none, or a deleted one, for a new file), as a delta saw it; a row
    /// that moved meanwhile is left alone and the upload reports `None`.
    Seen(Option<&'a RowState>),
}

pub struct Uploaded {
    pub row: FileRow,
    pub storage_path: String,
    /// The local file as it was before its bytes were read.
    pub stat: LocalStat,
}

/// `uploadFile`'s and `downloadFile`'s result: the legacy `{storagePath, size, checksum}`
/// (upload) and `{filePath, storagePath}` (download), both with the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Transferred {
    pub file_path: String,
    pub storage_path: String,
    pub size: i64,
    pub checksum: Option<String>,
    pub version: i64,
}

impl Uploaded {
    pub fn result(self) -> Transferred {
        Transferred {
            file_path: self.row.file_path,
            storage_path: self.storage_path,
            size: self.row.file_size,
            checksum: self.row.checksum,
            version: self.row.version,
        }
    }
}

/// A local file's length and modification time, taken before its bytes are read: a hash
/// cache entry made from them is stale, and re-hashed, if the file changes during or after
/// the upload.
#[derive(Debug, Clone, Copy)]
pub struct LocalStat {
    pub len: u64,
    pub mtime: i64,
}

/// An object sent whose row is still to be written.
pub struct Sent {
    pub rel: RelPath,
    pub size: u64,
    pub sha256: String,
    pub stat: LocalStat,
}

/// Uploads `root/rel`. `Ok(None)` only with [`Expect::Seen`] when the row moved meanwhile.
pub async fn upload(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    root: &Path,
    rel: &RelPath,
    expect: Expect<'_>,
) -> Result<Option<Uploaded>> {
    let (abs, stat) = local_file(root, rel)?;
    let current = match expect {
        Expect::Latest => metadata::state(ctx.client, ws, rel).await?,
        Expect::Seen(row) => row.cloned(),
    };
    let sent = send_object(ctx, ws, rel, &abs, stat).await?;
    record(ctx, ws, &sent, current, expect).await
}

/// The file to upload, checked: inside the root and a regular file.
pub fn local_file(root: &Path, rel: &RelPath) -> Result<(PathBuf, LocalStat)> {
    let abs = paths::resolve(root, rel)?;
    let meta = std::fs::metadata(&abs)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", abs.display())))?;
    if !meta.is_file() {
        return Err(Error::InvalidArgument(format!(
            "Invalid file path {:?}: not a regular file",
            rel.as_str()
        )));
    }
    let stat = LocalStat {
        len: meta.len(),
        mtime: scan::mtime_of(&meta),
    };
    Ok((abs, stat))
}

/// Streams `abs` to the object of `rel`; its row is not touched.
pub async fn send_object(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    rel: &RelPath,
    abs: &Path,
    stat: LocalStat,
) -> Result<Sent> {
    let headers = vec![
        ("x-upsert".to_string(), "true".to_string()),
        (
            "content-type".to_string(),
            metadata::mime_type(rel).to_string(),
        ),
    ];
    let sent = transfer::upload(
        ctx.client,
        Method::POST,
        &object_path(ws, rel),
        abs,
        &headers,
        progress(&ctx.events, rel.as_str(), stat.len),
    )
    .await?;
    Ok(Sent {
        rel: rel.clone(),
        size: sent.size,
        sha256: sent.sha256,
        stat,
    })
}

/// Writes the row of an object sent: compare-and-set from `current`, tried again as
/// `expect` allows when the row moved.
pub async fn record(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    sent: &Sent,
    mut current: Option<RowState>,
    expect: Expect<'_>,
) -> Result<Option<Uploaded>> {
    let rel = &sent.rel;
    for _ in 0..ATTEMPTS {
        if let Some(row) =
            metadata::record(ctx.client, ws, rel, current.as_ref(), &sent.content(ctx)).await?
        {
            return Ok(Some(recorded(ctx, ws, sent, row)));
        }
        let now = metadata::state(ctx.client, ws, rel).await?;
        match expect {
            Expect::Latest => current = now,
            // A deleted row the delta did not list is no competing edit: revive it.
            Expect::Seen(None) if now.as_ref().is_some_and(|r| r.is_deleted) => current = now,
            Expect::Seen(_) => return Ok(None),
        }
    }
    Err(Error::Io(format!(
        "{} keeps changing in the cloud; try again",
        rel.as_str()
    )))
}

impl Sent {
    pub fn content<'a>(&'a self, ctx: &'a Ctx<'_>) -> NewContent<'a> {
        NewContent {
            size: self.size,
            checksum: &self.sha256,
            user_id: ctx.user_id.as_deref(),
        }
    }
}

/// The upload is done once its row is written: announced, and its result.
pub fn recorded(ctx: &Ctx<'_>, ws: &Uuid, sent: &Sent, row: FileRow) -> Uploaded {
    ctx.events.emit(Event::FileUploaded {
        file_path: sent.rel.as_str().to_string(),
        cloud_path: sent.rel.storage_key(ws),
        size: sent.size,
    });
    Uploaded {
        row,
        storage_path: sent.rel.storage_key(ws),
        stat: sent.stat,
    }
}

pub struct Downloaded {
    pub size: u64,
    pub checksum: Option<String>,
    pub version: i64,
    /// The written file's modification time, for the hash cache.
    pub mtime: i64,
}

/// Removes the temporary file unless it was renamed into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Downloads the cloud file `rel` (whose row is `row`) to `root/dest`; `durable` flushes it
/// to disk before the rename (a sync flushes its downloads in batches instead).
pub async fn download(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    root: &Path,
    rel: &RelPath,
    dest: &RelPath,
    row: &FileRow,
    durable: bool,
) -> Result<Downloaded> {
    let target = paths::resolve(root, dest)?;
    // The download creates the temporary directory if it is missing.
    let tmp = TempFile(Some(
        root.join(TEMP_DIR).join(format!("{}.part", Uuid::new_v4())),
    ));
    let tmp_path = tmp.0.clone().unwrap_or_default();
    let total = u64::try_from(row.file_size).unwrap_or(0);
    let path = object_path(ws, rel);
    let got = transfer::download(
        ctx.client,
        &path,
        &tmp_path,
        total,
        durable,
        progress(&ctx.events, dest.as_str(), total),
    )
    .await?;
    let mismatch = |what: &str| Error::InvalidResponse {
        url: path.clone(),
        status: 200,
        reason: format!(
            "the {what} of {} does not match its metadata; not written",
            rel.as_str()
        ),
    };
    if got.size != total {
        return Err(mismatch("size"));
    }
    if row.checksum.as_deref().is_some_and(|c| c != got.sha256) {
        return Err(mismatch("checksum"));
    }
    // Into place in one trip to the blocking pool.
    let (root_owned, dest_owned) = (root.to_path_buf(), dest.clone());
    let mtime = tokio::task::spawn_blocking(move || place(&root_owned, &dest_owned, tmp))
        .await
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", target.display())))??;
    ctx.events.emit(Event::FileDownloaded {
        file_path: dest.as_str().to_string(),
        cloud_path: rel.storage_key(ws),
        size: got.size,
    });
    Ok(Downloaded {
        size: got.size,
        checksum: Some(got.sha256),
        version: row.version,
        mtime,
    })
}

/// Renames the downloaded `tmp` to `root/dest` and returns its mtime; `tmp` is removed if
/// it cannot be.
fn place(root: &Path, dest: &RelPath, mut tmp: TempFile) -> Result<i64> {
    let target = paths::resolve(root, dest)?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    // Directories just created are real ones, but check the chain again before the rename.
    paths::resolve(root, dest)?;
    if let Some(from) = &tmp.0 {
        std::fs::rename(from, &target)
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", target.display())))?;
    }
    tmp.0 = None;
    Ok(std::fs::metadata(&target)
        .map(|m| scan::mtime_of(&m))
        .unwrap_or(0))
}

/// `downloadFile`: the live row of `rel` is the truth; no row, nothing to download.
pub async fn download_latest(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    root: &Path,
    rel: &RelPath,
) -> Result<Transferred> {
    paths::resolve(root, rel)?;
    let row = live_row(ctx, ws, rel).await?;
    let got = download(ctx, ws, root, rel, rel, &row, true).await;
    // Only removed when empty: another download may be using it.
    let _ = std::fs::remove_dir(root.join(TEMP_DIR));
    let got = got?;
    Ok(Transferred {
        file_path: rel.as_str().to_string(),
        storage_path: rel.storage_key(ws),
        size: i64::try_from(got.size).unwrap_or(i64::MAX),
        checksum: got.checksum,
        version: got.version,
    })
}

async fn live_row(ctx: &Ctx<'_>, ws: &Uuid, rel: &RelPath) -> Result<FileRow> {
    let path = format!(
        "/rest/v1/workspace_files?workspace_id={}&file_path={}&is_deleted=eq.false&select=id,file_path,file_size,checksum,mime_type,file_type,version,updated_at",
        query::eq(&ws.to_string()),
        query::eq(rel.as_str())
    );
    let reply = ctx.client.send(&Request::new(Method::GET, &path)).await?;
    let rows: Vec<FileRow> =
        serde_json::from_value(reply.body).map_err(|e| Error::InvalidResponse {
            url: path.clone(),
            status: 200,
            reason: format!("unexpected rows ({e})"),
        })?;
    rows.into_iter().next().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "No file {:?} in cloud workspace {ws}",
            rel.as_str()
        ))
    })
}

/// Soft-deletes the row (if it is still at `seen`'s version, or whatever version with
/// `None`) and removes the object. `Ok(false)` when there was nothing to delete or the row
/// moved under a `seen` expectation.
pub async fn delete(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    rel: &RelPath,
    seen: Option<&RowState>,
) -> Result<bool> {
    let mut row = match seen {
        Some(r) => r.clone(),
        None => match metadata::state(ctx.client, ws, rel).await? {
            Some(r) if !r.is_deleted => r,
            _ => return Ok(false),
        },
    };
    let mut done = false;
    for _ in 0..ATTEMPTS {
        if metadata::soft_delete(ctx.client, &row).await? {
            done = true;
            break;
        }
        if seen.is_some() {
            return Ok(false);
        }
        match metadata::state(ctx.client, ws, rel).await? {
            Some(r) if !r.is_deleted => row = r,
            _ => return Ok(false),
        }
    }
    if !done {
        return Err(Error::Io(format!(
            "{} keeps changing in the cloud; try again",
            rel.as_str()
        )));
    }
    let req = Request::new(Method::DELETE, object_path(ws, rel));
    match ctx.client.send(&req).await {
        Ok(_) => {}
        // Already gone: the row was the truth anyway.
        Err(Error::Http(h)) if h.code.as_deref() == Some("NoSuchKey") || h.status == 404 => {}
        Err(e) => {
            tracing::warn!(path = rel.as_str(), error = %e, "object not removed; its row is deleted")
        }
    }
    ctx.events.emit(Event::FileDeleted {
        file_path: rel.as_str().to_string(),
        cloud_path: rel.storage_key(ws),
    });
    Ok(true)
}
