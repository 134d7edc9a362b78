//! `cloudSync.auth`: the logged-in user's rows, read from the core.

use std::sync::Arc;

use napi::{bindgen_prelude::PromiseRaw, Env};
use napi_derive::napi;
use serde_json::Value;

use super::error::spawn;
use crate::cloud_sync::CloudSync;

/// `cloudSync.auth`: the logged-in user's raw rows.
#[napi]
pub struct CloudAuth {
    core: Arc<CloudSync>,
}

impl CloudAuth {
    pub fn new(core: Arc<CloudSync>) -> CloudAuth {
        CloudAuth { core }
    }

    fn ctx(&self) -> crate::auth::UserContext {
        self.core.user_context()
    }
}

#[napi]
impl CloudAuth {
    /// The GoTrue user (`id`, `email`, `app_metadata`, …), or `null`.
    #[napi(getter, ts_return_type = "AuthUser | null")]
    pub fn user(&self) -> Value {
        self.ctx().user.unwrap_or(Value::Null)
    }

    /// The `profiles` row, or `null`.
    #[napi(getter, ts_return_type = "ProfileRow | null")]
    pub fn profile(&self) -> Value {
        self.ctx().profile.unwrap_or(Value::Null)
    }

    /// The `organizations` row of the user's first membership, or `null`.
    #[napi(getter, ts_return_type = "OrganizationRow | null")]
    pub fn org(&self) -> Value {
        self.ctx().org.unwrap_or(Value::Null)
    }

    /// `{ org_id, role }` of the user's first membership, or `null`.
    #[napi(getter, ts_return_type = "MembershipRow | null")]
    pub fn membership(&self) -> Value {
        self.ctx().membership.unwrap_or(Value::Null)
    }

    #[napi]
    pub fn is_logged_in(&self) -> bool {
        self.core.is_logged_in()
    }

    /// Refreshes the session now (shared with any refresh already in flight).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn refresh<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        spawn(env, &self.core, self.core.refresh())
    }
}
