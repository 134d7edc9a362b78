//! Gives the C heap's free pages back to the system after a burst of events.
//!
//! glibc's allocator keeps one heap ("arena") per thread and returns pages only from the
//! top of each. A burst of changes allocates frames, rows and event texts on the runtime's
//! threads, and the few allocations that outlive it (the delivery ledger's entries) land
//! between them, so once the burst is freed its pages stay resident: several MB after
//! 100,000 changes, more than a JS client keeps. `malloc_trim` releases the free pages
//! inside every arena, once the burst has paused. Other platforms' allocators return
//! memory by themselves.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Events handled since the last trim that make it worth another: a trim costs a fraction
/// of a millisecond to a few ms (it walks every arena), so at most once per this many.
pub const BURST: usize = 4096;

/// When to trim: once events have paused after at least [`BURST`] of them. One for the
/// process, as the heap is.
#[derive(Default)]
pub struct AfterBurst {
    handled: AtomicUsize,
    trimming: AtomicBool,
}

impl AfterBurst {
    pub const fn new() -> AfterBurst {
        AfterBurst {
            handled: AtomicUsize::new(0),
            trimming: AtomicBool::new(false),
        }
    }

    /// Records one event handled by the host; true when a trim should start (then none
    /// starts again before [`AfterBurst::trimmed`]).
    pub fn handled(&self) -> bool {
        let handled = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        handled >= BURST && !self.trimming.swap(true, Ordering::AcqRel)
    }

    /// The trim started by [`AfterBurst::handled`] is done: counting starts again.
    pub fn trimmed(&self) {
        self.handled.store(0, Ordering::Relaxed);
        self.trimming.store(false, Ordering::Release);
    }

    /// Waits on a thread of its own for the burst to end, then trims, so that the walk is
    /// nobody's work; a thread allocating meanwhile waits only for the one arena being
    /// trimmed (each is locked in turn).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn trim(&'static self) {
        use std::time::{Duration, Instant};
        // A burst is over when no event has been handled for this long (within one, events
        // come microseconds apart); a stream that never pauses is trimmed after `AT_MOST`.
        const QUIET: Duration = Duration::from_millis(20);
        const AT_MOST: Duration = Duration::from_secs(2);
        let spawned = std::thread::Builder::new()
            .name("oboto-heap-trim".into())
            .spawn(move || {
                let start = Instant::now();
                loop {
                    let before = self.handled.load(Ordering::Relaxed);
                    std::thread::sleep(QUIET);
                    if self.handled.load(Ordering::Relaxed) == before || start.elapsed() >= AT_MOST
                    {
                        break;
                    }
                }
                // SAFETY: malloc_trim takes each arena's lock itself and only releases
                // pages that hold no allocation.
                unsafe {
                    libc::malloc_trim(0);
                }
                self.trimmed();
            });
        if spawned.is_err() {
            self.trimmed();
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub fn trim(&'static self) {
        self.trimmed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trim_per_bursts_worth_of_events() {
        let a = AfterBurst::new();
        for _ in 0..3 {
            assert!((0..BURST - 1).all(|_| !a.handled()));
            assert!(a.handled());
            // While that trim waits for the pause, the burst goes on: no second trim.
            assert!((0..3 * BURST).all(|_| !a.handled()));
            a.trimmed();
        }
    }
}
