//! What reached the host, and what a catch-up still has to read, so that each message row
//! reaches the host exactly once whichever way it comes: live over the socket, read by id
//! (a change without its row), or pulled after a gap in the subscription.
//!
//! Two memories tell a row seen before from a new one:
//! - [`Seen`], the ids of the newest rows delivered, bounded by count, for the ordinary
//!   case (a change the server sends twice, a pull overlapping the rows just delivered);
//! - per conversation, the `(created_at, id)` of every delivered row a catch-up may still
//!   read again. A count cannot bound those: a catch-up that keeps failing starts again
//!   from before its gap however many rows arrive meanwhile. What bounds them is time:
//!   rows commit within [`SLACK`] of their `created_at` and the socket sends changes in
//!   commit order, so a row that arrives live is never older than the newest live row by
//!   more than the slack, and a catch-up reads only from its start to an end it learns
//!   from the first live row after its gap (rows committed before that join are older
//!   than that row's `created_at` plus the slack). Everything else is forgotten.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use tokio::time::Instant;
use uuid::Uuid;

use super::backoff::{Backoff, CATCH_UP};

/// A catch-up starts this long before the last row seen: rows commit out of `created_at`
/// order (it is taken at insert, not at commit), so a row stamped a little earlier than the
/// last one seen may still have been missed. Deduplication drops the overlap.
pub const SLACK: chrono::Duration = chrono::Duration::seconds(10);

/// `ts` moved back by the slack, as an RFC 3339 string; `None` if `ts` is unreadable.
pub fn with_slack(ts: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((t - SLACK).to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// Microseconds since the epoch, of a row's `created_at`.
pub type Micros = i64;

/// `ts` as [`Micros`], if it is RFC 3339.
pub fn micros(ts: &str) -> Option<Micros> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn slack() -> Micros {
    SLACK.num_microseconds().unwrap_or(10_000_000)
}

fn iso(m: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(m)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Ids kept per generation of [`Seen`]: small enough that the generation being filled (a
/// hash set) costs little beside the frozen ones (sorted arrays, 16 bytes an id).
const GENERATION: usize = 2048;

/// The ids of the newest rows delivered, at most `cap` (and at least `cap - GENERATION`).
///
/// Message ids are checked uuids (a row whose id is none is no chat message), so each is
/// kept as its 16 bytes. The newest ids go into a hash set; when it holds a generation's
/// worth they are frozen into a sorted array, and the oldest array goes as a whole. At the
/// cap that is about 16 bytes an id, where a hash set with a queue beside it took about 45.
pub struct Seen {
    filling: HashSet<u128>,
    frozen: VecDeque<Generation>,
    frozen_ids: usize,
    cap: usize,
}

/// A frozen generation: its ids sorted, and where each value of their first byte starts.
/// Every new id is looked up in every generation (about 25 at the cap), so each lookup is
/// narrowed to the ids sharing its first byte (8 of 2,048 for uuids, random there) before
/// the binary search, for half a byte an id. Ids that are not random only make that range
/// wider, up to the whole generation.
struct Generation {
    ids: Box<[u128]>,
    starts: Box<[u16; 257]>,
}

impl Generation {
    fn new(mut ids: Vec<u128>) -> Generation {
        ids.sort_unstable();
        let mut starts = Box::new([0u16; 257]);
        let mut at = 0;
        for (byte, start) in starts.iter_mut().enumerate() {
            while at < ids.len() && ((ids[at] >> 120) as usize) < byte {
                at += 1;
            }
            // GENERATION fits in a u16.
            *start = at as u16;
        }
        Generation {
            ids: ids.into_boxed_slice(),
            starts,
        }
    }

    fn contains(&self, id: u128) -> bool {
        let byte = (id >> 120) as usize;
        let (from, to) = (self.starts[byte] as usize, self.starts[byte + 1] as usize);
        self.ids
            .get(from..to)
            .is_some_and(|range| range.binary_search(&id).is_ok())
    }
}

impl Seen {
    pub fn new(cap: usize) -> Seen {
        Seen {
            filling: HashSet::new(),
            frozen: VecDeque::new(),
            frozen_ids: 0,
            cap: cap.max(GENERATION),
        }
    }

    pub fn contains(&self, id: &Uuid) -> bool {
        let id = id.as_u128();
        self.filling.contains(&id) || self.frozen.iter().any(|g| g.contains(id))
    }

    /// True the first time `id` is seen (within the window).
    pub fn insert(&mut self, id: Uuid) -> bool {
        if self.contains(&id) {
            return false;
        }
        self.filling.insert(id.as_u128());
        if self.filling.len() >= GENERATION {
            // `drain` keeps the set's buckets for the next generation.
            let g = Generation::new(self.filling.drain().collect());
            self.frozen_ids += g.ids.len();
            self.frozen.push_back(g);
            while self.frozen_ids > self.cap - GENERATION {
                match self.frozen.pop_front() {
                    Some(old) => self.frozen_ids -= old.ids.len(),
                    None => break,
                }
            }
        }
        true
    }

    /// The heap this takes, estimated from the capacities (hashbrown's buckets are a power
    /// of two at most 7/8 full, each with one control byte).
    pub fn heap_bytes(&self) -> usize {
        let buckets = if self.filling.capacity() == 0 {
            0
        } else {
            (self.filling.capacity() * 8 / 7).next_power_of_two()
        };
        let set = buckets * (std::mem::size_of::<u128>() + 1);
        let frozen: usize = self
            .frozen
            .iter()
            .map(|g| g.ids.len() * 16 + std::mem::size_of::<[u16; 257]>())
            .sum();
        set + frozen + self.frozen.capacity() * std::mem::size_of::<Generation>()
    }
}

/// How a row reached the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A change on the socket, in commit order.
    Socket,
    /// Read by id after its change came without it (in the change's place in that order).
    Read,
    /// A catch-up pull.
    Pull,
}

/// Where a catch-up's next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// At this `created_at` (inclusive).
    Since(String),
    /// After this `(created_at, id)`.
    After(String, Uuid),
}

impl At {
    fn micros(&self) -> Option<Micros> {
        match self {
            At::Since(t) | At::After(t, _) => micros(t),
        }
    }
}

/// One round of a catch-up to run: from `at`, up to `until` (inclusive) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub at: At,
    pub until: Option<String>,
}

/// How a round of a catch-up ended.
#[derive(Debug)]
pub enum Ended {
    /// An empty page: nothing more to read.
    Done,
    /// The round read as many pages as one may; the rest is for the next round.
    More,
    /// A page failed; the rows before it were read.
    Failed,
}

/// What the socket task should do next about a catch-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing (caught up, or the result was of a pull no longer wanted).
    Nothing,
    /// Start the next round now (once joined).
    Pull,
    /// Retry at this instant.
    RetryAt(Instant),
}

/// A conversation whose rows may have been missed, until a round reads to its end.
struct CatchUp {
    at: At,
    /// The end, learnt from the first live row after the gap: rows committed before the
    /// join are older.
    until: Option<Micros>,
    /// The number of the round under way, if one is.
    running: Option<u64>,
    /// The round under way was planned before its end was known, so it reads to no end
    /// even if one is learnt meanwhile.
    open_round: bool,
    /// The cursor when another gap began during that round, which may have read its last
    /// page before the gap: read from there as well, to no known end.
    again: Option<String>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl CatchUp {
    fn starting(from: &str) -> Option<CatchUp> {
        Some(CatchUp {
            at: At::Since(with_slack(from)?),
            until: None,
            running: None,
            open_round: false,
            again: None,
            failures: 0,
            retry_at: None,
        })
    }

    /// The `created_at` range a later round may still read: rows delivered in it must be
    /// remembered.
    fn pinned(&self) -> (Micros, Option<Micros>) {
        let mut start = self.at.micros().unwrap_or(Micros::MIN);
        if let Some(again) = self.again.as_deref().and_then(micros) {
            start = start.min(again - slack());
        }
        let until = if self.again.is_some() || (self.running.is_some() && self.open_round) {
            None
        } else {
            self.until
        };
        (start, until)
    }
}

/// Rows of one conversation delivered, at most this many remembered by `created_at`. Only
/// a conversation that writes more rows than this within about twice the slack could
/// reach it (then the oldest go, with a warning).
const MAX_KEYS: usize = 100_000;

struct Conv {
    /// The `created_at` of the newest row delivered live, over the socket or read by id
    /// after its change (or when watching began). Not of pulled rows: a pull can read rows
    /// the socket has yet to bring, and those must still be known when they come.
    cursor: String,
    /// The cursor in microseconds, read once rather than at every row.
    cursor_at: Option<Micros>,
    /// Delivered rows a read may meet again: `(created_at, id)`.
    keys: BTreeSet<(Micros, u128)>,
    catchup: Option<CatchUp>,
    /// The starts of reads by id under way: if one fails, a catch-up starts there.
    reads: Vec<Micros>,
}

/// The one owner of delivery and catch-up state (the socket task holds it).
pub struct Ledger {
    seen: Seen,
    /// By id, so that catch-ups come due in a fixed order: a seed of the property test
    /// then replays the same run.
    convs: BTreeMap<Uuid, Conv>,
    next_pull: u64,
}

impl Ledger {
    pub fn new(seen_ids: usize) -> Ledger {
        Ledger {
            seen: Seen::new(seen_ids),
            convs: BTreeMap::new(),
            next_pull: 0,
        }
    }

    /// Follows exactly `set`: a new conversation is watched from `origin`, one no longer
    /// in it is forgotten (with its catch-up).
    pub fn watch(&mut self, set: &std::collections::BTreeSet<Uuid>, origin: &str) {
        self.convs.retain(|c, _| set.contains(c));
        for c in set {
            self.convs.entry(*c).or_insert_with(|| Conv {
                cursor: origin.to_string(),
                cursor_at: micros(origin),
                keys: BTreeSet::new(),
                catchup: None,
                reads: Vec::new(),
            });
        }
    }

    pub fn cursor(&self, conv: &Uuid) -> Option<String> {
        self.convs.get(conv).map(|c| c.cursor.clone())
    }

    /// Whether `id` was delivered lately (a hint: [`Ledger::deliver`] decides).
    pub fn seen(&self, id: &Uuid) -> bool {
        self.seen.contains(id)
    }

    /// Records the delivery of row `id` of `conv`: true if it is new (the host gets it).
    pub fn deliver(&mut self, conv: Uuid, id: Uuid, created_at: Option<&str>, via: Via) -> bool {
        let Some(c) = self.convs.get_mut(&conv) else {
            return false;
        };
        let at = created_at.and_then(micros);
        if at.is_some_and(|m| c.keys.contains(&(m, id.as_u128()))) || !self.seen.insert(id) {
            return false;
        }
        if let (Some(m), Some(t)) = (at, created_at) {
            c.keys.insert((m, id.as_u128()));
            if via != Via::Pull && c.cursor_at.is_none_or(|cur| m > cur) {
                c.cursor = t.to_string();
                c.cursor_at = Some(m);
            }
            if via == Via::Socket {
                if let Some(cu) = c.catchup.as_mut() {
                    if cu.until.is_none() && cu.again.is_none() {
                        cu.until = Some(m.saturating_add(slack()));
                    }
                }
            }
        }
        prune(&conv, c);
        true
    }

    /// Rows of `conv` may be missed from now until the next join: a catch-up from its
    /// cursor as it is now.
    pub fn missed(&mut self, conv: Uuid) {
        if let Some(from) = self.cursor(&conv) {
            self.missed_since(conv, from);
        }
    }

    /// Rows of `conv` from `from` on may have been missed. `from` is a cursor the
    /// conversation had (pinned since, if older than the cursor now).
    pub fn missed_since(&mut self, conv: Uuid, from: String) {
        let Some(c) = self.convs.get_mut(&conv) else {
            return;
        };
        match c.catchup.as_mut() {
            None => match CatchUp::starting(&from) {
                Some(cu) => c.catchup = Some(cu),
                // Cursors are our own timestamps or checked ones, so this should not happen.
                None => tracing::warn!(%conv, "unreadable catch-up start; not pulling"),
            },
            // A round under way, or a range whose end is known, is read as planned first:
            // the rows above that end and below the slack under the cursor may be
            // forgotten already, so the range is never stretched over them. This gap's
            // rows are read after it, from before `from` on.
            Some(cu) if cu.running.is_some() || cu.until.is_some() => {
                // The earliest start wins: a failed read by id names the cursor of when its
                // change came, which can be older than a gap's that began since.
                let earlier = match (cu.again.as_deref().and_then(micros), micros(&from)) {
                    (Some(again), Some(from)) => from < again,
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                if earlier {
                    cu.again = Some(from);
                }
            }
            Some(cu) => {
                // A range to no end yet: it covers this gap if it starts early enough.
                if let Some(start) = with_slack(&from) {
                    if micros(&start) < cu.at.micros() {
                        cu.at = At::Since(start);
                    }
                }
            }
        }
    }

    /// Every watched conversation may miss rows from now until the next join.
    pub fn missed_all(&mut self) {
        let all: Vec<Uuid> = self.convs.keys().copied().collect();
        for conv in all {
            self.missed(conv);
        }
    }

    /// The catch-ups due at `now` (not under way, not waiting to be retried).
    pub fn due(&self, now: Instant) -> Vec<Uuid> {
        self.convs
            .iter()
            .filter(|(_, c)| {
                c.catchup
                    .as_ref()
                    .is_some_and(|cu| cu.running.is_none() && cu.retry_at.is_none_or(|t| t <= now))
            })
            .map(|(conv, _)| *conv)
            .collect()
    }

    /// The catch-ups with a round under way.
    pub fn running(&self) -> usize {
        self.convs
            .values()
            .filter(|c| c.catchup.as_ref().is_some_and(|cu| cu.running.is_some()))
            .count()
    }

    /// The earliest retry of a failed catch-up.
    pub fn next_retry(&self) -> Option<Instant> {
        self.convs
            .values()
            .filter_map(|c| c.catchup.as_ref())
            .filter(|cu| cu.running.is_none())
            .filter_map(|cu| cu.retry_at)
            .min()
    }

    /// Starts a round of the catch-up of `conv`: its number and what to read.
    pub fn start(&mut self, conv: Uuid) -> Option<(u64, Plan)> {
        let cu = self.convs.get_mut(&conv)?.catchup.as_mut()?;
        self.next_pull += 1;
        cu.running = Some(self.next_pull);
        cu.open_round = cu.until.is_none();
        cu.retry_at = None;
        Some((
            self.next_pull,
            Plan {
                at: cu.at.clone(),
                until: cu.until.map(iso),
            },
        ))
    }

    /// The end of round `pull` of `conv`, whose rows were delivered already: `reached` is
    /// the keyset of the last row it read.
    pub fn pulled(
        &mut self,
        conv: Uuid,
        pull: u64,
        reached: Option<(String, Uuid)>,
        ended: Ended,
    ) -> Next {
        let Some(c) = self.convs.get_mut(&conv) else {
            return Next::Nothing;
        };
        let Some(cu) = c.catchup.as_mut() else {
            return Next::Nothing;
        };
        if cu.running != Some(pull) {
            return Next::Nothing; // of a conversation dropped and watched again since
        }
        cu.running = None;
        if let Some((t, id)) = reached {
            cu.at = At::After(t, id);
        }
        // A later gap is read once this range is read to its end, from before it on.
        if matches!(ended, Ended::Done) {
            if let Some(from) = cu.again.take() {
                match with_slack(&from) {
                    Some(start) => {
                        cu.at = At::Since(start);
                        cu.until = None;
                        cu.failures = 0;
                        prune(&conv, c);
                        return Next::Pull;
                    }
                    None => tracing::warn!(%conv, "unreadable catch-up start; not pulling"),
                }
            }
        }
        let next = match ended {
            Ended::Done => {
                c.catchup = None;
                Next::Nothing
            }
            Ended::More => {
                cu.failures = 0;
                Next::Pull
            }
            Ended::Failed => {
                cu.failures = cu.failures.saturating_add(1);
                let at = Instant::now() + CATCH_UP.sleep_duration(cu.failures);
                cu.retry_at = Some(at);
                Next::RetryAt(at)
            }
        };
        prune(&conv, c);
        next
    }

    /// A row of `conv` is being read by id, its change having come without it, from a
    /// cursor `from`: should the read fail, a catch-up starts there, so the rows after it
    /// stay remembered until [`Ledger::read_done`].
    pub fn reading(&mut self, conv: Uuid, from: &str) {
        if let (Some(c), Some(m)) = (self.convs.get_mut(&conv), micros(from)) {
            c.reads.push(m - slack());
        }
    }

    pub fn read_done(&mut self, conv: Uuid, from: &str) {
        if let (Some(c), Some(m)) = (self.convs.get_mut(&conv), micros(from)) {
            if let Some(i) = c.reads.iter().position(|r| *r == m - slack()) {
                c.reads.swap_remove(i);
            }
            prune(&conv, c);
        }
    }

    /// Rows remembered by `created_at`, over all conversations.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.convs.values().map(|c| c.keys.len()).sum()
    }
}

/// Forgets the rows of `c` no read can meet again: below the slack under the cursor,
/// unless a catch-up or a read by id may still read them.
fn prune(conv: &Uuid, c: &mut Conv) {
    let Some(base) = c.cursor_at else {
        return;
    };
    let floor = base.saturating_sub(slack());
    let mut kept: Vec<(Micros, Option<Micros>)> = c.reads.iter().map(|r| (*r, None)).collect();
    kept.extend(c.catchup.as_ref().map(CatchUp::pinned));
    kept.retain(|(start, _)| *start < floor);
    kept.sort_unstable();
    // Below the floor, forget what lies between the pinned ranges.
    let mut from = Micros::MIN;
    for (start, until) in kept {
        forget(&mut c.keys, from, start);
        match until {
            Some(u) => from = from.max(u.saturating_add(1)),
            None => return,
        }
    }
    forget(&mut c.keys, from, floor);
    if c.keys.len() > MAX_KEYS {
        tracing::warn!(%conv, "more rows of one conversation within the slack than remembered");
        while c.keys.len() > MAX_KEYS {
            c.keys.pop_first();
        }
    }
}

/// Forgets the keys with `created_at` in `[from, to)`.
fn forget(keys: &mut BTreeSet<(Micros, u128)>, from: Micros, to: Micros) {
    if from >= to {
        return;
    }
    let doomed: Vec<(Micros, u128)> = keys.range((from, 0)..(to, 0)).copied().collect();
    for k in doomed {
        keys.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const C: Uuid = Uuid::from_u128(0xc);
    const NOISE: Uuid = Uuid::from_u128(0xe);

    #[test]
    fn slack_moves_back() {
        assert_eq!(
            with_slack("2026-01-01T00:00:10.5Z").as_deref(),
            Some("2026-01-01T00:00:00.500000Z")
        );
        assert_eq!(with_slack("nope"), None);
    }

    #[test]
    fn seen_is_bounded_and_remembers() {
        let mut s = Seen::new(2 * GENERATION);
        let id = |i: usize| Uuid::from_u128(i as u128 + 1);
        assert!(s.insert(id(0)) && !s.insert(id(0)));
        for i in 1..3 * GENERATION {
            assert!(s.insert(id(i)), "{i}");
        }
        // The newest `cap - GENERATION` at least are remembered, the oldest gone.
        for i in 2 * GENERATION..3 * GENERATION {
            assert!(s.contains(&id(i)) && !s.insert(id(i)), "{i}");
        }
        assert!(!s.contains(&id(0)));
        assert!(s.insert(id(0)));
    }

    /// The heap of the ids remembered at the cap the socket uses: 835,886 bytes, about 16.7
    /// bytes an id. A
    /// `HashSet<Uuid>` with a `VecDeque<Uuid>` beside it took 2.16 MB for 50,000 (65,536
    /// buckets of 17 bytes, and a queue grown to 65,536 slots of 16).
    #[test]
    fn seen_at_its_cap_takes_about_16_bytes_an_id() {
        let cap = 50_000;
        let mut s = Seen::new(cap);
        for i in 0..3 * cap as u128 {
            s.insert(Uuid::from_u128(i));
        }
        let bytes = s.heap_bytes();
        assert!(bytes < 900_000, "{bytes} bytes");
        let before = (cap * 8 / 7).next_power_of_two() * 17 + cap.next_power_of_two() * 16;
        assert_eq!(before, 2_162_688);
    }

    /// A read by id that fails during a round, after a later gap: its older start is read
    /// again, not only the gap's (or the row it was for is never read).
    #[test]
    fn a_failed_read_by_id_during_a_round_is_read_again_from_its_own_start() {
        let t0: Micros = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        let s = |secs: i64| iso(t0 + secs * 1_000_000);
        let mut l = Ledger::new(1000);
        l.watch(&[C].into_iter().collect(), &s(0));
        assert!(l.deliver(C, Uuid::from_u128(1), Some(&s(1)), Via::Socket));
        l.missed(C);
        let (r1, _) = l.start(C).expect("a round");
        // A change comes without its row: read by id from the cursor of then.
        l.reading(C, &s(2));
        // Rows come live far past the slack, then the socket drops.
        assert!(l.deliver(C, Uuid::from_u128(2), Some(&s(30)), Via::Socket));
        l.missed(C);
        // The read by id fails: a catch-up from where it began.
        l.missed_since(C, s(2));
        l.read_done(C, &s(2));
        let next = l.pulled(C, r1, Some((s(4), Uuid::from_u128(3))), Ended::Done);
        assert_eq!(next, Next::Pull);
        let (_, plan) = l.start(C).expect("another round");
        let from = plan.at.micros().expect("a start");
        assert!(
            from <= micros(&with_slack(&s(2)).unwrap()).unwrap(),
            "the next round starts at {:?}, after the failed read's start",
            plan.at
        );
    }

    fn iso_at(m: Micros) -> String {
        iso(m)
    }

    /// One transaction writing a message of `C`: created at `created`, committed at
    /// `commit` (within the slack).
    #[derive(Debug, Clone)]
    struct Row {
        id: Uuid,
        created: Micros,
        commit: Micros,
    }

    #[derive(Debug, Clone)]
    enum Act {
        /// A row of `C` created now, committed `delay` later.
        Write { delay: u8 },
        /// The clock moves on; rows whose commit comes commit, in commit order.
        Tick { ms: u16 },
        /// The socket hands on up to `n` changes (one maybe twice, as a server may).
        Socket { n: u8, twice: bool },
        /// The next change comes without its row: it is read by id.
        TooLarge,
        /// The next change comes without its row when too many wait to be read by id: its
        /// conversation is caught up instead (see `reads`).
        Overflow,
        /// A read by id ends.
        ReadEnds { which: u8, ok: bool },
        /// Rows of another conversation, enough to push ids of `C` out of [`Seen`].
        Noise { n: u16 },
        /// The subscription is lost.
        Gap,
        /// It is back: due catch-ups start.
        Join,
        /// A round under way reads the database (pages fail from `fail_at`).
        ReadRound { which: u8, fail_at: Option<u8> },
        /// A round that read hands its rows to the task.
        EndRound { which: u8 },
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            4 => (0u8..100).prop_map(|delay| Act::Write { delay }),
            3 => (1u16..3000).prop_map(|ms| Act::Tick { ms }),
            4 => (1u8..6, any::<bool>()).prop_map(|(n, twice)| Act::Socket { n, twice }),
            1 => Just(Act::TooLarge),
            1 => Just(Act::Overflow),
            1 => (any::<u8>(), any::<bool>()).prop_map(|(which, ok)| Act::ReadEnds { which, ok }),
            1 => (1u16..2500).prop_map(|n| Act::Noise { n }),
            1 => Just(Act::Gap),
            2 => Just(Act::Join),
            2 => (any::<u8>(), prop::option::of(0u8..4)).prop_map(|(which, fail_at)| Act::ReadRound { which, fail_at }),
            2 => any::<u8>().prop_map(|which| Act::EndRound { which }),
        ]
    }

    /// How a change came on the socket.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Came {
        Whole,
        Short,
        Overflow,
    }

    /// Rows a page holds, and pages a round reads, in the model.
    const PAGE: usize = 3;
    const PAGES: usize = 4;

    /// What a round read: its rows, the keyset of the last, how it ended.
    type Read = (Vec<Row>, Option<(String, Uuid)>, Ended);

    struct Round {
        conv: Uuid,
        pull: u64,
        plan: Plan,
        read: Option<Read>,
    }

    struct World {
        ledger: Ledger,
        now: Micros,
        next_id: u128,
        pending: Vec<Row>,
        db: Vec<Row>,
        joined: bool,
        /// Changes sent on the socket, not yet read: the row, and how it came.
        socket: VecDeque<(Row, Came)>,
        /// Reads by id under way: the row and the cursor when its change came.
        reads: Vec<(Row, String)>,
        rounds: Vec<Round>,
        delivered: HashMap<Uuid, usize>,
    }

    impl World {
        fn new() -> World {
            let now = 1_767_225_600_000_000; // 2026-01-01
            let mut ledger = Ledger::new(0);
            ledger.watch(&[C, NOISE].into_iter().collect(), &iso_at(now));
            World {
                ledger,
                now,
                next_id: 1,
                pending: vec![],
                db: vec![],
                joined: true,
                socket: VecDeque::new(),
                reads: vec![],
                rounds: vec![],
                delivered: HashMap::new(),
            }
        }

        fn deliver(&mut self, conv: Uuid, row: &Row, via: Via) {
            if self
                .ledger
                .deliver(conv, row.id, Some(&iso_at(row.created)), via)
                && conv == C
            {
                *self.delivered.entry(row.id).or_default() += 1;
            }
        }

        fn tick(&mut self, ms: u16) {
            self.now += i64::from(ms) * 1000;
            let now = self.now;
            let mut due: Vec<Row> = self
                .pending
                .iter()
                .filter(|r| r.commit <= now)
                .cloned()
                .collect();
            self.pending.retain(|r| r.commit > now);
            due.sort_by_key(|r| (r.commit, r.id));
            for r in due {
                if self.joined {
                    self.socket.push_back((r.clone(), Came::Whole));
                }
                self.db.push(r);
            }
        }

        fn start_due(&mut self) {
            // Retries are due in the model whenever the task would start them.
            let later = Instant::now() + std::time::Duration::from_secs(86_400);
            for conv in self.ledger.due(later) {
                if let Some((pull, plan)) = self.ledger.start(conv) {
                    self.rounds.push(Round {
                        conv,
                        pull,
                        plan,
                        read: None,
                    });
                }
            }
        }

        /// What a round reads of the database as it is now (PostgREST's keyset pages).
        fn read(&self, conv: Uuid, plan: &Plan, fail_at: Option<u8>) -> Read {
            if conv != C {
                // The other conversation's rows are only ever live.
                return (vec![], None, Ended::Done);
            }
            let key = |r: &Row| (r.created, r.id);
            let mut rows: Vec<&Row> = self.db.iter().collect();
            rows.sort_by_key(|r| key(r));
            let until = plan.until.as_deref().and_then(micros);
            let mut after: Option<(Micros, Uuid)> = None;
            let mut out = vec![];
            let mut reached = None;
            for page in 0..PAGES {
                if fail_at.is_some_and(|f| usize::from(f) == page) {
                    return (out, reached, Ended::Failed);
                }
                let next: Vec<Row> = rows
                    .iter()
                    .filter(|r| match (&after, &plan.at) {
                        (Some(a), _) => key(r) > *a,
                        (None, At::Since(t)) => r.created >= micros(t).unwrap(),
                        (None, At::After(t, id)) => key(r) > (micros(t).unwrap(), *id),
                    })
                    .filter(|r| until.is_none_or(|u| r.created <= u))
                    .take(PAGE)
                    .map(|r| (*r).clone())
                    .collect();
                let Some(last) = next.last() else {
                    return (out, reached, Ended::Done);
                };
                after = Some(key(last));
                reached = Some((iso_at(last.created), last.id));
                out.extend(next);
            }
            (out, reached, Ended::More)
        }

        fn end_round(&mut self, i: usize) -> bool {
            if self.rounds[i].read.is_none() {
                return false;
            }
            let r = self.rounds.remove(i);
            let (rows, reached, ended) = r.read.unwrap();
            for row in &rows {
                self.deliver(C, row, Via::Pull);
            }
            if self.ledger.pulled(r.conv, r.pull, reached, ended) == Next::Pull && self.joined {
                self.start_due();
            }
            true
        }

        fn end_read(&mut self, i: usize, ok: bool) {
            let (row, from) = self.reads.remove(i);
            if ok {
                self.deliver(C, &row, Via::Read);
                self.ledger.read_done(C, &from);
            } else {
                self.ledger.missed_since(C, from.clone());
                self.ledger.read_done(C, &from);
                if self.joined {
                    self.start_due();
                }
            }
        }

        fn step(&mut self, a: Act) {
            match a {
                Act::Write { delay } => {
                    let id = Uuid::from_u128(self.next_id);
                    self.next_id += 1;
                    // Within the slack (10 s): up to 9.9 s.
                    let commit = self.now + i64::from(delay) * 99_000;
                    self.pending.push(Row {
                        id,
                        created: self.now,
                        commit,
                    });
                    self.tick(0);
                }
                Act::Tick { ms } => self.tick(ms),
                Act::Socket { n, twice } => {
                    for _ in 0..n {
                        let Some((row, came)) = self.socket.pop_front() else {
                            break;
                        };
                        if came == Came::Overflow {
                            // Too many wait to be read by id: a catch-up from the cursor.
                            if !self.ledger.seen(&row.id) {
                                let from = self.ledger.cursor(&C).unwrap();
                                self.ledger.missed_since(C, from);
                                if self.joined {
                                    self.start_due();
                                }
                            }
                        } else if came == Came::Short {
                            if !self.ledger.seen(&row.id) {
                                let from = self.ledger.cursor(&C).unwrap();
                                self.ledger.reading(C, &from);
                                self.reads.push((row, from));
                            }
                        } else {
                            self.deliver(C, &row, Via::Socket);
                            if twice {
                                self.deliver(C, &row, Via::Socket);
                            }
                        }
                    }
                }
                Act::TooLarge => {
                    if let Some(last) = self.socket.back_mut() {
                        last.1 = Came::Short;
                    }
                }
                Act::Overflow => {
                    if let Some(last) = self.socket.back_mut() {
                        last.1 = Came::Overflow;
                    }
                }
                Act::ReadEnds { which, ok } => {
                    if !self.reads.is_empty() {
                        let i = usize::from(which) % self.reads.len();
                        self.end_read(i, ok);
                    }
                }
                Act::Noise { n } => {
                    if self.joined {
                        for _ in 0..n {
                            let id = Uuid::from_u128(self.next_id);
                            self.next_id += 1;
                            let row = Row {
                                id,
                                created: self.now,
                                commit: self.now,
                            };
                            self.deliver(NOISE, &row, Via::Socket);
                        }
                    }
                }
                Act::Gap => {
                    if self.joined {
                        self.joined = false;
                        // Changes not read yet are of the join that is gone.
                        self.socket.clear();
                        self.ledger.missed_all();
                    }
                }
                Act::Join => {
                    if !self.joined {
                        self.joined = true;
                        self.start_due();
                    }
                }
                Act::ReadRound { which, fail_at } => {
                    let unread: Vec<usize> = (0..self.rounds.len())
                        .filter(|i| self.rounds[*i].read.is_none())
                        .collect();
                    if !unread.is_empty() {
                        let i = unread[usize::from(which) % unread.len()];
                        let read = self.read(self.rounds[i].conv, &self.rounds[i].plan, fail_at);
                        self.rounds[i].read = Some(read);
                    }
                }
                Act::EndRound { which } => {
                    if !self.rounds.is_empty() {
                        let i = usize::from(which) % self.rounds.len();
                        self.end_round(i);
                    }
                }
            }
        }

        /// Everything commits, the socket is joined and drained, every read and round ends
        /// well: every row of `C` has then reached the host.
        fn settle(&mut self) {
            self.tick(20_000);
            self.step(Act::Join);
            for _ in 0..10_000 {
                self.step(Act::Socket {
                    n: 255,
                    twice: false,
                });
                while !self.reads.is_empty() {
                    self.end_read(0, true);
                }
                if self.rounds.is_empty() {
                    self.start_due();
                    if self.rounds.is_empty() && self.socket.is_empty() && self.reads.is_empty() {
                        return;
                    }
                }
                while !self.rounds.is_empty() {
                    if self.rounds[0].read.is_none() {
                        let read = self.read(self.rounds[0].conv, &self.rounds[0].plan, None);
                        self.rounds[0].read = Some(read);
                    }
                    self.end_round(0);
                }
            }
            panic!("never settled");
        }
    }

    /// Ids random in their first byte (uuids), and ids that share it.
    fn ids() -> impl Strategy<Value = Vec<u128>> {
        let id = prop_oneof![
            any::<u128>(),
            (0u128..64),
            (0u8..3).prop_map(|b| (b as u128) << 120)
        ];
        prop::collection::vec(id, 0..600)
    }

    proptest! {
        /// A frozen generation holds exactly the ids it was made of, wherever their first
        /// bytes fall.
        #[test]
        fn a_generation_finds_exactly_its_ids(ids in ids(), probes in ids()) {
            let g = Generation::new(ids.clone());
            let set: std::collections::BTreeSet<u128> = ids.into_iter().collect();
            for id in set.iter().chain(&probes) {
                prop_assert_eq!(g.contains(*id), set.contains(id), "{:x}", id);
            }
            prop_assert!(!g.contains(u128::MAX) || set.contains(&u128::MAX));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
        /// Whatever the order of live rows, reads by id, gaps, catch-up pages and failures,
        /// and however many other rows push ids out of `Seen`, each row reaches the host once.
        #[test]
        fn each_row_is_delivered_exactly_once(acts in prop::collection::vec(act(), 1..120)) {
            let mut w = World::new();
            for a in acts {
                w.step(a);
                if let Some((id, n)) = w.delivered.iter().find(|(_, n)| **n > 1) {
                    prop_assert!(false, "{id} delivered {n} times");
                }
            }
            w.settle();
            for r in &w.db {
                prop_assert_eq!(w.delivered.get(&r.id).copied().unwrap_or(0), 1, "row {}", r.id);
            }
            prop_assert_eq!(w.delivered.len(), w.db.len());
        }
    }
}
