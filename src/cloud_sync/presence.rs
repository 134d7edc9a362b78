//! Who is online in the linked workspace, and ephemeral messages to them.

use serde_json::Value;

use super::CloudSync;
use crate::{error::Result, realtime::Member};

impl CloudSync {
    /// One entry per member online in the linked workspace; `[]` when not linked, logged
    /// out or destroyed (a sync call that never throws).
    pub fn presence(&self) -> Vec<Member> {
        if self.session().is_err() {
            return Vec::new();
        }
        self.sync.presence()
    }

    /// A no-op when not logged in or not linked; rejects only once destroyed.
    pub fn broadcast(&self, event: String, payload: Value) -> Result<()> {
        if self.signed_in()?.is_some() {
            self.sync.broadcast(event, payload);
        }
        Ok(())
    }
}
