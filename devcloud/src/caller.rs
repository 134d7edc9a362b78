//! Who is calling: the `apikey` gate (Supabase's API gateway) and the bearer token's claims.

use axum::http::HeaderMap;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::jwt::{JwtError, JwtKeys};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Anon,
    Authenticated,
    ServiceRole,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Anon => "anon",
            Role::Authenticated => "authenticated",
            Role::ServiceRole => "service_role",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// The verified JWT claims, as PostgREST puts them into `request.jwt.claims`.
    pub claims: Value,
    /// The bearer token itself, when one was sent (GoTrue's `/logout` and `/user` need it).
    pub token: Option<String>,
}

impl Caller {
    pub fn user_id(&self) -> Option<Uuid> {
        self.claims.get("sub")?.as_str()?.parse().ok()
    }
    pub fn session_id(&self) -> Option<Uuid> {
        self.claims.get("session_id")?.as_str()?.parse().ok()
    }
    pub fn is_service_role(&self) -> bool {
        self.role == Role::ServiceRole
    }
    pub fn anon() -> Caller {
        Caller {
            role: Role::Anon,
            claims: json!({"role": "anon"}),
            token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    #[error("No API key found in request")]
    NoApiKey,
    #[error("Invalid API key")]
    InvalidApiKey,
    #[error("JWT expired")]
    Expired,
    #[error("{0}")]
    BadJwt(String),
}

fn role_of(claims: &Value) -> Option<Role> {
    match claims.get("role")?.as_str()? {
        "anon" => Some(Role::Anon),
        "authenticated" => Some(Role::Authenticated),
        "service_role" => Some(Role::ServiceRole),
        _ => None,
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks the `apikey` (header, or `apikey` query parameter for WebSockets) and resolves the
/// caller from the bearer token, falling back to the role of the API key.
pub fn resolve(
    keys: &JwtKeys,
    headers: &HeaderMap,
    query_apikey: Option<&str>,
) -> Result<Caller, CallerError> {
    let apikey = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .or(query_apikey)
        .filter(|k| !k.is_empty())
        .ok_or(CallerError::NoApiKey)?;
    let key_claims = keys
        .verify(apikey)
        .map_err(|_| CallerError::InvalidApiKey)?;
    let key_role = role_of(&key_claims)
        .filter(|r| *r != Role::Authenticated)
        .ok_or(CallerError::InvalidApiKey)?;
    let Some(token) = bearer(headers) else {
        return Ok(Caller {
            role: key_role,
            claims: key_claims,
            token: None,
        });
    };
    let claims = keys.verify(token).map_err(|e| match e {
        JwtError::Expired => CallerError::Expired,
        JwtError::Invalid(m) => CallerError::BadJwt(m),
    })?;
    let role = role_of(&claims).ok_or_else(|| CallerError::BadJwt("unknown role".into()))?;
    Ok(Caller {
        role,
        claims,
        token: Some(token.to_string()),
    })
}
