//! `computeDelta` and `syncFiles`: the local tree against the cloud rows and the manifest,
//! then each path's action, four at a time.
//!
//! A run is resumable because every action is idempotent against a fresh delta: a file that
//! finished before an interruption is equal on both sides next time (in sync, whatever the
//! manifest says), and a download that did not finish never left its temporary file in the
//! tree (the next run removes it from the temporary directory).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::{stream::FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    delta::{classify, Class, Remote, Side},
    lock,
    manifest::{Hashed, Manifest, Refused, Synced},
    metadata::{self, FileRow, RowState},
    paths::{self, RelPath},
    scan::{self, LocalFile},
    transfer::{self, Expect, Landing, Replace},
    unsynced::Rules,
    Ctx, TEMP_DIR,
};
use crate::{
    error::{Error, Result},
    events::Event,
    workspace,
};

/// Transfers at once.
pub const CONCURRENCY: usize = 4;
/// New files whose rows are written in one request (their objects are sent one by one).
const ROW_BATCH: usize = 200;
/// The manifest is written at most this often during a run (and always at its end).
const SAVE_EVERY: Duration = Duration::from_secs(5);

pub struct Entry {
    pub path: RelPath,
    pub class: Class,
    pub local: Option<LocalFile>,
    pub remote: Option<FileRow>,
}

pub struct Delta {
    pub entries: Vec<Entry>,
    pub manifest: Manifest,
    /// Files whose contents the scan read (hash cache misses).
    pub hashed: usize,
    /// Files the scan found but could not stat or read, and directories it could not list,
    /// each with a message that says so: left alone both ways, with all that is under them.
    pub unreadable: Vec<(RelPath, String)>,
}

impl Delta {
    /// The paths of one class, in scan order, but those held back by [`Delta::refusal`].
    pub fn paths(&self, c: Class) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.class == c && self.refusal(e).is_none())
            .map(|e| e.path.as_str().to_string())
            .collect()
    }

    /// Why `e` is not acted on although its class would write here: its object did not
    /// match this very row, and only a change in the cloud can fix that.
    pub fn refusal(&self, e: &Entry) -> Option<Error> {
        refusal(&self.manifest, e)
    }

    /// Every refused entry, as [`Delta::refusal`] says.
    pub fn refusals(&self) -> impl Iterator<Item = (&RelPath, Error)> {
        self.entries
            .iter()
            .filter_map(|e| Some((&e.path, self.refusal(e)?)))
    }
}

fn refusal(manifest: &Manifest, e: &Entry) -> Option<Error> {
    let writes_local = matches!(e.class, Class::Download | Class::Conflict);
    let refused = manifest.refused.get(e.path.as_str())?;
    writes_local.then(|| refused.error(e.path.as_str()))
}

fn check_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "Invalid local directory {:?}: not a directory",
            dir.display().to_string()
        )))
    }
}

fn hashed(f: &LocalFile) -> Hashed {
    Hashed {
        stat: f.stat,
        seen: f.seen,
        checksum: f.checksum.clone(),
    }
}

/// `computeDelta`: the delta, computed while any run may be going on. Its hash cache is kept
/// only if no run holds the directory, and only the cache: the bases it loaded may be older
/// than a run's that finished since, and writing them back would undo that run.
pub async fn compute_delta(ctx: &Ctx<'_>, ws: &Uuid, dir: &Path) -> Result<Delta> {
    let delta = delta(ctx, ws, dir).await?;
    if delta.hashed > 0 {
        // Best effort: a cache that is not written only costs a re-hash next time.
        let saved = lock::try_exclusive(dir).and_then(|held| {
            let Some(_held) = held else {
                return Ok(false);
            };
            let mut now = Manifest::load(dir, &ws.to_string());
            now.hashes = delta.manifest.hashes.clone();
            now.save(dir).map(|()| true)
        });
        match saved {
            Ok(true) => {}
            Ok(false) => tracing::debug!("a run holds the directory; hash cache not saved"),
            Err(e) => tracing::debug!(error = %e, "hash cache not saved"),
        }
    }
    Ok(delta)
}

/// The delta; the caller owns the manifest it returns.
async fn delta(ctx: &Ctx<'_>, ws: &Uuid, dir: &Path) -> Result<Delta> {
    check_dir(dir)?;
    let rows = metadata::list(ctx.client, ws).await?;
    let mut manifest = Manifest::load(dir, &ws.to_string());
    let mut remote: BTreeMap<RelPath, FileRow> = BTreeMap::new();
    for row in rows {
        // Only canonical paths: anything else could not be written here, or would be written
        // under a name whose row the next lookup would not find.
        match RelPath::parse(&row.file_path) {
            Ok(p) if p.as_str() == row.file_path => {
                remote.insert(p, row);
            }
            _ => {
                tracing::warn!(path = %row.file_path, "cloud file with an unusable path; not synced")
            }
        }
    }
    // A refused download stays refused only while its row is the one refused.
    manifest.refused.retain(|p, r| {
        let row = RelPath::parse(p).ok().and_then(|p| remote.get(&p));
        row.is_some_and(|row| r.is_of(row.version, row.checksum.as_deref()))
    });
    let mut known: BTreeSet<RelPath> = remote.keys().cloned().collect();
    known.extend(manifest.files.keys().filter_map(|k| RelPath::parse(k).ok()));
    let cache = std::mem::take(&mut manifest.hashes);
    let root = dir.to_path_buf();
    let (scan, all) = tokio::task::spawn_blocking(move || local_view(&root, &cache, known))
        .await
        .map_err(|e| Error::Io(format!("the scan failed: {e}")))??;
    // The cache keeps only files that still exist, as they are now.
    manifest.hashes = scan
        .files
        .iter()
        .map(|(p, f)| (p.as_str().to_string(), hashed(f)))
        .collect();
    // A file here without a live row is uploaded or kept; neither may happen for a workspace
    // this session cannot see (row-level security lists it as empty, not as an error).
    let unlisted: Vec<&RelPath> = all
        .iter()
        .filter(|p| scan.files.contains_key(*p) && !remote.contains_key(*p))
        .collect();
    if !unlisted.is_empty()
        && workspace::find(ctx.client, &ws.to_string())
            .await?
            .is_none()
    {
        return Err(Error::InvalidArgument(format!(
            "The workspace {ws} does not exist or is not visible to you; its files were left as they are"
        )));
    }
    // Only those a tombstone could delete: synced before and unchanged since.
    let unchanged: Vec<&RelPath> = unlisted
        .into_iter()
        .filter(|p| {
            let local = scan.files.get(*p).map(|l| l.checksum.as_str());
            let base = manifest.files.get(p.as_str()).map(|b| b.checksum.as_str());
            local.is_some() && local == base
        })
        .collect();
    let deleted = if unchanged.is_empty() {
        Default::default()
    } else {
        metadata::tombstones(ctx.client, ws, &unchanged).await?
    };
    let mut entries = Vec::new();
    for path in all {
        let local = scan.files.get(&path).cloned();
        let row = remote.get(&path).cloned();
        let base = manifest.files.get(path.as_str());
        let cloud = match (&row, deleted.get(&path)) {
            (Some(r), _) => Remote::Live(Side {
                checksum: r.checksum.as_deref(),
                version: r.version,
            }),
            (None, Some(&version)) => Remote::Deleted { version },
            (None, None) => Remote::Absent,
        };
        let class = classify(
            local.as_ref().map(|l| l.checksum.as_str()),
            cloud,
            base.map(|b| Side {
                checksum: Some(b.checksum.as_str()),
                version: b.version,
            }),
        );
        match class {
            Some(class) => entries.push(Entry {
                path,
                class,
                local,
                remote: row,
            }),
            None => {
                manifest.files.remove(path.as_str());
            }
        }
    }
    Ok(Delta {
        entries,
        manifest,
        hashed: scan.hashed,
        unreadable: unreadable(scan),
    })
}

/// What the scan could not look at, each with the message a run reports for it.
fn unreadable(scan: scan::Scan) -> Vec<(RelPath, String)> {
    let files = scan.unreadable.into_iter().map(|(p, why)| {
        let m = format!("cannot read {p}: {why}; left as it is");
        (p, m)
    });
    let dirs = scan.unreadable_dirs.into_iter().map(|(p, why)| {
        let m = format!(
            "cannot read the directory {p}: {why}; nothing under it is synced, nor taken for deleted"
        );
        (p, m)
    });
    let ignores = scan.broken_ignores.into_iter().map(|(p, why)| {
        let under = match scan::dir_of(&p) {
            "" => "in this directory".to_string(),
            dir => format!("under {dir}"),
        };
        let m = format!(
            "cannot use the ignore file {p}: {why}; what it keeps out of the cloud cannot be \
             known, so nothing {under} is synced, nor taken for deleted"
        );
        (p, m)
    });
    files.chain(dirs).chain(ignores).collect()
}

/// The local side of a delta (blocking): the scan, and every path either side knows that
/// this machine may act on. Left out are the paths that are not this machine's to touch,
/// and those the scan found but could not stat or read, which are neither missing nor
/// known: taking one for deleted would delete it from every other machine.
fn local_view(
    root: &Path,
    cache: &BTreeMap<String, Hashed>,
    known: BTreeSet<RelPath>,
) -> Result<(scan::Scan, BTreeSet<RelPath>)> {
    let scan = scan::scan(root, cache)?;
    let all = actionable(root, &scan, known);
    Ok((scan, all))
}

/// Of the paths either side knows, and those `scan` found, the ones this machine may act on.
fn actionable(root: &Path, scan: &scan::Scan, mut known: BTreeSet<RelPath>) -> BTreeSet<RelPath> {
    let unseen = known
        .iter()
        .filter(|p| !scan.files.contains_key(*p) && !scan.unseen(p));
    let unsynced = Rules::new(root).unsynced(unseen);
    for p in &unsynced {
        tracing::debug!(
            path = p.as_str(),
            "not synced on this machine; left as it is"
        );
    }
    let unread = [
        &scan.unreadable,
        &scan.unreadable_dirs,
        &scan.broken_ignores,
    ];
    for (p, why) in unread.into_iter().flatten() {
        tracing::warn!(path = p.as_str(), error = %why, "unreadable; left as it is");
    }
    known.extend(scan.files.keys().cloned());
    known.retain(|p| !unsynced.contains(p) && !scan.unseen(p));
    known
}

/// The files of `dir` against its last sync with `ws` (blocking): a walk that compares stats
/// with the manifest's hash cache, which records the tree as that sync left it, trusting an
/// entry as the scan does. No request and no file read, so it can run while nothing else
/// does; a directory never synced has no cache, so it is not as cached.
pub fn glance(dir: &Path, ws: &Uuid) -> Result<scan::Glance> {
    check_dir(dir)?;
    let manifest = Manifest::load(dir, &ws.to_string());
    scan::glance(dir, &manifest.hashes)
}

/// Removes what an interrupted run left in the temporary directory (under the exclusive
/// lock: no live run has a file there).
fn clean_temp(dir: &Path) {
    let tmp = dir.join(TEMP_DIR);
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(&tmp);
}

fn row_state(r: &FileRow) -> RowState {
    RowState {
        id: r.id,
        version: r.version,
        is_deleted: false,
        checksum: r.checksum.clone(),
        file_size: r.file_size,
    }
}

/// What one action did to the manifest.
enum Outcome {
    /// Path (and its conflict copy) now synced at these states.
    Synced(Vec<(RelPath, Synced, Option<Hashed>)>),
    Forgotten(RelPath),
    /// Someone changed the cloud meanwhile; the next run sees it.
    Skipped,
    /// Left as it is, base and all (see [`Class::KeepLocal`]).
    Kept,
    /// A new file's object is sent; its row goes with the next batch.
    Sent(transfer::Sent),
}

#[derive(Default)]
struct Report {
    uploaded: Vec<String>,
    downloaded: Vec<String>,
    deleted_local: Vec<String>,
    deleted_remote: Vec<String>,
    conflicts: Vec<Value>,
    skipped: Vec<String>,
    kept_local: Vec<String>,
    failed: Vec<Value>,
    in_sync: usize,
    /// A transfer failed (unlike a file that cannot be read or a case clash, which only a
    /// change here can fix, or a refused download, which only a change in the cloud can): a
    /// run again may get it through.
    transfers_failed: bool,
}

/// What a run did: its report (`FileSyncResult`), and whether a transfer failed.
pub struct Run {
    pub report: Value,
    pub transfers_failed: bool,
}

/// `syncFiles`: waits its turn behind any other run on `dir` (see [`lock`]).
pub async fn sync_files(ctx: &Ctx<'_>, ws: &Uuid, dir: &Path) -> Result<Run> {
    check_dir(dir)?;
    let held = lock::exclusive(dir).await?;
    run(ctx, ws, dir, held).await
}

/// The sync engine's run: `None`, at once, when another run holds `dir`. Waiting would hold
/// up the engine's other steps for as long as that run takes (minutes for a large tree),
/// and that run is syncing the directory anyway.
pub async fn sync_files_unless_busy(ctx: &Ctx<'_>, ws: &Uuid, dir: &Path) -> Result<Option<Run>> {
    check_dir(dir)?;
    let Some(held) = lock::try_exclusive(dir)? else {
        return Ok(None);
    };
    run(ctx, ws, dir, held).await.map(Some)
}

async fn run(ctx: &Ctx<'_>, ws: &Uuid, dir: &Path, _held: lock::DirLock) -> Result<Run> {
    clean_temp(dir);
    let delta = delta(ctx, ws, dir).await?;
    if delta.hashed > 0 {
        // Best effort, as early as this: an interrupted run still spares the next the reads.
        if let Err(e) = delta.manifest.save(dir) {
            tracing::debug!(error = %e, "hash cache not saved");
        }
    }
    let mut saved_at = Instant::now();
    let mut tally = Tally {
        dir,
        report: Report::default(),
        manifest: delta.manifest,
        unflushed: Vec::new(),
    };
    for (path, why) in &delta.unreadable {
        tally.failed(path.as_str(), &Error::Io(why.clone()));
    }
    let taken: Mutex<BTreeSet<RelPath>> = Mutex::new(
        delta
            .entries
            .iter()
            .filter(|e| e.local.is_some() || e.remote.is_some())
            .map(|e| e.path.clone())
            .collect(),
    );
    // On a case-insensitive file system `A.txt` and `a.txt` are one file: writing either
    // would silently replace the other, so neither is written and both are named.
    let clashes = if case_insensitive(dir) {
        case_clashes(delta.entries.iter().map(|e| e.path.as_str()))
    } else {
        HashMap::new()
    };
    let mut runnable = Vec::new();
    for e in &delta.entries {
        let writes_local = matches!(e.class, Class::Download | Class::Conflict);
        match clashes.get(e.path.as_str()) {
            Some(other) if writes_local => tally.report.failed.push(json!({
                "filePath": e.path.as_str(),
                "code": "CASE_CONFLICT",
                "error": case_message(e.path.as_str(), other),
            })),
            // Reported without a warning: it was logged when refused, and stays until the
            // row changes.
            _ => match refusal(&tally.manifest, e) {
                Some(why) => tally.report.failed.push(json!({
                    "filePath": e.path.as_str(),
                    "code": why.code(),
                    "error": why.to_string(),
                })),
                None => runnable.push(e),
            },
        }
    }
    // A queue refilled as transfers finish (not `buffer_unordered` over a closure, whose
    // borrowed futures the compiler cannot prove `Send` for every lifetime).
    let mut pending = runnable.into_iter();
    let mut results = FuturesUnordered::new();
    for e in pending.by_ref().take(CONCURRENCY) {
        results.push(apply_entry(ctx, ws, dir, e, &taken));
    }
    let mut staged: Vec<transfer::Sent> = Vec::new();
    while let Some((entry, outcome)) = results.next().await {
        if let Some(e) = pending.next() {
            results.push(apply_entry(ctx, ws, dir, e, &taken));
        }
        match outcome {
            Ok(Outcome::Sent(sent)) => staged.push(sent),
            outcome => tally.add(entry.class, entry.path.as_str(), outcome),
        }
        if staged.len() >= ROW_BATCH {
            record_new(ctx, ws, std::mem::take(&mut staged), &mut tally).await;
        }
        if saved_at.elapsed() >= SAVE_EVERY {
            if let Err(e) = tally.save().await {
                tracing::warn!(error = %e, "manifest not saved");
            }
            saved_at = Instant::now();
        }
    }
    record_new(ctx, ws, staged, &mut tally).await;
    tally.save().await?;
    clean_temp(dir);
    let r = tally.report;
    let report = json!({
        "uploaded": r.uploaded,
        "downloaded": r.downloaded,
        "deletedLocal": r.deleted_local,
        "deletedRemote": r.deleted_remote,
        "conflicts": r.conflicts,
        "skipped": r.skipped,
        "keptLocal": r.kept_local,
        "failed": r.failed,
        "inSync": r.in_sync,
    });
    Ok(Run {
        report,
        transfers_failed: r.transfers_failed,
    })
}

/// Where each finished action of a run is written down: its report and the manifest.
struct Tally<'a> {
    dir: &'a Path,
    report: Report,
    manifest: Manifest,
    /// Downloads written but not yet flushed to disk: flushed together before the manifest
    /// records them as the synced base (one journal commit instead of one per file), so a
    /// power cut never leaves a torn file that the manifest calls synced, which the next run
    /// would take for a local edit and upload.
    unflushed: Vec<PathBuf>,
}

impl Tally<'_> {
    /// Flushes the downloads written so far, then writes the manifest that records them.
    async fn save(&mut self) -> Result<()> {
        flush(std::mem::take(&mut self.unflushed)).await;
        self.manifest.save(self.dir)
    }

    fn add(&mut self, class: Class, path: &str, outcome: Result<Outcome>) {
        let (r, m, p) = (&mut self.report, &mut self.manifest, path.to_string());
        match outcome {
            Ok(Outcome::Synced(states)) => {
                match class {
                    Class::Upload => r.uploaded.push(p),
                    Class::Download => r.downloaded.push(p),
                    Class::InSync => r.in_sync += 1,
                    Class::Conflict => {
                        let copy = states.get(1).map(|s| s.0.as_str().to_string());
                        r.conflicts
                            .push(json!({"filePath": p, "conflictPath": copy}));
                    }
                    _ => {}
                }
                if matches!(class, Class::Download | Class::Conflict) {
                    let written = if class == Class::Download { 0 } else { 1 };
                    if let Some((p, _, _)) = states.get(written) {
                        self.unflushed.push(self.dir.join(p.as_str()));
                    }
                }
                for (path, synced, hash) in states {
                    m.refused.remove(path.as_str());
                    m.files.insert(path.as_str().to_string(), synced);
                    if let Some(h) = hash {
                        m.hashes.insert(path.as_str().to_string(), h);
                    }
                }
            }
            Ok(Outcome::Forgotten(path)) => {
                match class {
                    Class::DeleteLocal => r.deleted_local.push(p),
                    _ => r.deleted_remote.push(p),
                }
                m.files.remove(path.as_str());
                m.hashes.remove(path.as_str());
                m.refused.remove(path.as_str());
            }
            Ok(Outcome::Skipped) => r.skipped.push(p),
            Ok(Outcome::Kept) => r.kept_local.push(p),
            // Only `apply` makes these, and the run loop takes them.
            Ok(Outcome::Sent(_)) => {}
            // Not a failed transfer: another run would fetch the same bytes and refuse them.
            Err(e) => match Refused::of(&e) {
                Some((path, refused)) => {
                    m.refused.insert(path.to_string(), refused);
                    self.failed(&p, &e);
                }
                None => self.transfer_failed(&p, &e),
            },
        }
    }

    fn transfer_failed(&mut self, path: &str, e: &Error) {
        self.report.transfers_failed = true;
        self.failed(path, e);
    }

    fn failed(&mut self, path: &str, e: &Error) {
        tracing::warn!(path, error = %e, "file not synced");
        self.report
            .failed
            .push(json!({"filePath": path, "code": e.code(), "error": e.to_string()}));
    }
}

/// Writes the rows of new files whose objects are sent: one request for the lot; a path
/// that turns out to have a row (deleted, or created meanwhile by another machine) then
/// goes through the compare-and-set of a single upload.
async fn record_new(ctx: &Ctx<'_>, ws: &Uuid, staged: Vec<transfer::Sent>, tally: &mut Tally<'_>) {
    let files: Vec<_> = staged.iter().map(|s| (&s.rel, s.content(ctx))).collect();
    let mut rows = match metadata::record_new(ctx.client, ws, &files).await {
        Ok(rows) => rows,
        Err(e) => {
            for s in &staged {
                tally.transfer_failed(s.rel.as_str(), &e);
            }
            return;
        }
    };
    for sent in &staged {
        let outcome = match rows.remove(&sent.rel) {
            Some(row) => Ok(Some(transfer::recorded(ctx, ws, sent, row))),
            None => transfer::record(ctx, ws, sent, None, Expect::Seen(None)).await,
        };
        let outcome = outcome.map(|up| synced_upload(&sent.rel, up));
        tally.add(Class::Upload, sent.rel.as_str(), outcome);
    }
}

fn case_message(path: &str, other: &str) -> String {
    format!(
        "{path:?} and {other:?} differ only in case; this file system cannot hold both, so {path:?} is not downloaded"
    )
}

/// Each path that another path equals but for case, with (the first such) other path.
fn case_clashes<'a>(paths: impl Iterator<Item = &'a str>) -> HashMap<String, String> {
    let mut by_fold: HashMap<String, Vec<&str>> = HashMap::new();
    for p in paths {
        by_fold.entry(p.to_lowercase()).or_default().push(p);
    }
    let mut out = HashMap::new();
    for group in by_fold.values().filter(|g| g.len() > 1) {
        for p in group {
            if let Some(other) = group.iter().find(|o| *o != p) {
                out.insert(p.to_string(), other.to_string());
            }
        }
    }
    out
}

/// Whether `dir` folds case, probed with a file in the temporary directory (which the run
/// removes at its end anyway).
fn case_insensitive(dir: &Path) -> bool {
    let tmp = dir.join(TEMP_DIR);
    if std::fs::create_dir_all(&tmp).is_err() {
        return false;
    }
    let probe = tmp.join("case-Probe");
    if std::fs::write(&probe, b"").is_err() {
        return false;
    }
    let folded = tmp.join("CASE-pROBE").exists();
    let _ = std::fs::remove_file(&probe);
    folded
}

/// Flushes written files to disk (best effort: one that vanished meanwhile is no loss).
/// On Linux one `syncfs` of the file system holding them: an fsync per file costs about a
/// millisecond each here, which for 2,000 small downloads was more than the transfers.
async fn flush(files: Vec<PathBuf>) {
    if files.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        #[cfg(target_os = "linux")]
        if let Some(file) = files.iter().find_map(|f| std::fs::File::open(f).ok()) {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for the duration of the call.
            if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
                return;
            }
        }
        for f in files {
            if let Ok(file) = std::fs::File::open(&f) {
                let _ = file.sync_all();
            }
        }
    })
    .await;
}

async fn apply_entry<'a>(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    dir: &Path,
    e: &'a Entry,
    taken: &Mutex<BTreeSet<RelPath>>,
) -> (&'a Entry, Result<Outcome>) {
    (e, apply(ctx, ws, dir, e, taken).await)
}

async fn apply(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    dir: &Path,
    e: &Entry,
    taken: &Mutex<BTreeSet<RelPath>>,
) -> Result<Outcome> {
    let synced = |checksum: &str, version: i64| Synced {
        checksum: checksum.to_string(),
        version,
    };
    match e.class {
        Class::KeepLocal => Ok(Outcome::Kept),
        Class::InSync => {
            let (Some(l), Some(r)) = (&e.local, &e.remote) else {
                return Ok(Outcome::Skipped);
            };
            Ok(Outcome::Synced(vec![(
                e.path.clone(),
                synced(&l.checksum, r.version),
                None,
            )]))
        }
        // A new file's row waits for the batch; a changed one is a compare-and-set now.
        Class::Upload if e.remote.is_none() => {
            let (abs, stat) = transfer::local_file(dir, &e.path)?;
            Ok(Outcome::Sent(
                transfer::send_object(ctx, ws, &e.path, &abs, stat).await?,
            ))
        }
        Class::Upload => upload(ctx, ws, dir, &e.path, e.remote.as_ref()).await,
        Class::Download => {
            let Some(row) = &e.remote else {
                return Ok(Outcome::Skipped);
            };
            let replace = match &e.local {
                None => Replace::Nothing,
                Some(l) => Replace::Unchanged {
                    stat: l.stat,
                    seen: l.seen,
                    checksum: l.checksum.clone(),
                },
            };
            let to = Landing {
                dest: &e.path,
                replace,
                durable: false,
            };
            match transfer::download(ctx, ws, dir, &e.path, row, to).await? {
                Some(got) => Ok(Outcome::Synced(vec![downloaded(&e.path, &got)])),
                None => Ok(Outcome::Skipped),
            }
        }
        Class::DeleteLocal => {
            let abs = paths::resolve(dir, &e.path)?;
            // Only the content that was synced is deleted; an edit since the scan is kept.
            let now = tokio::task::spawn_blocking({
                let abs = abs.clone();
                move || scan::hash_file(&abs).ok()
            })
            .await
            .ok()
            .flatten();
            if now.as_deref() != e.local.as_ref().map(|l| l.checksum.as_str()) {
                return Ok(Outcome::Skipped);
            }
            match std::fs::remove_file(&abs) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::Io(format!("cannot remove {}: {err}", abs.display())))
                }
            }
            remove_empty_parents(dir, &abs);
            Ok(Outcome::Forgotten(e.path.clone()))
        }
        Class::DeleteRemote => {
            let seen = e.remote.as_ref().map(row_state);
            if transfer::delete(ctx, ws, &e.path, seen.as_ref()).await? {
                Ok(Outcome::Forgotten(e.path.clone()))
            } else {
                Ok(Outcome::Skipped)
            }
        }
        Class::Conflict => {
            let Some(row) = &e.remote else {
                return Ok(Outcome::Skipped);
            };
            let copy = conflict_name(dir, &e.path, taken)?;
            let to = Landing {
                dest: &copy,
                replace: Replace::Nothing,
                durable: false,
            };
            let Some(got) = transfer::download(ctx, ws, dir, &e.path, row, to).await? else {
                return Ok(Outcome::Skipped);
            };
            ctx.events.emit(Event::FileConflict {
                r#type: "file",
                workspace_id: ws.to_string(),
                file_path: e.path.as_str().to_string(),
                conflict_path: copy.as_str().to_string(),
                resolution: "both",
            });
            let mut states = Vec::new();
            match upload(ctx, ws, dir, &e.path, Some(row)).await? {
                Outcome::Synced(s) => states.extend(s),
                other => return Ok(other),
            }
            // The cloud copy is shared too, so the other machine keeps both as well.
            match upload(ctx, ws, dir, &copy, None).await? {
                Outcome::Synced(s) => states.extend(s),
                _ => states.push(downloaded(&copy, &got)),
            }
            Ok(Outcome::Synced(states))
        }
    }
}

fn downloaded(path: &RelPath, got: &transfer::Downloaded) -> (RelPath, Synced, Option<Hashed>) {
    let checksum = got.checksum.clone().unwrap_or_default();
    (
        path.clone(),
        Synced {
            checksum: checksum.clone(),
            version: got.version,
        },
        Some(Hashed {
            stat: got.stat,
            seen: got.seen,
            checksum,
        }),
    )
}

async fn upload(
    ctx: &Ctx<'_>,
    ws: &Uuid,
    dir: &Path,
    path: &RelPath,
    seen: Option<&FileRow>,
) -> Result<Outcome> {
    let seen = seen.map(row_state);
    let up = transfer::upload(ctx, ws, dir, path, Expect::Seen(seen.as_ref())).await?;
    Ok(synced_upload(path, up))
}

/// An upload's manifest state (`Skipped` when the row moved meanwhile). The hash cache entry
/// is the file as it was before it was read (only if that is the size sent): an edit made
/// since then changes its mtime, so the next scan hashes it again instead of trusting it.
fn synced_upload(path: &RelPath, up: Option<transfer::Uploaded>) -> Outcome {
    let Some(up) = up else {
        return Outcome::Skipped;
    };
    let checksum = up.row.checksum.clone().unwrap_or_default();
    let hash = (i64::try_from(up.stat.stat.size).ok() == Some(up.row.file_size)).then(|| Hashed {
        stat: up.stat.stat,
        seen: up.stat.seen,
        checksum: checksum.clone(),
    });
    Outcome::Synced(vec![(
        path.clone(),
        Synced {
            checksum,
            version: up.row.version,
        },
        hash,
    )])
}

/// The first `name (cloud conflict[ n]).ext` that neither side uses.
fn conflict_name(dir: &Path, path: &RelPath, taken: &Mutex<BTreeSet<RelPath>>) -> Result<RelPath> {
    let mut taken = taken.lock().unwrap_or_else(|e| e.into_inner());
    for n in 1..1000 {
        let copy = path.conflict_copy(n);
        if !taken.contains(&copy) && !dir.join(copy.as_str()).exists() {
            RelPath::parse(copy.as_str())?;
            taken.insert(copy.clone());
            return Ok(copy);
        }
    }
    Err(Error::Io(format!("no free conflict name for {path}")))
}

/// After a deletion, parent directories left empty go too (up to the root), so a folder
/// renamed on one machine does not linger empty on the other.
fn remove_empty_parents(root: &Path, file: &Path) {
    let mut at = file.parent();
    while let Some(d) = at {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            return;
        }
        at = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_equal_but_for_case_clash_both_ways() {
        let c = case_clashes(
            ["A.txt", "a.txt", "b.txt", "dir/X.md", "DIR/x.md", "c/a.txt"].into_iter(),
        );
        assert_eq!(c.get("A.txt").map(String::as_str), Some("a.txt"));
        assert_eq!(c.get("a.txt").map(String::as_str), Some("A.txt"));
        assert_eq!(c.get("dir/X.md").map(String::as_str), Some("DIR/x.md"));
        assert_eq!(c.get("DIR/x.md").map(String::as_str), Some("dir/X.md"));
        assert!(!c.contains_key("b.txt"));
        assert!(!c.contains_key("c/a.txt"));
        let m = case_message("A.txt", "a.txt");
        assert!(m.contains("\"A.txt\"") && m.contains("\"a.txt\""), "{m}");
    }

    fn uploaded(len: u64, mtime: i64, row_size: i64) -> transfer::Uploaded {
        transfer::Uploaded {
            row: FileRow {
                id: Uuid::new_v4(),
                file_path: "a.txt".into(),
                file_size: row_size,
                checksum: Some("c".into()),
                mime_type: None,
                file_type: None,
                version: 1,
                updated_at: None,
            },
            storage_path: String::new(),
            stat: transfer::LocalStat {
                stat: crate::files::stat::Stat {
                    size: len,
                    mtime,
                    ..Default::default()
                },
                seen: 50,
            },
        }
    }

    /// The hash cache is fed the file as it was before it was read, never as it is once the
    /// row is written (by then, with rows written in batches, it may hold an edit that a
    /// cache entry would hide from the next scan).
    #[test]
    fn an_upload_caches_the_file_as_it_was_read() {
        let p = RelPath::parse("a.txt").unwrap();
        let Outcome::Synced(states) = synced_upload(&p, Some(uploaded(3, 42, 3))) else {
            panic!("not synced");
        };
        let (_, synced, hash) = &states[0];
        assert_eq!((synced.checksum.as_str(), synced.version), ("c", 1));
        let hash = hash.as_ref().expect("a cache entry");
        assert_eq!(
            (
                hash.stat.size,
                hash.stat.mtime,
                hash.seen,
                hash.checksum.as_str()
            ),
            (3, 42, 50, "c")
        );
        // Sent bytes that are not the size seen before: no entry, the next scan hashes it.
        let Outcome::Synced(states) = synced_upload(&p, Some(uploaded(3, 42, 4))) else {
            panic!("not synced");
        };
        assert!(states[0].2.is_none());
        assert!(matches!(synced_upload(&p, None), Outcome::Skipped));
    }

    /// A directory that can be listed but not searched: its files are found, but neither
    /// they nor a cloud path in it can be stat-ed. None of them is missing, so none may be
    /// deleted in the cloud.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_path_that_cannot_be_stat_ed_is_never_taken_for_deleted() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("oboto-unreadable-{}", Uuid::new_v4()));
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"synced").unwrap();
        std::fs::write(root.join("g.txt"), b"readable").unwrap();
        let p = |s: &str| RelPath::parse(s).unwrap();
        // Both have a cloud row and a base; `d/gone` was never here.
        let known: BTreeSet<RelPath> = [p("d/f"), p("d/gone"), p("g.txt")].into();
        std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o444)).unwrap();
        let at = root.clone();
        let view = std::thread::spawn(move || {
            crate::files::testing::without_permission_override()
                .then(|| local_view(&at, &BTreeMap::new(), known))
        })
        .join()
        .unwrap();
        std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let Some(view) = view else {
            eprintln!("skipped: this process cannot drop its permission override");
            return;
        };
        let (scan, all) = view.unwrap();
        assert_eq!(all.into_iter().collect::<Vec<_>>(), [p("g.txt")]);
        assert_eq!(
            scan.unreadable.keys().collect::<Vec<_>>(),
            [&p("d/f")],
            "reported, not silently left out"
        );
    }

    /// A directory the scan could not read: no known path under it is missing, whatever the
    /// disk says (here nothing is there at all, as it looks to a scan that cannot list it),
    /// so none is downloaded over it or deleted in the cloud. This holds without a
    /// permission, so it is tested where tests run as root as well.
    #[test]
    fn nothing_under_a_directory_the_scan_could_not_read_is_acted_on() {
        let root = std::env::temp_dir().join(format!("oboto-unreadable-dir-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        let p = |s: &str| RelPath::parse(s).unwrap();
        let file = LocalFile {
            stat: Default::default(),
            seen: 0,
            checksum: "c".into(),
        };
        let scan = scan::Scan {
            files: [(p("g.txt"), file)].into(),
            hashed: 0,
            unreadable: BTreeMap::new(),
            unreadable_dirs: [(p("d/e"), "Permission denied (os error 13)".to_string())].into(),
            broken_ignores: BTreeMap::new(),
        };
        // Cloud rows or bases: under the directory, the directory's own name, and beside it.
        let known: BTreeSet<RelPath> = [
            p("d/e/f"),
            p("d/e/sub/x"),
            p("d/e"),
            p("d/ex.txt"),
            p("d/f"),
            p("g.txt"),
        ]
        .into();
        let all = actionable(&root, &scan, known);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            all.iter().map(RelPath::as_str).collect::<Vec<_>>(),
            ["d/ex.txt", "d/f", "g.txt"]
        );
    }

    /// An ignore file that cannot be used: no path under its directory, found here or known
    /// from the cloud or the base, is acted on, and the run says why, by the file's path.
    #[test]
    fn nothing_under_an_ignore_file_that_cannot_be_used_is_acted_on() {
        let root = std::env::temp_dir().join(format!("oboto-broken-ignore-{}", Uuid::new_v4()));
        let w = |p: &str, c: &[u8]| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w("g.txt", b"g");
        w("sub/.gitignore", b".env\n\xe9*\n");
        w("sub/.env", b"SECRET=1");
        w("sub/notes.md", b"n");
        let p = |s: &str| RelPath::parse(s).unwrap();
        let known: BTreeSet<RelPath> = [p("sub/.env"), p("sub/gone.md"), p("subway.txt")].into();
        let (scan, all) = local_view(&root, &BTreeMap::new(), known).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            all.iter().map(RelPath::as_str).collect::<Vec<_>>(),
            ["g.txt", "subway.txt"]
        );
        let failed = unreadable(scan);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, p("sub/.gitignore"));
        assert_eq!(
            failed[0].1,
            "cannot use the ignore file sub/.gitignore: not UTF-8 text; what it keeps out of \
             the cloud cannot be known, so nothing under sub is synced, nor taken for deleted"
        );
    }

    #[test]
    fn no_clash_without_case_twins() {
        assert!(case_clashes(["a", "b", "a/b"].into_iter()).is_empty());
    }

    #[test]
    fn this_machine_folds_no_case_in_temp() {
        let d = std::env::temp_dir().join(format!("oboto-case-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        // The probe leaves nothing behind either way; on Linux it answers false.
        let folded = case_insensitive(&d);
        assert!(!d.join(TEMP_DIR).join("case-Probe").exists());
        let _ = std::fs::remove_dir_all(&d);
        if cfg!(target_os = "linux") {
            assert!(!folded);
        }
    }
}
