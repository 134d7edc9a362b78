//! Where the refresh token lives between runs.
//!
//! The default is the OS keychain (`keychain`), scoped per cloud URL. When no keychain is
//! usable, the host's `secretsManager` (`host`) under the legacy key; a token found only
//! there is moved into the keychain. `memory` is for tests.

mod host;
mod keychain;
mod memory;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use host::{HostSecrets, HostStore, LEGACY_KEY};
pub use keychain::KeychainStore;
pub use memory::MemoryStore;

use crate::error::Result;

pub trait TokenStore: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<Option<String>>>;
    fn save<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<()>>;
    fn clear(&self) -> BoxFuture<'_, Result<()>>;
    /// For logs and `getStatus`-free diagnostics; never the token.
    fn describe(&self) -> String;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Keychain when usable, else the host's secrets manager, else memory.
    Auto,
    Keychain,
    Secrets,
    Memory,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StoreKind::Auto),
            "keychain" => Ok(StoreKind::Keychain),
            "secrets" => Ok(StoreKind::Secrets),
            "memory" => Ok(StoreKind::Memory),
            other => Err(format!("tokenStore must be auto, keychain, secrets or memory, got {other:?}")),
        }
    }
}

pub fn select(kind: StoreKind, base_url: &str, host: Option<Arc<dyn HostSecrets>>) -> Result<Arc<dyn TokenStore>> {
    use crate::error::Error;
    Ok(match kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(base_url)),
        StoreKind::Keychain => Arc::new(KeychainStore::new(base_url)),
        StoreKind::Secrets => Arc::new(HostStore::new(host.ok_or_else(|| {
            Error::InvalidConfig("tokenStore 'secrets' needs a secretsManager".into())
        })?)),
        StoreKind::Auto => Arc::new(AutoStore {
            keychain: KeychainStore::new(base_url),
            host: host.map(HostStore::new),
            memory: MemoryStore::new(base_url),
        }),
    })
}

/// Keychain first; the host's secrets manager (or, without one, memory) when the keychain
/// cannot be used on this machine.
struct AutoStore {
    keychain: KeychainStore,
    host: Option<HostStore>,
    memory: MemoryStore,
}

impl AutoStore {
    fn fallback(&self) -> &dyn TokenStore {
        match &self.host {
            Some(h) => h,
            None => &self.memory,
        }
    }
}

impl TokenStore for AutoStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move {
            if !self.keychain.usable().await {
                return self.fallback().load().await;
            }
            if let Some(t) = self.keychain.load().await? {
                return Ok(Some(t));
            }
            // A token left by the JavaScript client (or a run without a keychain): move it.
            let Some(host) = &self.host else { return Ok(None) };
            let Some(token) = host.load().await? else { return Ok(None) };
            if self.keychain.save(&token).await.is_ok() {
                if let Err(e) = host.clear().await {
                    tracing::warn!(error = %e, "moved the token into the keychain but could not remove it from the secrets manager");
                }
                tracing::info!("moved the refresh token from the secrets manager into the keychain");
            }
            Ok(Some(token))
        })
    }

    fn save<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.keychain.usable().await {
                self.keychain.save(token).await
            } else {
                self.fallback().save(token).await
            }
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // Clear everywhere a token could be, so logout leaves nothing behind.
            let keychain = if self.keychain.usable().await { self.keychain.clear().await } else { Ok(()) };
            let other = self.fallback().clear().await;
            keychain.and(other)
        })
    }

    fn describe(&self) -> String {
        format!("auto ({} / {})", self.keychain.describe(), self.fallback().describe())
    }
}
