//! HS256 JWTs with Supabase's claim set: the anon and service-role keys, and access tokens.

use jsonwebtoken::{
    decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("JWT expired")]
    Expired,
    #[error("invalid JWT: {0}")]
    Invalid(String),
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub anon_key: String,
    pub service_role_key: String,
}

const TEN_YEARS: i64 = 10 * 365 * 24 * 3600;

impl JwtKeys {
    pub fn new(secret: &[u8]) -> JwtKeys {
        let encoding = EncodingKey::from_secret(secret);
        let decoding = DecodingKey::from_secret(secret);
        let now = now();
        let key = |role: &str| {
            let claims =
                json!({"iss": "supabase-demo", "role": role, "iat": now, "exp": now + TEN_YEARS});
            encode(&Header::new(Algorithm::HS256), &claims, &encoding)
                .expect("HS256 signing of a JSON object")
        };
        let anon_key = key("anon");
        let service_role_key = key("service_role");
        JwtKeys {
            encoding,
            decoding,
            anon_key,
            service_role_key,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        // Signing a serde_json::Value with an HMAC key cannot fail.
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies signature and expiry (no leeway, as GoTrue) and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.required_spec_claims.insert("exp".into());
        decode::<Value>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                other => JwtError::Invalid(format!("{other:?}")),
            })
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_roles() {
        let k = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(k.verify(&k.anon_key).unwrap()["role"], "anon");
        assert_eq!(
            k.verify(&k.service_role_key).unwrap()["role"],
            "service_role"
        );
    }

    #[test]
    fn expired_and_foreign_tokens_are_rejected() {
        let k = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let old = k.sign(&json!({"role": "authenticated", "exp": now() - 1}));
        assert_eq!(k.verify(&old), Err(JwtError::Expired));
        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        assert!(matches!(
            k.verify(&other.anon_key),
            Err(JwtError::Invalid(_))
        ));
        assert!(matches!(k.verify("not.a.jwt"), Err(JwtError::Invalid(_))));
        let mut tampered = k.anon_key.clone();
        tampered.push('x');
        assert!(matches!(k.verify(&tampered), Err(JwtError::Invalid(_))));
    }
}
