//! `cloudSync.client`: the host's own REST calls, forwarded to the core.

use std::{collections::HashMap, sync::Arc};

use napi::{
    bindgen_prelude::{PromiseRaw, Unknown},
    Env,
};
use napi_derive::napi;
use reqwest::Method;
use serde_json::Value;

use super::{arg, error::spawn, types::RequestOptions};
use crate::{
    cloud_sync::CloudSync,
    error::Error,
    rest::{Body, Request},
};

/// `cloudSync.client`: authenticated calls against `baseUrl`. JSON in and out, `null` for
/// 204, text for other content types; rejects with an `Error` carrying `status`, `url` and
/// `code` on non-2xx.
#[napi]
pub struct CloudClient {
    core: Arc<CloudSync>,
}

/// A REST call's arguments, converted (or why not) before the promise exists.
struct Call {
    path: String,
    body: Option<Value>,
    headers: Option<HashMap<String, String>>,
}

impl CloudClient {
    pub fn new(core: Arc<CloudSync>) -> CloudClient {
        CloudClient { core }
    }

    fn send<'e>(
        &self,
        env: &'e Env,
        method: Method,
        call: crate::Result<Call>,
        prefer: Option<&'static str>,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let call = call?;
            let req = Request {
                method,
                path: call.path,
                body: call.body.map(Body::Json),
                headers: call.headers.unwrap_or_default().into_iter().collect(),
                timeout: None,
            };
            core.rest(req, prefer).await
        })
    }
}

fn call(path: Unknown, body: Option<Unknown>, headers: Unknown) -> crate::Result<Call> {
    Ok(Call {
        path: arg::string("path", path)?,
        body: match body {
            Some(b) => arg::opt_json("body", b)?,
            None => None,
        },
        headers: arg::headers("headers", headers)?,
    })
}

fn method_of(name: Option<&str>) -> crate::Result<Method> {
    match name.map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => Ok(Method::GET),
        Some("POST") => Ok(Method::POST),
        Some("PATCH") => Ok(Method::PATCH),
        Some("PUT") => Ok(Method::PUT),
        Some("DELETE") => Ok(Method::DELETE),
        Some("HEAD") => Ok(Method::HEAD),
        Some(other) => Err(Error::InvalidArgument(format!(
            "Unsupported method {other:?}"
        ))),
    }
}

#[napi]
impl CloudClient {
    #[napi(
        ts_args_type = "path: string, headers?: Record<string, string>",
        ts_return_type = "Promise<unknown>"
    )]
    pub fn get<'e>(
        &self,
        env: &'e Env,
        path: Unknown,
        headers: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        self.send(env, Method::GET, call(path, None, headers), None)
    }

    #[napi(
        ts_args_type = "path: string, body?: unknown, headers?: Record<string, string>",
        ts_return_type = "Promise<unknown>"
    )]
    pub fn post<'e>(
        &self,
        env: &'e Env,
        path: Unknown,
        body: Unknown,
        headers: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        self.send(env, Method::POST, call(path, Some(body), headers), None)
    }

    /// Adds `Prefer: return=representation` unless the caller set `Prefer`.
    #[napi(
        ts_args_type = "path: string, body?: unknown, headers?: Record<string, string>",
        ts_return_type = "Promise<unknown>"
    )]
    pub fn patch<'e>(
        &self,
        env: &'e Env,
        path: Unknown,
        body: Unknown,
        headers: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let call = call(path, Some(body), headers);
        self.send(env, Method::PATCH, call, Some("return=representation"))
    }

    #[napi(
        ts_args_type = "path: string, headers?: Record<string, string>",
        ts_return_type = "Promise<unknown>"
    )]
    pub fn delete<'e>(
        &self,
        env: &'e Env,
        path: Unknown,
        headers: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        self.send(env, Method::DELETE, call(path, None, headers), None)
    }

    #[napi(
        ts_args_type = "path: string, options?: RequestOptions | null",
        ts_return_type = "Promise<unknown>"
    )]
    pub fn request<'e>(
        &self,
        env: &'e Env,
        path: Unknown,
        options: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let parsed = (|| {
            let path = arg::string("path", path)?;
            let options = arg::opt_typed::<RequestOptions>("options", options)?;
            let RequestOptions {
                method,
                body,
                headers,
            } = options.unwrap_or(RequestOptions {
                method: None,
                body: None,
                headers: None,
            });
            Ok((
                method_of(method.as_deref())?,
                Call {
                    path,
                    body,
                    headers,
                },
            ))
        })();
        let (method, call) = match parsed {
            Ok((m, c)) => (m, Ok(c)),
            Err(e) => (Method::GET, Err(e)),
        };
        self.send(env, method, call, None)
    }
}
