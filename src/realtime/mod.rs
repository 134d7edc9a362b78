//! The realtime client: one Phoenix-channels socket to Supabase Realtime per linked
//! workspace, which delivers new messages, workspace changes, presence and broadcasts as
//! they happen.
//!
//! One task owns the socket and everything that changes with it (the channel, presence,
//! refs, the token in use, what was already delivered) and runs `loop { select! }` in
//! [`socket`]; [`Realtime`] is the handle the owner keeps, and observers read a data-free
//! [`Status`] and the presence members through `watch` channels. The module takes what it
//! needs (URLs, the token source, the REST client, the event sink) and knows nothing of the
//! types that compose it.

pub mod backoff;
pub mod catchup;
pub mod channel;
pub mod delivered;
pub mod frame;
pub mod lists;
pub mod presence;
pub mod reads;
pub mod rejoins;
pub mod row;
mod shown;
pub mod socket;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod poll_tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn polling_pauses_while_live() {
        let (tx, mut rx) = watch::channel(Status::Connecting);
        let start = Instant::now();
        poll_wait(Duration::from_secs(30), Some(&mut rx)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));

        tx.send_replace(Status::Live);
        let t = tokio::spawn(async move {
            poll_wait(Duration::from_secs(30), Some(&mut rx)).await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!t.is_finished(), "no polling while live");
        let lost = Instant::now();
        tx.send_replace(Status::WaitingToReconnect);
        let done = t.await.unwrap();
        assert_eq!(done - lost, Duration::from_secs(30));
    }
}
mod token;

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tokio::{
    runtime::Handle,
    sync::{mpsc, watch},
};
use uuid::Uuid;

pub use channel::Me;
pub use presence::Member;

use crate::{
    events::Events,
    rest::{Client, Credentials},
};

pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);
/// The largest frame or message accepted from the server. A change carries one row; a
/// message row bigger than this is left to the REST pull.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// What the socket task is doing, for observers (no data: the task owns that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    /// Socket open, the workspace channel not (yet) joined, or joined without its changes
    /// (the server refused the subscription).
    Connected,
    /// The workspace channel is joined: changes arrive live.
    Live,
    WaitingToReconnect,
    ShutDown,
}

impl Status {
    pub fn is_live(self) -> bool {
        self == Status::Live
    }
}

/// Something the socket task reports to the code that composes it.
pub trait Hooks: Send + Sync {
    /// The workspace row changed in the cloud (or a reconnect may have missed a change):
    /// the sync engine should reconcile it. The engine tells a remote change from the echo
    /// of this client's own push, since it owns the last synced base.
    fn workspace_changed(&self);
    /// A file of the workspace changed in the cloud (or a reconnect may have missed one):
    /// file sync, when on, should run.
    fn files_changed(&self);
}

pub struct Params {
    /// The cloud's `http(s)://` base URL.
    pub base_url: String,
    pub anon_key: String,
    pub credentials: Arc<dyn Credentials>,
    /// For catch-up pulls, presence polling and the REST broadcast.
    pub client: Arc<Client>,
    pub events: Arc<Events>,
    pub hooks: Arc<dyn Hooks>,
    pub workspace_id: Uuid,
    pub me: Me,
    pub heartbeat: Duration,
    pub presence_interval: Duration,
}

pub(crate) enum Command {
    Broadcast {
        event: String,
        payload: Value,
    },
    /// Close the socket (the members shown were dealt with by [`shown::Shown::close`]).
    Shutdown,
}

/// The handle of a running realtime client; dropping it closes the socket.
pub struct Realtime {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    members: watch::Receiver<Vec<Member>>,
    shown: Arc<shown::Shown>,
    workspace_id: Uuid,
}

impl Realtime {
    pub fn start(params: Params, rt: &Handle) -> Realtime {
        let (commands, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Status::Connecting);
        let workspace_id = params.workspace_id;
        let (shown, members) = shown::Shown::new(params.events.clone(), workspace_id);
        rt.spawn(socket::run(params, rx, status_tx, shown.clone()));
        Realtime {
            commands,
            status,
            members,
            shown,
            workspace_id,
        }
    }

    pub fn workspace_id(&self) -> Uuid {
        self.workspace_id
    }

    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Changes of the status, for the sync engine (it polls while the socket is not live).
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The members online now, one per user.
    pub fn members(&self) -> Vec<Member> {
        self.members.borrow().clone()
    }

    /// Closes the socket and withdraws the members shown: one last `cloud:presence:updated`
    /// with nobody, unless nobody was shown, emitted before this returns (so before any list
    /// of a socket started after it). For a close the host asked for (unlink, logout, a new
    /// working directory); dropping the handle closes it without that event, as `destroy()`
    /// and a restart of the same workspace's socket must.
    pub fn close(self) {
        self.shown.close(true);
    }

    /// Sends an ephemeral message to the other members of the workspace (over the socket
    /// when joined, else through the REST broadcast endpoint).
    pub fn broadcast(&self, event: String, payload: Value) {
        let _ = self.commands.send(Command::Broadcast { event, payload });
    }
}

/// The sync engine's wait between polls: `wait`, except that while the socket is live it
/// does not end (remote changes arrive over the socket and wake the engine), and when the
/// socket stops being live, polling resumes `wait` from then. Without a socket (`None`, or
/// its task gone), a plain sleep.
pub async fn poll_wait(wait: Duration, status: Option<&mut watch::Receiver<Status>>) {
    let Some(rx) = status else {
        return tokio::time::sleep(wait).await;
    };
    let mut deadline = tokio::time::Instant::now() + wait;
    loop {
        if rx.borrow_and_update().is_live() {
            if rx.changed().await.is_err() {
                return tokio::time::sleep_until(deadline).await;
            }
            deadline = tokio::time::Instant::now() + wait;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            r = rx.changed() => if r.is_err() {
                return tokio::time::sleep_until(deadline).await;
            },
        }
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        self.shown.close(false);
        let _ = self.commands.send(Command::Shutdown);
    }
}
