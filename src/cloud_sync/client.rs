//! `cloudSync.client` and `cloudSync.auth`: authenticated REST calls against `baseUrl`, and
//! the logged-in user's rows.

use serde_json::Value;

use super::CloudSync;
use crate::{error::Result, rest::Request};

impl CloudSync {
    /// Needs an initialized cloud, not a session: the anon key alone may reach public rows.
    pub async fn rest(&self, req: Request) -> Result<Value> {
        let cloud = self.cloud()?;
        Ok(cloud.conn.client.send(&req).await?.body)
    }
}
