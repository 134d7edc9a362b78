//! One file at a time: upload (object, then row at version + 1), download (to a temporary
//! file, verified against the row's checksum and size, then renamed into place), delete (row
//! soft-deleted at version + 1, then the object removed).

use std::path::{Path, PathBuf};

use reqwest::Method;
use uuid::Uuid;

use super::{
    metadata::{self, FileRow, NewContent, RowState},
    paths::{self, RelPath},
    progress, scan, stat, Ctx, BUCKET, TEMP_DIR,
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

/// A local file's stat, taken before its bytes are read, and when: a hash cache entry made
/// from them is stale, and re-hashed, if the file changes during or after the upload.
#[derive(Debug, Clone, Copy)]
pub struct LocalStat {
    pub stat: stat::Stat,
    pub seen: i64,
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
    let current = metadata::state(ctx.client, ws, rel).await?;
    // The object is written before its row, and a row write that then loses its
    // compare-and-set cannot take the object back: a row that moved since the delta was made
    // (another machine's upload, which may have finished long after the scan) is checked
    // before the bytes go, so they never replace that machine's.
    if let Expect::Seen(seen) = expect {
        if !still_as_seen(seen, current.as_ref()) {
            return Ok(None);
        }
    }
    let sent = send_object(ctx, ws, rel, &abs, stat).await?;
    record(ctx, ws, &sent, current, expect).await
}

/// Whether the row is as a delta saw it (a deleted row where none was seen counts: reviving
/// it is no competing edit).
fn still_as_seen(seen: Option<&RowState>, now: Option<&RowState>) -> bool {
    match (seen, now) {
        (Some(s), Some(n)) => s.version == n.version,
        (None, None) => true,
        (None, Some(n)) => n.is_deleted,
        (Some(_), None) => false,
    }
}

/// The file to upload, checked: inside the root and a regular file.
pub fn local_file(root: &Path, rel: &RelPath) -> Result<(PathBuf, LocalStat)> {
    let abs = paths::resolve(root, rel)?;
    let seen = stat::now_ns();
    let meta = std::fs::metadata(&abs)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", abs.display())))?;
    if !meta.is_file() {
        return Err(Error::InvalidArgument(format!(
            "Invalid file path {:?}: not a regular file",
            rel.as_str()
        )));
    }
    let stat = LocalStat {
        stat: stat::Stat::of(&meta),
        seen,
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
        progress(&ctx.events, rel.as_str(), stat.stat.size),
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
    /// The written file's stat, and when it was taken, for the hash cache.
    pub stat: stat::Stat,
    pub seen: i64,
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

/// What a download may replace at its destination. A sync decides from a scan, and the user
/// may edit or create the file while the bytes are on their way: such an edit is kept (the
/// download is skipped, and the next sync sees both changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// Whatever is there (`downloadFile`: the caller asked for the cloud copy).
    Any,
    /// Nothing: the scan found no file there.
    Nothing,
    /// The file only as the scan found it: the same stat, and, if that stat cannot prove the
    /// same contents (see [`stat::still_holds`]), the same checksum.
    Unchanged {
        stat: stat::Stat,
        seen: i64,
        checksum: String,
    },
}

/// Where a download lands.
pub struct Landing<'a> {
    pub dest: &'a RelPath,
    pub replace: Replace,
    /// Flushed to disk before the rename (a sync flushes its downloads in batches instead).
    pub durable: bool,
}

/// Downloads the cloud file `rel` (whose row is `row`) under `root` as `to` says. `None`
/// when the destination changed meanwhile (see [`Replace`]) and was left as it is.
pub async fn download(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    root: &Path,
    rel: &RelPath,
    row: &FileRow,
    to: Landing<'_>,
) -> Result<Option<Downloaded>> {
    let Landing {
        dest,
        replace,
        durable,
    } = to;
    let target = paths::resolve(root, dest)?;
    // The download creates the temporary directory if it is missing.
    let tmp = TempFile(Some(
        root.join(TEMP_DIR).join(format!("{}.part", Uuid::new_v4())),
    ));
    let tmp_path = tmp.0.clone().unwrap_or_default();
    let total = u64::try_from(row.file_size).unwrap_or(0);
    let path = object_path(ws, rel);
    let mismatch = |what: &str| Error::ContentMismatch {
        path: rel.as_str().to_string(),
        version: row.version,
        checksum: row.checksum.clone(),
        what: what.to_string(),
    };
    // Reading stops at the row's size (by `Content-Length`, or as the bytes arrive): an
    // object larger than its row costs no more than the row says.
    let got = match transfer::download(
        ctx.client,
        &path,
        &tmp_path,
        total,
        durable,
        progress(&ctx.events, dest.as_str(), total),
    )
    .await
    {
        Err(Error::ResponseTooLarge { status, limit, .. })
            if limit == total && (200..300).contains(&status) =>
        {
            return Err(mismatch("size"))
        }
        got => got?,
    };
    if got.size != total {
        return Err(mismatch("size"));
    }
    if row.checksum.as_deref().is_some_and(|c| c != got.sha256) {
        return Err(mismatch("checksum"));
    }
    // Into place in one trip to the blocking pool.
    let (root_owned, dest_owned) = (root.to_path_buf(), dest.clone());
    let placed = tokio::task::spawn_blocking(move || place(&root_owned, &dest_owned, tmp, replace))
        .await
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", target.display())))??;
    let Some((stat, seen)) = placed else {
        tracing::info!(
            path = dest.as_str(),
            "changed here during the download; kept, not replaced"
        );
        return Ok(None);
    };
    ctx.events.emit(Event::FileDownloaded {
        file_path: dest.as_str().to_string(),
        cloud_path: rel.storage_key(ws),
        size: got.size,
    });
    Ok(Some(Downloaded {
        size: got.size,
        checksum: Some(got.sha256),
        version: row.version,
        stat,
        seen,
    }))
}

/// Moves the downloaded `tmp` to `root/dest` if `replace` allows what is there now, and
/// returns its stat and when it was taken; `None` (and `tmp` removed) if it does not.
fn place(
    root: &Path,
    dest: &RelPath,
    mut tmp: TempFile,
    replace: Replace,
) -> Result<Option<(stat::Stat, i64)>> {
    let target = paths::resolve(root, dest)?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    // Directories just created are real ones, but check the chain again before the rename.
    paths::resolve(root, dest)?;
    let Some(from) = tmp.0.clone() else {
        return Ok(None);
    };
    let cannot = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", target.display()));
    match replace {
        Replace::Any => std::fs::rename(&from, &target).map_err(cannot)?,
        Replace::Nothing => {
            if !rename_new(&from, &target).map_err(cannot)? {
                return Ok(None);
            }
        }
        Replace::Unchanged {
            stat,
            seen,
            checksum,
        } => {
            // The window between this look and the rename is the file system's to close; no
            // portable call replaces a file only if it is unchanged.
            let now = std::fs::symlink_metadata(&target)
                .ok()
                .filter(|m| m.file_type().is_file())
                .map(|m| stat::Stat::of(&m));
            let same = now.is_some_and(|now| {
                stat::still_holds(&stat, seen, &now)
                    || (now == stat && scan::hash_file(&target).is_ok_and(|h| h == checksum))
            });
            if !same {
                return Ok(None);
            }
            std::fs::rename(&from, &target).map_err(cannot)?;
        }
    }
    tmp.0 = None;
    let seen = stat::now_ns();
    Ok(Some((
        std::fs::metadata(&target)
            .map(|m| stat::Stat::of(&m))
            .unwrap_or_default(),
        seen,
    )))
}

/// Renames `from` to `to` unless `to` exists (in one step where the system has one);
/// `false` if it exists.
fn rename_new(from: &Path, to: &Path) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::{ffi::CString, os::unix::ffi::OsStrExt};
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let (f, t) = (c(from)?, c(to)?);
        // SAFETY: both are valid NUL-terminated paths for the duration of the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) => return Ok(false),
            // A file system without it: as elsewhere.
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {}
            _ => return Err(e),
        }
    }
    // A hard link fails if the name exists; then the temporary name goes.
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            let _ = std::fs::remove_file(from);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // No hard links here (FAT, some network shares): look, then rename.
        Err(_) if std::fs::symlink_metadata(to).is_ok() => Ok(false),
        Err(_) => std::fs::rename(from, to).map(|()| true),
    }
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
    let to = Landing {
        dest: rel,
        replace: Replace::Any,
        durable: true,
    };
    // Shared with other downloads; a sync, which clears the temporary directory, waits.
    let held = super::lock::shared(root).await?;
    let got = download(ctx, ws, root, rel, &row, to).await;
    drop(held);
    // Only by the last run out: another may be about to write there.
    if let Ok(Some(_last)) = super::lock::try_exclusive(root) {
        let _ = std::fs::remove_dir(root.join(TEMP_DIR));
    }
    let Some(got) = got? else {
        return Err(Error::Io(format!("{} was not written", rel.as_str())));
    };
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
    let rows: Vec<FileRow> = metadata::parse(&path, reply.body)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A root with a downloaded temporary file holding `new`, and the destination `a.txt`.
    fn setup(existing: Option<&str>) -> (PathBuf, RelPath, TempFile) {
        let root = std::env::temp_dir().join(format!("oboto-place-{}", Uuid::new_v4()));
        std::fs::create_dir_all(root.join(TEMP_DIR)).unwrap();
        let tmp = root.join(TEMP_DIR).join("x.part");
        std::fs::write(&tmp, "new").unwrap();
        if let Some(text) = existing {
            std::fs::write(root.join("a.txt"), text).unwrap();
        }
        (root, RelPath::parse("a.txt").unwrap(), TempFile(Some(tmp)))
    }

    /// What a scan of `p` would have found, `seen` ns after the epoch.
    fn scanned_at(p: &Path, seen: i64) -> Replace {
        let m = std::fs::metadata(p).unwrap();
        Replace::Unchanged {
            stat: stat::Stat::of(&m),
            seen,
            checksum: scan::hash_file(p).unwrap(),
        }
    }

    fn stat(p: &Path) -> Replace {
        scanned_at(p, stat::now_ns())
    }

    fn read(root: &Path) -> String {
        std::fs::read_to_string(root.join("a.txt")).unwrap()
    }

    fn temp_left(root: &Path) -> usize {
        std::fs::read_dir(root.join(TEMP_DIR)).unwrap().count()
    }

    #[test]
    fn an_upload_goes_ahead_only_over_the_row_it_was_planned_on() {
        let row = |version, is_deleted| RowState {
            id: Uuid::from_u128(1),
            version,
            is_deleted,
            checksum: None,
            file_size: 0,
        };
        assert!(still_as_seen(Some(&row(2, false)), Some(&row(2, false))));
        assert!(!still_as_seen(Some(&row(2, false)), Some(&row(3, false))));
        assert!(!still_as_seen(Some(&row(2, false)), None));
        assert!(still_as_seen(None, None));
        assert!(still_as_seen(None, Some(&row(4, true))));
        assert!(!still_as_seen(None, Some(&row(1, false))));
    }

    #[test]
    fn a_file_created_during_the_download_is_kept() {
        let (root, rel, tmp) = setup(None);
        // The scan found nothing; the user saved a file meanwhile.
        std::fs::write(root.join("a.txt"), "mine").unwrap();
        assert_eq!(place(&root, &rel, tmp, Replace::Nothing).unwrap(), None);
        assert_eq!(read(&root), "mine");
        assert_eq!(temp_left(&root), 0, "the temporary file is removed");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_edited_during_the_download_is_kept() {
        let (root, rel, tmp) = setup(Some("old"));
        let scanned = stat(&root.join("a.txt"));
        std::fs::write(root.join("a.txt"), "my edit").unwrap();
        assert_eq!(place(&root, &rel, tmp, scanned).unwrap(), None);
        assert_eq!(read(&root), "my edit");
        assert_eq!(temp_left(&root), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// An edit of the same size whose modification time is set back, made right after the
    /// scan: the stat cannot tell, so the contents do.
    #[test]
    fn a_same_size_edit_with_its_mtime_restored_during_the_download_is_kept() {
        let (root, rel, tmp) = setup(Some("old"));
        let a = root.join("a.txt");
        let scanned = stat(&a);
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::write(&a, "min").unwrap();
        let f = std::fs::File::options().write(true).open(&a).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(mtime))
            .unwrap();
        drop(f);
        assert_eq!(place(&root, &rel, tmp, scanned).unwrap(), None);
        assert_eq!(read(&root), "min");
        assert_eq!(temp_left(&root), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn what_the_scan_saw_is_replaced() {
        let (root, rel, tmp) = setup(None);
        assert!(place(&root, &rel, tmp, Replace::Nothing).unwrap().is_some());
        assert_eq!(read(&root), "new");

        let (root2, rel, tmp) = setup(Some("old"));
        let scanned = stat(&root2.join("a.txt"));
        assert!(place(&root2, &rel, tmp, scanned).unwrap().is_some());
        assert_eq!(read(&root2), "new");

        let (root3, rel, tmp) = setup(Some("whatever"));
        assert!(place(&root3, &rel, tmp, Replace::Any).unwrap().is_some());
        assert_eq!(read(&root3), "new");
        for r in [root, root2, root3] {
            assert_eq!(temp_left(&r), 0);
            std::fs::remove_dir_all(&r).unwrap();
        }
    }
}
