//! Object bytes on disk: `{storage_dir}/{bucket}/{version}`, where `version` is a fresh uuid
//! per write recorded in `storage.objects.version`. A new upload never touches the bytes a
//! concurrent download is reading; it is written to `{storage_dir}/.tmp` (same filesystem),
//! then renamed into place.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::{fs::File, io::AsyncWriteExt};
use uuid::Uuid;

use super::error::StorageError;

pub fn object_path(root: &Path, bucket: &str, version: &str) -> PathBuf {
    root.join(bucket).join(version)
}

/// Streams one upload into a temp file, hashing it and enforcing the size limit as it goes.
pub struct ObjectWriter {
    file: File,
    path: TempPath,
    hasher: Sha256,
    size: u64,
    max: u64,
}

/// A fully written upload, not yet in place. Dropping it removes the temp file.
pub struct Written {
    path: TempPath,
    pub size: u64,
    pub sha256: String,
}

impl ObjectWriter {
    pub async fn create(root: &Path, max: u64) -> Result<ObjectWriter, StorageError> {
        let tmp = root.join(".tmp");
        tokio::fs::create_dir_all(&tmp).await.map_err(io_error)?;
        let named = tokio::task::spawn_blocking(move || tempfile::NamedTempFile::new_in(tmp))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "storage: temp file task failed");
                StorageError::internal()
            })?
            .map_err(io_error)?;
        let (file, path) = named.into_parts();
        Ok(ObjectWriter {
            file: File::from_std(file),
            path,
            hasher: Sha256::new(),
            size: 0,
            max,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(StorageError::entity_too_large());
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await.map_err(io_error)
    }

    pub async fn finish(mut self) -> Result<Written, StorageError> {
        self.file.flush().await.map_err(io_error)?;
        drop(self.file);
        Ok(Written {
            path: self.path,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl Written {
    /// Moves the bytes to their final place and returns the new version id.
    pub async fn persist(self, root: &Path, bucket: &str) -> Result<String, StorageError> {
        let version = Uuid::new_v4().to_string();
        let dest = object_path(root, bucket, &version);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        }
        let path = self.path;
        tokio::task::spawn_blocking(move || path.persist(dest))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "storage: persist task failed");
                StorageError::internal()
            })?
            .map_err(|e| io_error(e.error))?;
        Ok(version)
    }
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
        let mut w = ObjectWriter::create(dir.path(), 10).await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap_err();
        drop(w);
        let mut w = ObjectWriter::create(dir.path(), 10).await.unwrap();
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
        // The rejected temp file was removed when its writer was dropped.
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            0
        );
    }
}
