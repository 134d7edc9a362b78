//! Object bytes on disk: `{storage_dir}/{bucket}/{version}`, where `version` is a fresh uuid
//! per write recorded in `storage.objects.version`. A new upload never touches the bytes a
//! concurrent download is reading; it is written to `{storage_dir}/.tmp` (same filesystem),
//! then renamed into place.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::{fs::File, io::AsyncWriteExt};
use uuid::Uuid;

use super::error::StorageError;

pub fn object_path(root: &Path, bucket: &str, version: &str) -> PathBuf {
    root.join(bucket).join(version)
}

/// Bodies up to this size are kept in memory and written once, in place: each file
/// operation is a trip to the blocking pool, and a small upload made six of them.
const IN_MEMORY: usize = 64 * 1024;

/// Streams one upload into a temp file (or memory, while small), hashing it and enforcing the
/// size limit as it goes.
pub struct ObjectWriter {
    root: PathBuf,
    bytes: Held,
    hasher: Sha256,
    size: u64,
    max: u64,
}

/// Where an upload's bytes are while it is received.
enum Held {
    Memory(Vec<u8>),
    File(File, TempPath),
}

/// A fully written upload, not yet in place. Dropping it removes the temp file.
pub struct Written {
    bytes: Held,
    pub size: u64,
    pub sha256: String,
}

impl ObjectWriter {
    pub fn new(root: &Path, max: u64) -> ObjectWriter {
        ObjectWriter {
            root: root.to_path_buf(),
            bytes: Held::Memory(Vec::new()),
            hasher: Sha256::new(),
            size: 0,
            max,
        }
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(StorageError::entity_too_large());
        }
        self.hasher.update(chunk);
        match &mut self.bytes {
            Held::Memory(buf) if buf.len() + chunk.len() <= IN_MEMORY => {
                buf.extend_from_slice(chunk);
                Ok(())
            }
            Held::Memory(buf) => {
                let head = std::mem::take(buf);
                let tmp = self.root.join(".tmp");
                let (file, path) = blocking(move || {
                    std::fs::create_dir_all(&tmp)?;
                    let mut named = tempfile::NamedTempFile::new_in(tmp)?;
                    named.write_all(&head)?;
                    Ok(named.into_parts())
                })
                .await?;
                let mut file = File::from_std(file);
                file.write_all(chunk).await.map_err(io_error)?;
                self.bytes = Held::File(file, path);
                Ok(())
            }
            Held::File(file, _) => file.write_all(chunk).await.map_err(io_error),
        }
    }

    pub async fn finish(mut self) -> Result<Written, StorageError> {
        if let Held::File(file, _) = &mut self.bytes {
            file.flush().await.map_err(io_error)?;
        }
        Ok(Written {
            bytes: self.bytes,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl Written {
    /// Moves the bytes to their final place and returns the new version id. No row names the
    /// version yet, so bytes from memory are written straight there.
    pub async fn persist(self, root: &Path, bucket: &str) -> Result<String, StorageError> {
        let version = Uuid::new_v4().to_string();
        let dest = object_path(root, bucket, &version);
        let bytes = self.bytes;
        blocking(move || {
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            match bytes {
                Held::Memory(buf) => {
                    let written = std::fs::write(&dest, &buf);
                    if written.is_err() {
                        let _ = std::fs::remove_file(&dest);
                    }
                    written
                }
                Held::File(file, path) => {
                    drop(file);
                    path.persist(&dest).map_err(|e| e.error)
                }
            }
        })
        .await?;
        Ok(version)
    }
}

/// Runs file operations on the blocking pool, in one trip.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storage: disk task failed");
            StorageError::internal()
        })?
        .map_err(io_error)
}

/// What a download sends: a small object read whole, a larger one as an open file, or
/// nothing (HEAD).
pub enum Content {
    Whole(Vec<u8>),
    File(File),
    None,
}

/// Opens stored bytes and returns their length and content, in one trip to the blocking pool
/// (open, stat and read were one trip each, and the end of file another).
pub async fn open(path: PathBuf, read: bool) -> std::io::Result<(u64, Content)> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        if !read {
            return Ok((len, Content::None));
        }
        if len > IN_MEMORY as u64 {
            return Ok((len, Content::File(File::from_std(file))));
        }
        // The length sent is the length read: a file is never rewritten in place.
        let mut buf = Vec::with_capacity(len as usize);
        file.take(len).read_to_end(&mut buf)?;
        Ok((buf.len() as u64, Content::Whole(buf)))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Copies stored bytes to a new version (server-side copy).
pub async fn copy(
    root: &Path,
    from_bucket: &str,
    from: &str,
    to_bucket: &str,
) -> Result<String, StorageError> {
    let version = Uuid::new_v4().to_string();
    let dest = object_path(root, to_bucket, &version);
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
    }
    tokio::fs::copy(object_path(root, from_bucket, from), &dest)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StorageError::no_such_key()
            } else {
                io_error(e)
            }
        })?;
    Ok(version)
}

/// Best-effort removal of bytes whose row is gone (or never committed).
pub async fn remove(root: &Path, bucket: &str, version: &str) {
    if let Err(e) = tokio::fs::remove_file(object_path(root, bucket, version)).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(error = %e, bucket, version, "storage: could not remove object bytes");
        }
    }
}

fn io_error(e: std::io::Error) -> StorageError {
    tracing::error!(error = %e, "storage: disk error");
    StorageError::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_hashes_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ObjectWriter::new(dir.path(), 10);
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap_err();
        drop(w);
        let mut w = ObjectWriter::new(dir.path(), 10);
        w.write(b"abc").await.unwrap();
        let written = w.finish().await.unwrap();
        assert_eq!(written.size, 3);
        assert_eq!(
            written.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let version = written.persist(dir.path(), "b").await.unwrap();
        assert_eq!(
            std::fs::read(object_path(dir.path(), "b", &version)).unwrap(),
            b"abc"
        );
    }

    #[tokio::test]
    async fn large_bodies_go_through_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = vec![7u8; IN_MEMORY / 2 + 1];
        let mut w = ObjectWriter::new(dir.path(), u64::MAX);
        for _ in 0..3 {
            w.write(&chunk).await.unwrap();
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            1
        );
        let written = w.finish().await.unwrap();
        assert_eq!(written.size, 3 * chunk.len() as u64);
        let version = written.persist(dir.path(), "b").await.unwrap();
        let stored = std::fs::read(object_path(dir.path(), "b", &version)).unwrap();
        assert_eq!(stored, chunk.repeat(3));
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            0
        );

        // A rejected one leaves no temp file behind.
        let mut w = ObjectWriter::new(dir.path(), 2 * chunk.len() as u64);
        w.write(&chunk).await.unwrap();
        w.write(&chunk).await.unwrap();
        w.write(&chunk).await.unwrap_err();
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            0
        );
    }
}
