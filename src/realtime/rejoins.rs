//! When the channel rejoins for new conversations. Each conversation INSERT is one frame
//! from the server, and each rejoin is a gap that costs a catch-up of every watched
//! conversation and a list: rejoins start at least [`SPACING`] apart, and the conversations
//! added meanwhile are taken by the one owed. Pure logic; the socket task rejoins.
//!
//! A conversation added while its rejoin is owed is watched already: its messages are
//! pulled after that rejoin from when it was created, as after any gap, and the others'
//! keep arriving through the join in place meanwhile.

use std::time::Duration;

use tokio::time::Instant;

/// The least time between two rejoins for new conversations.
pub const SPACING: Duration = Duration::from_secs(1);

/// The one owner of rejoin spacing (the socket task holds it).
#[derive(Default)]
pub struct Rejoins {
    last: Option<Instant>,
    owed: bool,
}

impl Rejoins {
    pub fn new() -> Rejoins {
        Rejoins::default()
    }

    fn may(&self, now: Instant) -> bool {
        self.last.is_none_or(|t| t + SPACING <= now)
    }

    /// New conversations want a rejoin at `now`: true if it is made now, else it is owed.
    pub fn want(&mut self, now: Instant) -> bool {
        if self.may(now) {
            self.last = Some(now);
            self.owed = false;
            return true;
        }
        self.owed = true;
        false
    }

    /// When the owed rejoin may be made.
    pub fn due_at(&self) -> Option<Instant> {
        if !self.owed {
            return None;
        }
        self.last.map(|t| t + SPACING)
    }

    /// True if the owed rejoin is due at `now` (it is then made, and owed no more).
    pub fn take_due(&mut self, now: Instant) -> bool {
        if !self.owed || !self.may(now) {
            return false;
        }
        self.owed = false;
        self.last = Some(now);
        true
    }

    /// A join is made anyway (after a reconnect or a failure): it takes every conversation
    /// watched, so no rejoin is owed.
    pub fn joining(&mut self) {
        self.owed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// However new conversations come, rejoins for them are at least the spacing apart,
        /// and every one is joined: by a rejoin or a join made after it came.
        #[test]
        fn rejoins_are_spaced_and_none_is_lost(
            acts in prop::collection::vec((0u16..1500, 0u8..4), 1..300)
        ) {
            let mut now = Instant::now();
            let mut r = Rejoins::new();
            let mut rejoins: Vec<Instant> = vec![];
            // Since when a conversation waits for a join that takes it.
            let mut waiting: Option<Instant> = None;
            for (ms, what) in acts {
                now += Duration::from_millis(u64::from(ms));
                match what {
                    0 | 1 => {
                        waiting.get_or_insert(now);
                        if r.want(now) {
                            rejoins.push(now);
                            waiting = None;
                        }
                    }
                    2 => {
                        r.joining();
                        waiting = None;
                    }
                    _ => {}
                }
                // The timer: the owed rejoin is made when due.
                if r.due_at().is_some_and(|t| t <= now) && r.take_due(now) {
                    rejoins.push(now);
                    waiting = None;
                }
                prop_assert_eq!(waiting.is_some(), r.due_at().is_some());
            }
            if let Some(at) = r.due_at() {
                prop_assert!(r.take_due(at));
                rejoins.push(at);
            }
            for pair in rejoins.windows(2) {
                prop_assert!(pair[1] - pair[0] >= SPACING);
            }
        }
    }
}
