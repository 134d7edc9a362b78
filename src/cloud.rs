//! `CloudSync`'s core, free of napi: one initialized cloud (transport, session, client) and
//! the lifecycle around it. `js/cloud_sync.rs` is only a thin shell over this.

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock, Weak},
};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{
    agents::AgentCache,
    ai::{AiStream, QuietFailures},
    auth::Auth,
    config::{CloudConfig, ConfigInput},
    error::{Error, Result},
    events::Events,
    rest::{Client, Credentials, Http},
    token_store::{self, HostSecrets},
};

/// One `initialize()`d connection to a cloud.
pub struct Cloud {
    pub config: CloudConfig,
    pub auth: Arc<Auth>,
    pub client: Arc<Client>,
    pub events: Arc<Events>,
    pub agents: AgentCache,
    pub models_failures: QuietFailures,
    pub usage_failures: QuietFailures,
    /// Open AI streams, closed when the session ends or the instance is destroyed.
    streams: Mutex<Vec<Weak<AiStream>>>,
}

impl Cloud {
    fn new(
        config: CloudConfig,
        events: Arc<Events>,
        host: Option<Arc<dyn HostSecrets>>,
    ) -> Result<Cloud> {
        let http = Arc::new(
            Http::new(&config.base_url, &config.anon_key, config.timeouts)?
                .with_max_response_bytes(config.max_response_bytes),
        );
        let store = token_store::select(config.token_store, &config.base_url, host)?;
        tracing::info!(url = %config.base_url, store = %store.describe(), "initialized");
        let auth = Auth::new(http.clone(), store, events.clone(), config.auto_refresh);
        let client = Arc::new(Client::new(http, auth.clone() as Arc<dyn Credentials>));
        Ok(Cloud {
            config,
            auth,
            client,
            events,
            agents: AgentCache::default(),
            models_failures: QuietFailures::default(),
            usage_failures: QuietFailures::default(),
            streams: Mutex::default(),
        })
    }

    pub fn track_stream(&self, stream: &Arc<AiStream>) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        streams.push(Arc::downgrade(stream));
    }

    /// Fails the open streams with `reason` (`SESSION_ENDED`, `DESTROYED`).
    fn close_streams(&self, reason: impl Fn() -> Error) {
        let streams = std::mem::take(&mut *self.streams.lock().unwrap_or_else(|p| p.into_inner()));
        for s in streams.iter().filter_map(Weak::upgrade) {
            s.close(reason());
        }
    }
}

pub struct CloudSync {
    events: Arc<Events>,
    host: Option<Arc<dyn HostSecrets>>,
    cloud: RwLock<Option<Arc<Cloud>>>,
    working_dir: RwLock<Option<PathBuf>>,
    /// Turns true once, in `destroy()`; every call in flight races against it.
    destroyed: watch::Sender<bool>,
    /// Workspace and conversation sync (link file, engine, outbox).
    sync: Arc<crate::sync::Sync>,
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
            sync: crate::sync::Sync::new(events.clone()),
        }
    }

    /// `None` (no cloud configured) leaves the instance unconfigured without failing, as the
    /// host calls `initialize(loadCloudConfig())` whether or not the variables are set.
    pub fn initialize(&self, input: Option<ConfigInput>) -> Result<()> {
        self.alive()?;
        let Some(input) = input else { return Ok(()) };
        let config = input.validate(|k| std::env::var(k).ok())?;
        let cloud = Arc::new(Cloud::new(config, self.events.clone(), self.host.clone())?);
        let previous = self
            .cloud
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(cloud);
        if let Some(prev) = previous {
            self.sync.deactivate();
            prev.auth.shutdown();
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
    pub fn cloud(&self) -> Result<Arc<Cloud>> {
        self.alive()?;
        self.cloud
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::NotInitialized)
    }

    /// The cloud when a user is logged in.
    pub fn session(&self) -> Result<Arc<Cloud>> {
        let cloud = self.cloud()?;
        if !cloud.auth.is_logged_in() {
            return Err(Error::NotLoggedIn);
        }
        Ok(cloud)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<()> {
        let cloud = self.cloud()?;
        cloud.auth.login(email, password).await?;
        self.sync.activate(cloud);
        Ok(())
    }

    pub async fn try_auto_login(&self) -> bool {
        match self.cloud() {
            Ok(c) if c.config.auto_login => {
                let ok = c.auth.try_auto_login().await;
                if ok {
                    self.sync.activate(c);
                }
                ok
            }
            _ => false,
        }
    }

    pub async fn logout(&self) -> Result<()> {
        let cloud = self.cloud()?;
        cloud.agents.clear();
        cloud.close_streams(|| Error::SessionEnded("logged out while the stream was open".into()));
        self.sync.deactivate();
        cloud.auth.logout().await
    }

    /// The linked cloud workspace, which AI requests are metered against.
    pub fn linked_workspace_id(&self) -> Option<String> {
        self.sync.linked_workspace_id()
    }

    /// `getPresence()`: one entry per member online in the linked workspace; `[]` when not
    /// linked, logged out or destroyed (it is a sync call and never throws).
    pub fn presence(&self) -> Vec<crate::realtime::Member> {
        if self.session().is_err() {
            return Vec::new();
        }
        self.sync.presence()
    }

    /// `broadcast()`: a no-op when not logged in or not linked; rejects only once destroyed.
    pub fn broadcast(&self, event: String, payload: Value) -> Result<()> {
        self.alive()?;
        if self.session().is_ok() {
            self.sync.broadcast(event, payload);
        }
        Ok(())
    }

    /// Workspace and conversation sync; operations take the logged-in cloud from `session()`.
    pub fn sync(&self) -> &Arc<crate::sync::Sync> {
        &self.sync
    }

    /// Releases timers and the event callback; keeps the stored session (shutdown is not logout).
    pub fn destroy(&self) {
        if self.destroyed.send_replace(true) {
            return;
        }
        self.sync.deactivate();
        if let Some(cloud) = self.cloud.write().unwrap_or_else(|p| p.into_inner()).take() {
            cloud.close_streams(|| Error::Destroyed);
            cloud.auth.shutdown();
        }
        self.events.set_sink(None);
    }

    pub fn set_working_dir(&self, dir: Option<PathBuf>) {
        *self.working_dir.write().unwrap_or_else(|p| p.into_inner()) = dir.clone();
        self.sync.set_dir(dir);
    }

    pub fn working_dir(&self) -> Option<PathBuf> {
        self.working_dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_configured(&self) -> bool {
        self.cloud().is_ok()
    }

    pub fn is_logged_in(&self) -> bool {
        self.cloud().map(|c| c.auth.is_logged_in()).unwrap_or(false)
    }

    /// `getStatus()`: exactly the documented keys, never a token.
    pub fn status(&self) -> Value {
        let mut m = match self.cloud() {
            Ok(c) => c.auth.snapshot(),
            Err(_) => crate::auth::UserContext::default().snapshot(false),
        };
        m.insert("configured".into(), Value::Bool(self.is_configured()));
        m.insert("linkedWorkspace".into(), self.sync.linked_workspace());
        m.insert("syncState".into(), json!(self.sync.sync_state()));
        m.insert("syncEngineStatus".into(), self.sync.engine_status());
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Arc<CloudSync> {
        Arc::new(CloudSync::new(Arc::new(Events::default()), None))
    }

    #[tokio::test]
    async fn destroy_fails_a_pending_call_at_once() {
        let core = core();
        let call = {
            let core = core.clone();
            tokio::spawn(async move {
                core.until_destroyed(std::future::pending::<Result<()>>())
                    .await
            })
        };
        tokio::task::yield_now().await;
        core.destroy();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(1), call)
            .await
            .expect("settled at once")
            .expect("joined");
        assert!(matches!(outcome, Err(Error::Destroyed)));
    }

    #[tokio::test]
    async fn a_call_that_is_ready_settles_its_own_way_even_after_destroy() {
        let core = core();
        core.destroy();
        assert_eq!(core.until_destroyed(async { Ok(7) }).await.ok(), Some(7));
        assert!(matches!(
            core.until_destroyed(std::future::pending::<Result<()>>())
                .await,
            Err(Error::Destroyed)
        ));
    }
}
