//! What a workspace sync does, from the last synced base, the cloud's `updated_at` and
//! whether the local state changed since: last write wins when only one side changed, and a
//! change on both sides is a true conflict (the cloud version is kept, the local one is
//! handed back to the host in `cloud:sync:conflict`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Push,
    Pull,
    Conflict,
}

/// Two `updated_at` values name the same instant (formats may differ: `Z` vs `+00:00`).
pub fn same_instant(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// `base`: the cloud's `updated_at` when we last synced (`None` if never); `cloud`: its
/// `updated_at` now (`None` if unknown).
pub fn decide(base: Option<&str>, cloud: Option<&str>, local_changed: bool) -> Action {
    let cloud_changed = match (base, cloud) {
        (Some(b), Some(c)) => !same_instant(b, c),
        // Never synced: nothing to have diverged from, the cloud row is the base.
        (None, Some(_)) => !local_changed,
        (_, None) => false,
    };
    match (local_changed, cloud_changed) {
        (true, true) => Action::Conflict,
        (true, false) => Action::Push,
        (false, true) => Action::Pull,
        (false, false) => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2026-01-01T00:00:00.000001+00:00";
    const T2: &str = "2026-01-01T00:00:01+00:00";

    #[test]
    fn one_side_changed_wins() {
        assert_eq!(decide(Some(T1), Some(T1), true), Action::Push);
        assert_eq!(decide(Some(T1), Some(T2), false), Action::Pull);
        assert_eq!(decide(Some(T1), Some(T1), false), Action::Nothing);
    }

    #[test]
    fn both_sides_changed_is_a_conflict() {
        assert_eq!(decide(Some(T1), Some(T2), true), Action::Conflict);
    }

    #[test]
    fn formats_of_one_instant_are_equal() {
        assert!(same_instant(
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00+00:00"
        ));
        assert_eq!(
            decide(
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:00+00:00"),
                true
            ),
            Action::Push
        );
    }

    #[test]
    fn without_a_base_local_changes_are_pushed_and_otherwise_pulled() {
        assert_eq!(decide(None, Some(T1), true), Action::Push);
        assert_eq!(decide(None, Some(T1), false), Action::Pull);
    }
}
