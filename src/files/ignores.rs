//! `.gitignore` and `.obotoignore`: which paths the user keeps out of the cloud. Read here,
//! not by the walker, because the walker drops an ignore file it cannot read (and a line it
//! cannot parse) without a word, and then uploads what the file meant to keep out. Here an
//! ignore rule never fails open: a directory whose rules cannot all be known is "broken",
//! and the scan and [`super::unsynced`] leave everything under it alone.
//!
//! Broken is an ignore file that is there (a symlink to one counts, as for the walker) but
//! cannot be read (no permission, an I/O error, not a regular file, a symlink to nothing),
//! one larger than [`MAX_IGNORE_FILE`], one that is not UTF-8 (git matches its bytes; the
//! glob library cannot, and a pattern dropped could have matched a UTF-8 name), and one
//! with a line that is not a valid glob (git reads some of these, such as `a{b`, as literal
//! names, others as matching nothing: which one the user meant cannot be known).

use std::{collections::HashMap, io::Read, path::Path};

use ignore::{
    gitignore::{Gitignore, GitignoreBuilder},
    Match,
};

/// The ignore files, highest precedence first (as the walker orders a custom ignore file
/// before `.gitignore`).
pub const NAMES: [&str; 2] = [".obotoignore", ".gitignore"];
/// An ignore file larger than this is not read (git refuses 100 MB; a real one is a few KB).
pub const MAX_IGNORE_FILE: usize = 1 << 20;

/// The rules of one directory.
#[derive(Default)]
struct Level {
    /// By [`NAMES`]; `None` where there is no such file.
    rules: [Option<Gitignore>; 2],
    /// The ignore files of this directory that cannot be used: name and why.
    broken: Vec<(&'static str, String)>,
}

/// An ignore file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// Of its directory below the root, `/`-separated; empty for the root itself.
    pub dir: String,
    pub name: &'static str,
    pub why: String,
}

impl Broken {
    /// The file's path below the root.
    pub fn path(&self) -> String {
        if self.dir.is_empty() {
            self.name.to_string()
        } else {
            format!("{}/{}", self.dir, self.name)
        }
    }
}

/// The rules under one root; each directory's ignore files are read once, when first asked.
pub struct Ignores {
    root: std::path::PathBuf,
    levels: HashMap<String, Level>,
}

impl Ignores {
    pub fn new(root: &Path) -> Self {
        Ignores {
            root: root.to_path_buf(),
            levels: HashMap::new(),
        }
    }

    /// Whether `name` in the directory `parent` (segments below the root) is ignored: the
    /// deepest `.obotoignore` rule that matches decides, then the deepest `.gitignore` one,
    /// as the walker decides. `Err` when the rules of `parent` or of a directory above it
    /// cannot all be known.
    pub fn ignored(&mut self, parent: &[&str], name: &str, is_dir: bool) -> Result<bool, Broken> {
        let mut found = [Match::None, Match::None];
        for depth in (0..=parent.len()).rev() {
            let dir = parent[..depth].join("/");
            let rest = parent[depth..]
                .iter()
                .chain(std::iter::once(&name))
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let level = self.level(&dir)?;
            for (found, rules) in found.iter_mut().zip(&level.rules) {
                if let (true, Some(m)) = (found.is_none(), rules) {
                    *found = m.matched(&rest, is_dir).map(|_| ());
                }
            }
        }
        let [custom, git] = found;
        Ok(if custom.is_none() {
            git.is_ignore()
        } else {
            custom.is_ignore()
        })
    }

    /// Every ignore file asked about so far that cannot be used.
    pub fn broken(&self) -> Vec<Broken> {
        self.levels
            .iter()
            .flat_map(|(dir, level)| {
                level.broken.iter().map(|(name, why)| Broken {
                    dir: dir.clone(),
                    name,
                    why: why.clone(),
                })
            })
            .collect()
    }

    fn level(&mut self, dir: &str) -> Result<&Level, Broken> {
        let root = &self.root;
        let level = self.levels.entry(dir.to_string()).or_insert_with(|| {
            let abs = if dir.is_empty() {
                root.clone()
            } else {
                root.join(dir)
            };
            load(&abs)
        });
        match level.broken.first() {
            Some((name, why)) => Err(Broken {
                dir: dir.to_string(),
                name,
                why: why.clone(),
            }),
            None => Ok(level),
        }
    }
}

/// The ignore files of `dir`.
fn load(dir: &Path) -> Level {
    let mut level = Level::default();
    for (slot, name) in level.rules.iter_mut().zip(NAMES) {
        match rules(dir, name) {
            Ok(r) => *slot = r,
            Err(why) => level.broken.push((name, why)),
        }
    }
    level
}

/// Opens `path` for reading without waiting for a writer (a FIFO's open would).
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

/// Whether `dir` lists `name`; `None` when it cannot be listed.
fn listed(dir: &Path, name: &str) -> Option<bool> {
    let mut entries = std::fs::read_dir(dir).ok()?;
    entries.try_fold(false, |found, e| Some(found || e.ok()?.file_name() == name))
}

/// The rules of `dir/name`: `None` when there is no such file, `Err` with why it cannot be
/// used.
fn rules(dir: &Path, name: &str) -> Result<Option<Gitignore>, String> {
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A directory that can be listed but not searched: the listing tells whether the
        // file is there (if not, the directory is no different from any other).
        Err(e) if !listed(dir, name).unwrap_or(true) => {
            tracing::trace!(error = %e, "no ignore file in the listing");
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
        Ok(_) => {}
    }
    // Followed, as the walker follows it.
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("a symlink to a file that is not there".into())
        }
        Err(e) => return Err(e.to_string()),
        Ok(m) if !m.is_file() => return Err("not a regular file".into()),
        Ok(_) => {}
    }
    let file = open(&path).map_err(|e| e.to_string())?;
    // Checked again on what was opened: a FIFO put there meanwhile would never end a read.
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_IGNORE_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_IGNORE_FILE {
        return Err(format!("larger than {MAX_IGNORE_FILE} bytes"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8 text".to_string())?;
    // Git skips a byte order mark at the start.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut b = GitignoreBuilder::new(dir);
    for (i, line) in text.lines().enumerate() {
        b.add_line(Some(path.clone()), line)
            .map_err(|e| format!("line {} is not a pattern this client can read ({e})", i + 1))?;
    }
    b.build().map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read as the walker read it: a byte order mark and CRLF line ends are no part of a
    /// pattern, a comment and a blank line are none, and `.obotoignore` overrides
    /// `.gitignore`.
    #[test]
    fn reads_as_the_walker_did() {
        let dir = std::env::temp_dir().join(format!("oboto-ignores-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(".gitignore"),
            "\u{feff}.env\r\n# a comment\r\n\r\nbuild/\r\n*.md\r\n",
        )
        .unwrap();
        std::fs::write(dir.join(".obotoignore"), "!keep.md\n").unwrap();
        let mut ig = Ignores::new(&dir);
        let mut ignored =
            |parent: &[&str], name: &str, is_dir: bool| ig.ignored(parent, name, is_dir).unwrap();
        assert!(ignored(&[], ".env", false));
        assert!(ignored(&["a"], "build", true));
        assert!(!ignored(&[], "build", false), "a directory pattern");
        assert!(ignored(&[], "notes.md", false));
        assert!(!ignored(&[], "keep.md", false));
        assert!(!ignored(&[], "# a comment", false));
        assert!(ig.broken().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
