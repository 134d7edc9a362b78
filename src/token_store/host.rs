//! The host's `secretsManager` (legacy key `OBOTO_CLOUD_REFRESH_TOKEN`), reached through a
//! bridge the JS boundary provides.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::TokenStore;
use crate::error::Result;

pub const LEGACY_KEY: &str = "OBOTO_CLOUD_REFRESH_TOKEN";

/// What the host's secrets manager can do, from Rust.
pub trait HostSecrets: Send + Sync {
    fn get(&self, name: &str) -> BoxFuture<'_, Result<Option<String>>>;
    fn set<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>>;
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
}

pub struct HostStore {
    host: Arc<dyn HostSecrets>,
}

impl HostStore {
    pub fn new(host: Arc<dyn HostSecrets>) -> HostStore {
        HostStore { host }
    }
}

impl TokenStore for HostStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move { Ok(self.host.get(LEGACY_KEY).await?.filter(|t| !t.is_empty())) })
    }
    fn save<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<()>> {
        self.host.set(LEGACY_KEY, token)
    }
    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        self.host.delete(LEGACY_KEY)
    }
    fn describe(&self) -> String {
        "secretsManager".into()
    }
}
