//! The lists of the workspace's conversations the socket task reads over REST: on connecting,
//! after a gap in the subscription, and for a change it cannot place. Which list runs, which
//! is owed, and whether an answer may still be applied, as pure logic (the task starts the
//! reads and owns the watched set).
//!
//! The server does not number lists: an answer shows the conversations at some moment
//! between the list's start and its end, and what was applied meanwhile may be newer.
//! - A live change applied while a list runs: the list can only end conversations watched
//!   when it began ([`Ticket::watched`]), so one added live since stays; and one let go of
//!   live since stays gone (`removed`), as the list may have been read before its end.
//! - Another list applied since it began: the list on connecting, read while no change can
//!   arrive, is newer than any list started before it, and the live changes after it are
//!   newer still. Each list is numbered when it starts, and an answer older than the newest
//!   applied is dropped: applied, it would watch again a conversation deleted in the gap (or
//!   live since), and announce its deletion once more at the next list. Dropping it loses
//!   nothing: the newer list found what the old one was for (conversations created since its
//!   gap began, watched from the earliest gap still owed), and the join after a reconnect
//!   asks for a list of its own, for what the connecting list could not see.
//!
//! At most one list is in flight, at most one more is owed (asks merge into it, from the
//! earliest gap), and starts are at least [`SPACING`] apart: a server that keeps sending
//! changes the client cannot place gets one list per spacing at most, not one per change.

use std::{collections::BTreeSet, time::Duration};

use tokio::time::Instant;
use uuid::Uuid;

use super::backoff::{Backoff, CATCH_UP};

/// The least time between the starts of two lists.
pub const SPACING: Duration = Duration::from_secs(1);

/// A list started: the answer is handed back with it.
#[derive(Debug, Clone)]
pub struct Ticket {
    n: u64,
    /// When the earliest gap it is for began: conversations it finds are watched from then.
    pub origin: String,
    /// What was watched when it began: only those can be known gone by it.
    watched: BTreeSet<Uuid>,
}

/// What a list read.
#[derive(Debug, Clone)]
pub struct Listed {
    pub conversations: Vec<Uuid>,
    /// Whether the session still saw the workspace: otherwise none is known gone.
    pub workspace_visible: bool,
}

/// An answer to apply: the new watched set, the conversations it adds (watched from
/// `origin`, their messages possibly missed since).
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    pub set: BTreeSet<Uuid>,
    pub new: Vec<Uuid>,
    pub origin: String,
}

struct Running {
    n: u64,
    origin: String,
    failures: u32,
    /// Let go of live since it began.
    removed: BTreeSet<Uuid>,
}

struct Owed {
    origin: String,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The one owner of list state (the socket task holds it).
#[derive(Default)]
pub struct Lists {
    next: u64,
    /// The number of the newest list applied.
    applied: u64,
    running: Option<Running>,
    owed: Option<Owed>,
    last_start: Option<Instant>,
}

impl Lists {
    pub fn new() -> Lists {
        Lists::default()
    }

    /// A list is wanted for a gap that began at `origin` (or for a change not placed).
    pub fn want(&mut self, origin: &str) {
        match self.owed.as_mut() {
            // A wait after a failure still holds: asking again does not make the list any
            // likelier to succeed, and a server could ask by every frame.
            Some(o) => {
                if later(&o.origin, origin) {
                    o.origin = origin.to_string();
                }
            }
            None => {
                self.owed = Some(Owed {
                    origin: origin.to_string(),
                    failures: 0,
                    retry_at: None,
                })
            }
        }
    }

    /// Whether a list runs or is owed.
    pub fn pending(&self) -> bool {
        self.running.is_some() || self.owed.is_some()
    }

    /// When the owed list may start, if one is owed and none runs.
    pub fn due_at(&self) -> Option<Instant> {
        if self.running.is_some() {
            return None;
        }
        let o = self.owed.as_ref()?;
        let spaced = self.last_start.map(|t| t + SPACING);
        match (o.retry_at, spaced) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => Some(a.or(b).unwrap_or_else(Instant::now)),
        }
    }

    /// Starts the owed list if it is due at `now`, with `watched` the set watched now.
    pub fn start(&mut self, now: Instant, watched: &BTreeSet<Uuid>) -> Option<Ticket> {
        let o = self.owed.as_ref()?;
        let spaced = self.last_start.is_none_or(|t| t + SPACING <= now);
        if self.running.is_some() || !spaced || o.retry_at.is_some_and(|t| t > now) {
            return None;
        }
        let o = self.owed.take()?;
        self.next += 1;
        self.last_start = Some(now);
        self.running = Some(Running {
            n: self.next,
            origin: o.origin.clone(),
            failures: o.failures,
            removed: BTreeSet::new(),
        });
        Some(Ticket {
            n: self.next,
            origin: o.origin,
            watched: watched.clone(),
        })
    }

    /// The watched set changed live from `before` to `after`.
    pub fn live(&mut self, before: &BTreeSet<Uuid>, after: &BTreeSet<Uuid>) {
        if let Some(r) = self.running.as_mut() {
            r.removed.extend(before.difference(after).copied());
            r.removed.retain(|c| !after.contains(c));
        }
    }

    /// The list of `ticket` answered; `current` is the set watched now. `None`: nothing to
    /// apply (a newer list was applied since it began).
    pub fn answered(
        &mut self,
        ticket: Ticket,
        listed: Listed,
        current: &BTreeSet<Uuid>,
    ) -> Option<Applied> {
        let removed = match self.running.take() {
            Some(r) if r.n == ticket.n => r.removed,
            other => {
                self.running = other;
                BTreeSet::new()
            }
        };
        if ticket.n <= self.applied {
            return None;
        }
        self.applied = ticket.n;
        let listed_set: BTreeSet<Uuid> = listed.conversations.into_iter().collect();
        let mut set = current.clone();
        let new: Vec<Uuid> = listed_set
            .iter()
            .filter(|c| !set.contains(c) && !removed.contains(c))
            .copied()
            .collect();
        if listed.workspace_visible {
            set.retain(|c| listed_set.contains(c) || !ticket.watched.contains(c));
        }
        set.extend(new.iter().copied());
        Some(Applied {
            set,
            new,
            origin: ticket.origin,
        })
    }

    /// The list of `ticket` failed at `now`: it is owed again, after a backoff (none if a
    /// newer list was applied since it began, or one is owed already).
    pub fn failed(&mut self, ticket: &Ticket, now: Instant) -> Option<Duration> {
        let failures = match self.running.take() {
            Some(r) if r.n == ticket.n => r.failures.saturating_add(1),
            other => {
                self.running = other;
                return None;
            }
        };
        if ticket.n <= self.applied {
            return None;
        }
        let wait = CATCH_UP.sleep_duration(failures);
        self.want(&ticket.origin);
        if let Some(o) = self.owed.as_mut() {
            o.failures = failures;
            o.retry_at = Some(now + wait);
        }
        Some(wait)
    }

    /// The number of the list read on connecting, taken before it is read.
    pub fn connecting(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// The list read on connecting, numbered `n`: the whole set as it is (or, if the session
    /// no longer sees the workspace, `current` and any it adds). New ones are watched from
    /// the earliest of `gap` (when the socket went down) and the gaps lists are owed for;
    /// those lists are then owed no more. `None`: a newer list was applied since it began.
    pub fn connected(
        &mut self,
        n: u64,
        listed: Listed,
        current: &BTreeSet<Uuid>,
        gap: Option<&str>,
    ) -> Option<Applied> {
        if n <= self.applied {
            return None;
        }
        self.applied = n;
        let mut set: BTreeSet<Uuid> = listed.conversations.into_iter().collect();
        if !listed.workspace_visible {
            // Not a deletion: the session no longer sees the workspace.
            set.extend(current.iter().copied());
        }
        let new: Vec<Uuid> = set.difference(current).copied().collect();
        let mut origin = gap.map(str::to_string);
        let owed = self.owed.take().map(|o| o.origin);
        let running = self.running.as_ref().map(|r| r.origin.clone());
        for o in [owed, running].into_iter().flatten() {
            if origin.as_deref().is_none_or(|g| later(g, &o)) {
                origin = Some(o);
            }
        }
        Some(Applied {
            set,
            new,
            origin: origin.unwrap_or_else(now_iso),
        })
    }
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Whether timestamp `a` is later than `b` (compared as instants, whatever their offsets).
pub fn later(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a > b,
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn set(ids: &[u128]) -> BTreeSet<Uuid> {
        ids.iter().map(|n| id(*n)).collect()
    }

    fn listed(ids: &[u128]) -> Listed {
        Listed {
            conversations: ids.iter().map(|n| id(*n)).collect(),
            workspace_visible: true,
        }
    }

    #[test]
    fn timestamps_compare_as_instants() {
        assert!(later("2026-01-01T00:00:01+00:00", "2026-01-01T00:00:00.5Z"));
        assert!(!later("2026-01-01T01:00:00+02:00", "2026-01-01T00:00:00Z"));
    }

    const T0: &str = "2026-01-01T00:00:00.000000Z";
    const T1: &str = "2026-01-01T00:00:01.000000Z";
    const T2: &str = "2026-01-01T00:00:02.000000Z";

    /// A list started before the socket dropped, answered after the reconnect's list and a
    /// live deletion: it still holds the deleted conversation, and must not bring it back.
    #[test]
    fn a_list_from_before_a_reconnect_does_not_undo_a_later_deletion() {
        let now = Instant::now();
        let mut l = Lists::new();
        let mut watched = set(&[7, 8, 9]);
        l.want(T0);
        let old = l.start(now, &watched).expect("a list starts");
        // The socket drops; the list on connecting finds 9 deleted in the gap.
        let n = l.connecting();
        let a = l
            .connected(n, listed(&[7, 8]), &watched, Some(T1))
            .expect("the newest list");
        assert_eq!(a.set, set(&[7, 8]));
        watched = a.set;
        // Joined: 8 is deleted live.
        let before = watched.clone();
        watched.remove(&id(8));
        l.live(&before, &watched);
        // The old list, read before both, answers now.
        assert_eq!(l.answered(old, listed(&[7, 8, 9]), &watched), None);
        // Its end lets the join's list start.
        l.want(T2);
        assert!(l.start(now + SPACING, &watched).is_some());
    }

    /// The list on connecting watches new conversations from the earliest gap a list was
    /// still owed for, not only from the socket's drop.
    #[test]
    fn the_list_on_connecting_watches_from_the_earliest_gap_owed() {
        let now = Instant::now();
        let mut l = Lists::new();
        l.want(T0);
        let _running = l.start(now, &set(&[7])).expect("a list starts");
        let n = l.connecting();
        let a = l
            .connected(n, listed(&[7, 8]), &set(&[7]), Some(T2))
            .expect("applied");
        assert_eq!((a.new, a.origin.as_str()), (vec![id(8)], T0));
        assert!(l.owed.is_none());
    }

    #[derive(Debug, Clone)]
    enum Act {
        /// The server creates a conversation (seen live if joined).
        Create,
        /// The server deletes one (seen live if joined).
        Delete(u8),
        /// A change the client cannot place: it asks for a list.
        Unplaceable,
        /// The socket drops.
        Drop,
        /// It reconnects: the list on connecting, then the join, which asks for a list.
        Connect { fails: bool },
        /// Time passes; due lists start.
        Tick(u16),
        /// A list in flight reads the server as it is now.
        Read(u8),
        /// A list in flight answers (reading now if it has not read yet).
        Answer { which: u8, fails: bool },
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            3 => Just(Act::Create),
            3 => any::<u8>().prop_map(Act::Delete),
            2 => Just(Act::Unplaceable),
            2 => Just(Act::Drop),
            2 => any::<bool>().prop_map(|fails| Act::Connect { fails }),
            3 => (0u16..3000).prop_map(Act::Tick),
            3 => any::<u8>().prop_map(Act::Read),
            3 => (any::<u8>(), any::<bool>()).prop_map(|(which, fails)| Act::Answer { which, fails }),
        ]
    }

    struct World {
        server: BTreeSet<Uuid>,
        next_id: u128,
        lists: Lists,
        watched: BTreeSet<Uuid>,
        joined: bool,
        flights: Vec<(Ticket, Option<Listed>)>,
        announced: BTreeMap<Uuid, usize>,
        now: Instant,
    }

    impl World {
        fn new() -> World {
            World {
                server: set(&[1, 2]),
                next_id: 3,
                lists: Lists::new(),
                watched: set(&[1, 2]),
                joined: true,
                flights: vec![],
                announced: BTreeMap::new(),
                now: Instant::now(),
            }
        }

        fn origin(&self) -> String {
            T0.to_string()
        }

        fn apply(&mut self, set: BTreeSet<Uuid>) {
            for gone in self.watched.difference(&set) {
                *self.announced.entry(*gone).or_default() += 1;
            }
            self.watched = set;
        }

        fn live(&mut self, set: BTreeSet<Uuid>) {
            let before = self.watched.clone();
            self.lists.live(&before, &set);
            self.apply(set);
        }

        fn start_due(&mut self) {
            if !self.joined {
                return;
            }
            if let Some(t) = self.lists.start(self.now, &self.watched) {
                self.flights.push((t, None));
            }
        }

        fn snapshot(&self) -> Listed {
            Listed {
                conversations: self.server.iter().copied().collect(),
                workspace_visible: true,
            }
        }

        fn answer(&mut self, i: usize, fails: bool) {
            let (ticket, read) = self.flights.remove(i);
            if fails {
                self.lists.failed(&ticket, self.now);
            } else {
                let read = read.unwrap_or_else(|| self.snapshot());
                if let Some(a) = self.lists.answered(ticket, read, &self.watched) {
                    self.apply(a.set);
                    // The rejoin for the new filter is a gap: a list after the join, read
                    // after any deletion this one may have been read before.
                    if !a.new.is_empty() && self.joined {
                        self.lists.want(&a.origin);
                    }
                }
            }
            self.start_due();
        }

        fn step(&mut self, a: Act) {
            match a {
                Act::Create => {
                    let c = id(self.next_id);
                    self.next_id += 1;
                    self.server.insert(c);
                    if self.joined {
                        let mut set = self.watched.clone();
                        set.insert(c);
                        self.live(set);
                        // The rejoin for its filter is a gap: a list after the join.
                        let o = self.origin();
                        self.lists.want(&o);
                        self.start_due();
                    }
                }
                Act::Delete(which) => {
                    if self.server.is_empty() {
                        return;
                    }
                    let c = *self
                        .server
                        .iter()
                        .nth(usize::from(which) % self.server.len())
                        .unwrap();
                    self.server.remove(&c);
                    if self.joined {
                        let mut set = self.watched.clone();
                        set.remove(&c);
                        self.live(set);
                    }
                }
                Act::Unplaceable => {
                    if self.joined {
                        let o = self.origin();
                        self.lists.want(&o);
                        self.start_due();
                    }
                }
                Act::Drop => self.joined = false,
                Act::Connect { fails } => {
                    if self.joined {
                        return;
                    }
                    let n = self.lists.connecting();
                    if !fails {
                        let read = self.snapshot();
                        if let Some(a) = self.lists.connected(n, read, &self.watched, Some(T1)) {
                            self.apply(a.set);
                        }
                    }
                    self.joined = true;
                    let o = self.origin();
                    self.lists.want(&o);
                    self.start_due();
                }
                Act::Tick(ms) => {
                    self.now += Duration::from_millis(u64::from(ms));
                    self.start_due();
                }
                Act::Read(which) => {
                    let unread: Vec<usize> = (0..self.flights.len())
                        .filter(|i| self.flights[*i].1.is_none())
                        .collect();
                    if !unread.is_empty() {
                        let i = unread[usize::from(which) % unread.len()];
                        self.flights[i].1 = Some(self.snapshot());
                    }
                }
                Act::Answer { which, fails } => {
                    if !self.flights.is_empty() {
                        let i = usize::from(which) % self.flights.len();
                        self.answer(i, fails);
                    }
                }
            }
        }

        /// Joined, every list answered well, until none is owed.
        fn settle(&mut self) {
            if !self.joined {
                self.step(Act::Connect { fails: false });
            }
            for _ in 0..1000 {
                while !self.flights.is_empty() {
                    self.answer(0, false);
                }
                if !self.lists.pending() {
                    return;
                }
                self.now += Duration::from_secs(120);
                self.start_due();
            }
            panic!("lists never settled");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        /// Whatever the order of live changes, drops, reconnects and list answers (each read
        /// at any moment between its start and its end), a deleted conversation is never
        /// watched again once its deletion was announced, each deletion is announced once,
        /// and once everything settles the client watches exactly the server's
        /// conversations. At most one list is in flight.
        #[test]
        fn lists_never_undo_newer_news(acts in prop::collection::vec(act(), 1..80)) {
            let mut w = World::new();
            for a in acts {
                w.step(a);
                for (c, n) in &w.announced {
                    prop_assert!(*n <= 1, "{c} announced deleted {n} times");
                    prop_assert!(!w.watched.contains(c), "{c} watched again after its deletion");
                }
                prop_assert!(w.flights.len() <= 1, "{} lists in flight", w.flights.len());
            }
            w.settle();
            prop_assert_eq!(&w.watched, &w.server);
            for (c, n) in &w.announced {
                prop_assert!(*n <= 1, "{c} announced deleted {n} times");
            }
        }

        /// However often lists are asked for, starts are at least the spacing apart.
        #[test]
        fn lists_start_at_most_once_a_spacing(
            acts in prop::collection::vec((0u16..1500, any::<bool>(), any::<bool>()), 1..300)
        ) {
            let mut now = Instant::now();
            let mut l = Lists::new();
            let mut flight: Option<Ticket> = None;
            let mut starts: Vec<Instant> = vec![];
            for (ms, ask, fails) in acts {
                now += Duration::from_millis(u64::from(ms));
                if ask {
                    l.want(T0);
                }
                if let Some(t) = flight.take() {
                    if fails {
                        l.failed(&t, now);
                    } else {
                        l.answered(t, listed(&[1]), &set(&[1]));
                    }
                }
                if let Some(t) = l.start(now, &set(&[1])) {
                    starts.push(now);
                    flight = Some(t);
                }
            }
            for pair in starts.windows(2) {
                prop_assert!(pair[1] - pair[0] >= SPACING);
            }
        }
    }
}
