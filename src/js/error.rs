//! `crate::Error` → JS `Error`, in one place: `message`, a stable `code`, and for HTTP
//! failures `status` and `url`.

use std::{future::Future, sync::Arc};

use napi::{
    bindgen_prelude::{JsValue, PromiseRaw, ToNapiValue},
    Env, Status,
};

use crate::{cloud_sync::CloudSync, error::Error};

pub fn to_js(env: &Env, e: Error) -> napi::Error {
    let build = || -> napi::Result<napi::Error> {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, e.to_string()))?;
        obj.set("code", e.code())?;
        if let Some(status) = e.status() {
            obj.set("status", status)?;
        }
        if let Some(url) = e.url() {
            obj.set("url", url)?;
        }
        if let Some(secs) = e.retry_after() {
            obj.set("retryAfter", secs as u32)?;
        }
        Ok(napi::Error::from(obj.to_unknown()))
    };
    build().unwrap_or_else(|_| napi::Error::new(Status::GenericFailure, e.to_string()))
}

/// Runs a core call on the shared runtime and settles a JS promise with its outcome; a
/// `destroy()` while it is in flight rejects it with `DESTROYED` at once (see
/// [`CloudSync::until_destroyed`]).
pub fn spawn<'env, T, F>(
    env: &'env Env,
    core: &Arc<CloudSync>,
    fut: F,
) -> napi::Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = crate::Result<T>> + Send + 'static,
{
    let core = core.clone();
    settle(env, async move { core.until_destroyed(fut).await })
}

/// Settles a JS promise with a future's outcome, without the race against `destroy()`.
pub fn settle<'env, T, F>(env: &'env Env, fut: F) -> napi::Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = crate::Result<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, outcome| {
        outcome.map_err(|e| to_js(env, e))
    })
}
