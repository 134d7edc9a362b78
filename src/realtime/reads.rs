//! The reads by id of message rows whose INSERT came without them (too large for the socket,
//! or cut short for a reason the server did not give): which wait, which run, and which
//! are too many to wait. Pure logic; the socket task starts the reads and delivers what
//! they find through the ledger, which keeps each row exactly once.
//!
//! Every such change is one frame from the server, so a server could ask for any number.
//! The ids waiting are read together (one `id=in.(…)` read of at most [`BATCH`]), at most
//! [`IN_FLIGHT`] reads at once, and at most [`QUEUED`] wait. A change beyond that is not
//! dropped: its conversation is caught up from the cursor of when it came (as after a read
//! that failed), which reads the row with the rest and costs one read per conversation at
//! a time, however many changes come.

use std::collections::{HashSet, VecDeque};

use uuid::Uuid;

/// Ids read together at most (each 37 characters of the URL).
pub const BATCH: usize = 50;
/// Reads by id under way at most.
pub const IN_FLIGHT: usize = 2;
/// Ids waiting to be read at most.
pub const QUEUED: usize = 500;

/// A row to read: its id, its conversation, and the conversation's cursor when its change
/// came (a catch-up starts there should the read fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub conversation: Uuid,
    pub id: Uuid,
    pub from: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// It waits (or is read at once, at the next [`Reads::start`]).
    Added,
    /// It waits or is being read already.
    Already,
    /// Too many wait: catch its conversation up instead.
    Full,
}

/// The one owner of the reads by id (the socket task holds it).
#[derive(Default)]
pub struct Reads {
    queue: VecDeque<Wanted>,
    /// The ids queued or being read.
    ids: HashSet<Uuid>,
    in_flight: usize,
}

impl Reads {
    pub fn new() -> Reads {
        Reads::default()
    }

    pub fn want(&mut self, w: Wanted) -> Queued {
        if self.ids.contains(&w.id) {
            return Queued::Already;
        }
        if self.queue.len() >= QUEUED {
            return Queued::Full;
        }
        self.ids.insert(w.id);
        self.queue.push_back(w);
        Queued::Added
    }

    /// The next read to start, if one waits and there is room.
    pub fn start(&mut self) -> Option<Vec<Wanted>> {
        if self.in_flight >= IN_FLIGHT || self.queue.is_empty() {
            return None;
        }
        let n = self.queue.len().min(BATCH);
        self.in_flight += 1;
        Some(self.queue.drain(..n).collect())
    }

    /// The read of `batch` ended (whatever it found).
    pub fn done(&mut self, batch: &[Wanted]) {
        self.in_flight = self.in_flight.saturating_sub(1);
        for w in batch {
            self.ids.remove(&w.id);
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn wanted(id: u128) -> Wanted {
        Wanted {
            conversation: Uuid::from_u128(7),
            id: Uuid::from_u128(id),
            from: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn waiting_ids_are_read_together() {
        let mut r = Reads::new();
        assert_eq!(r.want(wanted(1)), Queued::Added);
        let first = r.start().expect("a read at once");
        assert_eq!(first.len(), 1);
        for i in 2..=3 * BATCH as u128 {
            assert_eq!(r.want(wanted(i)), Queued::Added);
        }
        assert_eq!(r.want(wanted(1)), Queued::Already, "being read");
        assert_eq!(r.want(wanted(2)), Queued::Already, "waiting");
        let second = r.start().expect("a second read");
        assert_eq!(second.len(), BATCH);
        assert_eq!(r.start(), None, "two at once at most");
        r.done(&first);
        assert_eq!(r.start().map(|b| b.len()), Some(BATCH));
    }

    #[derive(Debug, Clone)]
    enum Act {
        Want(u16),
        Start,
        Done(u8),
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            6 => (0u16..1200).prop_map(Act::Want),
            2 => Just(Act::Start),
            2 => any::<u8>().prop_map(Act::Done),
        ]
    }

    proptest! {
        /// However changes come and reads end: at most `IN_FLIGHT` reads of at most `BATCH`
        /// ids run, at most `QUEUED` ids wait, an id is never in two reads at once, and
        /// every id added is read, once; one refused is refused only when the queue is full.
        #[test]
        fn reads_are_bounded_and_lose_nothing(acts in prop::collection::vec(act(), 1..400)) {
            let mut r = Reads::new();
            let mut running: Vec<Vec<Wanted>> = vec![];
            let mut added: HashMap<Uuid, usize> = HashMap::new();
            let mut read: HashMap<Uuid, usize> = HashMap::new();
            let mut waiting_or_running: HashSet<Uuid> = HashSet::new();
            for a in acts {
                match a {
                    Act::Want(i) => {
                        let w = wanted(u128::from(i));
                        let full = r.waiting() >= QUEUED;
                        match r.want(w.clone()) {
                            Queued::Added => {
                                prop_assert!(waiting_or_running.insert(w.id));
                                *added.entry(w.id).or_default() += 1;
                            }
                            Queued::Already => prop_assert!(waiting_or_running.contains(&w.id)),
                            Queued::Full => prop_assert!(full && !waiting_or_running.contains(&w.id)),
                        }
                    }
                    Act::Start => {
                        if let Some(b) = r.start() {
                            prop_assert!(!b.is_empty() && b.len() <= BATCH);
                            running.push(b);
                        }
                    }
                    Act::Done(i) => {
                        if !running.is_empty() {
                            let b = running.remove(usize::from(i) % running.len());
                            for w in &b {
                                *read.entry(w.id).or_default() += 1;
                                waiting_or_running.remove(&w.id);
                            }
                            r.done(&b);
                        }
                    }
                }
                prop_assert!(running.len() <= IN_FLIGHT);
                prop_assert!(r.waiting() <= QUEUED);
            }
            for b in running.drain(..) {
                for w in &b {
                    *read.entry(w.id).or_default() += 1;
                }
                r.done(&b);
            }
            while let Some(b) = r.start() {
                for w in &b {
                    *read.entry(w.id).or_default() += 1;
                }
                r.done(&b);
            }
            prop_assert_eq!(read, added);
        }
    }
}
