//! What to do with each path, from three views of it: the local file, the cloud row, and the
//! base (what both sides held at the last sync, from the manifest). Pure, so every case is
//! tested without a cloud.
//!
//! A side "changed" when it differs from the base. One changed side wins; a deletion loses
//! to an edit (data is never dropped for a delete the other side did not see); only when
//! both sides changed, differently, is it a conflict, which keeps both copies.

use serde::Serialize;

/// The content of one side of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side<'a> {
    /// `None` for a cloud row written without a checksum (old clients): unknown content.
    pub checksum: Option<&'a str>,
    /// The cloud version (0 for the local side, which has none).
    pub version: i64,
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
}

fn remote_changed(remote: Side<'_>, base: Side<'_>) -> bool {
    remote.version != base.version || remote.checksum != base.checksum
}

/// `None` when the path exists nowhere (any base entry is forgotten).
pub fn classify(
    local: Option<&str>,
    remote: Option<Side<'_>>,
    base: Option<Side<'_>>,
) -> Option<Class> {
    use Class::*;
    Some(match (local, remote, base) {
        (None, None, _) => return None,
        (Some(_), None, None) => Upload,
        (Some(l), None, Some(b)) if Some(l) == b.checksum => DeleteLocal,
        (Some(_), None, Some(_)) => Upload,
        (None, Some(_), None) => Download,
        (None, Some(r), Some(b)) if remote_changed(r, b) => Download,
        (None, Some(_), Some(_)) => DeleteRemote,
        (Some(l), Some(r), _) if r.checksum == Some(l) => InSync,
        (Some(_), Some(_), None) => Conflict,
        (Some(l), Some(r), Some(b)) => match (Some(l) != b.checksum, remote_changed(r, b)) {
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

    #[test]
    fn the_table() {
        use Class::*;
        let b = Some(side("a", 3));
        assert_eq!(classify(Some("a"), None, None), Some(Upload));
        assert_eq!(classify(None, Some(side("a", 1)), None), Some(Download));
        assert_eq!(classify(None, None, b), None);
        assert_eq!(classify(Some("a"), Some(side("a", 3)), b), Some(InSync));
        assert_eq!(classify(Some("a"), Some(side("a", 9)), None), Some(InSync));
        assert_eq!(classify(Some("x"), Some(side("a", 3)), b), Some(Upload));
        assert_eq!(classify(Some("a"), Some(side("y", 4)), b), Some(Download));
        assert_eq!(classify(Some("x"), Some(side("y", 4)), b), Some(Conflict));
        assert_eq!(
            classify(Some("x"), Some(side("y", 4)), None),
            Some(Conflict)
        );
        assert_eq!(classify(Some("a"), None, b), Some(DeleteLocal));
        assert_eq!(classify(Some("x"), None, b), Some(Upload));
        assert_eq!(classify(None, Some(side("a", 3)), b), Some(DeleteRemote));
        assert_eq!(classify(None, Some(side("y", 4)), b), Some(Download));
        // Re-uploaded identical bytes (version moved): the cloud changed, local did not.
        assert_eq!(classify(None, Some(side("a", 4)), b), Some(Download));
        let unknown = Side {
            checksum: None,
            version: 3,
        };
        assert_eq!(classify(Some("a"), Some(unknown), None), Some(Conflict));
    }

    /// A side relative to the base: unchanged, changed to one of a few contents, or deleted.
    #[derive(Debug, Clone, Copy)]
    enum Change {
        Same,
        To(u8),
        Deleted,
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            Just(Change::Same),
            (0u8..3).prop_map(Change::To),
            Just(Change::Deleted)
        ]
    }

    const CONTENTS: [&str; 4] = ["c0", "c1", "c2", "base"];

    proptest! {
        /// With a base: a side that did not change is never the one whose change is lost; no
        /// conflict unless both changed; a changed side is never deleted; and applying the
        /// action leaves both sides equal.
        #[test]
        fn one_sided_changes_win(has_base in any::<bool>(), lc in change(), rc in change()) {
            let base = has_base.then(|| side(CONTENTS[3], 5));
            let content = |c: Change| match (c, base) {
                (Change::Same, Some(_)) => Some(CONTENTS[3]),
                (Change::Same, None) => None,
                (Change::To(i), _) => Some(CONTENTS[i as usize]),
                (Change::Deleted, _) => None,
            };
            let local = content(lc);
            let remote = content(rc).map(|c| side(c, if matches!(rc, Change::Same) { 5 } else { 6 }));
            let class = classify(local, remote, base);
            let l_changed = base.is_none() || !matches!(lc, Change::Same);
            let r_changed = base.is_none() || !matches!(rc, Change::Same);
            if class == Some(Class::Conflict) {
                prop_assert!(local.is_some() && remote.is_some());
                prop_assert!(local != remote.and_then(|r| r.checksum));
                prop_assert!(base.is_none() || (l_changed && r_changed));
            }
            if class == Some(Class::DeleteLocal) {
                prop_assert!(base.is_some() && matches!(lc, Change::Same));
            }
            if class == Some(Class::DeleteRemote) {
                prop_assert!(base.is_some() && matches!(rc, Change::Same));
            }
            // Apply it.
            let (mut l, mut r) = (local, remote.and_then(|r| r.checksum));
            match class {
                None | Some(Class::InSync) => {}
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
            prop_assert_eq!(classify(Some("c0"), Some(side("c0", v)), base), Some(Class::InSync));
        }
    }
}
