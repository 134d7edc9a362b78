//! The background task of a linked workspace: it runs a sync cycle (drain the outbox, then
//! reconcile the workspace state) right away, after each local change once `syncDebounceMs`
//! have passed without another, and otherwise every `syncInterval`. Failed cycles are
//! retried sooner, with capped exponential backoff.
//!
//! While the realtime socket is live the cloud is not polled (its changes arrive over the
//! socket); the working directory's files, when the link syncs them, are still looked at
//! every `syncInterval`, by a walk that costs no request, and a cycle runs when one changed.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::sync::{watch, Notify};

use super::Syncer;
use crate::{connection::Connection, realtime, rest::backoff::Backoff};

/// How long to wait after `failures` consecutive failed cycles (1 s, 2 s, 4 s, … capped at the
/// interval and at one minute). No jitter: one client retries one server, and tests and
/// users can tell when the next try comes.
pub fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let cap = interval.clamp(Duration::from_secs(1), Duration::from_secs(60));
    Backoff {
        base: Duration::from_secs(1),
        cap,
    }
    .ceiling(failures.saturating_sub(1))
}

/// When the engine runs a cycle.
pub struct Pace {
    pub interval: Duration,
    pub debounce: Duration,
    /// The realtime socket's status, when there is one: no polling while it is live.
    pub status: Option<watch::Receiver<realtime::Status>>,
}

pub async fn run(hub: Weak<Syncer>, conn: Arc<Connection>, wake: Arc<Notify>, mut pace: Pace) {
    let interval = pace.interval;
    // The first cycle runs at once; a failed one is retried on its backoff even while the
    // socket is live, since the socket cannot deliver what the cycle failed to send.
    let mut wait = Some(Duration::ZERO);
    // The last tree a local look started a cycle for (or found as synced).
    let mut seen = None;
    loop {
        let idle = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    let live = pace.status.clone();
                    tokio::select! {
                        _ = realtime::poll_wait(interval, pace.status.as_mut()) => {}
                        _ = local_edit(&hub, interval, live, &mut seen) => {}
                    }
                }
            }
        };
        tokio::select! {
            _ = idle => {}
            _ = wake.notified() => settle(&wake, pace.debounce).await,
        }
        let Some(hub) = hub.upgrade() else { return };
        if !conn.auth.is_logged_in() {
            // The session ended under us (rejected refresh, offline expiry): nothing to do
            // until the next login starts a new engine.
            hub.engine_exited();
            return;
        }
        let cycle = hub.cycle(&conn).await;
        let failures = hub.record_cycle(cycle.ok);
        wait = (!cycle.ok).then(|| retry_delay(failures, interval));
        if cycle.files_busy {
            // The tree the last look saw was not synced by this cycle: the next look must
            // not take it as handled, or, with the socket live, no cycle would come back to
            // it until it changed again.
            seen = None;
        }
    }
}

/// Returns once the working directory's files are not as their last sync left them, looked
/// at every `every` while the socket is live. Never without a socket, nor while it is not
/// live: the engine polls then, and each poll syncs the files anyway.
///
/// A tree is acted on once: one that a cycle could not make synced (a file that cannot be
/// read, say) starts no cycle again until it changes, or the idle workspace would send
/// requests every interval. A transfer that failed is no such case: it fails its cycle, and
/// the backoff tries again.
async fn local_edit(
    hub: &Weak<Syncer>,
    every: Duration,
    status: Option<watch::Receiver<realtime::Status>>,
    seen: &mut Option<u64>,
) {
    let Some(status) = status else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(every).await;
        if !status.borrow().is_live() {
            continue;
        }
        let Some(hub) = hub.upgrade() else { return };
        let Some(glance) = hub.files_glance().await else {
            continue;
        };
        let new = seen.replace(glance.fingerprint) != Some(glance.fingerprint);
        if new && !glance.as_cached {
            return;
        }
    }
}

/// The debounce: returns once `quiet` has passed without another notification.
async fn settle(wake: &Notify, quiet: Duration) {
    loop {
        tokio::select! {
            _ = wake.notified() => continue,
            _ = tokio::time::sleep(quiet) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let i = Duration::from_secs(30);
        let d: Vec<u64> = (1..=7).map(|f| retry_delay(f, i).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            retry_delay(50, Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retry_delay(3, Duration::from_millis(200)),
            Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_settles_once() {
        let wake = Arc::new(Notify::new());
        let w = wake.clone();
        let start = tokio::time::Instant::now();
        let burst = tokio::spawn(async move {
            for _ in 0..5 {
                w.notify_one();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        wake.notified().await;
        settle(&wake, Duration::from_millis(300)).await;
        burst.await.unwrap();
        // The last change came at 400 ms; the quiet period ends 300 ms later.
        assert_eq!(start.elapsed(), Duration::from_millis(700));
    }
}
