//! `POST /token?grant_type=password|refresh_token`.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;

use super::{
    claims::{self, Grant},
    error::{AuthError, AuthResult},
    query_param, read_json, session, user, verify_password, ApiKey,
};
use crate::{jwt, state::SharedState};

pub async fn token(
    _: ApiKey,
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AuthResult<Response> {
    let grant_type = query_param(&uri, "grant_type").unwrap_or_default();
    match grant_type.as_str() {
        "password" => {
            state.stats.grant("password");
            password_grant(&state, &headers, body).await
        }
        "refresh_token" => {
            state.stats.grant("refresh_token");
            refresh_grant(&state, &headers, body).await
        }
        // GoTrue answers an unknown grant type this way (`Token` in its api/token.go).
        _ => Err(AuthError::bad_request(
            "invalid_credentials",
            "unsupported_grant_type",
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordParams {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
}

async fn password_grant(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> AuthResult<Response> {
    let params: PasswordParams = read_json(state, body).await?;
    let email = params.email.filter(|e| !e.is_empty());
    let phone = params.phone.filter(|p| !p.is_empty());
    let mut client = state.db.get().await?;
    let found = match (&email, &phone) {
        (Some(_), Some(_)) => {
            return Err(AuthError::validation(
                "Only an email address or phone number should be provided on login.",
            ))
        }
        (Some(email), None) => user::find_by_email(&**client, email.trim()).await?,
        (None, Some(phone)) => user::find_by_phone(&**client, phone.trim()).await?,
        (None, None) => return Err(AuthError::validation("missing email or phone")),
    };
    let stored = found.as_ref().and_then(|u| u.encrypted_password.clone());
    let valid = verify_password(params.password.unwrap_or_default(), stored).await?;
    let user = match found {
        Some(u) if valid => u,
        // Unknown email and wrong password look the same.
        _ => return Err(AuthError::invalid_credentials()),
    };
    if user.is_banned(chrono::Utc::now()) {
        return Err(AuthError::bad_request("user_banned", "User is banned"));
    }
    if email.is_some() && !user.is_confirmed() {
        return Err(AuthError::bad_request(
            "email_not_confirmed",
            "Email not confirmed",
        ));
    }

    let tx = client.transaction().await?;
    let issued = session::start(&*tx, user.id).await?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1 RETURNING {}",
                user::COLUMNS
            ),
            &[&user.id],
        )
        .await?;
    let user = user::User::from_row(&row)?;
    tx.commit().await?;
    Ok(Json(token_body(state, headers, &user, &issued)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefreshParams {
    refresh_token: Option<String>,
}

async fn refresh_grant(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> AuthResult<Response> {
    let params: RefreshParams = read_json(state, body).await?;
    let token = params.refresh_token.unwrap_or_default();
    if token.is_empty() {
        return Err(AuthError::validation("Refresh token is not valid"));
    }
    let issued = session::refresh(&state.db, &token, state.settings.refresh_reuse_interval).await?;
    let client = state.db.get().await?;
    let user = user::find_by_id(&**client, issued.user_id)
        .await?
        .ok_or_else(|| {
            AuthError::bad_request(
                "refresh_token_not_found",
                "Invalid Refresh Token: Refresh Token Not Found",
            )
        })?;
    if user.is_banned(chrono::Utc::now()) {
        return Err(AuthError::bad_request(
            "user_banned",
            "Invalid Refresh Token: User Banned",
        ));
    }
    Ok(Json(token_body(state, headers, &user, &issued)).into_response())
}

/// Mints the access token for a session and wraps it in GoTrue's token response.
pub(crate) fn token_body(
    state: &SharedState,
    headers: &HeaderMap,
    user: &user::User,
    issued: &session::Issued,
) -> serde_json::Value {
    let lifetime = i64::try_from(state.settings.jwt_exp.as_secs()).unwrap_or(i64::MAX / 2);
    let iat = jwt::now();
    let grant = Grant {
        user,
        session_id: issued.session_id,
        authenticated_at: issued.authenticated_at.timestamp(),
    };
    let claims = claims::access_token_claims(&claims::issuer(headers), &grant, iat, lifetime);
    claims::token_response(
        state.keys.sign(&claims),
        lifetime,
        iat,
        &issued.refresh_token,
        user,
    )
}
