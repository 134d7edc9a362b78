//! The OS keychain through `keyring`: macOS Keychain, Windows Credential Manager, and on
//! Linux the Secret Service when a session bus is there, else the kernel's keyutils store,
//! which needs no D-Bus and so works on headless machines and servers.

use futures_util::future::BoxFuture;
use keyring::Entry;
use tokio::sync::OnceCell;

use super::TokenStore;
use crate::error::{Error, Result};

const SERVICE: &str = "oboto-cloud";

pub struct KeychainStore {
    /// The entry's account: one refresh token per cloud URL.
    account: String,
    usable: OnceCell<bool>,
}

impl KeychainStore {
    pub fn new(base_url: &str) -> KeychainStore {
        KeychainStore { account: format!("refresh-token@{base_url}"), usable: OnceCell::new() }
    }

    /// Whether this machine has a keychain we can read, probed once.
    pub async fn usable(&self) -> bool {
        *self
            .usable
            .get_or_init(|| async {
                match self.run(|e| e.get_password()).await {
                    Ok(_) | Err(keyring::Error::NoEntry) => true,
                    Err(e) => {
                        tracing::info!(error = %e, "no usable OS keychain");
                        false
                    }
                }
            })
            .await
    }

    /// keyring calls block (D-Bus, syscalls), so they run off the async threads.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Entry) -> keyring::Result<T> + Send + 'static,
    ) -> keyring::Result<T> {
        let account = self.account.clone();
        tokio::task::spawn_blocking(move || f(&entry(&account)?))
            .await
            .unwrap_or_else(|e| Err(keyring::Error::PlatformFailure(Box::new(e))))
    }
}

#[cfg(target_os = "linux")]
fn entry(account: &str) -> keyring::Result<Entry> {
    use keyring::{keyutils::KeyutilsCredential, secret_service::SsCredential};
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        if let Ok(cred) = SsCredential::new_with_target(None, SERVICE, account) {
            // Probe without side effects: a missing entry still proves the service answers.
            let entry = Entry::new_with_credential(Box::new(cred));
            match entry.get_password() {
                Ok(_) | Err(keyring::Error::NoEntry) => return Ok(entry),
                Err(_) => {}
            }
        }
    }
    Ok(Entry::new_with_credential(Box::new(KeyutilsCredential::new_with_target(None, SERVICE, account)?)))
}

#[cfg(not(target_os = "linux"))]
fn entry(account: &str) -> keyring::Result<Entry> {
    Entry::new(SERVICE, account)
}

fn store_error(e: keyring::Error) -> Error {
    // keyring errors never contain the secret itself.
    Error::TokenStore(format!("OS keychain: {e}"))
}

impl TokenStore for KeychainStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move {
            match self.run(|e| e.get_password()).await {
                Ok(t) if !t.is_empty() => Ok(Some(t)),
                Ok(_) | Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(store_error(e)),
            }
        })
    }
    fn save<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<()>> {
        let token = token.to_string();
        Box::pin(async move { self.run(move |e| e.set_password(&token)).await.map_err(store_error) })
    }
    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match self.run(|e| e.delete_credential()).await {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(store_error(e)),
            }
        })
    }
    fn describe(&self) -> String {
        "OS keychain".into()
    }
}
