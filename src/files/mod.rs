//! File sync (`cloudSync.fileSync`): a workspace's files in cloud storage, with the
//! `workspace_files` rows as the truth for what exists, and a two-way sync of a local
//! directory against them.
//!
//! - [`paths`]: every path is checked and normalized before any I/O;
//! - [`transfer`]: one file up or down, streamed from and to disk;
//! - [`metadata`]: the rows, changed by compare-and-set on `version`;
//! - [`scan`], [`manifest`], [`delta`]: what changed where since the last sync, and
//!   [`unsynced`]: which paths the scan did not see are still not this machine's to touch,
//!   both by the ignore rules of [`ignores`];
//! - [`sync`]: applying a delta, one run per directory at a time ([`lock`]).
//!
//! Operations take what they need in a [`Ctx`]; this module never sees `Cloud`.

pub mod delta;
pub mod ignores;
pub mod lock;
pub mod manifest;
pub mod metadata;
pub mod paths;
pub mod scan;
pub mod stat;
pub mod sync;
#[cfg(test)]
pub(crate) mod testing;
pub mod transfer;
pub mod unsynced;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    events::{Event, Events},
    rest::Client,
};

/// Downloads land in this directory under the working directory, then are renamed into
/// place; whatever an interrupted run left there is removed by the next sync (which holds
/// the directory's [`lock`], so no other run is writing there).
pub const TEMP_DIR: &str = ".cloud-sync-tmp";
/// Storage bucket of workspace files.
pub const BUCKET: &str = "workspace-files";
/// `cloud:file:progress` is emitted at most this often per file (plus once at the end).
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// What a file operation needs from the composed client.
pub struct Ctx<'a> {
    pub client: &'a Client,
    pub events: Arc<Events>,
    /// The logged-in user (`uploaded_by`).
    pub user_id: Option<String>,
}

/// A throttled `cloud:file:progress` reporter for one transfer.
fn progress(events: &Arc<Events>, file_path: &str, total: u64) -> crate::rest::transfer::Progress {
    let events = events.clone();
    let file_path = file_path.to_string();
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    Arc::new(move |bytes| {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
        if due || bytes >= total {
            *last = Some(Instant::now());
            events.emit(Event::FileProgress {
                file_path: file_path.clone(),
                bytes,
                total,
            });
        }
    })
}
