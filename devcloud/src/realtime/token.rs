//! Tokens of sockets and channels: a JWT of ours with a `role` and an `exp` (Realtime's
//! tenant JWT check). The claims are what RLS sees for this subscriber.

use base64::Engine as _;
use serde_json::Value;

use crate::jwt::{self, JwtError, JwtKeys};

/// Who a channel acts as.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub role: String,
    /// `request.jwt.claims`, as JSON text.
    pub claims: String,
    pub exp: i64,
}

impl Auth {
    pub fn bypasses_rls(&self) -> bool {
        self.role == "service_role"
    }

    /// Refuses a token whose `exp` has come at `now`, as Realtime's check of a join or a
    /// refresh does (`exp > now`): a socket's token was verified once, at the upgrade, and
    /// may have expired since.
    pub fn live(self, now: i64) -> Result<Auth, TokenError> {
        if self.exp <= now {
            return Err(TokenError::Expired(now - self.exp));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Token has expired {0} seconds ago")]
    Expired(i64),
    #[error("{0}")]
    Invalid(String),
}

impl TokenError {
    /// The `Code: message` reason of a join error reply.
    pub fn join_reason(&self) -> String {
        match self {
            TokenError::Expired(_) => format!("InvalidJWTToken: {self}"),
            TokenError::Invalid(_) => format!("MalformedJWT: {self}"),
        }
    }
}

pub fn verify(keys: &JwtKeys, token: &str) -> Result<Auth, TokenError> {
    let claims = keys.verify(token).map_err(|e| match e {
        JwtError::Expired => TokenError::Expired((jwt::now() - unverified_exp(token)).max(0)),
        JwtError::Invalid(_) => TokenError::Invalid("The token provided is not a valid JWT".into()),
    })?;
    let role = claims
        .get("role")
        .and_then(Value::as_str)
        .filter(|r| matches!(*r, "anon" | "authenticated" | "service_role"))
        .ok_or_else(|| TokenError::Invalid("The token has no known role claim".into()))?
        .to_string();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    Ok(Auth {
        role,
        claims: claims.to_string(),
        exp,
    })
}

/// `exp` of a token whose signature checked out but which expired, for the message only.
fn unverified_exp(token: &str) -> i64 {
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| c.get("exp").and_then(Value::as_i64))
        .unwrap_or_else(jwt::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_expiry_and_garbage() {
        let k = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let a = verify(&k, &k.anon_key).unwrap();
        assert_eq!(a.role, "anon");
        assert!(!a.bypasses_rls());
        assert!(verify(&k, &k.service_role_key).unwrap().bypasses_rls());
        let old = k.sign(&json!({"role": "authenticated", "exp": jwt::now() - 12}));
        match verify(&k, &old) {
            Err(TokenError::Expired(s)) => assert!((12..=14).contains(&s)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(verify(&k, "x.y.z"), Err(TokenError::Invalid(_))));
        let odd = k.sign(&json!({"role": "postgres", "exp": jwt::now() + 60}));
        assert!(matches!(verify(&k, &odd), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn a_verified_token_expires_later() {
        let k = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let now = jwt::now();
        let a = verify(&k, &k.sign(&json!({"role": "anon", "exp": now + 60}))).unwrap();
        assert_eq!(a.clone().live(now + 59), Ok(a.clone()));
        assert_eq!(a.clone().live(now + 60), Err(TokenError::Expired(0)));
        let e = a.live(now + 72).unwrap_err();
        assert_eq!(
            e.join_reason(),
            "InvalidJWTToken: Token has expired 12 seconds ago"
        );
    }
}
