//! When the access token in use runs out. The server closes a channel whose token expired,
//! so the socket sends the renewed one on every joined channel shortly before that moment
//! (and on every heartbeat, like realtime-js). The claim is only read, never trusted: the
//! server verifies the token.

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::Deserialize;

/// How long before `exp` the token is swapped. The session renews a token 5 s before it
/// expires (`EXPIRY_SKEW_SECS`), so asking it 4 s ahead always yields a fresh one.
pub const AHEAD: Duration = Duration::from_secs(4);
/// The longest wait [`swap_in`] returns. The claim is the server's and unchecked, so a far-off
/// `exp` must not overflow the timer it sets; the socket also asks for the token on every
/// heartbeat, so waking up early costs nothing.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Deserialize)]
struct Claims {
    exp: Option<i64>,
}

/// The `exp` claim (unix seconds) of a JWT, if it has a readable one.
pub fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    if payload.len() > 8192 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok()?.exp
}

/// How long from `now` (unix seconds) until the token should be swapped; `None` when it
/// carries no expiry.
pub fn swap_in(token: &str, now: i64) -> Option<Duration> {
    let exp = expiry(token)?;
    let secs = exp
        .saturating_sub(now)
        .saturating_sub(AHEAD.as_secs() as i64)
        .max(1);
    Some(Duration::from_secs(secs.unsigned_abs()).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn reads_exp() {
        assert_eq!(
            expiry(&jwt(r#"{"exp":1700000000,"role":"authenticated"}"#)),
            Some(1700000000)
        );
        assert_eq!(expiry(&jwt(r#"{"role":"anon"}"#)), None);
        assert_eq!(expiry("garbage"), None);
        assert_eq!(expiry("a.!!!.c"), None);
        assert_eq!(
            swap_in(&jwt(r#"{"exp":100}"#), 80),
            Some(Duration::from_secs(16))
        );
        assert_eq!(
            swap_in(&jwt(r#"{"exp":100}"#), 200),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn extreme_expiries_do_not_overflow() {
        let min = jwt(&format!(r#"{{"exp":{}}}"#, i64::MIN));
        let max = jwt(&format!(r#"{{"exp":{}}}"#, i64::MAX));
        let now = 1_700_000_000;
        assert_eq!(swap_in(&min, now), Some(Duration::from_secs(1)));
        assert_eq!(swap_in(&min, i64::MAX), Some(Duration::from_secs(1)));
        assert_eq!(swap_in(&max, now), Some(MAX_WAIT));
        assert_eq!(swap_in(&max, i64::MIN), Some(MAX_WAIT));
        // The wait must be usable as a timer.
        let _ = tokio::time::Instant::now() + swap_in(&max, i64::MIN).unwrap();
    }
}
