//! Reconnect and rejoin timing. The steps are realtime-js's (`reconnectAfterMs`,
//! `rejoinAfterMs`), with ±20 % jitter so that clients dropped together by a server restart
//! do not all come back in the same instant.

use std::time::Duration;

use rand::Rng;

pub trait Backoff: Send + Sync {
    /// The wait before attempt `attempt` (1-based: the first retry is attempt 1).
    fn sleep_duration(&self, attempt: u32) -> Duration;
}

#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub steps_ms: &'static [u64],
    pub after_ms: u64,
    /// Fraction of the step the wait may vary by, either way.
    pub jitter: f64,
}

/// 1, 2, 5, 10 s, then 10 s.
pub const RECONNECT: Steps = Steps {
    steps_ms: &[1000, 2000, 5000, 10000],
    after_ms: 10000,
    jitter: 0.2,
};

/// 1, 2, 5 s, then 10 s.
pub const REJOIN: Steps = Steps {
    steps_ms: &[1000, 2000, 5000],
    after_ms: 10000,
    jitter: 0.2,
};

/// Retries of a failed catch-up pull: 1, 2, 5, 10, 30 s, then a minute. A failure that
/// persists (a page the server cannot serve) costs one pull a minute, not a stream of them.
pub const CATCH_UP: Steps = Steps {
    steps_ms: &[1000, 2000, 5000, 10000, 30000],
    after_ms: 60000,
    jitter: 0.2,
};

impl Steps {
    pub fn nominal(&self, attempt: u32) -> Duration {
        let i = attempt.max(1) as usize - 1;
        Duration::from_millis(self.steps_ms.get(i).copied().unwrap_or(self.after_ms))
    }
}

impl Backoff for Steps {
    fn sleep_duration(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt).as_secs_f64();
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 {
            rand::thread_rng().gen_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        Duration::from_secs_f64(nominal * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_realtime_js_steps() {
        let r: Vec<u64> = (1..=6)
            .map(|a| RECONNECT.nominal(a).as_millis() as u64)
            .collect();
        assert_eq!(r, vec![1000, 2000, 5000, 10000, 10000, 10000]);
        let j: Vec<u64> = (1..=5)
            .map(|a| REJOIN.nominal(a).as_millis() as u64)
            .collect();
        assert_eq!(j, vec![1000, 2000, 5000, 10000, 10000]);
        let c: Vec<u64> = (1..=7)
            .map(|a| CATCH_UP.nominal(a).as_millis() as u64)
            .collect();
        assert_eq!(c, vec![1000, 2000, 5000, 10000, 30000, 60000, 60000]);
        assert_eq!(RECONNECT.nominal(0), RECONNECT.nominal(1));
    }

    #[test]
    fn jitter_varies() {
        let d: Vec<Duration> = (0..100).map(|_| RECONNECT.sleep_duration(2)).collect();
        assert!(d.iter().any(|x| *x != d[0]));
    }

    proptest! {
        #[test]
        fn waits_stay_within_the_jitter(attempt in 0u32..1000) {
            for b in [RECONNECT, REJOIN] {
                let n = b.nominal(attempt).as_secs_f64();
                let d = b.sleep_duration(attempt).as_secs_f64();
                prop_assert!(d >= n * 0.8 - 1e-9 && d <= n * 1.2 + 1e-9, "{d} vs {n}");
                prop_assert!(d <= 12.0);
            }
        }
    }
}
