//! Which paths the scan did not report are still not this machine's to write or to call
//! deleted: a cloud row (or a manifest entry) whose path the scan would have left out had
//! the file existed is never downloaded here, and its absence from the scan is no deletion.
//!
//! The scan leaves out, and so does this: `.git`, `node_modules` and the temporary
//! directory at any depth; sync's own files beside the link file; whatever `.gitignore` and
//! `.obotoignore` ignore, and all under a directory whose ignore rules cannot be known (see
//! [`super::ignores`]); anything under a symlink. A path that exists here in any form the
//! scan did not read (a symlink, a file it could not read) is left alone as well: taking it
//! for absent would delete it from every other machine. So is a path whose state cannot be
//! known (stat fails otherwise than "not found": no search permission on a directory, an
//! I/O error): only a path known to be missing is missing.

use std::{collections::BTreeSet, path::Path};

use super::{
    ignores::Ignores,
    paths::RelPath,
    scan::{is_own_file, is_skipped},
};

/// Answers for one scanned root; ignore files are read once per directory asked about.
pub struct Rules<'a> {
    root: &'a Path,
    ignores: Ignores,
}

impl<'a> Rules<'a> {
    pub fn new(root: &'a Path) -> Self {
        Rules {
            root,
            ignores: Ignores::new(root),
        }
    }

    /// The paths of `candidates` (none of which the scan reported) that are not synced here.
    pub fn unsynced<'p>(
        &mut self,
        candidates: impl IntoIterator<Item = &'p RelPath>,
    ) -> BTreeSet<RelPath> {
        candidates
            .into_iter()
            .filter(|p| !self.synced(p))
            .cloned()
            .collect()
    }

    fn synced(&mut self, rel: &RelPath) -> bool {
        let segments: Vec<&str> = rel.as_str().split('/').collect();
        if segments.iter().any(|s| is_skipped(s)) || is_own_file(segments[0]) {
            return false;
        }
        let mut at = self.root.to_path_buf();
        for (i, name) in segments.iter().enumerate() {
            let is_dir = i + 1 < segments.len();
            if self.ignored(&segments[..i], name, is_dir) {
                return false;
            }
            at.push(name);
            match std::fs::symlink_metadata(&at) {
                // Missing: created by the download, unless what is below is ignored.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return !self.ignored_below(&segments, i)
                }
                Err(_) => return false,
                Ok(m) if is_dir && m.file_type().is_dir() => {}
                // A symlink, a file where a directory should be, or the file itself present
                // though the scan did not read it.
                Ok(_) => return false,
            }
        }
        true
    }

    /// Whether a missing path's remaining segments are ignored. Segments up to `i` were
    /// already checked.
    fn ignored_below(&mut self, segments: &[&str], i: usize) -> bool {
        (i + 1..segments.len())
            .any(|j| self.ignored(&segments[..j], segments[j], j + 1 < segments.len()))
    }

    /// Whether `name` in the directory `parent` is ignored; so is all under a directory whose
    /// rules cannot all be known (an ignore rule never fails open).
    fn ignored(&mut self, parent: &[&str], name: &str, is_dir: bool) -> bool {
        self.ignores.ignored(parent, name, is_dir).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("oboto-unsynced-{}", uuid::Uuid::new_v4()));
        for (p, c) in files {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    fn unsynced(root: &Path, paths: &[&str]) -> Vec<String> {
        let paths: Vec<RelPath> = paths.iter().map(|p| RelPath::parse(p).unwrap()).collect();
        Rules::new(root)
            .unsynced(&paths)
            .into_iter()
            .map(|p| p.as_str().to_string())
            .collect()
    }

    #[test]
    fn the_scans_exclusions_hold_for_paths_that_do_not_exist_yet() {
        let root = tree(&[
            (".gitignore", "*.log\nbuild/\n!keep.log\n"),
            (".obotoignore", "private/\n"),
            ("docs/.gitignore", "drafts/\n"),
            ("docs/.obotoignore", "!secret.md\n"),
            ("src/.gitignore", "!debug.log\n"),
        ]);
        let got = unsynced(
            &root,
            &[
                "new.txt",
                "x.log",
                "keep.log",
                "build/out.js",
                "deep/build/out.js",
                "private/a.md",
                "docs/drafts/a.md",
                "docs/final/a.md",
                "src/debug.log",
                "node_modules/p/index.js",
                "NODE_MODULES/p/index.js",
                "sub/Node_Modules/p/index.js",
                ".Cloud-Sync-Tmp/x.part",
                ".CLOUD-LINK.JSON",
                ".cloud-sync-tmp/x.part",
                ".cloud-link.json",
                ".cloud-outbox.jsonl",
                ".cloud-sync-manifest.json",
                "sub/.cloud-link.json",
            ],
        );
        assert_eq!(
            got,
            [
                ".CLOUD-LINK.JSON",
                ".Cloud-Sync-Tmp/x.part",
                ".cloud-link.json",
                ".cloud-outbox.jsonl",
                ".cloud-sync-manifest.json",
                ".cloud-sync-tmp/x.part",
                "NODE_MODULES/p/index.js",
                "build/out.js",
                "deep/build/out.js",
                "docs/drafts/a.md",
                "node_modules/p/index.js",
                "private/a.md",
                "sub/Node_Modules/p/index.js",
                "x.log",
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The same rules as the walk: every file the scan skips for its rules, asked about as
    /// if it were missing, is unsynced; every file it reports is synced.
    #[test]
    fn agrees_with_the_scan() {
        let files = [
            (".gitignore", "*.tmp\nout/\n"),
            ("a/.gitignore", "!x.tmp\nlocal/\n"),
            ("a/.obotoignore", "y.md\n"),
            ("a/x.tmp", ""),
            ("a/y.md", ""),
            ("a/z.md", ""),
            ("a/local/q.txt", ""),
            ("b.tmp", ""),
            ("out/o.txt", ""),
            ("c/d/e.txt", ""),
        ];
        let root = tree(&files);
        let scanned = super::super::scan::scan(&root, &Default::default()).unwrap();
        let seen: BTreeSet<&str> = scanned.files.keys().map(|k| k.as_str()).collect();
        // Asked about from an empty directory with the same ignore files.
        let empty = tree(
            &files
                .iter()
                .filter(|(p, _)| p.ends_with("ignore"))
                .copied()
                .collect::<Vec<_>>(),
        );
        let all: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        let missing: Vec<&str> = all
            .iter()
            .copied()
            .filter(|p| !p.ends_with("ignore"))
            .collect();
        let not_here = unsynced(&empty, &missing);
        for p in missing {
            assert_eq!(
                seen.contains(p),
                !not_here.iter().any(|u| u == p),
                "{p}: scanned {}, unsynced {not_here:?}",
                seen.contains(p)
            );
        }
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&empty).unwrap();
    }

    /// A cloud path under a directory whose ignore rules cannot be known may be one they
    /// keep out: it is not downloaded here. Beside it, paths sync as ever.
    #[test]
    fn nothing_under_an_ignore_file_that_cannot_be_used_is_synced() {
        let root = tree(&[("sub/.gitignore", ".env\nkeys/{a\n"), ("other/x.md", "x")]);
        let got = unsynced(
            &root,
            &[
                "sub/.env",
                "sub/notes.md",
                "sub/deep/new.md",
                "other/y.md",
                "new.md",
            ],
        );
        assert_eq!(got, ["sub/.env", "sub/deep/new.md", "sub/notes.md"]);
        std::fs::write(root.join(".obotoignore"), b"\xff\n").unwrap();
        assert_eq!(unsynced(&root, &["other/y.md", "new.md"]).len(), 2);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_unread_files_are_not_synced() {
        let root = tree(&[("real/a.md", "a"), ("file.txt", "f"), ("dir/b.md", "b")]);
        std::os::unix::fs::symlink(root.join("real"), root.join("linked")).unwrap();
        std::os::unix::fs::symlink(root.join("file.txt"), root.join("alias.txt")).unwrap();
        let got = unsynced(
            &root,
            &[
                "linked/a.md",
                "linked/new.md",
                "alias.txt",
                "file.txt/x",
                "dir/b.md",
                "dir/new.md",
                "fresh/deep/new.md",
            ],
        );
        // `dir/b.md` exists, so the scan would have reported it had it read it.
        assert_eq!(
            got,
            [
                "alias.txt",
                "dir/b.md",
                "file.txt/x",
                "linked/a.md",
                "linked/new.md"
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
