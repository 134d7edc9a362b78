//! `cloudSync.fileSync`: the workspace's files in the cloud. Every method checks its
//! arguments and forwards to the core.

use std::{path::Path, sync::Arc};

use napi::{
    bindgen_prelude::{PromiseRaw, Unknown},
    Env,
};
use napi_derive::napi;
use serde_json::Value;

use super::{
    arg,
    error::spawn,
    types::{DeletedFile, FileDelta, TransferredFile},
};
use crate::{
    cloud_sync::CloudSync,
    files::{self, paths::RelPath},
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
            let ws = files::transfer::workspace(&ws_id?)?;
            core.list_files(&ws).await
        })
    }

    /// Uploads `localDir/relPath` (streamed) and records it at the next version:
    /// `{ filePath, storagePath, size, checksum, version }`. A path that is absolute, holds
    /// `..`, a backslash or a NUL, or passes through a symlink out of `localDir` is rejected
    /// (`INVALID_ARGUMENT`) before any request.
    #[napi(ts_args_type = "wsId: string, localDir: string, relPath: string")]
    pub fn upload_file<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        local_dir: Unknown,
        rel_path: Unknown,
    ) -> napi::Result<PromiseRaw<'e, TransferredFile>> {
        let args = file_args(ws_id, local_dir, rel_path);
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, local_dir, rel) = args?;
            Ok(core
                .upload_file(&ws, Path::new(&local_dir), &rel)
                .await?
                .into())
        })
    }

    /// Downloads the cloud file to `localDir/relPath` through a temporary file, verified
    /// against the recorded checksum and size: `{ filePath, storagePath, size, checksum, version }`.
    /// An object that does not match them rejects with `CONTENT_MISMATCH`; nothing is written.
    #[napi(ts_args_type = "wsId: string, localDir: string, relPath: string")]
    pub fn download_file<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        local_dir: Unknown,
        rel_path: Unknown,
    ) -> napi::Result<PromiseRaw<'e, TransferredFile>> {
        let args = file_args(ws_id, local_dir, rel_path);
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, local_dir, rel) = args?;
            Ok(core
                .download_file(&ws, Path::new(&local_dir), &rel)
                .await?
                .into())
        })
    }

    /// Deletes the file in the cloud (the row is kept, marked deleted at the next version):
    /// `{ filePath, deleted }`.
    #[napi(ts_args_type = "wsId: string, relPath: string")]
    pub fn delete_file<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        rel_path: Unknown,
    ) -> napi::Result<PromiseRaw<'e, DeletedFile>> {
        let args = ws_arg(ws_id)
            .and_then(|ws| Ok((ws, RelPath::parse(&arg::string("relPath", rel_path)?)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, rel) = args?;
            let deleted = core.delete_file(&ws, &rel).await?;
            Ok(DeletedFile {
                file_path: rel.as_str().to_string(),
                deleted,
            })
        })
    }

    /// What a sync of `localDir` would do: `{ toUpload, toDownload, synced, toDeleteLocal,
    /// toDeleteRemote, conflicts, keptLocal }` (paths), `hashed` (files whose contents were
    /// read), and `failed`: the paths it would leave alone, and why (as `syncFiles` reports
    /// them).
    #[napi(ts_args_type = "wsId: string, localDir: string")]
    pub fn compute_delta<'e>(
        &self,
        env: &'e Env,
        ws_id: Unknown,
        local_dir: Unknown,
    ) -> napi::Result<PromiseRaw<'e, FileDelta>> {
        let args = ws_arg(ws_id).and_then(|ws| Ok((ws, arg::string("localDir", local_dir)?)));
        let core = self.core.clone();
        spawn(env, &self.core, async move {
            let (ws, local_dir) = args?;
            Ok(core.compute_delta(&ws, Path::new(&local_dir)).await?.into())
        })
    }

    /// Two-way sync of `localDir` (default: the working directory) with the workspace
    /// (default: the linked one), four transfers at a time. A conflict keeps both copies
    /// (`name (cloud conflict).ext`, `cloud:sync:conflict`). Per-file failures are listed in
    /// `failed`; the next run retries them, but for downloads refused because the object does
    /// not match its row (`CONTENT_MISMATCH`), which wait until that row changes.
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
            core.sync_files(ws_id, local_dir).await
        })
    }
}
