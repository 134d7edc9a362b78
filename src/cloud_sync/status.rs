//! `getStatus()`: exactly the documented keys, never a token.

use serde_json::{json, Value};

use super::CloudSync;
use crate::auth::UserContext;

impl CloudSync {
    pub fn status(&self) -> Value {
        let mut m = match self.cloud() {
            Ok(c) => c.conn.auth.snapshot(),
            Err(_) => UserContext::default().snapshot(false),
        };
        m.insert("configured".into(), Value::Bool(self.is_configured()));
        m.insert("linkedWorkspace".into(), self.sync.linked_workspace());
        m.insert("syncState".into(), json!(self.sync.sync_state()));
        m.insert("syncEngineStatus".into(), self.sync.engine_status());
        Value::Object(m)
    }
}
