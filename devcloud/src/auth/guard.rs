//! Who may call a protected GoTrue route: `requireAuthentication` (a user's access token
//! whose user and session still exist) and `requireAdmin` (a service-role token).

use axum::http::HeaderMap;
use serde_json::Value;
use uuid::Uuid;

use super::{
    error::{AuthError, AuthResult},
    session,
    user::{self, User},
};
use crate::{caller, jwt::JwtError, state::SharedState};

/// The signed-in caller of `/user`, `/logout`.
pub struct Authenticated {
    pub user: User,
    pub session_id: Option<Uuid>,
}

fn verified_claims(state: &SharedState, headers: &HeaderMap) -> AuthResult<Value> {
    let token = caller::bearer(headers).ok_or_else(AuthError::no_authorization)?;
    state.keys.verify(token).map_err(|e| {
        let why = match e {
            JwtError::Expired => "token has invalid claims: token is expired".to_string(),
            JwtError::Invalid(_) => "signature is invalid".to_string(),
        };
        AuthError::forbidden(
            "bad_jwt",
            format!("invalid JWT: unable to parse or verify signature, {why}"),
        )
    })
}

pub async fn require_user(state: &SharedState, headers: &HeaderMap) -> AuthResult<Authenticated> {
    let claims = verified_claims(state, headers)?;
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if sub.is_empty() {
        return Err(AuthError::forbidden(
            "bad_jwt",
            "invalid claim: missing sub claim",
        ));
    }
    let user_id: Uuid = sub.parse().map_err(|_| {
        AuthError::bad_request("bad_jwt", "invalid claim: sub claim must be a UUID")
    })?;
    let session_id = match claims
        .get("session_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(s.parse::<Uuid>().map_err(|_| {
            AuthError::forbidden("bad_jwt", "invalid claim: session_id claim must be a UUID")
        })?),
    }
    .filter(|id| !id.is_nil());

    let client = state.db.get().await?;
    let user = user::find_by_id(&**client, user_id).await?.ok_or_else(|| {
        AuthError::forbidden(
            "user_not_found",
            "User from sub claim in JWT does not exist",
        )
    })?;
    if let Some(sid) = session_id {
        if !session::exists(&**client, sid).await? {
            return Err(AuthError::forbidden(
                "session_not_found",
                "Session from session_id claim in JWT does not exist",
            ));
        }
    }
    if user.is_banned(chrono::Utc::now()) {
        return Err(AuthError::forbidden("user_banned", "User is banned"));
    }
    Ok(Authenticated { user, session_id })
}

/// The admin API wants a bearer token with an admin role (`service_role`); the apikey alone
/// is not enough, as in GoTrue.
pub fn require_admin(state: &SharedState, headers: &HeaderMap) -> AuthResult<()> {
    let claims = verified_claims(state, headers)?;
    match claims.get("role").and_then(Value::as_str) {
        Some("service_role" | "supabase_admin") => Ok(()),
        _ => Err(AuthError::forbidden("not_admin", "User not allowed")),
    }
}
