//! What a stat says of a file's contents, and when a stat can vouch for what was hashed
//! (the scan's cache, a download replacing a file, the manifest's entries).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// File time stamps may trail the clock they are read against by this much: coarse kernel
/// clocks, 1 s on HFS+ and ext3, 2 s (truncated) on FAT.
pub const STAMP_SLACK_NS: i64 = 2_000_000_000;

/// What a stat says of a file's contents without reading them. Writes change the
/// modification time, unless a tool sets it back; the change time (Unix) then still moves,
/// and a file replaced by a rename has another inode. Where the system has no change time or
/// inode they are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stat {
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime: i64,
    #[serde(default)]
    pub ctime: i64,
    #[serde(default)]
    pub ino: u64,
}

impl Stat {
    pub fn of(m: &std::fs::Metadata) -> Stat {
        #[cfg(unix)]
        let (ctime, ino) = {
            use std::os::unix::fs::MetadataExt;
            (
                m.ctime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(m.ctime_nsec()),
                m.ino(),
            )
        };
        #[cfg(not(unix))]
        let (ctime, ino) = (0, 0);
        Stat {
            size: m.len(),
            mtime: mtime_of(m),
            ctime,
            ino,
        }
    }
}

/// Now, in nanoseconds since the Unix epoch: when a stat is taken.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whether a file whose stat is `now` still holds what was hashed when its stat was `then`,
/// taken at `seen`. Equal stats are not enough for a file changed shortly before `seen`: a
/// write after the stat, within the time stamps' granularity, leaves them as they were (git's
/// "racy clean" entries). Such a file is read again, until it has been quiet for long enough
/// when it is looked at.
pub fn still_holds(then: &Stat, seen: i64, now: &Stat) -> bool {
    then == now && then.mtime.max(then.ctime) < seen.saturating_sub(STAMP_SLACK_NS)
}

pub fn mtime_of(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: i64 = STAMP_SLACK_NS + 1_000_000_000;

    /// Where the system has a change time and inodes, either moving alone means a re-read:
    /// the modification time and size can be set back, they cannot.
    #[cfg(unix)]
    #[test]
    fn a_moved_change_time_or_inode_alone_is_a_change() {
        let then = Stat {
            size: 4,
            mtime: 10,
            ctime: 20,
            ino: 30,
        };
        let seen = 20 + QUIET;
        assert!(still_holds(&then, seen, &then));
        assert!(!still_holds(&then, seen, &Stat { ctime: 21, ..then }));
        assert!(!still_holds(&then, seen, &Stat { ino: 31, ..then }));
        assert!(!still_holds(&then, seen, &Stat { mtime: 11, ..then }));
        assert!(!still_holds(&then, seen, &Stat { size: 5, ..then }));
        // Changed within the slack before it was looked at: not trusted, whatever the stat.
        assert!(!still_holds(&then, 20 + STAMP_SLACK_NS, &then));
        assert!(!still_holds(
            &Stat { mtime: 25, ..then },
            20 + STAMP_SLACK_NS + 3,
            &Stat { mtime: 25, ..then }
        ));
    }
}
