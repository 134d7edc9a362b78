//! Workspace-relative paths, checked before any request or file operation.
//!
//! A [`RelPath`] is the one form a path takes everywhere in file sync: the `file_path` of the
//! metadata row, the key in the local manifest, and (per segment percent-encoded) the object
//! URL. It is relative, `/`-separated, has no empty, `.` or `..` segment, no drive or UNC
//! prefix, no backslash and no control character. [`resolve`] then maps it under a local
//! root and refuses a symlink on the way that leads out of that root.

use std::{
    fmt,
    path::{Component, Path, PathBuf},
};

use uuid::Uuid;

use crate::{
    error::{Error, Result},
    rest::query,
};

/// Storage keys are at most 1024 bytes; the key is `{workspaceId}/{path}` (36 + 1 bytes).
pub const MAX_PATH_BYTES: usize = 1024 - 37;
/// Longest segment most file systems accept.
const MAX_SEGMENT_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

fn bad(path: &str, why: &str) -> Error {
    let shown: String = path.chars().take(120).collect();
    Error::InvalidArgument(format!("Invalid file path {shown:?}: {why}"))
}

/// Code points HFS+ leaves out when it compares names: there `.g\u{200c}it` is `.git`.
fn hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

/// The name a segment opens on the file systems that are loosest about names: HFS+ drops
/// ignorable code points, Windows cuts an NTFS stream (`name:stream`) and strips trailing
/// dots and spaces, and both fold case (upper then lower, so `ı` and the Kelvin sign fold to
/// ASCII as well).
fn folded(seg: &str) -> String {
    let name = seg.split(':').next().unwrap_or(seg);
    let kept: String = name.chars().filter(|c| !hfs_ignorable(*c)).collect();
    kept.trim_end_matches(['.', ' '])
        .chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `folded` is an NTFS short (8.3) name Windows may give `reserved`: the first up to
/// six characters of its stem (leading dots, dots and spaces dropped), `~` and a number, any
/// extension. Like git for `.git` (`git~1`), but any number, since `~1` may be taken.
fn is_short_name(folded: &str, reserved: &str) -> bool {
    let Some((base, tail)) = folded.split_once('~') else {
        return false;
    };
    let digits = tail.split('.').next().unwrap_or(tail);
    let trimmed = reserved.trim_start_matches('.');
    let stem = trimmed.rsplit_once('.').map_or(trimmed, |(s, _)| s);
    let prefix: String = stem
        .chars()
        .filter(|c| !matches!(c, '.' | ' '))
        .take(6)
        .collect();
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && base == prefix
}

/// Whether the segment `seg` may open the file or directory `reserved` (a lower-case name) on
/// some file system: in any case, with trailing dots or spaces, as an NTFS short name or
/// stream, or with code points HFS+ ignores. On a case-sensitive volume these are other
/// names, but a path synced there reaches the machines where they are not.
pub fn is_alias(seg: &str, reserved: &str) -> bool {
    let f = folded(seg);
    f == reserved || is_short_name(&f, reserved)
}

/// Whether `seg` may open a `.git` directory somewhere: writing below it could plant a hook
/// that git then runs, so no such path is synced, uploaded or downloaded.
pub fn is_dot_git(seg: &str) -> bool {
    is_alias(seg, ".git")
}

impl RelPath {
    /// Normalizes `input` (drops empty and `.` segments) and refuses anything that could name
    /// a file outside the workspace or that storage would refuse.
    pub fn parse(input: &str) -> Result<RelPath> {
        if input.chars().any(char::is_control) {
            return Err(bad(
                input,
                "control characters (NUL included) are not allowed",
            ));
        }
        if input.contains('\\') {
            return Err(bad(input, "use '/' as the separator; '\\' is not allowed"));
        }
        if input.starts_with('/') {
            return Err(bad(input, "absolute paths are not allowed"));
        }
        let mut segments = Vec::new();
        for seg in input.split('/') {
            match seg {
                "" | "." => continue,
                ".." => return Err(bad(input, "'..' segments are not allowed")),
                s if is_dot_git(s) => {
                    return Err(bad(
                        input,
                        "'.git' (in any spelling that opens it on some file system) is git's own directory",
                    ))
                }
                s if s.len() > MAX_SEGMENT_BYTES => {
                    return Err(bad(input, "a segment is longer than 255 bytes"))
                }
                s => segments.push(s),
            }
        }
        if segments.is_empty() {
            return Err(bad(input, "the path is empty"));
        }
        // Checked after normalizing: `./C:/x` becomes `C:/x`, a drive path on Windows.
        let first = segments[0].as_bytes();
        if first.len() >= 2 && first[0].is_ascii_alphabetic() && first[1] == b':' {
            return Err(bad(input, "drive prefixes are not allowed"));
        }
        let joined = segments.join("/");
        if joined.len() > MAX_PATH_BYTES {
            return Err(bad(input, "the path is too long"));
        }
        Ok(RelPath(joined))
    }

    /// From a path found under a local root while scanning (`None` when it cannot be synced,
    /// such as a name that is not UTF-8 or holds a backslash).
    pub fn from_local(relative: &Path) -> Option<RelPath> {
        let mut parts = Vec::new();
        for c in relative.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str()?),
                _ => return None,
            }
        }
        RelPath::parse(&parts.join("/")).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The storage key, `{workspaceId}/{path}` (the row's `storage_path`), not encoded.
    pub fn storage_key(&self, ws: &Uuid) -> String {
        format!("{ws}/{}", self.0)
    }

    /// The key as it goes into a URL: every segment percent-encoded, the `/` between kept.
    pub fn encoded_key(&self, ws: &Uuid) -> String {
        let segs: Vec<String> = self.segments().map(query::encode).collect();
        format!("{ws}/{}", segs.join("/"))
    }

    /// `name (cloud conflict).ext` beside this path; `n` > 1 adds a number.
    pub fn conflict_copy(&self, n: u32) -> RelPath {
        let (dir, name) = match self.0.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, self.0.as_str()),
        };
        // A leading dot is part of the name (`.env`), not an extension.
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i..]),
            _ => (name, ""),
        };
        let tag = if n > 1 {
            format!(" (cloud conflict {n})")
        } else {
            " (cloud conflict)".to_string()
        };
        let file = format!("{stem}{tag}{ext}");
        RelPath(match dir {
            Some(d) => format!("{d}/{file}"),
            None => file,
        })
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The local file for `rel` under `root`. Every existing ancestor (and the file itself) that
/// is a symlink must resolve inside `root`, so neither a read nor a write can leave it.
pub fn resolve(root: &Path, rel: &RelPath) -> Result<PathBuf> {
    let io =
        |e: std::io::Error| Error::Io(format!("cannot use the directory {}: {e}", root.display()));
    let real_root = root.canonicalize().map_err(io)?;
    let mut at = root.to_path_buf();
    for seg in rel.segments() {
        at.push(seg);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = at
                    .canonicalize()
                    .map_err(|_| bad(rel.as_str(), "it passes through a dangling symlink"))?;
                if !target.starts_with(&real_root) {
                    return Err(bad(
                        rel.as_str(),
                        "it passes through a symlink that leads out of the workspace",
                    ));
                }
            }
            Ok(_) => {}
            // Nothing further exists yet, so nothing further can be a symlink.
            Err(_) => break,
        }
    }
    Ok(root.join(rel.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WS: Uuid = Uuid::from_u128(0xbbbbbbbb_0000_4000_8000_000000000001);

    #[test]
    fn normalizes() {
        for (input, want) in [
            ("a.txt", "a.txt"),
            ("./a/./b//c.txt", "a/b/c.txt"),
            ("dir/", "dir"),
            ("a/..b/c..", "a/..b/c.."),
            ("ünï/ф.txt", "ünï/ф.txt"),
        ] {
            assert_eq!(RelPath::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn refuses_escapes_and_names_the_path() {
        for input in [
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "C:\\x",
            "C:x",
            "c:/x",
            "./C:/x",
            ".//h:",
            "\\\\server\\share",
            "a\\b",
            "nul\0byte",
            "tab\there",
            "",
            "./",
            "//",
        ] {
            let e = RelPath::parse(input).unwrap_err();
            assert_eq!(e.code(), "INVALID_ARGUMENT", "{input:?}");
            let shown: String = format!("{input:?}");
            assert!(e.to_string().contains(&shown), "{e} names {shown}");
        }
        assert!(RelPath::parse(&"a/".repeat(600)).is_err());
        assert!(RelPath::parse(&"a".repeat(256)).is_err());
    }

    /// Every spelling under which some file system (case-folding, Windows stripping trailing
    /// dots and spaces, NTFS short names and streams, HFS+ ignorable code points) opens `.git`.
    const DOT_GIT_ALIASES: &[&str] = &[
        ".git",
        ".GIT",
        ".Git",
        ".gIt",
        ".git.",
        ".git ",
        ".git. .",
        ".GIT..",
        "git~1",
        "GIT~1",
        "Git~2",
        "git~1.",
        ".git::$INDEX_ALLOCATION",
        ".g\u{200c}it",
        ".\u{feff}GIT",
        ".gi\u{206f}t\u{200e}",
        ".g\u{0131}t",
    ];

    #[test]
    fn refuses_every_alias_of_dot_git_at_any_depth() {
        for alias in DOT_GIT_ALIASES {
            for input in [
                format!("{alias}/hooks/pre-commit"),
                format!("sub/{alias}/config"),
                alias.to_string(),
            ] {
                let e = RelPath::parse(&input).unwrap_err();
                assert_eq!(e.code(), "INVALID_ARGUMENT", "{input:?}");
                assert!(e.to_string().contains(".git"), "{e}");
                assert!(is_dot_git(alias), "{alias:?}");
            }
        }
        // Names that only look alike are ordinary files.
        for fine in [
            ".gitignore",
            ".gitattributes",
            "git",
            ".git-x",
            "x.git",
            "git~",
            "git~a",
            ".github/ci.yml",
        ] {
            assert!(RelPath::parse(fine).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn reserved_names_match_in_every_spelling() {
        for (seg, reserved) in [
            ("node_modules", "node_modules"),
            ("NODE_MODULES", "node_modules"),
            ("Node_Modules. ", "node_modules"),
            ("node_m~1", "node_modules"),
            ("node\u{200d}_modules", "node_modules"),
            (".CLOUD-LINK.JSON", ".cloud-link.json"),
            (".Cloud-Sync-Tmp", ".cloud-sync-tmp"),
        ] {
            assert!(is_alias(seg, reserved), "{seg:?} is {reserved:?}");
        }
        for (seg, reserved) in [
            ("node_modules2", "node_modules"),
            ("modules", "node_modules"),
        ] {
            assert!(!is_alias(seg, reserved), "{seg:?} is not {reserved:?}");
        }
    }

    #[test]
    fn object_keys_encode_each_segment() {
        let p = RelPath::parse("docs/my file#1?.json").unwrap();
        assert_eq!(p.storage_key(&WS), format!("{WS}/docs/my file#1?.json"));
        assert_eq!(
            p.encoded_key(&WS),
            format!("{WS}/docs/my%20file%231%3F.json")
        );
        let p = RelPath::parse("a%2Fb/c").unwrap();
        assert_eq!(p.encoded_key(&WS), format!("{WS}/a%252Fb/c"));
    }

    #[test]
    fn conflict_copies() {
        let c = |p: &str, n| RelPath::parse(p).unwrap().conflict_copy(n).0;
        assert_eq!(
            c("a/report.final.txt", 1),
            "a/report.final (cloud conflict).txt"
        );
        assert_eq!(c("Makefile", 1), "Makefile (cloud conflict)");
        assert_eq!(c(".env", 2), ".env (cloud conflict 2)");
        assert_eq!(c("d.x/f", 1), "d.x/f (cloud conflict)");
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let base = std::env::temp_dir().join(format!("oboto-paths-{}", Uuid::new_v4()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("inner")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
            std::os::unix::fs::symlink(root.join("inner"), root.join("in")).unwrap();
            std::os::unix::fs::symlink(outside.join("f"), root.join("file-out")).unwrap();
            let r = |p: &str| resolve(&root, &RelPath::parse(p).unwrap());
            assert!(r("out/x").is_err());
            assert!(r("file-out").is_err());
            assert!(r("in/x").is_ok());
        }
        let r = |p: &str| resolve(&root, &RelPath::parse(p).unwrap());
        assert_eq!(r("new/dir/f").unwrap(), root.join("new/dir/f"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_string()),
            Just(".".to_string()),
            Just(String::new()),
            "[a-zA-Z0-9 ._\\-#%?&ü]{1,12}",
            any::<String>(),
        ]
    }

    proptest! {
        /// Whatever the input, an accepted path is normal, round-trips through `parse`, and
        /// resolves strictly below the root.
        #[test]
        fn accepted_paths_stay_inside(segs in proptest::collection::vec(segment(), 0..6)) {
            let input = segs.join("/");
            if let Ok(p) = RelPath::parse(&input) {
                prop_assert!(!p.as_str().is_empty());
                prop_assert!(p.segments().all(|s| !s.is_empty() && s != "." && s != ".."));
                prop_assert!(!p.as_str().contains('\\') && !p.as_str().contains('\0'));
                prop_assert_eq!(RelPath::parse(p.as_str()).unwrap(), p.clone());
                let joined = Path::new("/root").join(p.as_str());
                prop_assert!(joined.starts_with("/root"));
                prop_assert!(joined.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
                // Every encoded segment decodes back to the original one.
                let enc = p.encoded_key(&WS);
                let decoded: Vec<String> = enc.split('/').skip(1)
                    .map(|s| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned())
                    .collect();
                prop_assert_eq!(decoded.join("/"), p.as_str());
            }
        }

        /// A `..` segment is always refused, wherever it sits.
        #[test]
        fn dot_dot_is_always_refused(segs in proptest::collection::vec(segment(), 0..4), at in 0usize..5) {
            let mut segs = segs;
            segs.insert(at.min(segs.len()), "..".to_string());
            prop_assert!(RelPath::parse(&segs.join("/")).is_err());
        }
    }
}
