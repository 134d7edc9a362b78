//! The workspace's files in the cloud (`cloudSync.fileSync`). Every call needs a session.

use std::path::{Path, PathBuf};

use serde_json::Value;
use uuid::Uuid;

use super::CloudSync;
use crate::{
    cloud::Cloud,
    error::{Error, Result},
    files::{
        self,
        paths::RelPath,
        sync::Delta,
        transfer::{Expect, Transferred},
        Ctx,
    },
};

fn ctx(cloud: &Cloud) -> Ctx<'_> {
    Ctx {
        client: &cloud.conn.client,
        events: cloud.conn.events.clone(),
        user_id: cloud.conn.user_id(),
    }
}

impl CloudSync {
    pub async fn list_files(&self, ws: &Uuid) -> Result<Value> {
        let cloud = self.session()?;
        let rows = files::metadata::list(&cloud.conn.client, ws).await?;
        Ok(serde_json::to_value(rows).unwrap_or_default())
    }

    pub async fn upload_file(&self, ws: &Uuid, dir: &Path, rel: &RelPath) -> Result<Transferred> {
        let cloud = self.session()?;
        let up = files::transfer::upload(&ctx(&cloud), ws, dir, rel, Expect::Latest)
            .await?
            .ok_or_else(|| Error::Io(format!("{rel} changed in the cloud meanwhile")))?;
        Ok(up.result())
    }

    pub async fn download_file(&self, ws: &Uuid, dir: &Path, rel: &RelPath) -> Result<Transferred> {
        let cloud = self.session()?;
        files::transfer::download_latest(&ctx(&cloud), ws, dir, rel).await
    }

    /// Whether there was a live file to delete.
    pub async fn delete_file(&self, ws: &Uuid, rel: &RelPath) -> Result<bool> {
        let cloud = self.session()?;
        files::transfer::delete(&ctx(&cloud), ws, rel, None).await
    }

    pub async fn compute_delta(&self, ws: &Uuid, dir: &Path) -> Result<Delta> {
        let cloud = self.session()?;
        files::sync::compute_delta(&ctx(&cloud), ws, dir).await
    }

    /// The workspace defaults to the linked one, the directory to the working directory.
    pub async fn sync_files(&self, ws: Option<String>, dir: Option<String>) -> Result<Value> {
        let (ws, dir) = self.file_target(ws, dir)?;
        let cloud = self.session()?;
        let run = files::sync::sync_files(&ctx(&cloud), &ws, &dir).await?;
        Ok(run.report)
    }

    fn file_target(&self, ws: Option<String>, dir: Option<String>) -> Result<(Uuid, PathBuf)> {
        let ws = ws
            .filter(|w| !w.is_empty())
            .or_else(|| self.linked_workspace_id())
            .ok_or_else(|| {
                Error::InvalidArgument("No workspace id given and none is linked".into())
            })?;
        let dir = dir
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| self.working_dir())
            .ok_or(Error::NoWorkingDir)?;
        Ok((files::transfer::workspace(&ws)?, dir))
    }
}
