//! The one error type of the client core. `js/error.rs` turns it into a JS `Error` carrying
//! `code` (and `status`/`url` for HTTP failures) exactly once, at the boundary.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `initialize()` was given something unusable.
    #[error("{0}")]
    InvalidConfig(String),
    /// A caller passed a bad argument (a malformed id, a path outside the workspace…).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("Cloud sync is not initialized: call initialize(config) first")]
    NotInitialized,
    #[error("Not logged in to cloud")]
    NotLoggedIn,
    #[error("Cloud sync was destroyed")]
    Destroyed,
    /// The server answered with a non-2xx status.
    #[error("{}", .0)]
    Http(Box<HttpError>),
    /// The server could not be reached, or did not answer in time.
    #[error("Cannot reach Oboto Cloud at {url}: {reason}")]
    Network {
        url: String,
        reason: String,
        timeout: bool,
    },
    /// The server answered 2xx with a body we cannot read.
    #[error("Oboto Cloud sent an unreadable response from {url}: {reason}")]
    InvalidResponse {
        url: String,
        status: u16,
        reason: String,
    },
    /// The server rejected the refresh token: the session is over.
    #[error("Session ended: {0}")]
    SessionEnded(String),
    #[error("Token storage failed: {0}")]
    TokenStore(String),
    /// `.cloud-link.json` exists but cannot be read as a link; it is left untouched.
    #[error("The workspace link file {path} is unreadable ({reason}); link the workspace again to replace it")]
    LinkFile { path: String, reason: String },
    /// A local file (link file, outbox) could not be written or read.
    #[error("{0}")]
    Io(String),
    /// The offline outbox holds as much as it may; newer pushes are refused until it drains.
    #[error(
        "The offline outbox is full (it holds at most {0}); reconnect to the cloud to drain it"
    )]
    OutboxFull(String),
    /// Another process has held the outbox's lock for longer than a write may wait (it is
    /// stopped, or its file system hangs): nothing was written, nothing lost.
    #[error(
        "The offline outbox is locked by another process (waited {0} ms); nothing was queued \
         or removed, try again"
    )]
    OutboxLocked(u64),
    /// Another process has been syncing the directory (or downloading into it) for longer
    /// than a run waits for it: nothing was done.
    #[error(
        "Another process has been syncing this directory's files for longer than a sync waits \
         (waited {0} ms); nothing was done, try again"
    )]
    FileSyncLocked(u64),
    /// A listing holds more rows than the client reads whole: refused rather than cut short.
    #[error("Oboto Cloud holds more than {limit} {what}")]
    TooManyRows { what: String, limit: String },
    /// Linking needs a working directory (`setWorkingDir`).
    #[error("No working directory: call setWorkingDir(dir) first")]
    NoWorkingDir,
    /// The server redirected outside the base URL (another origin, or out of its path); the
    /// redirect was not followed, so no credential or body went there.
    #[error("Oboto Cloud at {url} redirected (HTTP {status}) to {target}; the redirect was not followed, as only redirects under the cloud's base URL are (at most 5)")]
    RedirectRefused {
        url: String,
        status: u16,
        target: String,
    },
    /// A downloaded object whose bytes are not those its row describes (size or SHA-256):
    /// nothing was written. Only another version of the row is worth another download, so a
    /// sync remembers the row it refused (see `files::manifest::Refused`).
    #[error("The cloud copy of {path} (version {version}) does not match its record ({what}); it was not written, and a sync downloads it again only once the file changes in the cloud")]
    ContentMismatch {
        path: String,
        version: i64,
        checksum: Option<String>,
        /// `size` or `checksum`.
        what: String,
    },
    /// A response body grew beyond the configured limit; reading stopped there.
    #[error("Oboto Cloud sent more than {limit} bytes from {url}; the response was not read")]
    ResponseTooLarge {
        url: String,
        status: u16,
        limit: u64,
    },
}

/// A non-2xx answer, with the server's own error code when its body had one
/// (PostgREST `PGRST116`, a SQLSTATE such as `23505`, GoTrue `invalid_credentials`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub method: String,
    pub url: String,
    pub code: Option<String>,
    pub message: String,
    /// Seconds from a `Retry-After` header (rate limits).
    pub retry_after: Option<u64>,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (HTTP {} from {} {})",
            self.message,
            self.status,
            self.method,
            path_of(&self.url)
        )
    }
}

/// The path and query of a URL, so messages stay short and never show credentials in
/// a userinfo part.
fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url)
}

impl Error {
    /// A 2xx reply from `url` that is not what the call expected.
    pub fn unexpected_reply(url: &str, reason: impl Into<String>) -> Error {
        Error::InvalidResponse {
            url: url.to_string(),
            status: 200,
            reason: reason.into(),
        }
    }

    /// A stable code for programs (`err.code` in JS).
    pub fn code(&self) -> String {
        match self {
            Error::InvalidConfig(_) => "INVALID_CONFIG".into(),
            Error::InvalidArgument(_) => "INVALID_ARGUMENT".into(),
            Error::NotInitialized => "NOT_INITIALIZED".into(),
            Error::NotLoggedIn => "NOT_LOGGED_IN".into(),
            Error::Destroyed => "DESTROYED".into(),
            // One code for every rate limit, whatever the service calls it; the server's
            // own reason stays in the message.
            Error::Http(h) if h.status == 429 => "RATE_LIMITED".into(),
            Error::Http(h) => h
                .code
                .clone()
                .unwrap_or_else(|| format!("HTTP_{}", h.status)),
            Error::Network { timeout: true, .. } => "NETWORK_TIMEOUT".into(),
            Error::Network { .. } => "NETWORK_ERROR".into(),
            Error::InvalidResponse { .. } => "INVALID_RESPONSE".into(),
            Error::SessionEnded(_) => "SESSION_ENDED".into(),
            Error::TokenStore(_) => "TOKEN_STORE".into(),
            Error::LinkFile { .. } => "LINK_FILE_CORRUPT".into(),
            Error::Io(_) => "IO_ERROR".into(),
            Error::OutboxFull(_) => "OUTBOX_FULL".into(),
            Error::OutboxLocked(_) => "OUTBOX_LOCKED".into(),
            Error::FileSyncLocked(_) => "FILE_SYNC_LOCKED".into(),
            Error::NoWorkingDir => "NO_WORKING_DIR".into(),
            Error::TooManyRows { .. } => "TOO_MANY_ROWS".into(),
            Error::ResponseTooLarge { .. } => "RESPONSE_TOO_LARGE".into(),
            Error::RedirectRefused { .. } => "REDIRECT_REFUSED".into(),
            Error::ContentMismatch { .. } => "CONTENT_MISMATCH".into(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http(h) => Some(h.status),
            Error::InvalidResponse { status, .. }
            | Error::ResponseTooLarge { status, .. }
            | Error::RedirectRefused { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn url(&self) -> Option<&str> {
        match self {
            Error::Http(h) => Some(&h.url),
            Error::Network { url, .. }
            | Error::InvalidResponse { url, .. }
            | Error::ResponseTooLarge { url, .. }
            | Error::RedirectRefused { url, .. } => Some(url),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.http().and_then(|h| h.retry_after)
    }

    pub fn is_network(&self) -> bool {
        matches!(self, Error::Network { .. })
    }

    pub fn http(&self) -> Option<&HttpError> {
        match self {
            Error::Http(h) => Some(h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: Option<&str>) -> Error {
        Error::Http(Box::new(HttpError {
            status,
            method: "GET".into(),
            url: "http://127.0.0.1:1/rest/v1/x?id=eq.1".into(),
            code: code.map(String::from),
            message: "Boom".into(),
            retry_after: None,
        }))
    }

    #[test]
    fn codes_prefer_the_servers_own() {
        assert_eq!(http(409, Some("23505")).code(), "23505");
        assert_eq!(
            http(429, Some("daily_limit_reached")).code(),
            "RATE_LIMITED"
        );
        assert_eq!(http(502, None).code(), "HTTP_502");
        assert_eq!(http(404, None).status(), Some(404));
        let net = Error::Network {
            url: "u".into(),
            reason: "r".into(),
            timeout: true,
        };
        assert_eq!(net.code(), "NETWORK_TIMEOUT");
        assert!(net.is_network());
    }

    #[test]
    fn http_message_names_the_request_but_not_the_host() {
        let msg = http(404, None).to_string();
        assert_eq!(msg, "Boom (HTTP 404 from GET /rest/v1/x?id=eq.1)");
    }
}
