//! A process-wide in-memory store, keyed by cloud URL: two `CloudSync` instances in one test
//! process see the same token, as they would with a keychain.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use futures_util::future::BoxFuture;

use super::TokenStore;
use crate::error::Result;

fn tokens() -> &'static Mutex<HashMap<String, String>> {
    static TOKENS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

pub struct MemoryStore {
    key: String,
}

impl MemoryStore {
    pub fn new(base_url: &str) -> MemoryStore {
        MemoryStore { key: base_url.to_string() }
    }
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, String>) -> R) -> R {
        f(&mut tokens().lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl TokenStore for MemoryStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<String>>> {
        let t = self.with(|m| m.get(&self.key).cloned());
        Box::pin(async move { Ok(t) })
    }
    fn save<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<()>> {
        self.with(|m| m.insert(self.key.clone(), token.to_string()));
        Box::pin(async { Ok(()) })
    }
    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|m| m.remove(&self.key));
        Box::pin(async { Ok(()) })
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scoped_per_cloud() {
        let a = MemoryStore::new("http://a.test");
        let b = MemoryStore::new("http://b.test");
        a.save("ta").await.unwrap();
        assert_eq!(a.load().await.unwrap().as_deref(), Some("ta"));
        assert_eq!(b.load().await.unwrap(), None);
        assert_eq!(MemoryStore::new("http://a.test").load().await.unwrap().as_deref(), Some("ta"));
        a.clear().await.unwrap();
        assert_eq!(a.load().await.unwrap(), None);
    }
}
