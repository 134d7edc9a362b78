//! The transport every feature uses: one pooled keep-alive `reqwest::Client` bound to the
//! cloud's base URL, the `apikey` header, timeouts, retries for reads, and the mapping of
//! non-2xx answers to [`HttpError`] with the server's own error code.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER},
    Method, StatusCode,
};
use serde_json::Value;

use super::backoff::Backoff;
use crate::error::{Error, HttpError, Result};

/// Reads are retried this many times after the first attempt.
pub const MAX_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

pub enum Body {
    Json(Value),
    Bytes { data: Bytes, content_type: String },
}

/// One request, described before it is sent so that it can be sent again.
pub struct Call<'a> {
    pub method: Method,
    /// Starts with `/`; resolved against the base URL so that a token never leaves the cloud.
    pub path: &'a str,
    pub body: Option<&'a Body>,
    pub headers: &'a [(String, String)],
    pub bearer: Option<&'a str>,
    /// Replaces the client's request timeout for this call (AI calls wait longer).
    pub timeout: Option<Duration>,
}

/// A 2xx answer. `body` is `null` for 204 or an empty body, the parsed JSON for JSON content
/// types, and a string otherwise.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

pub struct Http {
    client: reqwest::Client,
    base_url: String,
    apikey: HeaderValue,
}

impl Http {
    pub fn new(base_url: &str, anon_key: &str, timeouts: Timeouts) -> Result<Http> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("oboto-cloud/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidConfig(format!("cannot create the HTTP client: {e}")))?;
        Ok(Http {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            apikey: secret_header(anon_key)?,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn url(&self, path: &str) -> Result<String> {
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(Error::InvalidArgument(format!(
                "Request path must start with a single '/', got {:?}",
                path.chars().take(60).collect::<String>()
            )));
        }
        Ok(format!("{}{}", self.base_url, path))
    }

    /// Sends `call`, retrying reads on connection failures and 502/503/504.
    pub async fn send(&self, call: &Call<'_>) -> Result<Reply> {
        let url = self.url(call.path)?;
        let idempotent = call.method == Method::GET || call.method == Method::HEAD;
        let mut attempt = 0;
        loop {
            let outcome = self.request(call, &url)?.send().await;
            let retry_after = match &outcome {
                Ok(resp) if idempotent && is_transient(resp.status()) => {
                    Some(retry_after(resp.headers()))
                }
                Err(e) if idempotent && is_retryable(e) => Some(None),
                _ => None,
            };
            match retry_after {
                Some(hint) if attempt < MAX_RETRIES => {
                    let wait = hint
                        .unwrap_or_else(|| Backoff::REQUEST.delay(attempt))
                        .min(Backoff::REQUEST.cap);
                    tracing::debug!(method = %call.method, path = call.path, attempt, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => {
                    let resp = outcome.map_err(|e| network_error(&url, e))?;
                    return read_reply(&call.method, &url, resp).await;
                }
            }
        }
    }

    /// Sends `call` once and hands back the open response (for streams), or the error.
    pub async fn open(&self, call: &Call<'_>) -> Result<reqwest::Response> {
        let url = self.url(call.path)?;
        let resp = self
            .request(call, &url)?
            .send()
            .await
            .map_err(|e| network_error(&url, e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(read_reply(&call.method, &url, resp)
            .await
            .err()
            .unwrap_or_else(|| Error::InvalidResponse {
                url: url.clone(),
                status: 0,
                reason: "unexpected status".into(),
            }))
    }

    /// The request for `call` with the API key, bearer and headers set, for a caller that
    /// attaches its own body (streamed file transfers, `rest/transfer.rs`).
    pub fn builder(&self, call: &Call<'_>) -> Result<reqwest::RequestBuilder> {
        self.request(call, &self.url(call.path)?)
    }

    fn request(&self, call: &Call<'_>, url: &str) -> Result<reqwest::RequestBuilder> {
        let mut req = self
            .client
            .request(call.method.clone(), url)
            .header("apikey", self.apikey.clone());
        if let Some(token) = call.bearer {
            req = req.header(AUTHORIZATION, secret_header(&format!("Bearer {token}"))?);
        }
        if let Some(t) = call.timeout {
            req = req.timeout(t);
        }
        for (name, value) in call.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::InvalidArgument(format!("Invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Error::InvalidArgument(format!("Invalid value for header {name}")))?;
            req = req.header(name, value);
        }
        Ok(match call.body {
            Some(Body::Json(v)) => req.json(v),
            Some(Body::Bytes { data, content_type }) => req
                .header(CONTENT_TYPE, content_type.as_str())
                .body(data.clone()),
            None => req,
        })
    }
}

/// Header values that carry credentials are marked sensitive so no debug output shows them.
fn secret_header(value: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::InvalidConfig("the API key or token has invalid characters".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// Connection failures are retried; timeouts are not, since they already used the caller's
/// whole time budget.
fn is_retryable(e: &reqwest::Error) -> bool {
    e.is_connect() && !e.is_timeout()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

fn network_error(url: &str, e: reqwest::Error) -> Error {
    let timeout = e.is_timeout();
    let reason = if timeout {
        "the request timed out".to_string()
    } else if e.is_connect() {
        format!("connection failed ({})", root_cause(&e))
    } else {
        root_cause(&e)
    };
    Error::Network {
        url: strip_query(url),
        reason,
        timeout,
    }
}

/// The innermost cause, which names the real problem ("Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

async fn read_reply(method: &Method, url: &str, resp: reqwest::Response) -> Result<Reply> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(|e| network_error(url, e))?;
    if !status.is_success() {
        return Err(Error::Http(Box::new(http_error(
            method, url, status, &headers, &bytes,
        ))));
    }
    let body = parse_body(&headers, &bytes).map_err(|reason| Error::InvalidResponse {
        url: strip_query(url),
        status: status.as_u16(),
        reason,
    })?;
    Ok(Reply {
        status: status.as_u16(),
        headers,
        body,
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
        })
        .unwrap_or(false)
}

pub fn parse_body(headers: &HeaderMap, bytes: &[u8]) -> std::result::Result<Value, String> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if is_json(headers) {
        return serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON ({e})"));
    }
    Ok(Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Builds the error from whichever dialect the body speaks: PostgREST `{code,message}`,
/// GoTrue `{code|error_code, msg|message}`, Storage `{statusCode,code,error,message}`,
/// functions `{error}` or OpenAI-style `{error:{message,code}}`.
pub fn http_error(
    method: &Method,
    url: &str,
    status: StatusCode,
    headers: &HeaderMap,
    bytes: &[u8],
) -> HttpError {
    let json: Option<Value> = serde_json::from_slice(bytes).ok();
    let (code, message) = match &json {
        Some(Value::Object(o)) => {
            let inner = o.get("error").and_then(Value::as_object);
            let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let code = str_of(o.get("error_code"))
                .or_else(|| str_of(o.get("code")))
                .or_else(|| {
                    headers
                        .get("x-sb-error-code")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                })
                .or_else(|| inner.and_then(|i| str_of(i.get("code"))));
            let message = str_of(o.get("msg"))
                .or_else(|| str_of(o.get("message")))
                .or_else(|| str_of(o.get("error_description")))
                .or_else(|| inner.and_then(|i| str_of(i.get("message"))))
                .or_else(|| str_of(o.get("error")));
            (code, message)
        }
        _ => (None, None),
    };
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if text.is_empty() || text.starts_with('<') {
            status
                .canonical_reason()
                .unwrap_or("Request failed")
                .to_string()
        } else {
            text.chars().take(200).collect()
        }
    });
    HttpError {
        status: status.as_u16(),
        method: method.to_string(),
        url: url.to_string(),
        code,
        message,
        retry_after: retry_after(headers).map(|d| d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> HttpError {
        http_error(
            &Method::GET,
            "http://h/x",
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn maps_every_dialect() {
        let e = err(
            406,
            r#"{"code":"PGRST116","details":"0 rows","hint":null,"message":"JSON object requested, multiple (or no) rows returned"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("PGRST116"));
        assert!(e.message.starts_with("JSON object requested"));
        let e = err(
            400,
            r#"{"code":400,"error_code":"invalid_credentials","msg":"Invalid login credentials"}"#,
        );
        assert_eq!(
            (e.code.as_deref(), e.message.as_str()),
            (Some("invalid_credentials"), "Invalid login credentials")
        );
        let e = err(
            400,
            r#"{"code":"invalid_credentials","message":"Invalid login credentials"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("invalid_credentials"));
        let e = err(
            400,
            r#"{"statusCode":"404","code":"NoSuchKey","error":"not_found","message":"Object not found"}"#,
        );
        assert_eq!(
            (e.code.as_deref(), e.message.as_str()),
            (Some("NoSuchKey"), "Object not found")
        );
        let e = err(
            429,
            r#"{"error":{"message":"Daily token limit reached","code":"daily_limit_reached"}}"#,
        );
        assert_eq!(
            (e.code.as_deref(), e.message.as_str()),
            (Some("daily_limit_reached"), "Daily token limit reached")
        );
        let e = err(404, r#"{"error":"Agent not found"}"#);
        assert_eq!((e.code, e.message.as_str()), (None, "Agent not found"));
    }

    #[test]
    fn garbage_bodies_still_give_a_readable_message() {
        assert_eq!(err(502, "<html>bad gateway</html>").message, "Bad Gateway");
        assert_eq!(err(500, "").message, "Internal Server Error");
        assert_eq!(err(500, "plain words").message, "plain words");
    }

    #[test]
    fn bodies_follow_the_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_body(&h, b""), Ok(Value::Null));
        assert_eq!(parse_body(&h, b"hello"), Ok(Value::String("hello".into())));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(
            parse_body(&h, br#"{"a":1}"#),
            Ok(serde_json::json!({"a": 1}))
        );
        assert!(parse_body(&h, b"{oops").is_err());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.pgrst.object+json"),
        );
        assert_eq!(parse_body(&h, b"[1]"), Ok(serde_json::json!([1])));
    }

    #[test]
    fn paths_must_stay_on_the_cloud() {
        let http = Http::new("http://127.0.0.1:9/", "k", Timeouts::default()).unwrap();
        assert_eq!(
            http.url("/rest/v1/x").unwrap(),
            "http://127.0.0.1:9/rest/v1/x"
        );
        assert!(http.url("https://evil.example/steal").is_err());
        assert!(http.url("//evil.example/steal").is_err());
        assert!(http.url("rest/v1/x").is_err());
    }
}
