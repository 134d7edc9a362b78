//! The authenticated client behind `cloudSync.client` and every feature: it asks the session
//! for a valid access token before each call and, when the server still answers 401 because
//! that token expired, renews it once (shared with every concurrent caller) and replays once.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::Method;

use super::http::{Body, Call, Http, Reply};
use crate::error::{Error, HttpError, Result};

/// Where access tokens come from (the auth session). `None` means "not logged in": the
/// request goes out with the API key only.
pub trait Credentials: Send + Sync {
    /// A usable access token, refreshed first when it has (nearly) expired.
    fn access_token(&self) -> BoxFuture<'_, Result<Option<String>>>;
    /// The server rejected `rejected` as expired: renew it and return the new token.
    fn renew(&self, rejected: String) -> BoxFuture<'_, Result<Option<String>>>;
}

pub struct Client {
    http: Arc<Http>,
    credentials: Arc<dyn Credentials>,
}

/// A request as the facade and the features describe it.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Option<Body>,
    pub headers: Vec<(String, String)>,
    pub timeout: Option<std::time::Duration>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Request {
        Request {
            method,
            path: path.into(),
            body: None,
            headers: Vec::new(),
            timeout: None,
        }
    }
    pub fn json(mut self, body: serde_json::Value) -> Request {
        self.body = Some(Body::Json(body));
        self
    }
    pub fn timeout(mut self, timeout: std::time::Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// True when a 401 says the token's lifetime is over (PostgREST `PGRST303`, GoTrue `bad_jwt`
/// with "expired", Storage "jwt expired"), as opposed to "you may not do this".
fn is_expired_token(e: &HttpError) -> bool {
    e.status == 401
        && (matches!(
            e.code.as_deref(),
            Some("PGRST303") | Some("PGRST301") | Some("bad_jwt")
        ) || e.message.to_ascii_lowercase().contains("expired"))
}

impl Client {
    pub fn new(http: Arc<Http>, credentials: Arc<dyn Credentials>) -> Client {
        Client { http, credentials }
    }

    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    pub async fn send(&self, req: &Request) -> Result<Reply> {
        self.with_token(|t| async move { self.http.send(&call(req, t.as_deref())).await })
            .await
    }

    /// Like [`send`](Self::send) but returns the open response, for streamed bodies.
    pub async fn open(&self, req: &Request) -> Result<reqwest::Response> {
        self.with_token(|t| async move { self.http.open(&call(req, t.as_deref())).await })
            .await
    }

    /// Runs `attempt` with the current access token; when the server rejects that token as
    /// expired, renews it once (shared with every concurrent caller) and runs it again.
    pub async fn with_token<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let token = self.credentials.access_token().await?;
        match (attempt(token.clone()).await, token) {
            (Err(Error::Http(h)), Some(used)) if is_expired_token(&h) => {
                tracing::debug!(url = %h.url, "access token rejected as expired; renewing once");
                match self.credentials.renew(used).await? {
                    Some(fresh) => attempt(Some(fresh)).await,
                    None => Err(Error::Http(h)),
                }
            }
            (outcome, _) => outcome,
        }
    }
}

fn call<'a>(req: &'a Request, bearer: Option<&'a str>) -> Call<'a> {
    Call {
        method: req.method.clone(),
        path: &req.path,
        body: req.body.as_ref(),
        headers: &req.headers,
        bearer,
        timeout: req.timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(status: u16, code: Option<&str>, message: &str) -> HttpError {
        HttpError {
            status,
            method: "GET".into(),
            url: "u".into(),
            code: code.map(String::from),
            message: message.into(),
            retry_after: None,
        }
    }

    #[test]
    fn only_expiry_401s_trigger_a_refresh() {
        assert!(is_expired_token(&e(401, Some("PGRST303"), "JWT expired")));
        assert!(is_expired_token(&e(401, None, "jwt expired")));
        assert!(!is_expired_token(&e(
            401,
            Some("42501"),
            "permission denied for table workspaces"
        )));
        assert!(!is_expired_token(&e(
            403,
            Some("bad_jwt"),
            "token is expired"
        )));
        assert!(!is_expired_token(&e(404, Some("PGRST205"), "not found")));
    }
}
