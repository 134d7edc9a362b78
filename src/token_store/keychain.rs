//! The OS keychain: macOS Keychain, Windows Credential Manager and, on Linux, the Secret
//! Service when a session bus answers, else the kernel keyring, which needs no D-Bus and so
//! works on headless machines and servers.
//!
//! On Linux the kernel store is the *user* keyring, not `keyring`'s keyutils store: that one
//! links keys into the caller's session keyring, and a process started without one (a
//! service, a child of a test runner) gets a fresh anonymous session keyring whose keys
//! the next process cannot find. The user keyring is shared by every process of the user
//! and lasts until reboot; the key is readable only by that user.

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::TokenStore;
use crate::error::{Error, Result};

const SERVICE: &str = "oboto-cloud";

#[derive(Clone)]
enum Vault {
    /// Through the `keyring` crate.
    Os(String),
    #[cfg(target_os = "linux")]
    Kernel(String),
}

/// A keychain read or write failed; `Missing` is the normal "nothing stored".
enum VaultError {
    Missing,
    Failed(String),
}

impl From<keyring::Error> for VaultError {
    fn from(e: keyring::Error) -> VaultError {
        match e {
            keyring::Error::NoEntry => VaultError::Missing,
            // keyring errors never contain the secret itself.
            other => VaultError::Failed(other.to_string()),
        }
    }
}

impl Vault {
    /// The backend for this machine: the platform keychain, or on Linux without a working
    /// Secret Service the kernel keyring.
    fn pick(account: &str) -> Vault {
        #[cfg(target_os = "linux")]
        {
            if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
                let os = Vault::Os(account.to_string());
                if matches!(os.get(), Ok(_) | Err(VaultError::Missing)) {
                    return os;
                }
            }
            Vault::Kernel(format!("{SERVICE}:{account}"))
        }
        #[cfg(not(target_os = "linux"))]
        Vault::Os(account.to_string())
    }

    fn name(&self) -> &'static str {
        match self {
            Vault::Os(_) => "OS keychain",
            #[cfg(target_os = "linux")]
            Vault::Kernel(_) => "kernel keyring",
        }
    }

    fn get(&self) -> Result<String, VaultError> {
        match self {
            Vault::Os(account) => Ok(os_entry(account)?.get_password()?),
            #[cfg(target_os = "linux")]
            Vault::Kernel(desc) => kernel::get(desc),
        }
    }

    fn set(&self, secret: &str) -> Result<(), VaultError> {
        match self {
            Vault::Os(account) => Ok(os_entry(account)?.set_password(secret)?),
            #[cfg(target_os = "linux")]
            Vault::Kernel(desc) => kernel::set(desc, secret),
        }
    }

    fn delete(&self) -> Result<(), VaultError> {
        match self {
            Vault::Os(account) => Ok(os_entry(account)?.delete_credential()?),
            #[cfg(target_os = "linux")]
            Vault::Kernel(desc) => kernel::delete(desc),
        }
    }
}

#[cfg(target_os = "linux")]
fn os_entry(account: &str) -> keyring::Result<keyring::Entry> {
    let cred = keyring::secret_service::SsCredential::new_with_target(None, SERVICE, account)?;
    Ok(keyring::Entry::new_with_credential(Box::new(cred)))
}

#[cfg(not(target_os = "linux"))]
fn os_entry(account: &str) -> keyring::Result<keyring::Entry> {
    keyring::Entry::new(SERVICE, account)
}

#[cfg(target_os = "linux")]
mod kernel {
    use linux_keyutils::{KeyError, KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, Permission};

    use super::VaultError;

    fn failed(e: KeyError) -> VaultError {
        match e {
            // An invalidated key lingers until the kernel's garbage collector runs, and a
            // search in that window finds it revoked: it is gone as far as we are concerned
            // (seen as a load right after a logout failing with KeyRevoked).
            KeyError::KeyDoesNotExist | KeyError::KeyRevoked | KeyError::KeyExpired => {
                VaultError::Missing
            }
            other => VaultError::Failed(format!("kernel keyring: {other:?}")),
        }
    }

    fn ring() -> Result<KeyRing, VaultError> {
        KeyRing::from_special_id(KeyRingIdentifier::User, false).map_err(failed)
    }

    pub fn get(desc: &str) -> Result<String, VaultError> {
        let bytes = ring()?
            .search(desc)
            .map_err(failed)?
            .read_to_vec()
            .map_err(failed)?;
        String::from_utf8(bytes).map_err(|_| VaultError::Failed("kernel keyring: not UTF-8".into()))
    }

    pub fn set(desc: &str, secret: &str) -> Result<(), VaultError> {
        let key = ring()?.add_key(desc, secret).map_err(failed)?;
        // Any process of this user may read it (the next Oboto start); nobody else may.
        let perms = KeyPermissionsBuilder::builder()
            .posessor(Permission::ALL)
            .user(Permission::ALL)
            .build();
        key.set_perms(perms).map_err(failed)
    }

    pub fn delete(desc: &str) -> Result<(), VaultError> {
        ring()?
            .search(desc)
            .map_err(failed)?
            .invalidate()
            .map_err(failed)
    }
}

pub struct KeychainStore {
    /// One refresh token per cloud URL.
    account: String,
    vault: OnceCell<Option<Vault>>,
}

impl KeychainStore {
    pub fn new(base_url: &str) -> KeychainStore {
        KeychainStore {
            account: format!("refresh-token@{base_url}"),
            vault: OnceCell::new(),
        }
    }

    /// The usable backend, probed once; `None` when this machine has no keychain.
    async fn vault(&self) -> Option<Vault> {
        let account = self.account.clone();
        self.vault
            .get_or_init(|| async move {
                let probe = tokio::task::spawn_blocking(move || {
                    let vault = Vault::pick(&account);
                    match vault.get() {
                        Ok(_) | Err(VaultError::Missing) => Ok(vault),
                        Err(VaultError::Failed(e)) => Err(e),
                    }
                })
                .await;
                match probe {
                    Ok(Ok(vault)) => Some(vault),
                    Ok(Err(e)) => {
                        tracing::info!(error = %e, "no usable OS keychain");
                        None
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "keychain probe failed");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    pub async fn usable(&self) -> bool {
        self.vault().await.is_some()
    }

    /// Vault calls block (D-Bus, syscalls), so they run off the async threads.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Vault) -> Result<T, VaultError> + Send + 'static,
    ) -> Result<T, VaultError> {
        let vault = self
            .vault()
            .await
            .ok_or_else(|| VaultError::Failed("no usable OS keychain".into()))?;
        tokio::task::spawn_blocking(move || f(&vault))
            .await
            .unwrap_or_else(|e| Err(VaultError::Failed(e.to_string())))
    }
}

fn store_error(e: VaultError) -> Error {
    match e {
        VaultError::Missing => Error::TokenStore("OS keychain: no entry".into()),
        VaultError::Failed(m) => Error::TokenStore(m),
    }
}

impl TokenStore for KeychainStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move {
            match self.run(|v| v.get()).await {
                Ok(t) if !t.is_empty() => Ok(Some(t)),
                Ok(_) | Err(VaultError::Missing) => Ok(None),
                Err(e) => Err(store_error(e)),
            }
        })
    }

    fn save<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<()>> {
        let token = token.to_string();
        Box::pin(async move { self.run(move |v| v.set(&token)).await.map_err(store_error) })
    }

    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match self.run(|v| v.delete()).await {
                Ok(()) | Err(VaultError::Missing) => Ok(()),
                Err(e) => Err(store_error(e)),
            }
        })
    }

    fn describe(&self) -> String {
        match self.vault.get() {
            Some(Some(v)) => v.name().into(),
            Some(None) => "no keychain".into(),
            None => "OS keychain".into(),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_per_cloud_when_a_keychain_exists() {
        let a = KeychainStore::new("http://unit-test-a.invalid");
        if !a.usable().await {
            // A machine without any keychain; the fallback path is covered by the node tests.
            return;
        }
        let b = KeychainStore::new("http://unit-test-b.invalid");
        a.save("token-a").await.unwrap();
        assert_eq!(a.load().await.unwrap().as_deref(), Some("token-a"));
        assert_eq!(b.load().await.unwrap(), None, "scoped per cloud URL");
        a.save("token-a2").await.unwrap();
        assert_eq!(
            KeychainStore::new("http://unit-test-a.invalid")
                .load()
                .await
                .unwrap()
                .as_deref(),
            Some("token-a2")
        );
        a.clear().await.unwrap();
        assert_eq!(a.load().await.unwrap(), None);
        a.clear().await.unwrap();
    }
}
