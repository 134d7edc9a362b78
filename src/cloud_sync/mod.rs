//! `CloudSync`'s core, free of napi: the lifecycle (initialize, login, logout, destroy) and
//! the rules every host call follows, so that `js/` only converts and forwards.
//!
//! The rules, in one place: once destroyed, every call rejects `DESTROYED` (except
//! `tryAutoLogin`, which never rejects, and the sync getters, which answer "nothing"); not
//! configured or logged out, the calls that read answer "nothing" (`[]`, `null`,
//! `{pushed: 0}`) as the legacy module did, and those that act reject `NOT_LOGGED_IN`.
//! Each feature's calls have a file here: `workspace`, `conversations`, `agents`, `ai`,
//! `files`, `presence`, `client`.

mod agents;
mod ai;
mod client;
mod conversations;
mod files;
mod presence;
mod status;
mod workspace;

pub use status::Status;

#[cfg(test)]
mod tests;

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, RwLock},
};

use tokio::sync::watch;

use crate::{
    auth::UserContext,
    cloud::Cloud,
    config::ConfigInput,
    error::{Error, Result},
    events::Events,
    sync::Syncer,
    token_store::HostSecrets,
};

pub struct CloudSync {
    events: Arc<Events>,
    host: Option<Arc<dyn HostSecrets>>,
    cloud: RwLock<Option<Arc<Cloud>>>,
    working_dir: RwLock<Option<PathBuf>>,
    /// Turns true once, in `destroy()`; every call in flight races against it.
    destroyed: watch::Sender<bool>,
    /// Workspace and conversation sync (link file, engine, outbox).
    sync: Arc<Syncer>,
}

impl CloudSync {
    pub fn new(events: Arc<Events>, host: Option<Arc<dyn HostSecrets>>) -> CloudSync {
        crate::log::init();
        CloudSync {
            events: events.clone(),
            host,
            cloud: RwLock::default(),
            working_dir: RwLock::default(),
            destroyed: watch::Sender::new(false),
            sync: Syncer::new(events),
        }
    }

    /// `None` (no cloud configured) leaves the instance unconfigured without failing, as the
    /// host calls `initialize(loadCloudConfig())` whether or not the variables are set.
    pub fn initialize(&self, input: Option<ConfigInput>) -> Result<()> {
        self.alive()?;
        let Some(input) = input else { return Ok(()) };
        let config = input.validate(|k| std::env::var(k).ok())?;
        let cloud = Arc::new(Cloud::open(config, self.events.clone(), self.host.clone())?);
        let previous = self
            .cloud
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(cloud);
        if let Some(prev) = previous {
            self.sync.deactivate();
            prev.conn.auth.shutdown();
        }
        Ok(())
    }

    fn alive(&self) -> Result<()> {
        if *self.destroyed.borrow() {
            return Err(Error::Destroyed);
        }
        Ok(())
    }

    /// Runs `fut` unless `destroy()` comes first, which drops it (closing its connection, so
    /// nothing is left to keep Node running) and fails with `DESTROYED`. `fut` is polled
    /// first, so a call that can settle at once after destroy still does so its own way.
    pub async fn until_destroyed<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let mut destroyed = self.destroyed.subscribe();
        tokio::select! {
            biased;
            outcome = fut => outcome,
            _ = destroyed.wait_for(|d| *d) => Err(Error::Destroyed),
        }
    }

    /// The initialized cloud, or why there is none.
    fn cloud(&self) -> Result<Arc<Cloud>> {
        self.alive()?;
        self.cloud
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::NotInitialized)
    }

    /// The cloud when a user is logged in.
    fn session(&self) -> Result<Arc<Cloud>> {
        let cloud = self.cloud()?;
        if !cloud.is_logged_in() {
            return Err(Error::NotLoggedIn);
        }
        Ok(cloud)
    }

    /// For the calls that answer "nothing" while logged out: the session, `None` without
    /// one, and `DESTROYED` once destroyed.
    fn signed_in(&self) -> Result<Option<Arc<Cloud>>> {
        self.alive()?;
        Ok(self.session().ok())
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<()> {
        let cloud = self.cloud()?;
        cloud.conn.auth.login(email, password).await?;
        self.sync.activate(cloud.conn.clone());
        Ok(())
    }

    /// Never fails: `false` when there is no stored session, it was rejected, `autoLogin`
    /// is off, or the instance is unconfigured or destroyed.
    pub async fn try_auto_login(&self) -> bool {
        let Ok(cloud) = self.cloud() else {
            return false;
        };
        if !cloud.conn.config.auto_login {
            return false;
        }
        let ok = cloud.conn.auth.try_auto_login().await;
        if ok {
            self.sync.activate(cloud.conn.clone());
        }
        ok
    }

    /// Ends the session on the server (best effort) and always forgets it locally; a no-op
    /// when unconfigured.
    pub async fn logout(&self) -> Result<()> {
        self.alive()?;
        let Ok(cloud) = self.cloud() else {
            return Ok(());
        };
        cloud.end_session(|| Error::SessionEnded("logged out while the stream was open".into()));
        self.sync.deactivate();
        cloud.conn.auth.logout().await
    }

    /// Refreshes the session now (shared with any refresh already in flight, or started
    /// together with this one).
    pub fn refresh(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let refresh = self.session().map(|c| c.conn.auth.refresh());
        async move { refresh?.await }
    }

    /// Releases timers and the event callback; keeps the stored session (shutdown is not logout).
    pub fn destroy(&self) {
        if self.destroyed.send_replace(true) {
            return;
        }
        self.sync.shut_down();
        if let Some(cloud) = self.cloud.write().unwrap_or_else(|p| p.into_inner()).take() {
            cloud.end_session(|| Error::Destroyed);
            cloud.conn.auth.shutdown();
        }
        self.events.set_sink(None);
    }

    pub fn set_working_dir(&self, dir: Option<PathBuf>) {
        let dir = dir.filter(|d| !d.as_os_str().is_empty());
        *self.working_dir.write().unwrap_or_else(|p| p.into_inner()) = dir.clone();
        self.sync.set_dir(dir);
    }

    fn working_dir(&self) -> Option<PathBuf> {
        self.working_dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_configured(&self) -> bool {
        self.cloud().is_ok()
    }

    pub fn is_logged_in(&self) -> bool {
        self.session().is_ok()
    }

    /// The logged-in user's rows (all `None` when logged out).
    pub fn user_context(&self) -> UserContext {
        self.cloud()
            .map(|c| c.conn.auth.context())
            .unwrap_or_default()
    }
}
