//! `getStatus()`: exactly the documented keys, never a token.

use super::CloudSync;
use crate::{
    auth::{Snapshot, UserContext},
    sync::{EngineStatus, LinkedWorkspace, SyncState},
};

pub struct Status {
    pub auth: Snapshot,
    pub configured: bool,
    pub linked_workspace: Option<LinkedWorkspace>,
    pub sync_state: SyncState,
    /// `None` while logged out.
    pub engine: Option<EngineStatus>,
}

impl CloudSync {
    pub fn status(&self) -> Status {
        let cloud = self.cloud();
        Status {
            auth: match &cloud {
                Ok(c) => c.conn.auth.snapshot(),
                Err(_) => UserContext::default().snapshot(false),
            },
            configured: cloud.is_ok(),
            linked_workspace: self.sync.linked_workspace(),
            sync_state: self.sync.sync_state(),
            engine: self.sync.engine_status(),
        }
    }
}
