//! Sessions and refresh tokens (`auth.sessions`, `auth.refresh_tokens`): issuing, rotation,
//! reuse detection, logout.
//!
//! Every refresh rotates the token: the presented row is revoked and a child row (`parent` =
//! the presented token) becomes the session's active token. A client that lost the answer to
//! a refresh, or several tabs refreshing at once, present an already revoked token; GoTrue
//! tolerates that when the token is the parent of the active one or was revoked within the
//! reuse interval, and answers with the active token. Any other reuse looks like a stolen
//! token, so the whole token family of the session is revoked.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{AuthError, AuthResult};

pub const REFRESH_TOKEN_LEN: usize = 12;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh refresh token: 12 random lowercase alphanumerics (GoTrue's legacy format).
pub fn new_refresh_token() -> String {
    let mut rng = rand::thread_rng();
    (0..REFRESH_TOKEN_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// A refresh-token row, as far as the reuse decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub token: String,
    pub parent: Option<String>,
    pub revoked: bool,
    /// Set when the row is revoked, so for a revoked row: when it was revoked.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The presented token is the active one: rotate it.
    Rotate,
    /// A tolerated reuse: answer with the session's active token, unchanged.
    ReturnActive(String),
    /// Reuse outside the tolerance: revoke every token of the session.
    RevokeSession,
    /// No such token.
    NotFound,
}

/// What to do with a presented refresh token (`presented`), given the session's active
/// (newest unrevoked) token.
pub fn decide(
    presented: Option<&TokenRow>,
    active: Option<&TokenRow>,
    now: DateTime<Utc>,
    reuse_interval: Duration,
) -> Decision {
    let Some(presented) = presented else {
        return Decision::NotFound;
    };
    if !presented.revoked {
        return Decision::Rotate;
    }
    let Some(active) = active else {
        return Decision::RevokeSession;
    };
    if active.parent.as_deref() == Some(presented.token.as_str()) {
        return Decision::ReturnActive(active.token.clone());
    }
    let interval = chrono::Duration::from_std(reuse_interval).unwrap_or(chrono::Duration::MAX);
    let reusable_until = presented
        .updated_at
        .checked_add_signed(interval)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now <= reusable_until && interval > chrono::Duration::zero() {
        Decision::ReturnActive(active.token.clone())
    } else {
        Decision::RevokeSession
    }
}

/// A session that just got (or kept) a refresh token.
pub struct Issued {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub refresh_token: String,
    /// When the session was signed in (the `amr` timestamp).
    pub authenticated_at: DateTime<Utc>,
}

/// Starts a session for the user with its first refresh token.
pub async fn start<C: GenericClient + Sync>(db: &C, user_id: Uuid) -> AuthResult<Issued> {
    let row = db
        .query_one(
            "INSERT INTO auth.sessions (user_id) VALUES ($1) RETURNING id, created_at",
            &[&user_id],
        )
        .await?;
    let session_id: Uuid = row.try_get("id")?;
    let refresh_token = new_refresh_token();
    db.execute(
        "INSERT INTO auth.refresh_tokens (token, user_id, session_id) VALUES ($1, $2, $3)",
        &[&refresh_token, &user_id, &session_id],
    )
    .await?;
    Ok(Issued {
        user_id,
        session_id,
        refresh_token,
        authenticated_at: row.try_get("created_at")?,
    })
}

fn not_found() -> AuthError {
    AuthError::bad_request(
        "refresh_token_not_found",
        "Invalid Refresh Token: Refresh Token Not Found",
    )
}

fn already_used() -> AuthError {
    AuthError::bad_request(
        "refresh_token_already_used",
        "Invalid Refresh Token: Already Used",
    )
}

const TOKEN_COLUMNS: &str = "token, parent, revoked, updated_at";

fn token_row(row: &tokio_postgres::Row) -> Result<TokenRow, tokio_postgres::Error> {
    Ok(TokenRow {
        token: row.try_get("token")?,
        parent: row.try_get("parent")?,
        revoked: row.try_get("revoked")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The refresh-token grant. One transaction holds the session row (`FOR UPDATE`), so
/// concurrent refreshes with the same token are serialized: the first rotates, the others
/// then see a revoked parent of the active token and get that active token back.
pub async fn refresh(
    pool: &deadpool_postgres::Pool,
    token: &str,
    reuse_interval: Duration,
) -> AuthResult<Issued> {
    let mut client = pool.get().await?;
    let located = client
        .query_opt(
            "SELECT session_id FROM auth.refresh_tokens WHERE token = $1",
            &[&token],
        )
        .await?;
    let Some(located) = located else {
        return Err(not_found());
    };
    let session_id: Uuid = located.try_get("session_id")?;

    let tx = client.transaction().await?;
    let session = tx
        .query_opt(
            "SELECT user_id, created_at FROM auth.sessions WHERE id = $1 FOR UPDATE",
            &[&session_id],
        )
        .await?;
    // Logged out (and its tokens deleted with it) since the lookup above.
    let Some(session) = session else {
        return Err(not_found());
    };
    let user_id: Uuid = session.try_get("user_id")?;
    let authenticated_at: DateTime<Utc> = session.try_get("created_at")?;

    let presented = tx
        .query_opt(
            &format!("SELECT {TOKEN_COLUMNS} FROM auth.refresh_tokens WHERE token = $1"),
            &[&token],
        )
        .await?
        .as_ref()
        .map(token_row)
        .transpose()?;
    let active = tx
        .query_opt(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM auth.refresh_tokens
                 WHERE session_id = $1 AND NOT revoked ORDER BY id DESC LIMIT 1"
            ),
            &[&session_id],
        )
        .await?
        .as_ref()
        .map(token_row)
        .transpose()?;

    let refresh_token = match decide(
        presented.as_ref(),
        active.as_ref(),
        Utc::now(),
        reuse_interval,
    ) {
        Decision::NotFound => return Err(not_found()),
        Decision::RevokeSession => {
            tx.execute(
                "UPDATE auth.refresh_tokens SET revoked = true, updated_at = now()
                 WHERE session_id = $1 AND NOT revoked",
                &[&session_id],
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(%session_id, "refresh token reused outside the reuse interval; session revoked");
            return Err(already_used());
        }
        Decision::ReturnActive(active) => active,
        Decision::Rotate => {
            let next = new_refresh_token();
            tx.execute(
                "UPDATE auth.refresh_tokens SET revoked = true, updated_at = now() WHERE token = $1",
                &[&token],
            )
            .await?;
            tx.execute(
                "INSERT INTO auth.refresh_tokens (token, user_id, session_id, parent) VALUES ($1, $2, $3, $4)",
                &[&next, &user_id, &session_id, &token],
            )
            .await?;
            tx.execute(
                "UPDATE auth.sessions SET refreshed_at = now(), updated_at = now() WHERE id = $1",
                &[&session_id],
            )
            .await?;
            next
        }
    };
    tx.commit().await?;
    Ok(Issued {
        user_id,
        session_id,
        refresh_token,
        authenticated_at,
    })
}

pub async fn exists<C: GenericClient + Sync>(db: &C, session_id: Uuid) -> AuthResult<bool> {
    Ok(db
        .query_opt("SELECT 1 FROM auth.sessions WHERE id = $1", &[&session_id])
        .await?
        .is_some())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    Global,
    Local,
    Others,
}

impl LogoutScope {
    /// GoTrue's `scope` query parameter; absent means global.
    pub fn parse(scope: Option<&str>) -> AuthResult<LogoutScope> {
        match scope.unwrap_or("") {
            "" | "global" => Ok(LogoutScope::Global),
            "local" => Ok(LogoutScope::Local),
            "others" => Ok(LogoutScope::Others),
            other => Err(AuthError::validation(format!(
                "Unsupported logout scope {other:?}"
            ))),
        }
    }
}

/// GoTrue deletes the sessions (their refresh tokens go with them), so a logged-out refresh
/// token is then simply not found. Without a session id only the global scope makes sense.
pub async fn logout<C: GenericClient + Sync>(
    db: &C,
    user_id: Uuid,
    session_id: Option<Uuid>,
    scope: LogoutScope,
) -> AuthResult<()> {
    match (scope, session_id) {
        (LogoutScope::Local, Some(sid)) => {
            db.execute("DELETE FROM auth.sessions WHERE id = $1", &[&sid])
                .await?;
        }
        (LogoutScope::Others, Some(sid)) => {
            db.execute(
                "DELETE FROM auth.sessions WHERE user_id = $1 AND id <> $2",
                &[&user_id, &sid],
            )
            .await?;
        }
        _ => {
            db.execute("DELETE FROM auth.sessions WHERE user_id = $1", &[&user_id])
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(token: &str, parent: Option<&str>, revoked: bool, at: DateTime<Utc>) -> TokenRow {
        TokenRow {
            token: token.into(),
            parent: parent.map(Into::into),
            revoked,
            updated_at: at,
        }
    }

    #[test]
    fn refresh_tokens_are_12_lowercase_alphanumerics() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let t = new_refresh_token();
            assert_eq!(t.len(), 12);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{t}"
            );
            seen.insert(t);
        }
        assert_eq!(seen.len(), 200);
    }

    #[test]
    fn unknown_token_is_not_found() {
        assert_eq!(
            decide(None, None, Utc::now(), Duration::from_secs(10)),
            Decision::NotFound
        );
    }

    #[test]
    fn active_token_rotates() {
        let now = Utc::now();
        let a = row("aaaaaaaaaaaa", None, false, now);
        assert_eq!(
            decide(Some(&a), Some(&a), now, Duration::from_secs(10)),
            Decision::Rotate
        );
    }

    #[test]
    fn parent_of_active_gets_the_active_token_even_after_the_interval() {
        let long_ago = Utc::now() - chrono::Duration::hours(1);
        let parent = row("aaaaaaaaaaaa", None, true, long_ago);
        let active = row("bbbbbbbbbbbb", Some("aaaaaaaaaaaa"), false, long_ago);
        assert_eq!(
            decide(Some(&parent), Some(&active), Utc::now(), Duration::ZERO),
            Decision::ReturnActive("bbbbbbbbbbbb".into())
        );
    }

    #[test]
    fn older_token_within_the_interval_gets_the_active_token() {
        let now = Utc::now();
        let grandparent = row(
            "aaaaaaaaaaaa",
            None,
            true,
            now - chrono::Duration::seconds(3),
        );
        let active = row("cccccccccccc", Some("bbbbbbbbbbbb"), false, now);
        assert_eq!(
            decide(
                Some(&grandparent),
                Some(&active),
                now,
                Duration::from_secs(10)
            ),
            Decision::ReturnActive("cccccccccccc".into())
        );
    }

    #[test]
    fn older_token_after_the_interval_revokes_the_session() {
        let now = Utc::now();
        let grandparent = row(
            "aaaaaaaaaaaa",
            None,
            true,
            now - chrono::Duration::seconds(11),
        );
        let active = row("cccccccccccc", Some("bbbbbbbbbbbb"), false, now);
        assert_eq!(
            decide(
                Some(&grandparent),
                Some(&active),
                now,
                Duration::from_secs(10)
            ),
            Decision::RevokeSession
        );
        // A zero interval tolerates nothing but the parent of the active token.
        let fresh = row("aaaaaaaaaaaa", None, true, now);
        assert_eq!(
            decide(Some(&fresh), Some(&active), now, Duration::ZERO),
            Decision::RevokeSession
        );
    }

    #[test]
    fn revoked_token_of_a_revoked_session_stays_refused() {
        let now = Utc::now();
        let t = row("aaaaaaaaaaaa", None, true, now);
        assert_eq!(
            decide(Some(&t), None, now, Duration::from_secs(10)),
            Decision::RevokeSession
        );
    }

    #[test]
    fn logout_scope_parsing() {
        assert_eq!(LogoutScope::parse(None).unwrap(), LogoutScope::Global);
        assert_eq!(
            LogoutScope::parse(Some("local")).unwrap(),
            LogoutScope::Local
        );
        assert_eq!(
            LogoutScope::parse(Some("others")).unwrap(),
            LogoutScope::Others
        );
        assert_eq!(
            LogoutScope::parse(Some("everyone")).unwrap_err().code,
            "validation_failed"
        );
    }
}
