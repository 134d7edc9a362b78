//! The realtime socket of a linked workspace, started and stopped with the sync engine: it
//! delivers messages, presence and broadcasts as they happen, and wakes the engine when the
//! workspace row changes, so the engine stops polling while the socket is live.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tokio::{runtime::Handle, sync::Notify};
use uuid::Uuid;

use crate::{
    auth::context::UserContext,
    connection::Connection,
    realtime::{Hooks, Me, Params, Realtime},
    rest::Credentials,
};

/// A remote workspace change is reconciled by an engine cycle, as a local one is; so is a
/// remote file change, when the link syncs files.
struct WakeEngine {
    wake: Arc<Notify>,
    files: bool,
}

impl Hooks for WakeEngine {
    fn workspace_changed(&self) {
        self.wake.notify_one();
    }
    fn files_changed(&self) {
        if self.files {
            self.wake.notify_one();
        }
    }
}

/// Opens the socket for `workspace_id`, or `None` when realtime is off or the session has no
/// usable user id (there is nothing to track as presence then); the engine polls instead.
pub fn start(
    conn: &Connection,
    workspace_id: Uuid,
    wake: Arc<Notify>,
    files: bool,
    rt: &Handle,
) -> Option<Realtime> {
    if !conn.config.realtime {
        return None;
    }
    let me = me(&conn.auth.context())?;
    let params = Params {
        base_url: conn.config.base_url.clone(),
        anon_key: conn.config.anon_key.clone(),
        credentials: conn.auth.clone() as Arc<dyn Credentials>,
        client: conn.client.clone(),
        events: conn.events.clone(),
        hooks: Arc::new(WakeEngine { wake, files }),
        workspace_id,
        me,
        heartbeat: conn.config.realtime_heartbeat,
        presence_interval: Duration::from_millis(conn.config.presence_interval_ms.into()),
    };
    Some(Realtime::start(params, rt))
}

/// Who this client is in the workspace's presence: the user id, and the profile's name and
/// avatar when the profile is known.
fn me(ctx: &UserContext) -> Option<Me> {
    let user_id = ctx.user.as_ref()?.get("id")?.as_str()?;
    let user_id = Uuid::parse_str(user_id).ok()?.to_string();
    let field = |k: &str| {
        ctx.profile
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Some(Me {
        user_id,
        display_name: field("display_name"),
        avatar_url: field("avatar_url"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn me_needs_a_uuid_user_id() {
        let ctx = |user: Value, profile: Value| UserContext {
            user: Some(user),
            profile: Some(profile),
            membership: None,
            org: None,
        };
        let ok = me(&ctx(
            json!({"id": "3F2504E0-4F89-41D3-9A0C-0305E82C3301"}),
            json!({"display_name": "Alice", "avatar_url": null}),
        ))
        .unwrap();
        assert_eq!(ok.user_id, "3f2504e0-4f89-41d3-9a0c-0305e82c3301");
        assert_eq!(ok.display_name.as_deref(), Some("Alice"));
        assert_eq!(ok.avatar_url, None);
        assert_eq!(me(&ctx(json!({"id": "not-a-uuid&x=1"}), json!({}))), None);
        let nobody = UserContext {
            user: None,
            ..ctx(json!({}), json!({}))
        };
        assert_eq!(me(&nobody), None);
    }
}
