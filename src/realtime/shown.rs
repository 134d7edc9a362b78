//! The member list the host was shown, shared by the socket task, which publishes each list
//! it learns, and the handle, which withdraws the list when the host closes the socket. One
//! lock orders the two: once the handle has closed it the task publishes nothing more, so a
//! withdrawal is the last list of its socket the host sees; and it is emitted before the
//! close returns, so before any list of a socket started after it.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use super::presence::Member;
use crate::events::{Event, Events};

pub struct Shown {
    /// Whether the handle has closed the socket; the lock also orders the emits.
    closed: Mutex<bool>,
    members: watch::Sender<Vec<Member>>,
    events: Arc<Events>,
    workspace_id: Uuid,
}

impl Shown {
    pub fn new(
        events: Arc<Events>,
        workspace_id: Uuid,
    ) -> (Arc<Shown>, watch::Receiver<Vec<Member>>) {
        let (members, rx) = watch::channel(Vec::new());
        let shown = Shown {
            closed: Mutex::new(false),
            members,
            events,
            workspace_id,
        };
        (Arc::new(shown), rx)
    }

    /// Shows `members`, unless they are what is shown or the socket was closed.
    pub fn publish(&self, members: Vec<Member>) {
        let closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if *closed || *self.members.borrow() == members {
            return;
        }
        self.members.send_replace(members.clone());
        self.emit(members);
    }

    /// Nobody is shown from now on, and no list is published any more. `withdraw`: the
    /// host is told so with one last list with nobody, unless nobody was shown.
    pub fn close(&self, withdraw: bool) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::replace(&mut *closed, true) {
            return;
        }
        let was_shown = !self.members.send_replace(Vec::new()).is_empty();
        if withdraw && was_shown {
            self.emit(Vec::new());
        }
    }

    fn emit(&self, members: Vec<Member>) {
        self.events.emit(Event::PresenceUpdated {
            workspace_id: self.workspace_id.to_string(),
            members: json!(members),
        });
    }
}
