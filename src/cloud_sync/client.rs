//! `cloudSync.client` and `cloudSync.auth`: authenticated REST calls against `baseUrl`, and
//! the logged-in user's rows.

use serde_json::Value;

use super::CloudSync;
use crate::{error::Result, rest::Request};

impl CloudSync {
    /// Needs an initialized cloud, not a session: the anon key alone may reach public rows.
    /// `prefer` is the call's default `Prefer` header, sent unless the caller set one.
    pub async fn rest(&self, mut req: Request, prefer: Option<&str>) -> Result<Value> {
        let cloud = self.cloud()?;
        if let Some(p) = prefer {
            if !req
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("prefer"))
            {
                req.headers.push(("Prefer".into(), p.into()));
            }
        }
        Ok(cloud.conn.client.send(&req).await?.body)
    }
}
