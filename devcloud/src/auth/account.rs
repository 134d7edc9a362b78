//! The signed-in user's own routes: `POST /signup`, `GET|PUT /user`, `POST /logout`.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    check_password,
    error::{AuthError, AuthResult},
    guard, hash_password, query_param, read_json, session,
    token::token_body,
    user::{self, NewUser},
    verify_password, ApiKey,
};
use crate::state::SharedState;

#[derive(Deserialize, Default)]
#[serde(default)]
struct SignupParams {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    data: Option<Map<String, Value>>,
}

/// Signup with autoconfirm: the new user is signed in at once and gets a token response.
pub async fn signup(
    _: ApiKey,
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> AuthResult<Response> {
    let params: SignupParams = read_json(&state, body).await?;
    let password = params.password.unwrap_or_default();
    if password.is_empty() {
        return Err(AuthError::validation("Signup requires a valid password"));
    }
    check_password(&password)?;
    let email = params.email.filter(|e| !e.is_empty());
    let phone = params.phone.filter(|p| !p.is_empty());
    let email = match (email, phone) {
        (Some(_), Some(_)) => {
            return Err(AuthError::validation(
                "Only an email address or phone number should be provided on signup.",
            ))
        }
        (None, Some(_)) => {
            return Err(AuthError::bad_request(
                "phone_provider_disabled",
                "Phone signups are disabled",
            ))
        }
        (None, None) => {
            return Err(AuthError::validation(
                "Sign up only available with email provider",
            ))
        }
        (Some(email), None) => user::validate_email(&email)?,
    };

    let mut client = state.db.get().await?;
    if user::find_by_email(&**client, &email).await?.is_some() {
        return Err(already_registered());
    }
    let new = NewUser {
        id: None,
        email: Some(email),
        phone: None,
        password_hash: hash_password(password).await?,
        confirmed: true,
        app_metadata: json!({"provider": "email", "providers": ["email"]}),
        user_metadata: Value::Object(params.data.unwrap_or_default()),
        role: None,
        banned_until: None,
    };
    let tx = client.transaction().await?;
    // A concurrent signup with the same email loses on the unique constraint.
    let Some(created) = user::insert(&*tx, &new).await? else {
        return Err(already_registered());
    };
    let issued = session::start(&*tx, created.id).await?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1 RETURNING {}",
                user::COLUMNS
            ),
            &[&created.id],
        )
        .await?;
    let created = user::User::from_row(&row)?;
    tx.commit().await?;
    Ok(Json(token_body(&state, &headers, &created, &issued)).into_response())
}

fn already_registered() -> AuthError {
    AuthError::unprocessable("user_already_exists", "User already registered")
}

pub async fn get_user(
    _: ApiKey,
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> AuthResult<Response> {
    let me = guard::require_user(&state, &headers).await?;
    Ok(Json(me.user.to_json()).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateParams {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    data: Option<Map<String, Value>>,
}

/// `PUT /user`: email, phone, password and `data` (merged into `user_metadata`). Email
/// changes apply at once (devcloud sends no mail, as with autoconfirm). A new password signs
/// out the user's other sessions, as GoTrue does.
pub async fn update_user(
    _: ApiKey,
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> AuthResult<Response> {
    let me = guard::require_user(&state, &headers).await?;
    let params: UpdateParams = read_json(&state, body).await?;
    let current = me.user;

    let email = match params.email.filter(|e| !e.is_empty()) {
        Some(e) => Some(user::validate_email(&e)?).filter(|e| Some(e) != current.email.as_ref()),
        None => None,
    };
    let password_hash = match params.password.filter(|p| !p.is_empty()) {
        Some(password) => {
            check_password(&password)?;
            if verify_password(password.clone(), current.encrypted_password.clone()).await? {
                return Err(AuthError::unprocessable(
                    "same_password",
                    "New password should be different from the old password.",
                ));
            }
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let user_metadata = params
        .data
        .map(|d| user::merge_metadata(&current.user_metadata, &d));
    let phone = params.phone.filter(|p| !p.is_empty());

    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    if let Some(email) = &email {
        let taken = tx
            .query_opt(
                "SELECT 1 FROM auth.users WHERE lower(email) = $1 AND id <> $2",
                &[email, &current.id],
            )
            .await?
            .is_some();
        if taken {
            return Err(AuthError::unprocessable(
                "email_exists",
                "A user with this email address has already been registered",
            ));
        }
    }
    let sql = format!(
        "UPDATE auth.users SET
           email = coalesce($2, email),
           phone = coalesce($3, phone),
           encrypted_password = coalesce($4, encrypted_password),
           raw_user_meta_data = coalesce($5, raw_user_meta_data),
           updated_at = now()
         WHERE id = $1 RETURNING {}",
        user::COLUMNS
    );
    let row = tx
        .query_one(
            &sql,
            &[&current.id, &email, &phone, &password_hash, &user_metadata],
        )
        .await?;
    if password_hash.is_some() {
        let scope = if me.session_id.is_some() {
            session::LogoutScope::Others
        } else {
            session::LogoutScope::Global
        };
        session::logout(&*tx, current.id, me.session_id, scope).await?;
    }
    let updated = user::User::from_row(&row)?;
    tx.commit().await?;
    Ok(Json(updated.to_json()).into_response())
}

/// `POST /logout?scope=global|local|others` → 204.
pub async fn logout(
    _: ApiKey,
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> AuthResult<Response> {
    let me = guard::require_user(&state, &headers).await?;
    let scope = session::LogoutScope::parse(query_param(&uri, "scope").as_deref())?;
    let client = state.db.get().await?;
    session::logout(&**client, me.user.id, me.session_id, scope).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
