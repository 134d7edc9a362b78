//! The admin users API (`/admin/users`), for the service role only.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, Uri},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{
    check_password,
    claims::issuer,
    error::{AuthError, AuthResult},
    guard, hash_password, query_param, read_json, session,
    user::{self, NewUser, User},
    ApiKey,
};
use crate::state::SharedState;

const DEFAULT_PER_PAGE: i64 = 50;
const MAX_PER_PAGE: i64 = 1000;

fn page_param(uri: &Uri, name: &str, default: i64) -> AuthResult<i64> {
    match query_param(uri, name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            AuthError::validation(format!("Bad Pagination Parameters: invalid {name}"))
        }),
    }
}

/// `GET /admin/users?page=&per_page=` → `{users, aud}`, newest first, with GoTrue's
/// `X-Total-Count` and `Link` headers (auth-js derives `nextPage`/`lastPage` from them).
pub async fn list(
    _: ApiKey,
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> AuthResult<Response> {
    guard::require_admin(&state, &headers)?;
    let page = page_param(&uri, "page", 1)?;
    let per_page = page_param(&uri, "per_page", DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE);
    let client = state.db.get().await?;
    let total: i64 = client
        .query_one("SELECT count(*) FROM auth.users", &[])
        .await?
        .try_get(0)?;
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM auth.users ORDER BY created_at DESC, id LIMIT $1 OFFSET $2",
                user::COLUMNS
            ),
            &[
                &per_page,
                &(page.saturating_sub(1).saturating_mul(per_page)),
            ],
        )
        .await?;
    let users = rows
        .iter()
        .map(|r| User::from_row(r).map(|u| u.to_json()))
        .collect::<Result<Vec<_>, _>>()?;

    let mut response = Json(json!({"users": users, "aud": "authenticated"})).into_response();
    let base = format!("{}/admin/users", issuer(&headers));
    let last = ((total + per_page - 1) / per_page).max(1);
    let mut links = Vec::new();
    if page < last {
        links.push(format!(
            "<{base}?page={}&per_page={per_page}>; rel=\"next\"",
            page + 1
        ));
    }
    links.push(format!(
        "<{base}?page={last}&per_page={per_page}>; rel=\"last\""
    ));
    let h = response.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        h.insert(header::LINK, v);
    }
    Ok(response)
}

fn parse_user_id(id: &str) -> AuthResult<Uuid> {
    id.parse()
        .map_err(|_| AuthError::not_found("validation_failed", "user_id must be an UUID"))
}

fn user_not_found() -> AuthError {
    AuthError::not_found("user_not_found", "User not found")
}

pub async fn get(
    _: ApiKey,
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AuthResult<Response> {
    guard::require_admin(&state, &headers)?;
    let id = parse_user_id(&id)?;
    let client = state.db.get().await?;
    let found = user::find_by_id(&**client, id)
        .await?
        .ok_or_else(user_not_found)?;
    Ok(Json(found.to_json()).into_response())
}

/// `DELETE /admin/users/{id}` → `{}`. Always a hard delete: sessions, refresh tokens and the
/// profile go with the user (foreign keys cascade).
pub async fn delete(
    _: ApiKey,
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AuthResult<Response> {
    guard::require_admin(&state, &headers)?;
    let id = parse_user_id(&id)?;
    let client = state.db.get().await?;
    let deleted = client
        .execute("DELETE FROM auth.users WHERE id = $1", &[&id])
        .await?;
    if deleted == 0 {
        return Err(user_not_found());
    }
    Ok(Json(json!({})).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AdminParams {
    id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    email_confirm: Option<bool>,
    user_metadata: Option<Map<String, Value>>,
    app_metadata: Option<Map<String, Value>>,
    ban_duration: Option<String>,
    role: Option<String>,
}

/// A Go duration as GoTrue's `ban_duration` takes it (`24h`, `1h30m`, `90s`), or `none`.
/// `Ok(None)` lifts a ban.
fn parse_ban_duration(text: &str) -> AuthResult<Option<Duration>> {
    if text == "none" {
        return Ok(None);
    }
    let bad = || {
        AuthError::validation(format!(
            "invalid format for ban duration: time: invalid duration {text:?}"
        ))
    };
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let seconds = match &rest[digits..digits + unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[digits + unit_len..];
    }
    Duration::try_from_secs_f64(total)
        .map(Some)
        .map_err(|_| bad())
}

fn banned_until(ban: Option<Duration>) -> Option<DateTime<Utc>> {
    ban.and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| Utc::now().checked_add_signed(d))
}

fn email_exists() -> AuthError {
    AuthError::unprocessable(
        "email_exists",
        "A user with this email address has already been registered",
    )
}

/// `POST /admin/users` → the new user. Without a password the user gets a random one (it
/// can only sign in after an update), as in GoTrue.
pub async fn create(
    _: ApiKey,
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> AuthResult<Response> {
    guard::require_admin(&state, &headers)?;
    let params: AdminParams = read_json(&state, body).await?;
    let email = params.email.filter(|e| !e.is_empty());
    let phone = params.phone.filter(|p| !p.is_empty());
    if email.is_none() && phone.is_none() {
        return Err(AuthError::validation(
            "Cannot create a user without either an email or phone",
        ));
    }
    let email = email.map(|e| user::validate_email(&e)).transpose()?;
    let id = match params.id.filter(|i| !i.is_empty()) {
        None => None,
        Some(i) => {
            let id: Uuid = i
                .parse()
                .map_err(|_| AuthError::validation("ID must conform to the uuid v4 format"))?;
            if id.is_nil() {
                return Err(AuthError::validation("ID cannot be a nil uuid"));
            }
            Some(id)
        }
    };
    let ban = params
        .ban_duration
        .as_deref()
        .map(parse_ban_duration)
        .transpose()?
        .flatten();
    let password = match params.password.filter(|p| !p.is_empty()) {
        Some(p) if p.len() > 72 => {
            return Err(AuthError::validation(
                "Password cannot be longer than 72 characters",
            ))
        }
        Some(p) => p,
        None => (0..4).map(|_| session::new_refresh_token()).collect(),
    };
    let mut providers = Vec::new();
    if email.is_some() {
        providers.push("email");
    }
    if phone.is_some() {
        providers.push("phone");
    }
    let base =
        json!({"provider": providers.first().copied().unwrap_or("email"), "providers": providers});
    let app_metadata = match &params.app_metadata {
        Some(update) => user::merge_metadata(&base, update),
        None => base,
    };

    let client = state.db.get().await?;
    if let Some(e) = &email {
        if user::find_by_email(&**client, e).await?.is_some() {
            return Err(email_exists());
        }
    }
    let new = NewUser {
        id,
        email,
        phone,
        password_hash: hash_password(password).await?,
        confirmed: params.email_confirm.unwrap_or(false),
        app_metadata,
        user_metadata: Value::Object(params.user_metadata.unwrap_or_default()),
        role: params.role.filter(|r| !r.is_empty()),
        banned_until: banned_until(ban),
    };
    let created = user::insert(&**client, &new)
        .await?
        .ok_or_else(email_exists)?;
    Ok(Json(created.to_json()).into_response())
}

/// `PUT /admin/users/{id}`: metadata is merged, `email_confirm` confirms, a new password
/// signs the user out everywhere, `ban_duration` bans (or `none` lifts the ban).
pub async fn update(
    _: ApiKey,
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AuthResult<Response> {
    guard::require_admin(&state, &headers)?;
    let id = parse_user_id(&id)?;
    let params: AdminParams = read_json(&state, body).await?;
    let mut client = state.db.get().await?;
    let current = user::find_by_id(&**client, id)
        .await?
        .ok_or_else(user_not_found)?;

    let email = params
        .email
        .filter(|e| !e.is_empty())
        .map(|e| user::validate_email(&e))
        .transpose()?;
    let ban = params
        .ban_duration
        .as_deref()
        .map(parse_ban_duration)
        .transpose()?;
    let password_hash = match params.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            check_password(&p)?;
            Some(hash_password(p).await?)
        }
        None => None,
    };
    let user_metadata = params
        .user_metadata
        .map(|m| user::merge_metadata(&current.user_metadata, &m));
    let app_metadata = params
        .app_metadata
        .map(|m| user::merge_metadata(&current.app_metadata, &m));
    let (set_ban, banned) = match ban {
        None => (false, None),
        Some(b) => (true, banned_until(b)),
    };

    let tx = client.transaction().await?;
    if let Some(e) = &email {
        let taken = tx
            .query_opt(
                "SELECT 1 FROM auth.users WHERE lower(email) = $1 AND id <> $2",
                &[e, &id],
            )
            .await?
            .is_some();
        if taken {
            return Err(email_exists());
        }
    }
    let sql = format!(
        "UPDATE auth.users SET
           email = coalesce($2, email),
           phone = coalesce($3, phone),
           encrypted_password = coalesce($4, encrypted_password),
           raw_user_meta_data = coalesce($5, raw_user_meta_data),
           raw_app_meta_data = coalesce($6, raw_app_meta_data),
           email_confirmed_at = CASE WHEN $7 THEN coalesce(email_confirmed_at, now()) ELSE email_confirmed_at END,
           role = coalesce($8, role),
           banned_until = CASE WHEN $9 THEN $10 ELSE banned_until END,
           updated_at = now()
         WHERE id = $1 RETURNING {}",
        user::COLUMNS
    );
    let phone = params.phone.filter(|p| !p.is_empty());
    let confirm = params.email_confirm.unwrap_or(false);
    let role = params.role.filter(|r| !r.is_empty());
    let row = tx
        .query_one(
            &sql,
            &[
                &id,
                &email,
                &phone,
                &password_hash,
                &user_metadata,
                &app_metadata,
                &confirm,
                &role,
                &set_ban,
                &banned,
            ],
        )
        .await?;
    if password_hash.is_some() {
        session::logout(&*tx, id, None, session::LogoutScope::Global).await?;
    }
    let updated = User::from_row(&row)?;
    tx.commit().await?;
    Ok(Json(updated.to_json()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_durations() {
        assert_eq!(parse_ban_duration("none").unwrap(), None);
        assert_eq!(
            parse_ban_duration("24h").unwrap(),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_ban_duration("1h30m").unwrap(),
            Some(Duration::from_secs(5_400))
        );
        assert_eq!(
            parse_ban_duration("1.5s").unwrap(),
            Some(Duration::from_millis(1_500))
        );
        assert!(parse_ban_duration("").is_err());
        assert!(parse_ban_duration("forever").is_err());
        assert!(parse_ban_duration("10").is_err());
        assert!(parse_ban_duration("10d").is_err());
    }
}
