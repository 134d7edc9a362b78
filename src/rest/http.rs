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
use url::Url;

use super::backoff::Backoff;
use crate::error::{Error, HttpError, Result};

/// Reads are retried this many times after the first attempt.
pub const MAX_RETRIES: u32 = 3;
/// Redirects that stay under the base URL are followed at most this many times in a row.
const MAX_REDIRECTS: usize = 5;
/// The default cap on a reply body read whole (JSON, text): far above any row set the client
/// asks for, far below what would hurt the host process.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Of an error body only the code and message are read; the rest is not worth holding.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

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
    /// Without its query, for errors about the body.
    pub url: String,
}

pub struct Http {
    client: reqwest::Client,
    base_url: String,
    base: Url,
    apikey: HeaderValue,
    max_response_bytes: usize,
}

impl Http {
    pub fn new(base_url: &str, anon_key: &str, timeouts: Timeouts) -> Result<Http> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let base = Url::parse(&base_url)
            .map_err(|_| Error::InvalidConfig(format!("baseUrl is not a URL: {base_url:?}")))?;
        let client = reqwest::Client::builder()
            .redirect(redirect_policy(base.clone()))
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("oboto-cloud/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidConfig(format!("cannot create the HTTP client: {e}")))?;
        Ok(Http {
            client,
            base_url,
            base,
            apikey: secret_header(anon_key)?,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Caps the bodies [`send`](Self::send) reads whole; beyond it the call fails with
    /// `RESPONSE_TOO_LARGE` as soon as the cap is crossed (streams have their own limits).
    pub fn with_max_response_bytes(mut self, limit: usize) -> Http {
        self.max_response_bytes = limit.max(1);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The absolute URL of `path`, which must stay under the base URL once `.`/`..` (also
    /// percent-encoded, as URL parsers decode them) are resolved: the token goes with it.
    pub fn url(&self, path: &str) -> Result<String> {
        let refuse = |why: &str| {
            Error::InvalidArgument(format!(
                "Request path {:?} {why}",
                path.chars().take(60).collect::<String>()
            ))
        };
        if !path.starts_with('/') || path.starts_with("//") || path.starts_with("/\\") {
            return Err(refuse("must start with a single '/'"));
        }
        let joined = Url::parse(&format!("{}{}", self.base_url, path))
            .map_err(|_| refuse("is not a valid URL path"))?;
        if !under_base(&self.base, &joined) {
            return Err(refuse("leaves the cloud's base URL"));
        }
        Ok(joined.into())
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
                    return read_reply(&call.method, &url, resp, self.max_response_bytes).await;
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
        Err(
            read_reply(&call.method, &url, resp, self.max_response_bytes)
                .await
                .err()
                .unwrap_or_else(|| Error::InvalidResponse {
                    url: url.clone(),
                    status: 0,
                    reason: "unexpected status".into(),
                }),
        )
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

/// True when `url` has the base's origin and its path lies under the base's path, segment
/// by segment (`/cloud` does not cover `/cloudy`).
pub fn under_base(base: &Url, url: &Url) -> bool {
    if url.origin() != base.origin() {
        return false;
    }
    let prefix = base.path().trim_end_matches('/');
    let path = url.path();
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Redirects are followed only while they stay under the base URL, so neither the `apikey`,
/// the bearer token nor a re-sent body (a 307 on the password grant carries the password)
/// ever reaches another host. Any other redirect stops, and its 3xx becomes
/// [`Error::RedirectRefused`].
fn redirect_policy(base: Url) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS || !under_base(&base, attempt.url()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// Where a refused redirect pointed, without its query (which may carry anything).
fn redirect_target(resp_url: &Url, headers: &HeaderMap) -> String {
    headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|loc| resp_url.join(loc).ok())
        .map(|u| format!("{}{}", u.origin().ascii_serialization(), u.path()))
        .unwrap_or_else(|| "an unreadable location".into())
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

pub(super) fn network_error(url: &str, e: reqwest::Error) -> Error {
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

/// Reads at most `limit` bytes of the body; `true` when there was more (or the declared
/// length says there would be, in which case nothing is read).
async fn read_capped(
    resp: &mut reqwest::Response,
    limit: usize,
) -> std::result::Result<(Vec<u8>, bool), reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok((Vec::new(), true));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

pub(super) async fn read_reply(
    method: &Method,
    url: &str,
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Reply> {
    let status = resp.status();
    let headers = resp.headers().clone();
    if status.is_redirection() && headers.contains_key(reqwest::header::LOCATION) {
        return Err(Error::RedirectRefused {
            url: strip_query(url),
            status: status.as_u16(),
            target: redirect_target(resp.url(), &headers),
        });
    }
    if !status.is_success() {
        // A truncated error body still has its status; the message falls back to it.
        let (bytes, _) = read_capped(&mut resp, limit.min(MAX_ERROR_BODY_BYTES))
            .await
            .map_err(|e| network_error(url, e))?;
        return Err(Error::Http(Box::new(http_error(
            method, url, status, &headers, &bytes,
        ))));
    }
    let (bytes, too_large) = read_capped(&mut resp, limit)
        .await
        .map_err(|e| network_error(url, e))?;
    if too_large {
        return Err(Error::ResponseTooLarge {
            url: strip_query(url),
            status: status.as_u16(),
            limit: limit as u64,
        });
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
        url: strip_query(url),
    })
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
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
        assert!(http.url("/\\evil.example/steal").is_err());
        assert!(http.url("rest/v1/x").is_err());
    }

    #[test]
    fn paths_cannot_climb_out_of_a_base_path() {
        let http = Http::new("https://host.test/cloud", "k", Timeouts::default()).unwrap();
        assert_eq!(
            http.url("/rest/v1/x?a=eq.1").unwrap(),
            "https://host.test/cloud/rest/v1/x?a=eq.1"
        );
        assert_eq!(
            http.url("/rest/v1/../v1/x").unwrap(),
            "https://host.test/cloud/rest/v1/x"
        );
        for escape in [
            "/../rest/v1/x",
            "/rest/../../rest/v1/x",
            "/%2e%2e/rest/v1/x",
            "/.%2E/rest",
            "/..\\rest",
            "/../cloudy/x",
            "/..",
        ] {
            let e = http.url(escape).unwrap_err();
            assert_eq!(e.code(), "INVALID_ARGUMENT", "{escape}");
        }
        // Dots in a query are data, not path segments.
        assert!(http.url("/rest/v1/x?name=eq.../..").is_ok());
    }

    #[test]
    fn under_base_compares_whole_segments_and_origins() {
        let base = Url::parse("https://h.test/cloud").unwrap();
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(under_base(&base, &u("https://h.test/cloud")));
        assert!(under_base(&base, &u("https://h.test/cloud/x")));
        assert!(!under_base(&base, &u("https://h.test/cloudy")));
        assert!(!under_base(&base, &u("https://h.test/rest/v1")));
        assert!(!under_base(&base, &u("http://h.test/cloud/x")));
        assert!(!under_base(&base, &u("https://h.test:444/cloud/x")));
        assert!(!under_base(&base, &u("https://other.test/cloud/x")));
        let root = Url::parse("http://127.0.0.1:9").unwrap();
        assert!(under_base(&root, &u("http://127.0.0.1:9/anything")));
        assert!(!under_base(&root, &u("http://127.0.0.1:10/anything")));
    }

    mod joining {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("..".to_string()),
                Just(".".to_string()),
                Just("%2e%2e".to_string()),
                Just("%2E.".to_string()),
                Just(".%2e".to_string()),
                Just(String::new()),
                Just("\\..".to_string()),
                Just("cloud".to_string()),
                Just("rest".to_string()),
                Just("?q=..".to_string()),
                Just("#..".to_string()),
                Just("@evil.test".to_string()),
                Just("evil.test:80".to_string()),
                "[a-z0-9._~%-]{1,8}",
                any::<String>(),
            ]
        }

        proptest! {
            #[test]
            fn every_accepted_path_stays_under_the_base(
                base in prop_oneof![
                    Just("https://host.test/cloud"),
                    Just("https://host.test/a/b/"),
                    Just("http://127.0.0.1:9"),
                ],
                segs in proptest::collection::vec(segment(), 0..6),
                lead in prop_oneof![Just("/"), Just("//"), Just(""), Just("/\\"), Just("https://evil.test/")],
            ) {
                let http = Http::new(base, "k", Timeouts::default()).unwrap();
                let path = format!("{lead}{}", segs.join("/"));
                if let Ok(joined) = http.url(&path) {
                    let joined = Url::parse(&joined).unwrap();
                    let base = Url::parse(base).unwrap();
                    prop_assert!(under_base(&base, &joined), "{path:?} -> {joined}");
                    prop_assert_eq!(joined.origin(), base.origin());
                }
            }

            #[test]
            fn plain_paths_are_appended_unchanged(
                segs in proptest::collection::vec("[a-z0-9_-]{1,10}", 1..5),
                query in proptest::option::of("[a-z]{1,5}=eq\\.[a-z0-9.]{0,8}"),
            ) {
                let http = Http::new("https://host.test/cloud", "k", Timeouts::default()).unwrap();
                let mut path = format!("/{}", segs.join("/"));
                if let Some(q) = query {
                    path.push('?');
                    path.push_str(&q);
                }
                prop_assert_eq!(http.url(&path).unwrap(), format!("https://host.test/cloud{path}"));
            }
        }
    }

    #[test]
    fn refused_redirects_name_only_the_target_origin_and_path() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LOCATION,
            HeaderValue::from_static("https://evil.test/collect?password=x"),
        );
        let from = Url::parse("http://127.0.0.1:9/auth/v1/token").unwrap();
        assert_eq!(redirect_target(&from, &h), "https://evil.test/collect");
        h.insert(
            reqwest::header::LOCATION,
            HeaderValue::from_static("/other?t=1"),
        );
        assert_eq!(redirect_target(&from, &h), "http://127.0.0.1:9/other");
    }
}
