//! The AI stream as JS sees it: a pull handle that `cloud-sync.js` turns into the async
//! generator `aiProxyStream`.

use std::sync::Arc;

use napi::{bindgen_prelude::PromiseRaw, Env};
use napi_derive::napi;

use super::error::spawn;
use crate::ai;

/// A pull handle on a streamed completion, opened with its first batch already pulled
/// (`firstBatch()`), which saves the first chunk a round trip through the runtime.
/// `nextBatch()` resolves with the chunks buffered since (parsed once on the JS side, not
/// once per chunk), or `null` at the end; `cancel()` closes the connection.
#[napi]
pub struct AiProxyStream {
    inner: Arc<ai::AiStream>,
    first: std::sync::Mutex<Option<StreamBatch>>,
}

impl AiProxyStream {
    pub(super) fn new(inner: Arc<ai::AiStream>, first: Option<StreamBatch>) -> AiProxyStream {
        AiProxyStream {
            inner,
            first: std::sync::Mutex::new(first),
        }
    }
}

/// A shape of the stream's chunks (see `src/ai/shapes.rs`).
#[napi(object)]
pub struct ChunkShape {
    pub id: u32,
    /// A JS expression building the chunk from `s[i]`, `s[i+1]`, … (`slots` values).
    pub source: String,
    pub slots: u32,
}

#[napi(object)]
pub struct StreamBatch {
    /// Shapes first used in this batch.
    pub shapes: Vec<ChunkShape>,
    /// A JSON array: for each chunk, its shape's id and then that shape's slot values. Shape
    /// 0 has one slot, the whole chunk.
    pub values: String,
}

impl From<ai::stream::Pulled> for StreamBatch {
    fn from(p: ai::stream::Pulled) -> StreamBatch {
        StreamBatch {
            shapes: p
                .shapes
                .into_iter()
                .map(|s| ChunkShape {
                    id: s.id,
                    source: s.source,
                    slots: s.slots,
                })
                .collect(),
            values: p.values,
        }
    }
}

#[napi]
impl AiProxyStream {
    /// The batch pulled while opening (once; `null` afterwards, or if the stream was empty).
    #[napi]
    pub fn first_batch(&self) -> Option<StreamBatch> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    #[napi(ts_return_type = "Promise<StreamBatch | null>")]
    pub fn next_batch<'e>(
        &self,
        env: &'e Env,
    ) -> napi::Result<PromiseRaw<'e, Option<StreamBatch>>> {
        let inner = self.inner.clone();
        spawn(env, async move {
            Ok(inner.next_batch().await?.map(StreamBatch::from))
        })
    }

    #[napi]
    pub fn cancel(&self) {
        self.inner.cancel();
    }
}
