//! What every feature shares once `initialize()` has run: the configuration, the session,
//! the authenticated client and the event sink. It holds no feature state; features take
//! it (or the parts they need) and own theirs.

use std::sync::Arc;

use crate::{
    auth::Auth,
    config::CloudConfig,
    error::Result,
    events::Events,
    rest::{Client, Credentials, Http},
    token_store::{self, HostSecrets},
};

pub struct Connection {
    pub config: CloudConfig,
    pub auth: Arc<Auth>,
    pub client: Arc<Client>,
    pub events: Arc<Events>,
}

impl Connection {
    pub fn open(
        config: CloudConfig,
        events: Arc<Events>,
        host: Option<Arc<dyn HostSecrets>>,
    ) -> Result<Connection> {
        let http = Arc::new(
            Http::new(&config.base_url, &config.anon_key, config.timeouts)?
                .with_max_response_bytes(config.max_response_bytes),
        );
        let store = token_store::select(config.token_store, &config.base_url, host)?;
        tracing::info!(url = %config.base_url, store = %store.describe(), "initialized");
        let auth = Auth::new(http.clone(), store, events.clone(), config.auto_refresh);
        let client = Arc::new(Client::new(http, auth.clone() as Arc<dyn Credentials>));
        Ok(Connection {
            config,
            auth,
            client,
            events,
        })
    }

    /// The logged-in user's id.
    pub fn user_id(&self) -> Option<String> {
        self.auth.context().user_id().map(String::from)
    }
}
