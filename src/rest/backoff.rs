//! Jittered exponential backoff ("full jitter"): attempt n waits a random time in
//! `[0, min(cap, base·2ⁿ)]`, so many clients that failed together do not retry together.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const REQUEST: Backoff = Backoff { base: Duration::from_millis(200), cap: Duration::from_secs(2) };
    pub const REFRESH: Backoff = Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(30) };

    /// The ceiling of the wait before retry `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff::REQUEST;
        assert_eq!(b.ceiling(0), Duration::from_millis(200));
        assert_eq!(b.ceiling(1), Duration::from_millis(400));
        assert_eq!(b.ceiling(3), Duration::from_millis(1600));
        assert_eq!(b.ceiling(4), Duration::from_secs(2));
        assert_eq!(b.ceiling(60), Duration::from_secs(2));
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_vary() {
        let b = Backoff::REFRESH;
        let samples: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(samples.iter().all(|d| *d <= b.ceiling(3)));
        let first = samples[0];
        assert!(samples.iter().any(|d| *d != first), "jitter must vary");
    }
}
