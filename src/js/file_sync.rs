//! `cloudSync.fileSync`: the workspace's files in the cloud. Every method forwards to
//! `crate::files` with the logged-in session's client and events.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use napi::{
    bindgen_prelude::{PromiseRaw, Unknown},
    Env,
};
use napi_derive::napi;
use serde_json::Value;

use super::{arg, error::spawn};
use crate::{
    cloud::{Cloud, CloudSync},
    error::{Error, Result},
    files::{self, paths::RelPath, transfer::Expect, Ctx},
};

#[napi]
pub struct FileSync {
    core: Arc<CloudSync>,
}

impl FileSync {
    pub fn new(core: Arc<CloudSync>) -> FileSync {
        FileSync { core }
    }
}

fn ctx(cloud: &Cloud) -> Ctx<'_> {
    Ctx {
        client: &cloud.client,
        events: cloud.events.clone(),
        user_id: cloud.auth.context().user_id().map(String::from),
    }
}

/// The workspace (default: the linked one) and directory (default: the working directory).
fn target(
    core: &CloudSync,
    ws: Option<String>,
    dir: Option<String>,
) -> Result<(uuid::Uuid, PathBuf)> {
    let ws = ws
        .filter(|w| !w.is_empty())
        .or_else(|| core.sync().linked_workspace_id())
        .ok_or_else(|| Error::InvalidArgument("No workspace id given and none is linked".into()))?;
    let dir = dir
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| core.working_dir())
        .ok_or(Error::NoWorkingDir)?;
    Ok((files::transfer::workspace(&ws)?, dir))
}

/// The `wsId` argument as the workspace's UUID.
fn ws_arg(ws_id: Unknown) -> crate::error::Result<uuid::Uuid> {
    files::transfer::workspace(&arg::string("wsId", ws_id)?)
}

/// `(wsId, localDir, relPath)` of one file, checked before anything else happens: the
/// path is normalized and refused if it could leave `localDir`.
fn file_args(
    ws_id: Unknown,
    local_dir: Unknown,
    rel_path: Unknown,
) -> crate::error::Result<(uuid::Uuid, String, RelPath)> {
    let ws = ws_arg(ws_id)?;
    let local_dir = arg::string("localDir", local_dir)?;
    let rel = RelPath::parse(&arg::string("relPath", rel_path)?)?;
    Ok((ws, local_dir, rel))
}

#[napi]
impl FileSync {
    /// The workspace's live files (`workspace_files` rows), ordered by path.
    #[napi(
        ts_args_type = "wsId: string",
        ts_return_type = "Promise<WorkspaceFileRow[]>"
    )]
    pub fn list_files<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let ws_id = arg::string("wsId", ws_id);
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let ws_id = ws_id?;
            let cloud = core.session()?;
            let ws = files::transfer::workspace(&ws_id)?;
            let rows = files::metadata::list(&cloud.client, &ws).await?;
            Ok(serde_json::to_value(rows).unwrap_or_default())
        })
    }

    /// Uploads `localDir/relPath` (streamed) and records it at the next version:
    /// `{ filePath, storagePath, size, checksum, version }`. A path that is absolute, holds
    /// `..`, a backslash or a NUL, or passes through a symlink out of `localDir` is rejected
    /// (`INVALID_ARGUMENT`) before any request.
    #[napi(
        ts_args_type = "wsId: string, localDir: string, relPath: string",
        ts_return_type = "Promise<UploadedFile>"
    )]
    pub fn upload_file<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        local_dir: Unknown,
        rel_path: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = file_args(ws_id, local_dir, rel_path);
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, local_dir, rel) = args?;
            let cloud = core.session()?;
            let up = files::transfer::upload(
                &ctx(&cloud),
                &ws,
                Path::new(&local_dir),
                &rel,
                Expect::Latest,
            )
            .await?
            .ok_or_else(|| Error::Io(format!("{rel} changed in the cloud meanwhile")))?;
            Ok(up.to_json())
        })
    }

    /// Downloads the cloud file to `localDir/relPath` through a temporary file, verified
    /// against the recorded checksum and size: `{ filePath, storagePath, size, checksum, version }`.
    #[napi(
        ts_args_type = "wsId: string, localDir: string, relPath: string",
        ts_return_type = "Promise<DownloadedFile>"
    )]
    pub fn download_file<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        local_dir: Unknown,
        rel_path: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = file_args(ws_id, local_dir, rel_path);
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, local_dir, rel) = args?;
            let cloud = core.session()?;
            files::transfer::download_latest(&ctx(&cloud), &ws, Path::new(&local_dir), &rel).await
        })
    }

    /// Deletes the file in the cloud (the row is kept, marked deleted at the next version):
    /// `{ filePath, deleted }`.
    #[napi(
        ts_args_type = "wsId: string, relPath: string",
        ts_return_type = "Promise<{ filePath: string; deleted: boolean }>"
    )]
    pub fn delete_file<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        rel_path: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = ws_arg(ws_id)
            .and_then(|ws| Ok((ws, RelPath::parse(&arg::string("relPath", rel_path)?)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, rel) = args?;
            let cloud = core.session()?;
            let deleted = files::transfer::delete(&ctx(&cloud), &ws, &rel, None).await?;
            Ok(serde_json::json!({"filePath": rel.as_str(), "deleted": deleted}))
        })
    }

    /// What a sync of `localDir` would do: `{ toUpload, toDownload, synced, toDeleteLocal,
    /// toDeleteRemote, conflicts }` (paths), and `hashed` (files whose contents were read).
    #[napi(
        ts_args_type = "wsId: string, localDir: string",
        ts_return_type = "Promise<FileDelta>"
    )]
    pub fn compute_delta<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        local_dir: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = ws_arg(ws_id).and_then(|ws| Ok((ws, arg::string("localDir", local_dir)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, local_dir) = args?;
            let cloud = core.session()?;
            let delta =
                files::sync::compute_delta(&ctx(&cloud), &ws, Path::new(&local_dir)).await?;
            Ok(delta.to_json())
        })
    }

    /// Two-way sync of `localDir` (default: the working directory) with the workspace
    /// (default: the linked one), four transfers at a time. A conflict keeps both copies
    /// (`name (cloud conflict).ext`, `cloud:sync:conflict`). Per-file failures are listed in
    /// `failed`; the next run retries them.
    #[napi(
        ts_args_type = "wsId?: string | null, localDir?: string | null",
        ts_return_type = "Promise<FileSyncResult>"
    )]
    pub fn sync_files<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        local_dir: Unknown,
    ) -> napi::Result<PromiseRaw<'e, Value>> {
        let args = arg::opt_string("wsId", ws_id)
            .and_then(|w| Ok((w, arg::opt_string("localDir", local_dir)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws_id, local_dir) = args?;
            let (ws, dir) = target(&core, ws_id, local_dir)?;
            let cloud = core.session()?;
            files::sync::sync_files(&ctx(&cloud), &ws, &dir).await
        })
    }
}
