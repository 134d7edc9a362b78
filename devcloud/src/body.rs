//! Reading a small request body (JSON) with a size limit, shared by every service.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

/// How much of an oversized body is still read (and dropped) before answering 413: a client
/// that is still sending when the server answers and closes sees a reset, not the answer.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Read,
}

/// The whole body if it fits in `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        if buf.len() + chunk.len() > limit {
            let mut drained = buf.len() + chunk.len();
            while let Some(Ok(more)) = stream.next().await {
                drained += more.len();
                if drained > limit + DRAIN_BYTES {
                    break;
                }
            }
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits() {
        assert_eq!(read_limited(Body::from("abc"), 3).await.unwrap(), "abc");
        assert_eq!(
            read_limited(Body::from("abcd"), 3).await,
            Err(BodyError::TooLarge)
        );
    }
}
