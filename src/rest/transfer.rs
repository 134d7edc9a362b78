//! Streamed request and response bodies, for files of any size: an upload reads the file in
//! chunks while it is sent and a download writes each chunk as it arrives, so memory stays
//! flat however large the file. Both hash what actually went over the wire (SHA-256), count
//! it, and report progress.
//!
//! They go through the same transport (`Http::builder`: base URL, API key, bearer) and the
//! same credentials (a token rejected as expired is renewed once, and the upload replayed
//! from the start of the file) as every other call.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;
use futures_util::stream;
use reqwest::{header::CONTENT_LENGTH, Method};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    http::{network_error, read_reply, Call, Reply},
    Client, Request,
};
use crate::error::{Error, Result};

/// Bytes so far; called often, so the receiver throttles.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Size of one read from disk (and at most one chunk in memory per transfer).
const CHUNK: usize = 256 * 1024;
/// A reply to an upload is a small JSON object.
const MAX_REPLY_BODY: usize = 1024 * 1024;
/// A download that delivers nothing for this long is abandoned.
const IDLE: Duration = Duration::from_secs(60);

/// A time budget that grows with the size (at least 256 KiB/s), since the client's default
/// request timeout (30 s) would cut any large transfer short.
pub fn transfer_timeout(size: u64) -> Duration {
    Duration::from_secs(60 + size / (256 * 1024))
}

/// What an upload sent, and the server's answer.
pub struct Sent {
    pub reply: Reply,
    pub size: u64,
    pub sha256: String,
}

/// What a download wrote.
pub struct Received {
    pub size: u64,
    pub sha256: String,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// Sends the file at `file` as the raw body of `method path`.
pub async fn upload(
    client: &Client,
    method: Method,
    path: &str,
    file: &Path,
    headers: &[(String, String)],
    progress: Progress,
) -> Result<Sent> {
    let method = &method;
    let progress = &progress;
    client
        .with_token(|t| async move {
            upload_once(client, method, path, file, headers, t.as_deref(), progress).await
        })
        .await
}

struct Tally {
    hasher: Sha256,
    sent: u64,
}

async fn upload_once(
    client: &Client,
    method: &Method,
    path: &str,
    file: &Path,
    headers: &[(String, String)],
    bearer: Option<&str>,
    progress: &Progress,
) -> Result<Sent> {
    let url = client.http().url(path)?;
    let (size, source) = open_source(file).await?;
    let call = Call {
        method: method.clone(),
        path,
        body: None,
        headers,
        bearer,
        timeout: Some(transfer_timeout(size)),
    };
    let short = |read: u64| {
        Error::Io(format!(
            "{} changed while it was uploaded ({read} of {size} bytes read)",
            file.display()
        ))
    };
    let f = match source {
        Source::Whole(bytes) => {
            if bytes.len() as u64 != size {
                return Err(short(bytes.len() as u64));
            }
            let sha256 = hex::encode(Sha256::digest(&bytes));
            progress(size);
            let reply = send(client, &call, &url, size, bytes.into()).await?;
            return Ok(Sent {
                reply,
                size,
                sha256,
            });
        }
        Source::File(f) => f,
    };
    let tally = Arc::new(std::sync::Mutex::new(Tally {
        hasher: Sha256::new(),
        sent: 0,
    }));
    // Exactly `size` bytes go out (the declared Content-Length): a file that grows meanwhile
    // is cut there, one that shrinks fails the request instead of sending a short body.
    let body = stream::unfold(
        (f.take(size), tally.clone(), progress.clone()),
        |(mut f, tally, progress)| async move {
            let mut buf = BytesMut::with_capacity(CHUNK);
            match f.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => {
                    let sent = {
                        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                        t.hasher.update(&buf);
                        t.sent += buf.len() as u64;
                        t.sent
                    };
                    progress(sent);
                    Some((Ok::<_, std::io::Error>(buf.freeze()), (f, tally, progress)))
                }
                Err(e) => Some((Err(e), (f, tally, progress))),
            }
        },
    );
    let reply = send(client, &call, &url, size, reqwest::Body::wrap_stream(body)).await?;
    let t = std::mem::replace(
        &mut *tally.lock().unwrap_or_else(|p| p.into_inner()),
        Tally {
            hasher: Sha256::new(),
            sent: 0,
        },
    );
    if t.sent != size {
        return Err(short(t.sent));
    }
    Ok(Sent {
        reply,
        size,
        sha256: hex::encode(t.hasher.finalize()),
    })
}

/// What an upload reads: a small file whole (one trip to the blocking pool for open, size
/// and read, instead of one for each and one per chunk), a larger one as an open file.
enum Source {
    Whole(bytes::Bytes),
    File(tokio::fs::File),
}

async fn open_source(file: &Path) -> Result<(u64, Source)> {
    let path = file.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let f = std::fs::File::open(&path)?;
        let size = f.metadata()?.len();
        if size > CHUNK as u64 {
            return Ok((size, Source::File(tokio::fs::File::from_std(f))));
        }
        let mut buf = Vec::with_capacity(size as usize);
        f.take(size).read_to_end(&mut buf)?;
        Ok((size, Source::Whole(buf.into())))
    })
    .await
    .map_err(|e| Error::Io(format!("cannot read {}: {e}", file.display())))?
    .map_err(|e| io_err("read", file, e))
}

/// Sends `size` bytes of `body` as the request `call` and reads the reply.
async fn send(
    client: &Client,
    call: &Call<'_>,
    url: &str,
    size: u64,
    body: reqwest::Body,
) -> Result<Reply> {
    let resp = client
        .http()
        .builder(call)?
        .header(CONTENT_LENGTH, size)
        .body(body)
        .send()
        .await
        .map_err(|e| network_error(url, e))?;
    read_reply(&call.method, url, resp, MAX_REPLY_BODY).await
}

/// Writes the body of `GET path` to a new file at `dest` (which the caller later renames or
/// removes), flushed to disk when `durable`. More than `max` bytes is an error.
pub async fn download(
    client: &Client,
    path: &str,
    dest: &Path,
    max: u64,
    durable: bool,
    progress: Progress,
) -> Result<Received> {
    let url = client.http().url(path)?;
    let req = Request::new(Method::GET, path).timeout(transfer_timeout(max));
    let mut resp = client.open(&req).await?;
    let status = resp.status();
    let too_large = || Error::ResponseTooLarge {
        url: url.clone(),
        status: status.as_u16(),
        limit: max,
    };
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    // A small body is kept until it ends and written with one trip to the blocking pool
    // (create, write, flush); past one chunk the file is opened and written as it arrives.
    let mut head = BytesMut::new();
    let mut out: Option<tokio::io::BufWriter<tokio::fs::File>> = None;
    loop {
        let chunk = tokio::time::timeout(IDLE, resp.chunk())
            .await
            .map_err(|_| Error::Network {
                url: url.clone(),
                reason: "the download stalled".into(),
                timeout: true,
            })?
            .map_err(|e| network_error(&url, e))?;
        let Some(chunk) = chunk else { break };
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large());
        }
        hasher.update(&chunk);
        match &mut out {
            Some(out) => out.write_all(&chunk).await,
            None if head.len() + chunk.len() <= CHUNK => {
                head.extend_from_slice(&chunk);
                Ok(())
            }
            None => {
                let file = create_file(dest.to_path_buf(), head.split().freeze(), false).await?;
                let w = out.insert(tokio::io::BufWriter::with_capacity(
                    CHUNK,
                    tokio::fs::File::from_std(file),
                ));
                w.write_all(&chunk).await
            }
        }
        .map_err(|e| io_err("write", dest, e))?;
        progress(size);
    }
    match out {
        None => {
            create_file(dest.to_path_buf(), head.freeze(), durable).await?;
        }
        Some(mut out) => {
            out.flush().await.map_err(|e| io_err("write", dest, e))?;
            if durable {
                out.into_inner()
                    .sync_all()
                    .await
                    .map_err(|e| io_err("write", dest, e))?;
            }
        }
    }
    Ok(Received {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Creates `dest` holding `bytes`, flushed to disk when `durable`.
async fn create_file(dest: PathBuf, bytes: bytes::Bytes, durable: bool) -> Result<std::fs::File> {
    let shown = dest.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut file = match std::fs::File::create(&dest) {
            // Its directory may have been tidied away by a transfer that just finished.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = dest.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                std::fs::File::create(&dest)
            }
            other => other,
        }?;
        file.write_all(&bytes)?;
        if durable {
            file.sync_all()?;
        }
        Ok(file)
    })
    .await
    .map_err(|e| Error::Io(format!("cannot write {}: {e}", shown.display())))?
    .map_err(|e| io_err("write", &shown, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_grow_with_size() {
        assert_eq!(transfer_timeout(0), Duration::from_secs(60));
        assert!(transfer_timeout(1 << 30) >= Duration::from_secs(60 + 4096));
    }
}
