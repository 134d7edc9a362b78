//! The auth lifecycle: login, silent auto-login from the stored refresh token, scheduled and
//! on-demand refresh shared by all callers (single flight), logout, and shutdown that keeps
//! the stored session.

pub mod context;
pub mod session;

use std::{
    future::Future,
    sync::{Arc, Mutex, RwLock, Weak},
    time::Duration,
};

use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::json;

pub use context::{Snapshot, UserContext};
use session::{ends_session, is_expiring, refresh_delay, Session};

use crate::{
    error::{Error, Result},
    events::{Event, Events},
    rest::{backoff::Backoff, http::Call, Body, Credentials, Http},
    token_store::TokenStore,
};

const PASSWORD_GRANT: &str = "/auth/v1/token?grant_type=password";
const REFRESH_GRANT: &str = "/auth/v1/token?grant_type=refresh_token";
/// Logout is best effort: it must not hold the caller for a full request timeout.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Auth {
    http: Arc<Http>,
    store: Arc<dyn TokenStore>,
    events: Arc<Events>,
    state: RwLock<State>,
    /// Held while a refresh is in flight, so concurrent callers share its result.
    gate: tokio::sync::Mutex<()>,
    timer: Mutex<Option<tokio::task::AbortHandle>>,
    me: Weak<Auth>,
    auto_refresh: bool,
}

#[derive(Default)]
struct State {
    session: Option<Session>,
    ctx: UserContext,
    /// Bumped whenever the session starts, is refreshed or ends. A refresh that raced a logout
    /// is dropped, and a caller who waited for a refresh in flight sees that it happened
    /// (tokens issued within the same second can be byte-identical, so they cannot tell).
    epoch: u64,
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Auth {
    pub fn new(
        http: Arc<Http>,
        store: Arc<dyn TokenStore>,
        events: Arc<Events>,
        auto_refresh: bool,
    ) -> Arc<Auth> {
        Arc::new_cyclic(|me| Auth {
            http,
            store,
            events,
            state: RwLock::default(),
            gate: tokio::sync::Mutex::new(()),
            timer: Mutex::new(None),
            me: me.clone(),
            auto_refresh,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_logged_in(&self) -> bool {
        self.read().session.is_some()
    }

    pub fn context(&self) -> UserContext {
        self.read().ctx.clone()
    }

    /// The auth part of the status.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.read();
        s.ctx.snapshot(s.session.is_some())
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<()> {
        if email.trim().is_empty() || password.is_empty() {
            return Err(Error::InvalidArgument(
                "Email and password are required".into(),
            ));
        }
        let body = Body::Json(json!({"email": email.trim(), "password": password}));
        let reply = self.post(PASSWORD_GRANT, &body, None).await;
        let fail = |e: Error| {
            self.events.emit(Event::AuthError {
                error: e.to_string(),
            });
            e
        };
        let session = reply
            .and_then(|r| Session::from_token_response(r.body, &r.url, now()))
            .map_err(fail)?;
        let _gate = self.gate.lock().await;
        // Nothing is stored or published until the user context is whole: a half login
        // would show "no organization" until the next one.
        let ctx = self.load_context(&session).await.map_err(|e| {
            self.events.emit(Event::AuthError {
                error: format!(
                    "Login failed: the profile and organization could not be loaded: {e}"
                ),
            });
            e
        })?;
        self.persist(&session.refresh_token).await;
        self.publish(session, ctx);
        Ok(())
    }

    /// Resumes the stored session. Silent: `false` on any failure, and a token the server
    /// rejected is forgotten while one that could not be checked (offline) is kept.
    pub async fn try_auto_login(&self) -> bool {
        // Under the gate, so a refresh in flight cannot rotate the stored token under us.
        let _gate = self.gate.lock().await;
        if self.is_logged_in() {
            return true;
        }
        let token = match self.store.load().await {
            Ok(Some(t)) => t,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored session");
                return false;
            }
        };
        match self.exchange(&token).await {
            Ok(session) => {
                // The stored token was just rotated: keep the new one whatever follows.
                self.persist(&session.refresh_token).await;
                match self.load_context(&session).await {
                    Ok(ctx) => {
                        self.publish(session, ctx);
                        true
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "auto-login failed: the user context could not be loaded");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "auto-login failed");
                if ends_session(&e) {
                    if let Err(e) = self.store.clear().await {
                        tracing::warn!(error = %e, "cannot remove the rejected session from storage");
                    }
                }
                false
            }
        }
    }

    /// Refreshes now, whatever the token's age; callers that arrive while a refresh is in
    /// flight share it. The session to renew is the one current at the call, not when the
    /// future is first polled: calls made together share one request however late a busy
    /// runtime starts them.
    pub fn refresh(self: &Arc<Self>) -> impl Future<Output = Result<()>> + Send + 'static {
        let epoch = {
            let s = self.read();
            s.session.as_ref().map(|_| s.epoch)
        };
        let me = self.clone();
        async move {
            let epoch = epoch.ok_or(Error::NotLoggedIn)?;
            me.renew(Seen::Epoch(epoch)).await.map(|_| ())
        }
    }

    /// Best effort on the server; local state and the stored token are always cleared.
    pub async fn logout(&self) -> Result<()> {
        let session = self.forget(None).ok().flatten();
        if let Some(session) = session {
            let call = Call {
                method: Method::POST,
                path: "/auth/v1/logout?scope=local",
                body: None,
                headers: &[],
                bearer: Some(&session.access_token),
                timeout: None,
            };
            match tokio::time::timeout(LOGOUT_TIMEOUT, self.http.send(&call)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "server logout failed; local session cleared anyway")
                }
                Err(_) => tracing::info!("server logout timed out; local session cleared anyway"),
            }
        }
        let cleared = self.store.clear().await;
        self.events.emit(Event::LoggedOut {});
        cleared
    }

    /// Shutdown: stop the timer and forget the in-memory session, but keep the stored
    /// refresh token so the next start logs in again.
    pub fn shutdown(&self) {
        let _ = self.forget(None);
    }

    /// Drops the in-memory session and its timer, unless the session changed since `epoch`
    /// (then `Err(Changed)` and nothing happens). Returns the dropped session.
    fn forget(&self, epoch: Option<u64>) -> std::result::Result<Option<Session>, Changed> {
        let session = {
            let mut s = self.write();
            if epoch.is_some_and(|e| e != s.epoch) {
                return Err(Changed);
            }
            s.epoch += 1;
            s.ctx = UserContext::default();
            s.session.take()
        };
        self.cancel_timer();
        Ok(session)
    }

    async fn post(
        &self,
        path: &str,
        body: &Body,
        bearer: Option<&str>,
    ) -> Result<crate::rest::Reply> {
        let call = Call {
            method: Method::POST,
            path,
            body: Some(body),
            headers: &[],
            bearer,
            timeout: None,
        };
        self.http.send(&call).await
    }

    async fn exchange(&self, refresh_token: &str) -> Result<Session> {
        let body = Body::Json(json!({"refresh_token": refresh_token}));
        let reply = self.post(REFRESH_GRANT, &body, None).await?;
        Session::from_token_response(reply.body, &reply.url, now())
    }

    async fn load_context(&self, session: &Session) -> Result<UserContext> {
        UserContext::fetch(
            &self.http,
            &session.access_token,
            session.user.clone(),
            session.user_id,
        )
        .await
    }

    /// Makes `session` the current one. Callers hold the gate and stored its refresh token.
    fn publish(&self, session: Session, ctx: UserContext) {
        let expires_in = session.expires_in;
        let snapshot = {
            let mut s = self.write();
            s.epoch += 1;
            s.session = Some(session);
            s.ctx = ctx;
            s.ctx.snapshot(true)
        };
        self.schedule(expires_in);
        self.events.emit(Event::LoggedIn(
            serde_json::to_value(snapshot).unwrap_or_default(),
        ));
    }

    async fn persist(&self, refresh_token: &str) {
        if let Err(e) = self.store.save(refresh_token).await {
            // The session still works in memory; only the next start's auto-login is lost.
            tracing::warn!(error = %e, store = %self.store.describe(), "cannot store the refresh token");
            self.events.emit(Event::AuthError {
                error: format!("Cannot remember the session: {e}"),
            });
        }
    }

    /// The single flight: the first caller refreshes, the others wait on the gate and then
    /// find the session already renewed since what they `saw`.
    async fn renew(&self, saw: Seen<'_>) -> Result<String> {
        let _gate = self.gate.lock().await;
        let (refresh_token, access, expires_at, epoch, user_id) = {
            let s = self.read();
            let session = s.session.as_ref().ok_or(Error::NotLoggedIn)?;
            (
                session.refresh_token.clone(),
                session.access_token.clone(),
                session.expires_at,
                s.epoch,
                session.user_id,
            )
        };
        let renewed = match saw {
            Seen::Epoch(e) => e != epoch,
            Seen::Token(t) => t != access,
        };
        if renewed && !is_expiring(expires_at, now()) {
            return Ok(access);
        }
        match self.exchange(&refresh_token).await {
            Ok(session) if session.user_id != user_id => Err(Error::InvalidResponse {
                url: format!("{}/auth/v1/token", self.http.base_url()),
                status: 200,
                reason: "the refreshed session belongs to another user".into(),
            }),
            Ok(session) => {
                self.persist(&session.refresh_token).await;
                let access = session.access_token.clone();
                let expires_in = session.expires_in;
                {
                    let mut s = self.write();
                    if s.epoch != epoch {
                        return Err(Error::NotLoggedIn);
                    }
                    s.ctx.user = Some(session.user.clone());
                    s.epoch += 1;
                    s.session = Some(session);
                }
                self.schedule(expires_in);
                tracing::debug!("session refreshed");
                Ok(access)
            }
            Err(e) if ends_session(&e) => {
                self.end_session(epoch, &e).await;
                Err(Error::SessionEnded(describe_rejection(&e)))
            }
            Err(e) => Err(e),
        }
    }

    /// The server refused the refresh token: the session is over for good.
    async fn end_session(&self, epoch: u64, cause: &Error) {
        if self.forget(Some(epoch)).is_err() {
            return;
        }
        if let Err(e) = self.store.clear().await {
            tracing::warn!(error = %e, "cannot remove the ended session from storage");
        }
        let message = format!(
            "Your cloud session has ended ({}). Please log in again.",
            describe_rejection(cause)
        );
        self.events.emit(Event::AuthError { error: message });
        self.events.emit(Event::LoggedOut {});
    }

    /// Refresh could not reach the server before the access token expired: drop the session
    /// in memory but keep the stored token, so a later start (or login) can resume.
    fn expire_offline(&self, epoch: u64) {
        if self.forget(Some(epoch)).is_err() {
            return;
        }
        self.events.emit(Event::AuthError {
            error: "The cloud session expired while the server was unreachable; it resumes at the next start or login.".into(),
        });
        self.events.emit(Event::LoggedOut {});
    }

    fn schedule(&self, expires_in: i64) {
        if !self.auto_refresh {
            return;
        }
        let me = self.me.clone();
        let delay = refresh_delay(expires_in);
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut attempt = 0;
            loop {
                let Some(auth) = me.upgrade() else { return };
                let (expires_at, epoch) = {
                    let s = auth.read();
                    let Some(session) = s.session.as_ref() else {
                        return;
                    };
                    (session.expires_at, s.epoch)
                };
                match auth.renew(Seen::Epoch(epoch)).await {
                    Ok(_) => return,
                    Err(e)
                        if e.is_network()
                            || matches!(&e, Error::Http(h) if h.status >= 429)
                            || matches!(&e, Error::InvalidResponse { .. }) =>
                    {
                        if now() >= expires_at {
                            auth.expire_offline(epoch);
                            return;
                        }
                        let wait = Backoff::REFRESH
                            .delay(attempt)
                            .min(Duration::from_secs((expires_at - now()).max(1) as u64));
                        tracing::info!(error = %e, ?wait, "refresh failed; retrying");
                        drop(auth);
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    Err(_) => return,
                }
            }
        });
        let previous = self
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task.abort_handle());
        // The timer task itself reschedules through `renew`; it must not abort itself.
        if let Some(prev) = previous {
            if tokio::task::try_id() != Some(prev.id()) {
                prev.abort();
            }
        }
    }

    fn cancel_timer(&self) {
        if let Some(t) = self.timer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if tokio::task::try_id() != Some(t.id()) {
                t.abort();
            }
        }
    }
}

/// The session changed (a refresh, login or logout) since the caller looked.
struct Changed;

/// What a caller knew of the session when it decided a refresh was needed.
enum Seen<'a> {
    Epoch(u64),
    /// The access token the server rejected (the 401 path knows only the token).
    Token(&'a str),
}

fn describe_rejection(e: &Error) -> String {
    match e.http() {
        Some(h) => h.code.clone().unwrap_or_else(|| h.message.clone()),
        None => e.to_string(),
    }
}

impl Credentials for Auth {
    fn access_token(&self) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move {
            let (access, expires_at, epoch) = {
                let s = self.read();
                match s.session.as_ref() {
                    None => return Ok(None),
                    Some(x) => (x.access_token.clone(), x.expires_at, s.epoch),
                }
            };
            if !is_expiring(expires_at, now()) {
                return Ok(Some(access));
            }
            self.renew(Seen::Epoch(epoch)).await.map(Some)
        })
    }

    fn renew(&self, rejected: String) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move { Auth::renew(self, Seen::Token(&rejected)).await.map(Some) })
    }
}
