//! Sync status per data type, and the one overall `syncState` derived from them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncState {
    #[default]
    Idle,
    Syncing,
    Synced,
    Error,
    Conflict,
    Offline,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Idle => "idle",
            SyncState::Syncing => "syncing",
            SyncState::Synced => "synced",
            SyncState::Error => "error",
            SyncState::Conflict => "conflict",
            SyncState::Offline => "offline",
        }
    }

    /// Which state the overall status shows when types disagree: what needs the user's
    /// attention first (no connection, then failures, then conflicts), then activity.
    fn rank(self) -> u8 {
        match self {
            SyncState::Offline => 5,
            SyncState::Error => 4,
            SyncState::Conflict => 3,
            SyncState::Syncing => 2,
            SyncState::Synced => 1,
            SyncState::Idle => 0,
        }
    }
}

/// The data types the engine syncs, each with its own status and concurrency guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Workspace,
    Conversations,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workspace => "workspace",
            Kind::Conversations => "conversations",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TypeStatus {
    pub state: SyncState,
    pub last_sync_at: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Board {
    pub running: bool,
    pub workspace: TypeStatus,
    pub conversations: TypeStatus,
    pub outbox_pending: usize,
    /// Consecutive failed engine cycles (drives the backoff).
    pub failures: u32,
    /// Set when the link file is unreadable: overall state `error` until re-linked.
    pub link_error: Option<String>,
}

impl Board {
    pub fn get_mut(&mut self, kind: Kind) -> &mut TypeStatus {
        match kind {
            Kind::Workspace => &mut self.workspace,
            Kind::Conversations => &mut self.conversations,
        }
    }

    pub fn overall(&self) -> SyncState {
        let types = [self.workspace.state, self.conversations.state];
        let worst = types
            .into_iter()
            .max_by_key(|s| s.rank())
            .unwrap_or_default();
        if self.link_error.is_some() && worst.rank() < SyncState::Error.rank() {
            return SyncState::Error;
        }
        worst
    }

    /// The error shown with the overall state, if any.
    pub fn overall_error(&self) -> Option<String> {
        let s = self.overall();
        [&self.workspace, &self.conversations]
            .into_iter()
            .find(|t| t.state == s && t.error.is_some())
            .and_then(|t| t.error.clone())
            .or_else(|| self.link_error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_state_shows_what_matters_most() {
        let mut b = Board::default();
        assert_eq!(b.overall(), SyncState::Idle);
        b.workspace.state = SyncState::Synced;
        assert_eq!(b.overall(), SyncState::Synced);
        b.conversations.state = SyncState::Syncing;
        assert_eq!(b.overall(), SyncState::Syncing);
        b.workspace.state = SyncState::Conflict;
        assert_eq!(b.overall(), SyncState::Conflict);
        b.conversations.state = SyncState::Offline;
        b.conversations.error = Some("down".into());
        assert_eq!(b.overall(), SyncState::Offline);
        assert_eq!(b.overall_error().as_deref(), Some("down"));
        let mut c = Board {
            link_error: Some("corrupt".into()),
            ..Board::default()
        };
        assert_eq!(c.overall(), SyncState::Error);
        c.workspace.state = SyncState::Offline;
        assert_eq!(c.overall(), SyncState::Offline);
    }
}
