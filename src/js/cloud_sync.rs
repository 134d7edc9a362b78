//! The `CloudSync` class as JS sees it (`NativeCloudSync`; `cloud-sync.js` adapts it to the
//! legacy `(eventBus, secretsManager)` constructor). Every method forwards to `crate::cloud`.

use std::{path::PathBuf, sync::Arc};

use napi::{
    bindgen_prelude::{PromiseRaw, Unknown},
    Env,
};
use napi_derive::napi;
use serde_json::Value;

use super::{
    ai_stream::{AiProxyStream, StreamWake},
    arg,
    cloud_auth::CloudAuth,
    cloud_client::CloudClient,
    error::{settle, spawn, to_js},
    events::{EventCallback, JsEventSink},
    file_sync::FileSync,
    secrets::{JsSecrets, SecretDelete, SecretGet, SecretSet},
    types::{
        CloudStatus, CloudSyncConfig, PresenceMember, PullConversationResult,
        PushConversationResult,
    },
    workspace_sync::WorkspaceSync,
};
use crate::{cloud_sync, events::Events, token_store::HostSecrets};

#[napi(js_name = "NativeCloudSync")]
pub struct NativeCloudSync {
    core: Arc<cloud_sync::CloudSync>,
}

#[napi]
impl NativeCloudSync {
    /// `onEvent` receives every event as the JSON text of a `CloudEvent` (`{ type, payload }`;
    /// weakly held: it never keeps Node alive).
    /// The three secret functions reach the host's `secretsManager`.
    #[napi(
        constructor,
        ts_args_type = "onEvent?: ((eventJson: string) => void) | null, secretGet?: ((name: string) => Promise<string | null | undefined>) | null, secretSet?: ((name: string, value: string) => Promise<void>) | null, secretDelete?: ((name: string) => Promise<void>) | null"
    )]
    pub fn new(
        on_event: Option<EventCallback>,
        secret_get: Option<SecretGet>,
        secret_set: Option<SecretSet>,
        secret_delete: Option<SecretDelete>,
    ) -> NativeCloudSync {
        let events = Arc::new(Events::default());
        if let Some(cb) = on_event {
            events.set_sink(Some(Arc::new(JsEventSink(cb))));
        }
        let host: Option<Arc<dyn HostSecrets>> = match (secret_get, secret_set, secret_delete) {
            (Some(get), Some(set), Some(delete)) => Some(Arc::new(JsSecrets { get, set, delete })),
            _ => None,
        };
        NativeCloudSync {
            core: Arc::new(cloud_sync::CloudSync::new(events, host)),
        }
    }

    /// Validates the configuration and prepares the client. `null` leaves cloud sync
    /// unconfigured. Rejects when `baseUrl` is not an http(s) URL.
    #[napi(
        ts_args_type = "config?: CloudSyncConfig | null",
        ts_return_type = "Promise<void>"
    )]
    pub fn initialize<'e>(
        &self,
        env: &'e Env,
        config: Unknown,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        let config = arg::opt_typed::<CloudSyncConfig>("config", config);
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            core.initialize(config?.map(Into::into))
        })
    }

    /// Password login. Rejects with the server's message (`code` `invalid_credentials` for a
    /// wrong password); the password never appears in an error, event or log.
    #[napi(
        ts_args_type = "email: string, password: string",
        ts_return_type = "Promise<void>"
    )]
    pub fn login<'e>(
        &self,
        env: &'e Env,
        email: Unknown,
        password: Unknown,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        let args =
            arg::string("email", email).and_then(|e| Ok((e, arg::string("password", password)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (email, password) = args?;
            core.login(&email, &password).await
        })
    }

    /// Resumes the stored session. Never rejects; `false` when there is none, it was rejected,
    /// or `autoLogin` is off.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn try_auto_login<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, bool>> {
        let core = self.core.clone();
        // Never rejects, not even when destroyed meanwhile: that is `false`.
        settle(env, async move {
            let login = async { Ok(core.try_auto_login().await) };
            Ok(core.until_destroyed(login).await.unwrap_or(false))
        })
    }

    /// Ends the session on the server (best effort) and always forgets it locally.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn logout<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        let core = self.core.clone();
        spawn(env, &self.core, async move { core.logout().await })
    }

    /// Releases every timer, connection and callback. The stored session is kept, so the
    /// next start logs in again.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn destroy<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        self.core.destroy();
        settle(env, async { Ok(()) })
    }

    /// Throws `INVALID_ARGUMENT` for anything but a string, `null` or `undefined`.
    #[napi(ts_args_type = "dir: string | null")]
    pub fn set_working_dir(&self, env: &Env, dir: Unknown) -> napi::Result<()> {
        let dir = arg::opt_string("dir", dir).map_err(|e| to_js(env, e))?;
        self.core.set_working_dir(dir.map(PathBuf::from));
        Ok(())
    }

    #[napi]
    pub fn is_configured(&self) -> bool {
        self.core.is_configured()
    }

    #[napi]
    pub fn is_logged_in(&self) -> bool {
        self.core.is_logged_in()
    }

    /// Exactly the keys of `CloudStatus`; never a token.
    #[napi]
    pub fn get_status(&self) -> CloudStatus {
        self.core.status().into()
    }

    /// Authenticated REST calls against `baseUrl`.
    #[napi(getter)]
    pub fn client(&self) -> CloudClient {
        CloudClient::new(self.core.clone())
    }

    /// The raw rows of the logged-in user (`null` fields when logged out).
    #[napi(getter)]
    pub fn auth(&self) -> CloudAuth {
        CloudAuth::new(self.core.clone())
    }

    /// Link state of the working directory (`getLinkedWorkspaceId()`, `getLinkData()`, …);
    /// `null` before login.
    #[napi(getter, ts_return_type = "WorkspaceSync | null")]
    pub fn workspace_sync(&self) -> Option<WorkspaceSync> {
        self.core
            .has_session()
            .then(|| WorkspaceSync::new(self.core.clone()))
    }

    /// The workspace's files in the cloud (`listFiles`, `uploadFile`, `downloadFile`,
    /// `deleteFile`, `computeDelta`, `syncFiles`); `null` before login.
    #[napi(getter, ts_return_type = "FileSync | null")]
    pub fn file_sync(&self) -> Option<FileSync> {
        self.core
            .has_session()
            .then(|| FileSync::new(self.core.clone()))
    }

    /// Links the working directory to a cloud workspace the user can see: writes
    /// `.cloud-link.json` and starts auto-sync. A no-op when logged out; rejects with
    /// `INVALID_ARGUMENT` for a malformed or invisible workspace, `NO_WORKING_DIR` without
    /// `setWorkingDir`.
    #[napi(
        ts_args_type = "id: string, name?: string",
        ts_return_type = "Promise<void>"
    )]
    pub fn link_workspace<'e>(
        &self,
        env: &'e Env,
        id: Unknown,
        name: Unknown,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        let args = arg::string("id", id).and_then(|id| Ok((id, arg::opt_string("name", name)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (id, name) = args?;
            core.link_workspace(&id, name.as_deref()).await
        })
    }

    /// Removes `.cloud-link.json` and stops auto-sync. A no-op when not linked.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn unlink_workspace<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        let core = self.core.clone();
        spawn(env, &self.core, async move { core.unlink_workspace() })
    }

    /// Pushes the workspace state: the updated row, or `null` when the sync engine debounces
    /// it, a conflict kept the cloud version (`cloud:sync:conflict`), the cloud was
    /// unreachable (queued), or nothing is linked.
    #[napi(
        ts_args_type = "localState: WorkspaceState",
        ts_return_type = "Promise<WorkspaceRow | null>"
    )]
    pub fn push_workspace_state<'e>(
        &self,
        env: &'e Env,
        local_state: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let local_state = arg::object("localState", local_state).map(Value::Object);
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            core.push_workspace_state(local_state?).await
        })
    }

    /// The linked workspace's state row, or `null`.
    #[napi(ts_return_type = "Promise<WorkspaceRow | null>")]
    pub fn pull_workspace_state<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, Value>> {
        let core = self.core.clone();
        spawn(
            env,
            &self.core,
            async move { core.pull_workspace_state().await },
        )
    }

    /// The organization's workspaces, most recently active first.
    #[napi(ts_return_type = "Promise<CloudWorkspace[]>")]
    pub fn list_cloud_workspaces<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, Value>> {
        let core = self.core.clone();
        spawn(env, &self.core, async move { core.list_workspaces().await })
    }

    /// Pushes the new `user`/`assistant` messages of a local history exactly once (other
    /// roles and messages carrying `_cloudId` are skipped). Offline, they are queued in the
    /// outbox and `queued` says how many.
    #[napi(
        ts_args_type = "cloudConvId: string, messages: LocalMessage[], lastSyncAt?: string | null"
    )]
    pub fn push_conversation<'e>(
        &self,
        env: &'e Env,
        cloud_conv_id: Unknown,
        messages: Unknown,
        last_sync_at: Unknown,
    ) -> napi::Result<PromiseRaw<'e, PushConversationResult>> {
        let args = (|| {
            let id = arg::string("cloudConvId", cloud_conv_id)?;
            let messages = arg::array("messages", messages)?;
            arg::opt_string("lastSyncAt", last_sync_at)?;
            Ok((id, messages))
        })();
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (cloud_conv_id, messages) = args?;
            Ok(core
                .push_conversation(&cloud_conv_id, &messages)
                .await?
                .into())
        })
    }

    /// Every message after `since` written by others, oldest first, fetched page by page.
    #[napi(ts_args_type = "cloudConvId: string, since?: string | null")]
    pub fn pull_conversation<'e>(
        &self,
        env: &'e Env,
        cloud_conv_id: Unknown,
        since: Unknown,
    ) -> napi::Result<PromiseRaw<'e, PullConversationResult>> {
        let args = arg::string("cloudConvId", cloud_conv_id)
            .and_then(|id| Ok((id, arg::opt_string("since", since)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (cloud_conv_id, since) = args?;
            Ok(core
                .pull_conversation(&cloud_conv_id, since.as_deref())
                .await?
                .into())
        })
    }

    /// The linked workspace's conversations, oldest first; `[]` when not linked.
    #[napi(ts_return_type = "Promise<CloudConversation[]>")]
    pub fn list_cloud_conversations<'e>(
        &self,
        env: &'e Env,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let core = self.core.clone();
        spawn(
            env,
            &self.core,
            async move { core.list_conversations().await },
        )
    }

    /// The organization's agents, ordered by name; cached for 60 s and dropped on logout.
    #[napi(ts_return_type = "Promise<CloudAgent[]>")]
    pub fn list_agents<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, Value>> {
        let core = self.core.clone();
        spawn(env, &self.core, async move { core.list_agents().await })
    }

    /// Forgets the cached agent list, so the next `listAgents()` asks the cloud.
    #[napi]
    pub fn clear_agent_cache(&self) {
        self.core.clear_agent_cache();
    }

    /// One turn with an agent; the last 20 history messages go along. With
    /// `options.conversationId` the cloud stores both messages in that conversation.
    /// Rejects with the server's reason (`status` 404 for an unknown agent, `code`
    /// `RATE_LIMITED` and `retryAfter` when rate limited).
    #[napi(
        ts_args_type = "slug: string, message: string, history?: ChatMessage[] | null, options?: InvokeAgentOptions | null",
        ts_return_type = "Promise<AgentReply>"
    )]
    pub fn invoke_agent<'e>(
        &self,
        env: &'e Env,
        slug: Unknown,
        message: Unknown,
        history: Unknown,
        options: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = (|| {
            Ok((
                arg::string("slug", slug)?,
                arg::string("message", message)?,
                arg::opt_array("history", history)?,
                arg::opt_object("options", options)?.map(Value::Object),
            ))
        })();
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (slug, message, history, options) = args?;
            core.invoke_agent(&slug, &message, history, options).await
        })
    }

    /// The models the organization's tier may use, with `name`, `provider` and
    /// `capabilities` added; `[]` when logged out or on failure.
    #[napi(ts_return_type = "Promise<CloudModel[]>")]
    pub fn list_cloud_models<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, Value>> {
        let core = self.core.clone();
        spawn(env, &self.core, async move { core.list_models().await })
    }

    /// Today's usage with the flat fields the UI renders; `null` when logged out or on
    /// failure. Also emits `cloud:usage-update`.
    #[napi(ts_return_type = "Promise<CloudUsage | null>")]
    pub fn get_usage<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, Value>> {
        let core = self.core.clone();
        spawn(env, &self.core, async move { core.usage().await })
    }

    /// One completion through the metered proxy, returned as the server sent it. A daily
    /// limit rejects with `code` `RATE_LIMITED`; nothing waits longer than `aiTimeoutMs`.
    #[napi(
        ts_args_type = "provider: string, model: string, messages: ChatMessage[], options?: AiProxyOptions | null",
        ts_return_type = "Promise<ChatCompletion>"
    )]
    pub fn ai_proxy_request<'e>(
        &self,
        env: &'e Env,
        provider: Unknown,
        model: Unknown,
        messages: Unknown,
        options: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = (|| {
            Ok((
                arg::string("provider", provider)?,
                arg::string("model", model)?,
                arg::array("messages", messages)?,
                arg::opt_object("options", options)?.map(Value::Object),
            ))
        })();
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (provider, model, messages, options) = args?;
            core.ai_request(&provider, &model, messages, options).await
        })
    }

    /// Opens the stream behind `aiProxyStream` (the JS layer turns it into an async generator);
    /// resolves once the first chunk has arrived (or the stream has ended). `wake` is called
    /// whenever a `take()` that found nothing can take again.
    #[napi(
        ts_args_type = "model: string, messages: ChatMessage[], options: AiProxyOptions | null | undefined, wake: () => void",
        ts_return_type = "Promise<AiProxyStream>"
    )]
    pub fn ai_proxy_stream_open<'e>(
        &self,
        env: &'e Env,
        model: Unknown,
        messages: Unknown,
        options: Unknown,
        wake: StreamWake,
    ) -> napi::Result<PromiseRaw<'e, AiProxyStream>> {
        let args = (|| {
            Ok((
                arg::string("model", model)?,
                arg::array("messages", messages)?,
                arg::opt_object("options", options)?.map(Value::Object),
            ))
        })();
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (model, messages, options) = args?;
            let stream = core.ai_stream(&model, messages, options).await?;
            Ok(AiProxyStream::new(stream, wake))
        })
    }

    #[napi]
    pub fn get_presence(&self) -> Vec<PresenceMember> {
        self.core.presence().into_iter().map(Into::into).collect()
    }

    #[napi(
        ts_args_type = "event: string, payload: Record<string, unknown>",
        ts_return_type = "Promise<void>"
    )]
    pub fn broadcast<'e>(
        &self,
        env: &'e Env,
        event: Unknown,
        payload: Unknown,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        let args = arg::string("event", event)
            .and_then(|e| Ok((e, Value::Object(arg::object("payload", payload)?))));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (event, payload) = args?;
            core.broadcast(event, payload)
        })
    }
}
