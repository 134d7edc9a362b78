//! A GoTrue session as the client keeps it, and the timing rules around it.

use std::{fmt, time::Duration};

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    rest::Checked,
};

/// Never shown: `Debug` redacts both tokens.
#[derive(Clone)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub expires_in: i64,
    /// The GoTrue user as sent, checked to have a UUID `id`.
    pub user: Value,
    pub user_id: Uuid,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    expires_in: Option<i64>,
    expires_at: Option<i64>,
    /// Required: without it the session belongs to nobody the client can name, and its id
    /// goes into every user-scoped query.
    user: Checked<TokenUser>,
}

#[derive(Deserialize)]
struct TokenUser {
    id: Uuid,
    #[serde(default)]
    #[allow(dead_code)]
    email: Option<String>,
}

/// The field serde could not read, never a value: a value here could be a token.
fn token_shape_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        return format!("not a token response (missing field `{field}`)");
    }
    if msg.contains("UUID") {
        return "not a token response (the user id is not a UUID)".into();
    }
    "not a token response".into()
}

impl Session {
    /// Reads a `/token` answer; `now` is unix seconds at receipt.
    pub fn from_token_response(body: Value, url: &str, now: i64) -> Result<Session> {
        let t: TokenResponse =
            serde_json::from_value(body).map_err(|e| Error::InvalidResponse {
                url: url.to_string(),
                status: 200,
                reason: token_shape_error(&e),
            })?;
        if t.access_token.is_empty() || t.refresh_token.is_empty() {
            return Err(Error::InvalidResponse {
                url: url.into(),
                status: 200,
                reason: "empty token".into(),
            });
        }
        let expires_in = t.expires_in.unwrap_or(3600).max(0);
        Ok(Session {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            expires_at: t.expires_at.unwrap_or(now + expires_in),
            expires_in,
            user_id: t.user.typed.id,
            user: t.user.raw,
        })
    }
}

/// When to refresh: `expires_in − 60 s` ahead, and never sooner than 10 s from now.
pub fn refresh_delay(expires_in: i64) -> Duration {
    Duration::from_secs((expires_in - 60).max(10) as u64)
}

/// A token this close to expiry is refreshed before use rather than sent to fail.
pub const EXPIRY_SKEW_SECS: i64 = 5;

pub fn is_expiring(expires_at: i64, now: i64) -> bool {
    expires_at - now <= EXPIRY_SKEW_SECS
}

/// GoTrue codes that mean "this refresh token will never work again": the session is over.
pub fn ends_session(e: &Error) -> bool {
    match e {
        Error::Http(h) => {
            matches!(h.status, 400 | 401 | 403 | 404)
                || matches!(
                    h.code.as_deref(),
                    Some(
                        "refresh_token_not_found"
                            | "refresh_token_already_used"
                            | "session_not_found"
                            | "session_expired"
                            | "user_not_found"
                            | "user_banned"
                            | "invalid_grant"
                    )
                )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HttpError;
    use serde_json::json;

    #[test]
    fn refresh_is_scheduled_a_minute_early_but_not_too_soon() {
        assert_eq!(refresh_delay(3600), Duration::from_secs(3540));
        assert_eq!(refresh_delay(75), Duration::from_secs(15));
        assert_eq!(refresh_delay(15), Duration::from_secs(10));
        assert_eq!(refresh_delay(-5), Duration::from_secs(10));
    }

    #[test]
    fn parses_and_redacts() {
        let s = Session::from_token_response(
            json!({"access_token":"AAA","refresh_token":"RRR","expires_in":15,"user":{"id":"00000000-0000-0000-0000-000000000001"}}),
            "u",
            1000,
        )
        .unwrap();
        assert_eq!((s.expires_at, s.user_id), (1015, Uuid::from_u128(1)));
        let shown = format!("{s:?}");
        assert!(!shown.contains("AAA") && !shown.contains("RRR"));
        assert!(Session::from_token_response(json!({"error":"x"}), "u", 0).is_err());
        assert!(Session::from_token_response(json!("garbage"), "u", 0).is_err());
    }

    #[test]
    fn a_token_response_must_name_its_user_by_uuid() {
        let base = json!({"access_token":"AAA","refresh_token":"RRR","expires_in":15});
        let with_user = |user: Value| {
            let mut b = base.clone();
            b["user"] = user;
            b
        };
        for body in [
            base.clone(),
            with_user(Value::Null),
            with_user(json!({})),
            with_user(json!({"id": "not-a-uuid&x=1"})),
            with_user(json!({"id": 7})),
            with_user(json!("u1")),
        ] {
            let e = Session::from_token_response(body.clone(), "u", 0).unwrap_err();
            assert_eq!(e.code(), "INVALID_RESPONSE", "{body}");
            assert!(!e.to_string().contains("AAA") && !e.to_string().contains("RRR"));
        }
        let e = Session::from_token_response(
            json!({"access_token": 5, "refresh_token": "SECRET-R", "user": {"id": 1}}),
            "u",
            0,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SECRET-R"));
    }

    #[test]
    fn expiry_uses_a_small_skew() {
        assert!(is_expiring(100, 96));
        assert!(is_expiring(100, 200));
        assert!(!is_expiring(100, 90));
    }

    #[test]
    fn only_rejections_end_the_session() {
        let http = |status, code: &str| {
            Error::Http(Box::new(HttpError {
                status,
                method: "POST".into(),
                url: "u".into(),
                code: Some(code.into()),
                message: "m".into(),
                retry_after: None,
            }))
        };
        assert!(ends_session(&http(400, "refresh_token_already_used")));
        assert!(ends_session(&http(400, "refresh_token_not_found")));
        assert!(!ends_session(&http(503, "unavailable")));
        assert!(!ends_session(&http(429, "over_request_rate_limit")));
        assert!(!ends_session(&Error::Network {
            url: "u".into(),
            reason: "down".into(),
            timeout: false
        }));
    }
}
