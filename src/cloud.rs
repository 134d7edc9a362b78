//! One `initialize()`d cloud: the shared connection and the features that keep state for
//! it. It only composes them; none of them knows this type.

use std::sync::Arc;

use crate::{
    agents::Agents,
    ai::Ai,
    config::CloudConfig,
    connection::Connection,
    error::{Error, Result},
    events::Events,
    token_store::HostSecrets,
};

pub struct Cloud {
    pub conn: Arc<Connection>,
    pub agents: Agents,
    pub ai: Ai,
}

impl Cloud {
    pub fn open(
        config: CloudConfig,
        events: Arc<Events>,
        host: Option<Arc<dyn HostSecrets>>,
    ) -> Result<Cloud> {
        let conn = Arc::new(Connection::open(config, events, host)?);
        Ok(Cloud {
            agents: Agents::new(conn.clone()),
            ai: Ai::new(conn.clone()),
            conn,
        })
    }

    /// What belongs to the session goes with it: the agent cache and the open streams
    /// (failed with `reason`).
    pub fn end_session(&self, reason: impl Fn() -> Error) {
        self.agents.clear_cache();
        self.ai.close_streams(reason);
    }

    pub fn is_logged_in(&self) -> bool {
        self.conn.auth.is_logged_in()
    }
}
