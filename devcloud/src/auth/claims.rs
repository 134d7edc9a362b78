//! The access token: GoTrue's claim set, and the token response that carries it.

use axum::http::{header, HeaderMap};
use serde_json::{json, Value};
use uuid::Uuid;

use super::user::User;

/// What an access token is minted for: a user in one session.
pub struct Grant<'a> {
    pub user: &'a User,
    pub session_id: Uuid,
    /// When the session was authenticated (the `amr` timestamp), in Unix seconds.
    pub authenticated_at: i64,
}

/// The claims GoTrue puts into an access token (`AccessTokenClaims` in its token service).
pub fn access_token_claims(issuer: &str, grant: &Grant<'_>, iat: i64, lifetime_secs: i64) -> Value {
    let user = grant.user;
    json!({
        "iss": issuer,
        "sub": user.id.to_string(),
        "aud": user.aud,
        "exp": iat + lifetime_secs,
        "iat": iat,
        "email": user.email.as_deref().unwrap_or(""),
        "phone": user.phone.as_deref().unwrap_or(""),
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
        "role": if user.role.is_empty() { "authenticated" } else { user.role.as_str() },
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": grant.authenticated_at}],
        "session_id": grant.session_id.to_string(),
        "is_anonymous": user.is_anonymous,
    })
}

/// `POST /token` and autoconfirmed `POST /signup` answer with this.
pub fn token_response(
    access_token: String,
    lifetime_secs: i64,
    iat: i64,
    refresh_token: &str,
    user: &User,
) -> Value {
    json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": lifetime_secs,
        "expires_at": iat + lifetime_secs,
        "refresh_token": refresh_token,
        "user": user.to_json(),
    })
}

/// GoTrue's `iss`: its external URL, here the address the client reached us on.
pub fn issuer(headers: &HeaderMap) -> String {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
    };
    let host = text("x-forwarded-host")
        .or_else(|| text(header::HOST.as_str()))
        .unwrap_or("localhost");
    let scheme = text("x-forwarded-proto").unwrap_or("http");
    format!("{scheme}://{host}/auth/v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn alice() -> User {
        let mut u = User::test_user("alice@acme.test");
        u.user_metadata = json!({"display_name": "Alice"});
        u
    }

    #[test]
    fn claims_carry_gotrues_claim_set() {
        let user = alice();
        let session_id = Uuid::new_v4();
        let grant = Grant {
            user: &user,
            session_id,
            authenticated_at: 1_700_000_000,
        };
        let c = access_token_claims("http://127.0.0.1:1/auth/v1", &grant, 1_700_000_100, 3600);
        assert_eq!(c["iss"], "http://127.0.0.1:1/auth/v1");
        assert_eq!(c["sub"], user.id.to_string());
        assert_eq!(c["aud"], "authenticated");
        assert_eq!(c["role"], "authenticated");
        assert_eq!(c["iat"], 1_700_000_100);
        assert_eq!(c["exp"], 1_700_003_700);
        assert_eq!(c["email"], "alice@acme.test");
        assert_eq!(c["phone"], "");
        assert_eq!(c["aal"], "aal1");
        assert_eq!(
            c["amr"],
            json!([{"method": "password", "timestamp": 1_700_000_000}])
        );
        assert_eq!(c["session_id"], session_id.to_string());
        assert_eq!(c["is_anonymous"], false);
        assert_eq!(c["user_metadata"]["display_name"], "Alice");
        assert_eq!(c["app_metadata"]["provider"], "email");
    }

    #[test]
    fn token_response_shape() {
        let user = alice();
        let r = token_response("jwt".into(), 60, 1000, "abcdefghijkl", &user);
        assert_eq!(r["token_type"], "bearer");
        assert_eq!(r["expires_in"], 60);
        assert_eq!(r["expires_at"], 1060);
        assert_eq!(r["refresh_token"], "abcdefghijkl");
        assert_eq!(r["user"]["email"], "alice@acme.test");
    }

    #[test]
    fn issuer_uses_the_host_header() {
        let mut h = HeaderMap::new();
        assert_eq!(issuer(&h), "http://localhost/auth/v1");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5555"));
        assert_eq!(issuer(&h), "http://127.0.0.1:5555/auth/v1");
    }
}
