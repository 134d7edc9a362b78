//! The local sync manifest, beside the link file: per path the checksum and cloud version of
//! the last sync (the base that tells a one-sided change from a conflict), and a hash cache
//! keyed by stat (so a re-scan of an unchanged tree reads no contents).
//!
//! It also remembers each cloud row whose object a download refused (its bytes were not the
//! row's), so that only a new version of that row is downloaded again.
//!
//! It is only an optimisation and a base: losing it is safe. Without a base, equal content
//! is in sync and different content is a conflict that keeps both copies; without its
//! refusals, each refused object is downloaded once more.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use super::stat::Stat;
use crate::{
    error::{Error, Result},
    link_file,
};

pub const FILE_NAME: &str = ".cloud-sync-manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    pub checksum: String,
    pub version: i64,
}

/// A hash cache entry: the file's stat when it was hashed, and when that stat was taken
/// (`stat::still_holds` decides whether a later stat proves the same contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashed {
    #[serde(flatten)]
    pub stat: Stat,
    /// Nanoseconds since the Unix epoch, before the stat. Entries of manifests written before
    /// it existed read as 0, and are hashed once more.
    #[serde(default)]
    pub seen: i64,
    pub checksum: String,
}

/// A row whose object a download found not to match it (see [`Error::ContentMismatch`]):
/// retrying cannot help until the row changes, and each retry costs the whole object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub version: i64,
    pub checksum: Option<String>,
    /// `size` or `checksum`.
    pub what: String,
}

impl Refused {
    /// The refusal `e` records, with its path; `None` for any other error.
    pub fn of(e: &Error) -> Option<(&str, Refused)> {
        match e {
            Error::ContentMismatch {
                path,
                version,
                checksum,
                what,
            } => Some((
                path,
                Refused {
                    version: *version,
                    checksum: checksum.clone(),
                    what: what.clone(),
                },
            )),
            _ => None,
        }
    }

    /// The error a download of this row would end in again.
    pub fn error(&self, path: &str) -> Error {
        Error::ContentMismatch {
            path: path.to_string(),
            version: self.version,
            checksum: self.checksum.clone(),
            what: self.what.clone(),
        }
    }

    /// Whether it was this row (the same version and checksum) that was refused.
    pub fn is_of(&self, version: i64, checksum: Option<&str>) -> bool {
        self.version == version && self.checksum.as_deref() == checksum
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub files: BTreeMap<String, Synced>,
    #[serde(default)]
    pub hashes: BTreeMap<String, Hashed>,
    /// By path. Left out when empty, so a manifest without refusals reads as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<String, Refused>,
}

impl Manifest {
    /// The manifest of `dir` for workspace `ws`; a missing or unreadable one, or one of
    /// another workspace, is an empty base (the hash cache is kept: it describes local files).
    pub fn load(dir: &Path, ws: &str) -> Manifest {
        let read = std::fs::read(dir.join(FILE_NAME))
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
        let mut m = read.unwrap_or_default();
        if m.workspace_id.as_deref() != Some(ws) {
            m.files.clear();
            m.refused.clear();
            m.workspace_id = Some(ws.to_string());
        }
        m.version = 1;
        m
    }

    /// Atomic (temporary file, then rename): a crash leaves the old or the new manifest.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).unwrap_or_default();
        link_file::write_atomic(&dir.join(FILE_NAME), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resets_for_another_workspace() {
        let dir = std::env::temp_dir().join(format!("oboto-manifest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Manifest::load(&dir, "ws1");
        assert!(m.files.is_empty());
        m.files.insert(
            "a".into(),
            Synced {
                checksum: "c".into(),
                version: 2,
            },
        );
        m.hashes.insert(
            "a".into(),
            Hashed {
                stat: Stat {
                    size: 1,
                    mtime: 5,
                    ctime: 6,
                    ino: 7,
                },
                seen: 8,
                checksum: "c".into(),
            },
        );
        let refused = Error::ContentMismatch {
            path: "b".into(),
            version: 4,
            checksum: Some("d".into()),
            what: "size".into(),
        };
        let (path, r) = Refused::of(&refused).unwrap();
        assert!(r.is_of(4, Some("d")));
        assert!(!r.is_of(5, Some("d")) && !r.is_of(4, Some("e")) && !r.is_of(4, None));
        assert_eq!(r.error(path).to_string(), refused.to_string());
        assert!(Refused::of(&Error::Io("x".into())).is_none());
        m.refused.insert(path.into(), r);
        m.save(&dir).unwrap();
        assert_eq!(Manifest::load(&dir, "ws1"), m);
        let other = Manifest::load(&dir, "ws2");
        assert!(other.files.is_empty());
        assert!(other.refused.is_empty(), "another workspace's rows");
        assert_eq!(other.hashes.len(), 1);
        // A manifest of an earlier version: its entries are there, with nothing to trust.
        std::fs::write(
            dir.join(FILE_NAME),
            br#"{"workspaceId":"ws1","hashes":{"a":{"size":1,"mtime":5,"checksum":"c"}}}"#,
        )
        .unwrap();
        let old = Manifest::load(&dir, "ws1");
        assert!(old.refused.is_empty());
        // Nor does a manifest without refusals gain the key: it reads as before everywhere.
        old.save(&dir).unwrap();
        assert!(!std::fs::read_to_string(dir.join(FILE_NAME))
            .unwrap()
            .contains("refused"));
        let old = &old.hashes["a"];
        assert_eq!(
            (old.stat.size, old.stat.mtime, old.stat.ctime, old.seen),
            (1, 5, 0, 0)
        );
        std::fs::write(dir.join(FILE_NAME), b"{oops").unwrap();
        assert!(Manifest::load(&dir, "ws1").files.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
