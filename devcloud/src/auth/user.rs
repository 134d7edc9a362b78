//! `auth.users` rows and GoTrue's user JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::error::{AuthError, AuthResult};

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub aud: String,
    pub role: String,
    pub email: Option<String>,
    /// Never serialized; only `password::verify` looks at it.
    pub encrypted_password: Option<String>,
    pub email_confirmed_at: Option<DateTime<Utc>>,
    pub phone: Option<String>,
    pub app_metadata: Value,
    pub user_metadata: Value,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub banned_until: Option<DateTime<Utc>>,
    pub is_anonymous: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns [`User::from_row`] reads, for `SELECT`/`RETURNING`.
pub const COLUMNS: &str = "id, aud, role, email, encrypted_password, email_confirmed_at, phone, \
    raw_app_meta_data, raw_user_meta_data, last_sign_in_at, banned_until, is_anonymous, created_at, updated_at";

/// Go's `time.Time` JSON form, which auth-js and its users parse.
fn timestamp(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl User {
    pub fn from_row(row: &Row) -> Result<User, tokio_postgres::Error> {
        Ok(User {
            id: row.try_get("id")?,
            aud: row.try_get("aud")?,
            role: row.try_get("role")?,
            email: row.try_get("email")?,
            encrypted_password: row.try_get("encrypted_password")?,
            email_confirmed_at: row.try_get("email_confirmed_at")?,
            phone: row.try_get("phone")?,
            app_metadata: row.try_get("raw_app_meta_data")?,
            user_metadata: row.try_get("raw_user_meta_data")?,
            last_sign_in_at: row.try_get("last_sign_in_at")?,
            banned_until: row.try_get("banned_until")?,
            is_anonymous: row.try_get("is_anonymous")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    pub fn is_banned(&self, now: DateTime<Utc>) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }

    pub fn is_confirmed(&self) -> bool {
        self.email_confirmed_at.is_some()
    }

    /// GoTrue's user object (`models.User`): empty strings for a missing email or phone,
    /// optional timestamps left out when unset, and the email identity.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("aud".into(), json!(self.aud));
        m.insert("role".into(), json!(self.role));
        m.insert("email".into(), json!(self.email.as_deref().unwrap_or("")));
        if let Some(t) = &self.email_confirmed_at {
            m.insert("email_confirmed_at".into(), timestamp(t));
        }
        m.insert("phone".into(), json!(self.phone.as_deref().unwrap_or("")));
        // GoTrue's confirmed_at is the earliest of the email and phone confirmations.
        if let Some(t) = &self.email_confirmed_at {
            m.insert("confirmed_at".into(), timestamp(t));
        }
        if let Some(t) = &self.last_sign_in_at {
            m.insert("last_sign_in_at".into(), timestamp(t));
        }
        m.insert("app_metadata".into(), self.app_metadata.clone());
        m.insert("user_metadata".into(), self.user_metadata.clone());
        m.insert("identities".into(), Value::Array(self.identities()));
        m.insert("created_at".into(), timestamp(&self.created_at));
        m.insert("updated_at".into(), timestamp(&self.updated_at));
        if let Some(t) = &self.banned_until {
            m.insert("banned_until".into(), timestamp(t));
        }
        m.insert("is_anonymous".into(), json!(self.is_anonymous));
        Value::Object(m)
    }

    /// devcloud keeps no identities table: an email user has exactly GoTrue's `email`
    /// identity, whose id is the user's id.
    fn identities(&self) -> Vec<Value> {
        let Some(email) = &self.email else {
            return vec![];
        };
        let id = self.id.to_string();
        let mut identity = json!({
            "identity_id": id,
            "id": id,
            "user_id": id,
            "identity_data": {
                "email": email,
                "email_verified": self.is_confirmed(),
                "phone_verified": false,
                "sub": id,
            },
            "provider": "email",
            "created_at": timestamp(&self.created_at),
            "updated_at": timestamp(&self.updated_at),
            "email": email,
        });
        if let (Some(t), Value::Object(m)) = (&self.last_sign_in_at, &mut identity) {
            m.insert("last_sign_in_at".into(), timestamp(t));
        }
        vec![identity]
    }

    #[cfg(test)]
    pub fn test_user(email: &str) -> User {
        let now = Utc::now();
        User {
            id: Uuid::new_v4(),
            aud: "authenticated".into(),
            role: "authenticated".into(),
            email: Some(email.into()),
            encrypted_password: Some("$2b$10$secret".into()),
            email_confirmed_at: Some(now),
            phone: None,
            app_metadata: json!({"provider": "email", "providers": ["email"]}),
            user_metadata: json!({}),
            last_sign_in_at: None,
            banned_until: None,
            is_anonymous: false,
            created_at: now,
            updated_at: now,
        }
    }
}

pub async fn find_by_id<C: GenericClient + Sync>(db: &C, id: Uuid) -> AuthResult<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM auth.users WHERE id = $1");
    let row = db.query_opt(&sql, &[&id]).await?;
    Ok(row.as_ref().map(User::from_row).transpose()?)
}

pub async fn find_by_email<C: GenericClient + Sync>(
    db: &C,
    email: &str,
) -> AuthResult<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM auth.users WHERE lower(email) = lower($1)");
    let row = db.query_opt(&sql, &[&email]).await?;
    Ok(row.as_ref().map(User::from_row).transpose()?)
}

pub async fn find_by_phone<C: GenericClient + Sync>(
    db: &C,
    phone: &str,
) -> AuthResult<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM auth.users WHERE phone = $1");
    let row = db.query_opt(&sql, &[&phone]).await?;
    Ok(row.as_ref().map(User::from_row).transpose()?)
}

/// What a new user starts with (signup and the admin API).
pub struct NewUser {
    pub id: Option<Uuid>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password_hash: String,
    pub confirmed: bool,
    pub app_metadata: Value,
    pub user_metadata: Value,
    pub role: Option<String>,
    pub banned_until: Option<DateTime<Utc>>,
}

/// Inserts the user (the profile trigger runs); a taken email is `user_already_exists`-ish,
/// and the caller chooses the wording, so it comes back as `Ok(None)`.
pub async fn insert<C: GenericClient + Sync>(db: &C, new: &NewUser) -> AuthResult<Option<User>> {
    let sql = format!(
        "INSERT INTO auth.users (id, email, phone, encrypted_password, email_confirmed_at,
                                 raw_app_meta_data, raw_user_meta_data, role, banned_until)
         VALUES (coalesce($1, gen_random_uuid()), $2, $3, $4, CASE WHEN $5 THEN now() END,
                 $6, $7, coalesce($8, 'authenticated'), $9)
         RETURNING {COLUMNS}"
    );
    let result = db
        .query_one(
            &sql,
            &[
                &new.id,
                &new.email,
                &new.phone,
                &new.password_hash,
                &new.confirmed,
                &new.app_metadata,
                &new.user_metadata,
                &new.role,
                &new.banned_until,
            ],
        )
        .await;
    match result {
        Ok(row) => Ok(Some(User::from_row(&row)?)),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// GoTrue's metadata update: top-level keys are merged, a `null` value removes its key.
pub fn merge_metadata(current: &Value, update: &Map<String, Value>) -> Value {
    let mut merged = current.as_object().cloned().unwrap_or_default();
    for (k, v) in update {
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    Value::Object(merged)
}

/// GoTrue's email check (`validateEmail`): required, at most 255 bytes, a plausible
/// address; stored lowercased.
pub fn validate_email(email: &str) -> AuthResult<String> {
    let email = email.trim();
    if email.is_empty() {
        return Err(AuthError::validation("An email address is required"));
    }
    if email.len() > 255 {
        return Err(AuthError::validation("An email address is too long"));
    }
    let plausible = match email.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if !plausible {
        return Err(AuthError::bad_request(
            "email_address_invalid",
            "Unable to validate email address: invalid format",
        ));
    }
    Ok(email.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_json_has_gotrues_shape() {
        let mut u = User::test_user("a@b.test");
        u.last_sign_in_at = Some(u.created_at);
        let j = u.to_json();
        for key in [
            "id",
            "aud",
            "role",
            "email",
            "email_confirmed_at",
            "phone",
            "confirmed_at",
            "last_sign_in_at",
            "app_metadata",
            "user_metadata",
            "identities",
            "created_at",
            "updated_at",
            "is_anonymous",
        ] {
            assert!(j.get(key).is_some(), "missing {key}");
        }
        assert!(j.get("encrypted_password").is_none());
        assert!(!j.to_string().contains("$2b$"));
        assert_eq!(j["phone"], "");
        assert_eq!(j["identities"][0]["provider"], "email");
        assert!(j["created_at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn unconfirmed_user_has_no_confirmation_timestamps() {
        let mut u = User::test_user("a@b.test");
        u.email_confirmed_at = None;
        let j = u.to_json();
        assert!(j.get("email_confirmed_at").is_none());
        assert!(j.get("confirmed_at").is_none());
        assert!(j.get("last_sign_in_at").is_none());
    }

    #[test]
    fn metadata_merges_and_null_removes() {
        let cur = json!({"a": 1, "b": 2});
        let upd = json!({"b": null, "c": 3});
        assert_eq!(
            merge_metadata(&cur, upd.as_object().unwrap()),
            json!({"a": 1, "c": 3})
        );
    }

    #[test]
    fn emails_are_validated_and_lowercased() {
        assert_eq!(
            validate_email(" Dave@Example.TEST ").unwrap(),
            "dave@example.test"
        );
        assert_eq!(validate_email("").unwrap_err().code, "validation_failed");
        assert_eq!(
            validate_email("nope").unwrap_err().code,
            "email_address_invalid"
        );
        assert_eq!(
            validate_email("a b@c.d").unwrap_err().code,
            "email_address_invalid"
        );
    }
}
