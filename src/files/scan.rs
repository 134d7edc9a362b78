//! The local side of a delta: every syncable file under the working directory with its
//! SHA-256. The walk honours `.gitignore` and `.obotoignore` (as git reads them, also outside
//! a git repository; see [`super::ignores`]) and never enters `.git` or `node_modules` or
//! looks at sync's own files.
//! Symlinks are not synced. Hashing runs on several threads, and a file whose stat proves
//! it unchanged since it was hashed (see [`still_holds`]) is not read at all. A file found
//! but not stat-able or readable (a directory without search permission, an I/O error) is
//! reported as such, never left out as if it were not there; so is a directory that cannot
//! be listed, or whose ignore rules cannot be known, and nothing under it is taken for
//! missing.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use sha2::{Digest, Sha256};

use super::{
    ignores::Ignores,
    manifest::Hashed,
    paths::{self, RelPath},
    stat::{now_ns, still_holds, Stat},
    TEMP_DIR,
};
use crate::{
    error::{Error, Result},
    link_file,
};

/// Names never walked into or synced, at any depth.
const SKIPPED: &[&str] = &[".git", "node_modules", TEMP_DIR];

/// Whether `name` is one of [`SKIPPED`] in any spelling that opens it on some file system.
pub(super) fn is_skipped(name: &str) -> bool {
    SKIPPED.iter().any(|s| paths::is_alias(name, s))
}

/// Sync's own files beside the link file, in any spelling that opens them somewhere (a
/// `.CLOUD-LINK.JSON` downloaded to a Mac would replace the link).
pub(super) fn is_own_file(name: &str) -> bool {
    let own = |prefix: &str| {
        name.char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(name.len()))
            .any(|i| paths::is_alias(&name[..i], prefix))
    };
    // The link file's name is a prefix of its temporary files' (`.cloud-link.json.…`).
    own(link_file::FILE_NAME) || own(".cloud-outbox.jsonl") || own(super::manifest::FILE_NAME)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub stat: Stat,
    /// When `stat` was taken (see [`still_holds`]).
    pub seen: i64,
    pub checksum: String,
}

pub struct Scan {
    pub files: BTreeMap<RelPath, LocalFile>,
    /// Files whose contents were read (cache misses).
    pub hashed: usize,
    /// Files found that could not be stat-ed or read, with the error.
    pub unreadable: BTreeMap<RelPath, String>,
    /// Directories that could not be read, with the error: what is under them was not seen.
    pub unreadable_dirs: BTreeMap<RelPath, String>,
    /// Ignore files that cannot be used, with why: what is under their directory was not
    /// seen, as nothing tells which of it the user keeps out of the cloud.
    pub broken_ignores: BTreeMap<RelPath, String>,
}

/// Whether `path` is `dir` or under it; everything is under the root (`""`).
fn under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The directory of an ignore file (`""` for the root's).
pub fn dir_of(ignore_file: &RelPath) -> &str {
    ignore_file
        .as_str()
        .rsplit_once('/')
        .map_or("", |(dir, _)| dir)
}

impl Scan {
    /// Whether the scan could not look at `path`: a file it could not read, or a path at or
    /// under a directory it could not read. Such a path is neither there nor missing.
    pub fn unseen(&self, path: &RelPath) -> bool {
        let p = path.as_str();
        self.unreadable.contains_key(path)
            || self.unreadable_dirs.keys().any(|d| under(p, d.as_str()))
            || self.broken_ignores.keys().any(|f| under(p, dir_of(f)))
    }
}

/// A file the walk found, as stat-ed.
struct Found {
    rel: RelPath,
    abs: PathBuf,
    stat: Stat,
}

struct Walk {
    found: Vec<Found>,
    unreadable: BTreeMap<RelPath, String>,
    unreadable_dirs: BTreeMap<RelPath, String>,
    broken_ignores: BTreeMap<RelPath, String>,
}

/// Where below `root` a walk error is, for an I/O error on a path the walk went into (a
/// directory it could not list); `None` for the root itself, or an error of no path.
fn failed_below(root: &Path, e: &ignore::Error) -> Option<(RelPath, String)> {
    fn path(e: &ignore::Error) -> Option<&Path> {
        match e {
            ignore::Error::WithPath { path, .. } => Some(path),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                path(err)
            }
            _ => None,
        }
    }
    let io = e.io_error()?;
    let relative = path(e)?.strip_prefix(root).ok()?;
    if relative.as_os_str().is_empty() {
        return None;
    }
    Some((RelPath::from_local(relative)?, io.to_string()))
}

/// SHA-256 of a file, read in chunks.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Whether the walk goes to `e`: not one of the names it never enters, nor ignored, nor under
/// a directory whose ignore rules cannot be known (the walker's own reading of ignore files
/// is off: it would take an unreadable one for none).
fn walks_to(e: &ignore::DirEntry, root: &Path, ignores: &Mutex<Ignores>) -> bool {
    let name = e.file_name().to_str().unwrap_or("");
    if is_skipped(name) || (e.depth() == 1 && is_own_file(name)) {
        return false;
    }
    let Ok(relative) = e.path().strip_prefix(root) else {
        return false;
    };
    // A name that is not UTF-8 is not syncable, nor anything under it.
    let Some(segments) = relative
        .iter()
        .map(|s| s.to_str())
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let Some((name, parent)) = segments.split_last() else {
        return true;
    };
    let is_dir = e.file_type().is_some_and(|t| t.is_dir());
    let mut ignores = ignores.lock().unwrap_or_else(|p| p.into_inner());
    ignores.ignored(parent, name, is_dir) == Ok(false)
}

/// Every syncable file under `root`, stat-ed but not read (blocking).
fn walk(root: &Path) -> Result<Walk> {
    let ignores = Arc::new(Mutex::new(Ignores::new(root)));
    let (filter, base) = (ignores.clone(), root.to_path_buf());
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .parents(false)
        .follow_links(false)
        .filter_entry(move |e| walks_to(e, &base, &filter))
        .build();
    let mut found = Vec::new();
    let mut unreadable = BTreeMap::new();
    let mut unreadable_dirs = BTreeMap::new();
    for entry in walker {
        // A directory that cannot be listed costs what is under it, not the whole tree.
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => match failed_below(root, &e) {
                Some((rel, why)) => {
                    unreadable_dirs.insert(rel, why);
                    continue;
                }
                None => return Err(Error::Io(format!("cannot scan {}: {e}", root.display()))),
            },
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = RelPath::from_local(relative) else {
            tracing::debug!(path = %relative.display(), "not syncable; skipped");
            continue;
        };
        match entry.metadata() {
            Ok(meta) => found.push(Found {
                rel,
                abs: entry.into_path(),
                stat: Stat::of(&meta),
            }),
            // Gone since the directory was read: not there, as a later walk would say.
            Err(e)
                if e.io_error()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
            Err(e) => {
                unreadable.insert(rel, e.to_string());
            }
        }
    }
    let broken = ignores.lock().unwrap_or_else(|p| p.into_inner()).broken();
    let mut broken_ignores = BTreeMap::new();
    for b in broken {
        match RelPath::parse(&b.path()) {
            Ok(rel) => {
                broken_ignores.insert(rel, b.why);
            }
            Err(_) => tracing::debug!(path = %b.path(), "not syncable; skipped"),
        }
    }
    Ok(Walk {
        found,
        unreadable,
        unreadable_dirs,
        broken_ignores,
    })
}

/// The tree as a walk sees it, without reading a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Glance {
    /// The files are exactly those of the cache, each with a stat that proves it unchanged
    /// since it was hashed, as a scan would trust it (see [`still_holds`]): the tree as the
    /// last sync left it. A file hashed right after it was written is not proven so; the next
    /// scan reads it again, and records it as quiet.
    pub as_cached: bool,
    /// Of the paths and stats found (and the paths that could not be stat-ed): two walks of
    /// an unchanged tree give the same one, and any change a scan would read again changes it.
    pub fingerprint: u64,
}

/// Walks `root` against `cache` (blocking).
pub fn glance(root: &Path, cache: &BTreeMap<String, Hashed>) -> Result<Glance> {
    use std::hash::{Hash, Hasher};
    let mut walk = walk(root)?;
    let as_cached = walk.found.len() == cache.len()
        && walk.found.iter().all(|f| {
            cache
                .get(f.rel.as_str())
                .is_some_and(|h| still_holds(&h.stat, h.seen, &f.stat))
        });
    walk.found.sort_by(|a, b| a.rel.cmp(&b.rel));
    let mut h = std::hash::DefaultHasher::new();
    for f in &walk.found {
        (f.rel.as_str(), f.stat).hash(&mut h);
    }
    let unseen = [
        &walk.unreadable,
        &walk.unreadable_dirs,
        &walk.broken_ignores,
    ];
    for rel in unseen.into_iter().flat_map(|m| m.keys()) {
        rel.as_str().hash(&mut h);
    }
    Ok(Glance {
        as_cached,
        fingerprint: h.finish(),
    })
}

/// Walks `root` and hashes what the cache does not vouch for (blocking; run it off the
/// async workers).
pub fn scan(root: &Path, cache: &BTreeMap<String, Hashed>) -> Result<Scan> {
    // Before any stat: a file written after it is not quiet at `seen`.
    let seen = now_ns();
    let Walk {
        found,
        mut unreadable,
        unreadable_dirs,
        broken_ignores,
    } = walk(root)?;
    let mut files = BTreeMap::new();
    let mut todo = Vec::new();
    for Found { rel, abs, stat } in found {
        match cache.get(rel.as_str()) {
            Some(h) if still_holds(&h.stat, h.seen, &stat) => {
                files.insert(
                    rel,
                    LocalFile {
                        stat,
                        seen: h.seen,
                        checksum: h.checksum.clone(),
                    },
                );
            }
            _ => todo.push((rel, abs, stat)),
        }
    }
    let hashed = todo.len();
    let results = Mutex::new(Vec::with_capacity(todo.len()));
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
        .min(todo.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((rel, abs, stat)) = todo.get(i) else {
                    return;
                };
                // A file that vanished since the walk is not there; one that cannot be read
                // is there all the same.
                let got = match hash_file(abs) {
                    Ok(checksum) => Ok(LocalFile {
                        stat: *stat,
                        seen,
                        checksum,
                    }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => Err(e.to_string()),
                };
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((rel.clone(), got));
            });
        }
    });
    for (rel, got) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match got {
            Ok(f) => {
                files.insert(rel, f);
            }
            Err(e) => {
                unreadable.insert(rel, e);
            }
        }
    }
    Ok(Scan {
        files,
        hashed,
        unreadable,
        unreadable_dirs,
        broken_ignores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough for a file to count as quiet when it was hashed.
    const QUIET: i64 = crate::files::stat::STAMP_SLACK_NS + 1_000_000_000;

    /// The hash cache a sync would keep after `s`, as if taken `later` ns after it.
    fn cache_of(s: &Scan, later: i64) -> BTreeMap<String, Hashed> {
        s.files
            .iter()
            .map(|(k, v)| {
                let h = Hashed {
                    stat: v.stat,
                    seen: v.seen + later,
                    checksum: v.checksum.clone(),
                };
                (k.as_str().to_string(), h)
            })
            .collect()
    }

    fn root_with(files: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("oboto-scan-{}", uuid::Uuid::new_v4()));
        for (p, c) in files {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        root
    }

    fn sha(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    /// A same-size edit that keeps the modification time (a tool that sets it back, or an
    /// edit within its granularity) is still seen.
    #[test]
    fn a_same_size_edit_with_its_mtime_restored_is_hashed_again() {
        let root = root_with(&[("a.txt", "aaaa")]);
        let a = root.join("a.txt");
        let first = scan(&root, &BTreeMap::new()).unwrap();
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::write(&a, "bbbb").unwrap();
        let f = std::fs::File::options().write(true).open(&a).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(mtime))
            .unwrap();
        drop(f);
        let now = Stat::of(&std::fs::metadata(&a).unwrap());
        let then = first.files.values().next().unwrap().stat;
        assert_eq!((now.size, now.mtime), (then.size, then.mtime));
        let again = scan(&root, &cache_of(&first, 0)).unwrap();
        assert_eq!(again.hashed, 1);
        assert_eq!(again.files.values().next().unwrap().checksum, sha("bbbb"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A file changed just before it was hashed is read again on the next scan; once it has
    /// been quiet when hashed, its entry holds.
    #[test]
    fn a_fresh_file_is_hashed_again_an_old_one_is_not() {
        let root = root_with(&[("a.txt", "aaaa")]);
        let first = scan(&root, &BTreeMap::new()).unwrap();
        assert_eq!(first.hashed, 1);
        assert_eq!(scan(&root, &cache_of(&first, 0)).unwrap().hashed, 1);
        assert_eq!(scan(&root, &cache_of(&first, QUIET)).unwrap().hashed, 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn honours_ignore_files_and_skips_own_files() {
        let root = std::env::temp_dir().join(format!("oboto-scan-{}", uuid::Uuid::new_v4()));
        let w = |p: &str, c: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w(".gitignore", "*.log\nbuild/\n");
        w(".obotoignore", "secret.txt\n");
        w("a.txt", "a");
        w("x.log", "x");
        w("build/out.bin", "b");
        w("secret.txt", "s");
        w("sub/keep.md", "k");
        w("sub/.obotoignore", "local-only.md\n");
        w("sub/local-only.md", "l");
        w("node_modules/m/index.js", "m");
        w("sub/NODE_MODULES/m/index.js", "m");
        w("Node_Modules. /m/index.js", "m");
        w(".CLOUD-LINK.JSON", "{}");
        w(".GIT/hooks/pre-commit", "#!/bin/sh");
        w(".git/HEAD", "h");
        w(".cloud-link.json", "{}");
        w(".cloud-sync-manifest.json", "{}");
        w(".cloud-sync-tmp/x.part", "p");
        let s = scan(&root, &BTreeMap::new()).unwrap();
        let names: Vec<&str> = s.files.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                ".gitignore",
                ".obotoignore",
                "a.txt",
                "sub/.obotoignore",
                "sub/keep.md"
            ]
        );
        assert_eq!(s.hashed, 5);
        let f = &s.files[&RelPath::parse("a.txt").unwrap()];
        assert_eq!(
            f.checksum,
            "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
        let again = scan(&root, &cache_of(&s, QUIET)).unwrap();
        assert_eq!(again.hashed, 0, "an unchanged old tree reads no contents");
        let stats = |s: &Scan| -> Vec<(Stat, String)> {
            s.files
                .values()
                .map(|f| (f.stat, f.checksum.clone()))
                .collect()
        };
        assert_eq!(stats(&again), stats(&s));
        // A glance agrees, and tells one tree from another without the cache.
        let cache = cache_of(&s, QUIET);
        let g = glance(&root, &cache).unwrap();
        assert!(g.as_cached);
        assert_eq!(glance(&root, &cache).unwrap(), g);
        assert!(!glance(&root, &BTreeMap::new()).unwrap().as_cached);
        w("a.txt", "edited");
        let edited = glance(&root, &cache).unwrap();
        assert!(!edited.as_cached);
        assert_ne!(edited.fingerprint, g.fingerprint);
        std::fs::remove_file(root.join("a.txt")).unwrap();
        assert!(
            !glance(&root, &cache).unwrap().as_cached,
            "a deletion is a change"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A glance trusts the cache exactly as far as a scan does: a file hashed right after it
    /// was written is not as cached (a scan would read it again), and once a scan has hashed
    /// it quiet, it is. An unchanged tree keeps its fingerprint either way, so the engine does
    /// not start a cycle for it twice.
    #[test]
    fn a_glance_trusts_what_a_scan_trusts() {
        let root = root_with(&[("a.txt", "aaaa"), ("b/c.txt", "cc")]);
        let first = scan(&root, &BTreeMap::new()).unwrap();
        for later in [0, QUIET] {
            let cache = cache_of(&first, later);
            let g = glance(&root, &cache).unwrap();
            let s = scan(&root, &cache).unwrap();
            assert_eq!(g.as_cached, s.hashed == 0, "{later} ns later");
            assert_eq!(
                g.fingerprint,
                glance(&root, &BTreeMap::new()).unwrap().fingerprint
            );
        }
        assert!(!glance(&root, &cache_of(&first, 0)).unwrap().as_cached);
        // The re-hash records when it looked; a scan that looks once the file is quiet
        // settles it.
        let again = scan(&root, &cache_of(&first, 0)).unwrap();
        assert_eq!(again.hashed, 2);
        assert!(glance(&root, &cache_of(&again, QUIET)).unwrap().as_cached);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// One directory that cannot be read costs its own files, not the scan: it is reported,
    /// and every other file is found.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_that_cannot_be_read_is_reported_and_the_rest_scanned() {
        use std::os::unix::fs::PermissionsExt;
        let root = root_with(&[("a.txt", "a"), ("d/f.txt", "f"), ("d/e/g.txt", "g")]);
        let mode = |m| std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(m));
        mode(0o000).unwrap();
        let at = root.clone();
        let got = std::thread::spawn(move || {
            crate::files::testing::without_permission_override()
                .then(|| (scan(&at, &BTreeMap::new()), glance(&at, &BTreeMap::new())))
        })
        .join()
        .unwrap();
        mode(0o755).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let Some((scanned, glanced)) = got else {
            eprintln!("skipped: this process cannot drop its permission override");
            return;
        };
        let s = scanned.unwrap();
        let d = RelPath::parse("d").unwrap();
        assert_eq!(
            s.files.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["a.txt"]
        );
        assert_eq!(s.unreadable_dirs.keys().collect::<Vec<_>>(), [&d]);
        assert!(
            s.unreadable_dirs[&d].contains("ermission denied"),
            "{:?}",
            s.unreadable_dirs
        );
        assert!(s.unreadable.is_empty());
        assert!(!glanced.unwrap().as_cached);
    }

    /// An edit that keeps size and modification time still changes the fingerprint, as it
    /// makes a scan read the file again.
    #[cfg(unix)]
    #[test]
    fn a_same_size_edit_with_its_mtime_restored_changes_the_fingerprint() {
        let root = root_with(&[("a.txt", "aaaa")]);
        let a = root.join("a.txt");
        let stat = || Stat::of(&std::fs::metadata(&a).unwrap());
        let before = (stat(), glance(&root, &BTreeMap::new()).unwrap().fingerprint);
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::write(&a, "bbbb").unwrap();
        // The change time moves with the kernel's coarse clock: touch until it has.
        loop {
            let f = std::fs::File::options().write(true).open(&a).unwrap();
            f.set_times(std::fs::FileTimes::new().set_modified(mtime))
                .unwrap();
            if stat().ctime != before.0.ctime {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!((stat().size, stat().mtime), (before.0.size, before.0.mtime));
        assert_ne!(
            glance(&root, &BTreeMap::new()).unwrap().fingerprint,
            before.1
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[cfg(test)]
mod ignore_file_tests {
    use super::*;
    use crate::files::ignores::MAX_IGNORE_FILE;

    fn root_with(files: &[(&str, &[u8])]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("oboto-scan-ign-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        for (p, c) in files {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        root
    }

    /// The paths a scan found as files, whether it saw `sub/.env` at all, and the ignore
    /// files it reports.
    fn scanned(root: &Path) -> (Vec<String>, bool, BTreeMap<RelPath, String>) {
        let s = scan(root, &BTreeMap::new()).unwrap();
        let env = RelPath::parse("sub/.env").unwrap();
        let files = s.files.keys().map(|k| k.as_str().to_string()).collect();
        (files, s.unseen(&env), s.broken_ignores)
    }

    /// Every way an ignore file can be there yet unusable without a permission: nothing
    /// under its directory is found (so nothing is uploaded) and all of it is unseen (so
    /// nothing is taken for deleted); the rest of the tree is scanned.
    #[cfg(unix)]
    #[test]
    fn an_ignore_file_that_cannot_be_used_hides_its_directory() {
        type Make = dyn Fn(&Path);
        let cases: [(&str, &str, &str, &Make); 6] = [
            ("a directory", ".gitignore", "not a regular file", &|d| {
                std::fs::create_dir_all(d.join(".gitignore/x")).unwrap();
            }),
            ("a FIFO", ".obotoignore", "not a regular file", &|d| {
                let fifo = std::ffi::CString::new(
                    d.join(".obotoignore").into_os_string().into_encoded_bytes(),
                )
                .unwrap();
                // SAFETY: a NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
            }),
            (
                "a dangling symlink",
                ".gitignore",
                "a symlink to a file that is not there",
                &|d| {
                    std::os::unix::fs::symlink(d.join("gone"), d.join(".gitignore")).unwrap();
                },
            ),
            ("not UTF-8", ".obotoignore", "not UTF-8", &|d| {
                std::fs::write(d.join(".obotoignore"), b"\xe9*\n.env\n").unwrap();
            }),
            ("a malformed glob", ".gitignore", "line 2 ", &|d| {
                std::fs::write(d.join(".gitignore"), b".env\nkeys/{a,b\n").unwrap();
            }),
            ("too large", ".gitignore", "larger than", &|d| {
                let mut big = b".env\n".to_vec();
                big.resize(MAX_IGNORE_FILE + 1, b'\n');
                std::fs::write(d.join(".gitignore"), big).unwrap();
            }),
        ];
        for (what, name, why, make) in cases {
            let root = root_with(&[
                ("a.txt", b"a"),
                ("sub/.env", b"SECRET=1"),
                ("sub/keep.md", b"k"),
            ]);
            make(&root.join("sub"));
            let (files, unseen, broken) = scanned(&root);
            std::fs::remove_dir_all(&root).unwrap();
            assert_eq!(files, ["a.txt"], "{what}");
            assert!(unseen, "{what}: the directory is unseen");
            let file = RelPath::parse(&format!("sub/{name}")).unwrap();
            assert_eq!(broken.keys().collect::<Vec<_>>(), [&file], "{what}");
            assert!(broken[&file].contains(why), "{what}: {broken:?}");
        }
    }

    /// The root's own rules: nothing at all is found, and every path is unseen.
    #[test]
    fn a_root_ignore_file_that_cannot_be_used_hides_everything() {
        let root = root_with(&[
            (".gitignore", b"keys/{a\n"),
            ("a.txt", b"a"),
            ("sub/b.txt", b"b"),
        ]);
        let s = scan(&root, &BTreeMap::new()).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(s.files.is_empty());
        let p = |s: &str| RelPath::parse(s).unwrap();
        assert_eq!(
            s.broken_ignores.keys().collect::<Vec<_>>(),
            [&p(".gitignore")]
        );
        for path in ["a.txt", "sub/b.txt", "new.txt", ".gitignore"] {
            assert!(s.unseen(&p(path)), "{path}");
        }
    }

    /// Without the permission to read it (as anyone but root, and as root here too).
    #[cfg(target_os = "linux")]
    #[test]
    fn an_ignore_file_that_cannot_be_read_hides_its_directory() {
        use std::os::unix::fs::PermissionsExt;
        let root = root_with(&[
            ("a.txt", b"a"),
            ("sub/.gitignore", b".env\n"),
            ("sub/.env", b"SECRET=1"),
            ("sub/keep.md", b"k"),
        ]);
        let ignore_file = root.join("sub/.gitignore");
        std::fs::set_permissions(&ignore_file, std::fs::Permissions::from_mode(0o000)).unwrap();
        let at = root.clone();
        let got = std::thread::spawn(move || {
            crate::files::testing::without_permission_override().then(|| scanned(&at))
        })
        .join()
        .unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let Some((files, unseen, broken)) = got else {
            eprintln!("skipped: this process cannot drop its permission override");
            return;
        };
        assert_eq!(files, ["a.txt"]);
        assert!(unseen);
        let file = RelPath::parse("sub/.gitignore").unwrap();
        assert!(
            broken
                .get(&file)
                .is_some_and(|w| w.contains("ermission denied")),
            "{broken:?}"
        );
    }
}
