//! What to do with each path, from three views of it: the local file, the cloud row, and the
//! base (what both sides held at the last sync, from the manifest). Pure, so every case is
//! tested without a cloud.
//!
//! A side "changed" when it differs from the base. One changed side wins; a deletion loses
//! to an edit (data is never dropped for a delete the other side did not see); only when
//! both sides changed, differently, is it a conflict, which keeps both copies.
//!
//! Only a tombstone newer than the base deletes a local file. A row that is simply not there
//! says nothing: row-level security answers `[]` for a workspace the session cannot see, and
//! a workspace deleted in the cloud takes its rows with it, so reading an absent row as a
//! deletion would wipe every synced file of a directory, maybe its last copies.

use serde::Serialize;

/// The content of one side of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side<'a> {
    /// `None` for a cloud row written without a checksum (old clients): unknown content.
    pub checksum: Option<&'a str>,
    /// The cloud version (0 for the local side, which has none).
    pub version: i64,
}

/// What the cloud holds for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote<'a> {
    Live(Side<'a>),
    /// Deleted (`is_deleted`) at this version.
    Deleted {
        version: i64,
    },
    /// No row this session can read: never created, removed without a tombstone, or in a
    /// workspace it cannot see.
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Upload,
    Download,
    DeleteLocal,
    DeleteRemote,
    Conflict,
    InSync,
    /// Synced before and unchanged here, yet without a row or a newer tombstone: left as it
    /// is, not uploaded (its row may have gone on purpose), and its base kept, so that a row
    /// that comes back is in sync and an edit here goes up.
    KeepLocal,
}

fn remote_changed(remote: Side<'_>, base: Side<'_>) -> bool {
    remote.version != base.version || remote.checksum != base.checksum
}

/// `None` when the path exists nowhere (any base entry is forgotten).
pub fn classify(local: Option<&str>, remote: Remote<'_>, base: Option<Side<'_>>) -> Option<Class> {
    use Class::*;
    let live = match remote {
        Remote::Live(r) => r,
        Remote::Deleted { .. } | Remote::Absent => {
            let (Some(l), Some(b)) = (local, base) else {
                return local.map(|_| Upload);
            };
            if Some(l) != b.checksum {
                return Some(Upload);
            }
            return Some(match remote {
                Remote::Deleted { version } if version > b.version => DeleteLocal,
                _ => KeepLocal,
            });
        }
    };
    Some(match (local, live, base) {
        (None, _, None) => Download,
        (None, r, Some(b)) if remote_changed(r, b) => Download,
        (None, _, Some(_)) => DeleteRemote,
        (Some(l), r, _) if r.checksum == Some(l) => InSync,
        (Some(_), _, None) => Conflict,
        (Some(l), r, Some(b)) => match (Some(l) != b.checksum, remote_changed(r, b)) {
            (true, false) => Upload,
            (false, true) => Download,
            // Both changed; or neither, yet they differ (a base that is wrong): keep both.
            _ => Conflict,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn side(c: &str, v: i64) -> Side<'_> {
        Side {
            checksum: Some(c),
            version: v,
        }
    }

    const fn live(c: &str, v: i64) -> Remote<'_> {
        Remote::Live(side(c, v))
    }

    const GONE: Remote<'static> = Remote::Absent;

    #[test]
    fn the_table() {
        use Class::*;
        let b = Some(side("a", 3));
        let tomb = |version| Remote::Deleted { version };
        assert_eq!(classify(Some("a"), GONE, None), Some(Upload));
        assert_eq!(classify(Some("a"), tomb(2), None), Some(Upload));
        assert_eq!(classify(None, live("a", 1), None), Some(Download));
        assert_eq!(classify(None, GONE, b), None);
        assert_eq!(classify(None, tomb(4), b), None);
        assert_eq!(classify(Some("a"), live("a", 3), b), Some(InSync));
        assert_eq!(classify(Some("a"), live("a", 9), None), Some(InSync));
        assert_eq!(classify(Some("x"), live("a", 3), b), Some(Upload));
        assert_eq!(classify(Some("a"), live("y", 4), b), Some(Download));
        assert_eq!(classify(Some("x"), live("y", 4), b), Some(Conflict));
        assert_eq!(classify(Some("x"), live("y", 4), None), Some(Conflict));
        // Deleted in the cloud since the sync: deleted here.
        assert_eq!(classify(Some("a"), tomb(4), b), Some(DeleteLocal));
        // No row, or a tombstone the base already saw past: nothing says it was deleted.
        assert_eq!(classify(Some("a"), GONE, b), Some(KeepLocal));
        assert_eq!(classify(Some("a"), tomb(3), b), Some(KeepLocal));
        assert_eq!(classify(Some("x"), GONE, b), Some(Upload));
        assert_eq!(classify(Some("x"), tomb(4), b), Some(Upload));
        assert_eq!(classify(None, live("a", 3), b), Some(DeleteRemote));
        assert_eq!(classify(None, live("y", 4), b), Some(Download));
        // Re-uploaded identical bytes (version moved): the cloud changed, local did not.
        assert_eq!(classify(None, live("a", 4), b), Some(Download));
        let unknown = Remote::Live(Side {
            checksum: None,
            version: 3,
        });
        assert_eq!(classify(Some("a"), unknown, None), Some(Conflict));
    }

    /// A side relative to the base: unchanged, changed to one of a few contents, deleted
    /// (a tombstone, for the cloud), or, for the cloud, a row that is not there at all.
    #[derive(Debug, Clone, Copy)]
    enum Change {
        Same,
        To(u8),
        Deleted,
        Unlisted,
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            Just(Change::Same),
            (0u8..3).prop_map(Change::To),
            Just(Change::Deleted),
            Just(Change::Unlisted),
        ]
    }

    const CONTENTS: [&str; 4] = ["c0", "c1", "c2", "base"];

    proptest! {
        /// With a base: a side that did not change is never the one whose change is lost; no
        /// conflict unless both changed; a changed side is never deleted; only a tombstone
        /// deletes a local file; and applying the action leaves both sides equal, but for a
        /// file kept for want of a tombstone.
        #[test]
        fn one_sided_changes_win(has_base in any::<bool>(), lc in change(), rc in change()) {
            let base = has_base.then(|| side(CONTENTS[3], 5));
            let content = |c: Change| match (c, base) {
                (Change::Same, Some(_)) => Some(CONTENTS[3]),
                (Change::Same, None) => None,
                (Change::To(i), _) => Some(CONTENTS[i as usize]),
                (Change::Deleted | Change::Unlisted, _) => None,
            };
            // A local file is there or not: "unlisted" is only the cloud's.
            let lc = if matches!(lc, Change::Unlisted) { Change::Deleted } else { lc };
            let local = content(lc);
            let remote = match (rc, content(rc)) {
                (Change::Deleted, _) => Remote::Deleted { version: 6 },
                (_, None) => Remote::Absent,
                (_, Some(c)) => live(c, if matches!(rc, Change::Same) { 5 } else { 6 }),
            };
            let remote_content = match remote {
                Remote::Live(r) => r.checksum,
                _ => None,
            };
            let class = classify(local, remote, base);
            let l_changed = base.is_none() || !matches!(lc, Change::Same);
            let r_changed = base.is_none() || !matches!(rc, Change::Same);
            if class == Some(Class::Conflict) {
                prop_assert!(local.is_some() && remote_content.is_some());
                prop_assert!(local != remote_content);
                prop_assert!(base.is_none() || (l_changed && r_changed));
            }
            if class == Some(Class::DeleteLocal) {
                prop_assert!(base.is_some() && matches!(lc, Change::Same));
                prop_assert!(matches!(rc, Change::Deleted));
            }
            if matches!(rc, Change::Unlisted) || (base.is_none() && matches!(rc, Change::Same)) {
                prop_assert!(class != Some(Class::DeleteLocal));
            }
            if class == Some(Class::DeleteRemote) {
                prop_assert!(base.is_some() && matches!(rc, Change::Same));
            }
            if class == Some(Class::KeepLocal) {
                prop_assert!(base.is_some() && matches!(lc, Change::Same));
                prop_assert!(matches!(rc, Change::Unlisted));
                return Ok(());
            }
            // Apply it.
            let (mut l, mut r) = (local, remote_content);
            match class {
                None | Some(Class::InSync) | Some(Class::KeepLocal) => {}
                Some(Class::Upload) | Some(Class::Conflict) => r = l,
                Some(Class::Download) => l = r,
                Some(Class::DeleteLocal) => l = None,
                Some(Class::DeleteRemote) => r = None,
            }
            prop_assert_eq!(l, r);
            // A local edit is never lost (a cloud edit in a conflict survives as the copy).
            if local.is_some() && l_changed && base.is_some() {
                prop_assert_eq!(l, local);
            }
        }

        /// Identical content is in sync whatever the base and versions say.
        #[test]
        fn equal_content_is_in_sync(v in 0i64..10, b in proptest::option::of((0usize..4, 0i64..10))) {
            let base = b.map(|(i, v)| side(CONTENTS[i], v));
            prop_assert_eq!(classify(Some("c0"), live("c0", v), base), Some(Class::InSync));
        }
    }
}
