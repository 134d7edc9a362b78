//! One run on a directory's files at a time, across processes: a sync holds the directory's
//! lock exclusively for its whole run, and `downloadFile` shares it while its temporary file
//! exists. So a sync's clean-up of the temporary directory never removes a download in
//! flight, and no run writes a manifest over the one another run wrote meanwhile.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::error::{Error, Result};

/// Beside the manifest, whose name it starts with, so the scan takes it for sync's own. It
/// is never removed: a process that removed it while another held it would let a third lock
/// a new file of the same name, and both run.
pub const FILE_NAME: &str = ".cloud-sync-manifest.json.lock";
/// How long a run waits for another process's: a whole sync, which may take minutes. A
/// holder that never lets go (stopped, or on a hung network file system) fails the run then.
const WAIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy)]
enum Mode {
    Shared,
    Exclusive,
}

/// This process's side: runs of the process wait in turn here without polling the file.
enum Held {
    Shared(OwnedRwLockReadGuard<()>),
    Exclusive(OwnedRwLockWriteGuard<()>),
}

/// The lock, until dropped (and released by the system when the process ends, however it
/// ends).
pub struct DirLock {
    file: File,
    held: Option<Held>,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.file);
        // The file first: a run of this process let in next must find it free.
        match self.held.take() {
            Some(Held::Shared(g)) => drop(g),
            Some(Held::Exclusive(g)) => drop(g),
            None => {}
        }
    }
}

fn local(dir: &Path) -> Arc<RwLock<()>> {
    static LOCKS: Mutex<Option<HashMap<PathBuf, Arc<RwLock<()>>>>> = Mutex::new(None);
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_default()
        .clone()
}

fn open(dir: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(FILE_NAME))
        .map_err(|e| Error::Io(format!("cannot lock {} for file sync: {e}", dir.display())))
}

fn try_file(file: &File, mode: Mode) -> std::result::Result<(), fs4::TryLockError> {
    match mode {
        Mode::Shared => fs4::FileExt::try_lock_shared(file),
        Mode::Exclusive => fs4::FileExt::try_lock(file),
    }
}

/// For a sync: waits for every other run on `dir`, in this process or another.
pub async fn exclusive(dir: &Path) -> Result<DirLock> {
    let held = Held::Exclusive(local(dir).write_owned().await);
    wait_for_file(dir, Mode::Exclusive, held).await
}

/// For a download outside a sync: waits for a sync on `dir`, not for other downloads.
pub async fn shared(dir: &Path) -> Result<DirLock> {
    let held = Held::Shared(local(dir).read_owned().await);
    wait_for_file(dir, Mode::Shared, held).await
}

/// The exclusive lock if no run holds any, without waiting.
pub fn try_exclusive(dir: &Path) -> Result<Option<DirLock>> {
    let Ok(guard) = local(dir).try_write_owned() else {
        return Ok(None);
    };
    let file = open(dir)?;
    match try_file(&file, Mode::Exclusive) {
        Ok(()) => Ok(Some(DirLock {
            file,
            held: Some(Held::Exclusive(guard)),
        })),
        Err(fs4::TryLockError::WouldBlock) => Ok(None),
        Err(fs4::TryLockError::Error(e)) => Err(Error::Io(format!(
            "cannot lock {} for file sync: {e}",
            dir.display()
        ))),
    }
}

async fn wait_for_file(dir: &Path, mode: Mode, held: Held) -> Result<DirLock> {
    let file = open(dir)?;
    let start = Instant::now();
    loop {
        match try_file(&file, mode) {
            Ok(()) => {
                return Ok(DirLock {
                    file,
                    held: Some(held),
                })
            }
            Err(fs4::TryLockError::WouldBlock) if start.elapsed() < WAIT => {
                tokio::time::sleep(POLL).await;
            }
            Err(fs4::TryLockError::WouldBlock) => {
                let waited = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                return Err(Error::FileSyncLocked(waited));
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(Error::Io(format!(
                    "cannot lock {} for file sync: {e}",
                    dir.display()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("oboto-filelock-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Waiting for another process's run leaves the runtime's thread to its other tasks:
    /// on a runtime of one thread, one of them runs to its end while the sync waits.
    #[test]
    fn waiting_for_another_process_leaves_the_runtime_to_its_other_tasks() {
        let d = dir();
        let other = open(&d).unwrap();
        fs4::FileExt::try_lock(&other).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let waiting = tokio::spawn({
                let d = d.clone();
                async move { exclusive(&d).await.map(|_| ()) }
            });
            tokio::spawn(tokio::task::yield_now()).await.unwrap();
            assert!(!waiting.is_finished());
            fs4::FileExt::unlock(&other).unwrap();
            waiting.await.unwrap().unwrap();
        });
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Another process's lock is another open file's: a second handle stands in for it.
    #[tokio::test]
    async fn a_sync_excludes_everything_downloads_share() {
        let d = dir();
        let other = open(&d).unwrap();
        fs4::FileExt::try_lock_shared(&other).unwrap();
        let a = shared(&d).await.unwrap();
        let b = shared(&d).await.unwrap();
        assert!(try_exclusive(&d).unwrap().is_none(), "downloads hold it");
        drop((a, b));
        assert!(
            try_exclusive(&d).unwrap().is_none(),
            "the other process holds it"
        );
        fs4::FileExt::unlock(&other).unwrap();
        let sync = try_exclusive(&d).unwrap().expect("free");
        assert!(try_exclusive(&d).unwrap().is_none());
        fs4::FileExt::try_lock_shared(&other).unwrap_err();
        drop(sync);
        fs4::FileExt::try_lock(&other).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
