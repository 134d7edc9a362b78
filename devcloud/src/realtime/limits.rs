//! What Realtime allows one channel before it shuts it (`presence_handler.ex`, with the
//! tenant defaults of Supabase's hosted projects): presence calls per window and the size of
//! a tracked payload. Per-socket limits (channels, postgres_changes entries) are flags, see
//! `config.rs`.

use std::time::{Duration, Instant};

/// `presence` calls (track, untrack, anything with an `event`) per channel per window.
pub const PRESENCE_CALLS: u32 = 5;
pub const PRESENCE_WINDOW: Duration = Duration::from_secs(30);
/// The tenant's `max_payload_size_in_kb` (3000 by default): a tracked meta lives in memory
/// for as long as its channel, so it is held to the limit a broadcast is.
pub const MAX_TRACK_BYTES: usize = 3000 * 1024;

/// A fixed window as Realtime counts one: it opens at the first call after the previous one
/// ended, and within it at most `max` calls pass.
#[derive(Debug, Clone)]
pub struct RateWindow {
    max: u32,
    window: Duration,
    ends: Option<Instant>,
    calls: u32,
}

impl RateWindow {
    pub fn new(max: u32, window: Duration) -> RateWindow {
        RateWindow {
            max,
            window,
            ends: None,
            calls: 0,
        }
    }

    pub fn presence() -> RateWindow {
        RateWindow::new(PRESENCE_CALLS, PRESENCE_WINDOW)
    }

    /// Counts a call at `now`; false when it is one too many.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.ends {
            Some(ends) if now <= ends => {
                if self.calls >= self.max {
                    return false;
                }
                self.calls += 1;
                true
            }
            _ => {
                self.ends = Some(now + self.window);
                self.calls = 1;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_calls_per_window_then_a_new_window() {
        let start = Instant::now();
        let mut w = RateWindow::presence();
        for i in 0..5 {
            assert!(w.allow(start + Duration::from_secs(i)), "call {i}");
        }
        assert!(!w.allow(start + Duration::from_secs(29)));
        assert!(!w.allow(start + PRESENCE_WINDOW));
        // The window ends 30 s after its first call; the next call opens a new one.
        let later = start + PRESENCE_WINDOW + Duration::from_millis(1);
        for i in 0..5 {
            assert!(
                w.allow(later + Duration::from_secs(i)),
                "call {i} of the new window"
            );
        }
        assert!(!w.allow(later + Duration::from_secs(5)));
    }
}
