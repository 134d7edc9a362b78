//! GoTrue (`/auth/v1`): password and refresh-token grants with rotating refresh tokens,
//! signup (autoconfirmed), the current user, logout, and the admin users API.
//!
//! The wire behaviour follows `shared/design/devcloud.md` ("Auth") and, where that is
//! silent, supabase/auth itself, because `@supabase/supabase-js` must work unchanged.

pub mod password;

mod account;
mod admin;
mod claims;
mod error;
mod guard;
mod session;
mod token;
mod user;

use std::sync::OnceLock;

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{request::Parts, StatusCode, Uri},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use self::error::{AuthError, AuthResult};
use crate::{
    caller::{self, CallerError},
    state::SharedState,
};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/health", get(health))
        .route("/settings", get(settings))
        .route("/token", post(token::token))
        .route("/signup", post(account::signup))
        .route("/logout", post(account::logout))
        .route("/user", get(account::get_user).put(account::update_user))
        .route("/admin/users", get(admin::list).post(admin::create))
        .route(
            "/admin/users/{user_id}",
            get(admin::get).put(admin::update).delete(admin::delete),
        )
        .layer(middleware::from_fn(error::render))
}

/// Supabase's API gateway in front of GoTrue: no route without a project API key (header,
/// or `apikey` query parameter). The gateway answers in its own format, not GoTrue's. Every
/// handler takes this extractor first, so the check runs before the body is read.
pub(crate) struct ApiKey;

impl FromRequestParts<SharedState> for ApiKey {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<ApiKey, Response> {
        let query_key = query_param(&parts.uri, "apikey");
        match caller::resolve(&state.keys, &parts.headers, query_key.as_deref()) {
            Err(CallerError::NoApiKey) => Err((
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "No API key found in request"})),
            )
                .into_response()),
            Err(CallerError::InvalidApiKey) => Err((
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "message": "Invalid API key",
                    "hint": "Double check your Supabase `anon` or `service_role` API key."
                })),
            )
                .into_response()),
            // The key is good; a bad bearer token is each route's business.
            _ => Ok(ApiKey),
        }
    }
}

async fn health(_: ApiKey) -> Json<serde_json::Value> {
    Json(json!({
        "version": concat!("devcloud-", env!("CARGO_PKG_VERSION")),
        "name": "GoTrue",
        "description": "GoTrue is a user registration and authentication API",
    }))
}

async fn settings(_: ApiKey) -> Json<serde_json::Value> {
    let providers = [
        "anonymous_users",
        "apple",
        "azure",
        "bitbucket",
        "discord",
        "facebook",
        "figma",
        "fly",
        "github",
        "gitlab",
        "google",
        "keycloak",
        "kakao",
        "linkedin",
        "linkedin_oidc",
        "notion",
        "spotify",
        "slack",
        "slack_oidc",
        "workos",
        "twitch",
        "twitter",
        "phone",
        "zoom",
    ];
    let mut external: serde_json::Map<String, serde_json::Value> = providers
        .iter()
        .map(|p| (p.to_string(), json!(false)))
        .collect();
    external.insert("email".into(), json!(true));
    Json(json!({
        "external": external,
        "disable_signup": false,
        "mailer_autoconfirm": true,
        "phone_autoconfirm": false,
        "sms_provider": "",
        "saml_enabled": false,
    }))
}

/// One query parameter, form-decoded; the first occurrence wins.
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

/// Reads a JSON body with the configured size limit: too large is GoTrue's 413, anything
/// that does not decode into `T` is its `bad_json`. The message names the position only,
/// never the offending value (it may be a password).
pub(crate) async fn read_json<T: DeserializeOwned>(
    state: &SharedState,
    body: Body,
) -> AuthResult<T> {
    let limit = state.settings.max_body_bytes;
    let bytes = crate::body::read_limited(body, limit)
        .await
        .map_err(|e| match e {
            crate::body::BodyError::TooLarge => AuthError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_entity_too_large",
                format!("Request body too large (max {limit} bytes)"),
            ),
            crate::body::BodyError::Read => {
                AuthError::bad_request("bad_json", "Could not read the request body")
            }
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "unexpected value type",
            serde_json::error::Category::Eof => "unexpected end of JSON input",
            _ => "invalid JSON",
        };
        AuthError::bad_request(
            "bad_json",
            format!(
                "Could not parse request body as JSON: {what} at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// GoTrue's password rules: at least 6 characters; bcrypt ignores what lies past 72 bytes,
/// so longer passwords are refused rather than silently truncated.
pub(crate) fn check_password(password: &str) -> AuthResult<()> {
    if password.len() > 72 {
        return Err(AuthError::validation(
            "Password cannot be longer than 72 characters",
        ));
    }
    if password.len() < 6 {
        return Err(AuthError::weak_password(
            "Password should be at least 6 characters.",
            vec!["length"],
        ));
    }
    Ok(())
}

/// bcrypt is deliberately slow: keep it off the async workers.
pub(crate) async fn hash_password(password: String) -> AuthResult<String> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| AuthError::internal("password hashing task", e))
}

/// Verifies against the stored hash; without one (unknown user, no password) it still spends
/// a bcrypt verification, so the answer time does not tell whether the email exists.
pub(crate) async fn verify_password(password: String, stored: Option<String>) -> AuthResult<bool> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    tokio::task::spawn_blocking(move || match stored {
        Some(hash) if !hash.is_empty() => password::verify(&password, &hash),
        _ => {
            let dummy = DUMMY.get_or_init(|| password::hash("devcloud-no-such-user"));
            let _ = password::verify(&password, dummy);
            false
        }
    })
    .await
    .map_err(|e| AuthError::internal("password verification task", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let uri: Uri = "/token?grant_type=refresh_token&x=a%20b+c&apikey=k"
            .parse()
            .unwrap();
        assert_eq!(
            query_param(&uri, "grant_type").as_deref(),
            Some("refresh_token")
        );
        assert_eq!(query_param(&uri, "x").as_deref(), Some("a b c"));
        assert_eq!(query_param(&uri, "apikey").as_deref(), Some("k"));
        assert_eq!(query_param(&uri, "scope"), None);
    }

    #[test]
    fn password_rules() {
        assert!(check_password("123456").is_ok());
        let weak = check_password("12345").unwrap_err();
        assert_eq!((weak.status.as_u16(), weak.code), (422, "weak_password"));
        assert_eq!(weak.weak_password, Some(vec!["length"]));
        assert_eq!(
            check_password(&"x".repeat(73)).unwrap_err().code,
            "validation_failed"
        );
    }
}
