//! `cloudSync.workspaceSync`: the link of the working directory, as the host's handlers
//! read it, plus conversation linking.

use std::sync::Arc;

use napi::{
    bindgen_prelude::{PromiseRaw, Unknown},
    Env,
};
use napi_derive::napi;
use serde_json::Value;

use super::{
    arg,
    error::{spawn, to_js},
};
use crate::cloud_sync::CloudSync;

#[napi]
pub struct WorkspaceSync {
    core: Arc<CloudSync>,
}

impl WorkspaceSync {
    pub fn new(core: Arc<CloudSync>) -> WorkspaceSync {
        WorkspaceSync { core }
    }
}

#[napi]
impl WorkspaceSync {
    /// The linked cloud workspace's id, or `null`.
    #[napi]
    pub fn get_linked_workspace_id(&self) -> Option<String> {
        self.core.linked_workspace_id()
    }

    /// The contents of `.cloud-link.json` (unknown keys included), or `null` when not linked.
    #[napi(ts_return_type = "LinkData | null")]
    pub fn get_link_data(&self) -> Value {
        self.core.link_data()
    }

    /// Maps a local conversation name to a cloud conversation in the link file. Throws
    /// `INVALID_ARGUMENT` when either is not a string.
    #[napi(ts_args_type = "localName: string, cloudConvId: string")]
    pub fn link_conversation(
        &self,
        env: Env,
        local_name: Unknown,
        cloud_conv_id: Unknown,
    ) -> napi::Result<()> {
        let local_name = arg::string("localName", local_name).map_err(|e| to_js(&env, e))?;
        let cloud_conv_id =
            arg::string("cloudConvId", cloud_conv_id).map_err(|e| to_js(&env, e))?;
        self.core
            .link_conversation(&local_name, &cloud_conv_id)
            .map_err(|e| to_js(&env, e))
    }

    /// Creates a conversation in the linked workspace, maps `name` to it, and returns its row.
    #[napi(
        ts_args_type = "name: string, conversationType?: string | null",
        ts_return_type = "Promise<CloudConversation>"
    )]
    pub fn create_conversation<'e>(
        &self,
        env: &'e Env,
        name: Unknown,
        conversation_type: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = arg::string("name", name)
            .and_then(|n| Ok((n, arg::opt_string("conversationType", conversation_type)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (name, conversation_type) = args?;
            core.create_conversation(&name, conversation_type.as_deref())
                .await
        })
    }
}
