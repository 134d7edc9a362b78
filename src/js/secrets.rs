//! The host's `secretsManager` as a [`HostSecrets`]: three weak threadsafe functions the JS
//! layer builds from `get`/`set`/`delete`, each returning a promise.

use futures_util::future::BoxFuture;
use napi::{
    bindgen_prelude::{FnArgs, Promise},
    threadsafe_function::ThreadsafeFunction,
    Status,
};

use crate::{
    error::{Error, Result},
    token_store::HostSecrets,
};

pub type SecretGet = ThreadsafeFunction<String, Promise<Option<String>>, String, Status, false, true>;
pub type SecretSet =
    ThreadsafeFunction<FnArgs<(String, String)>, Promise<()>, FnArgs<(String, String)>, Status, false, true>;
pub type SecretDelete = ThreadsafeFunction<String, Promise<()>, String, Status, false, true>;

pub struct JsSecrets {
    pub get: SecretGet,
    pub set: SecretSet,
    pub delete: SecretDelete,
}

fn failed(op: &str, e: napi::Error) -> Error {
    // The host's message may echo what it was given; report only which operation failed.
    tracing::debug!(op, status = ?e.status, "secretsManager call failed");
    Error::TokenStore(format!("secretsManager.{op} failed"))
}

impl HostSecrets for JsSecrets {
    fn get(&self, name: &str) -> BoxFuture<'_, Result<Option<String>>> {
        let name = name.to_string();
        Box::pin(async move {
            let promise = self.get.call_async_catch(name).await.map_err(|e| failed("get", e))?;
            promise.await.map_err(|e| failed("get", e))
        })
    }

    fn set<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        let args = FnArgs::from((name.to_string(), value.to_string()));
        Box::pin(async move {
            let promise = self.set.call_async_catch(args).await.map_err(|e| failed("set", e))?;
            promise.await.map_err(|e| failed("set", e))
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        let name = name.to_string();
        Box::pin(async move {
            let promise = self.delete.call_async_catch(name).await.map_err(|e| failed("delete", e))?;
            promise.await.map_err(|e| failed("delete", e))
        })
    }
}
