//! The AI stream as JS sees it: a pull handle that `cloud-sync.js` turns into the async
//! generator `aiProxyStream`.

use std::sync::{Arc, Mutex};

use napi::{
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Env, Status,
};
use napi_derive::napi;

use super::error::to_js;
use crate::ai::{self, stream::Pull};

/// `() => void`, called when a `take()` that found nothing can take again. Weak: it keeps
/// Node running only while a consumer waits on it (see [`AiProxyStream::take`]).
pub type StreamWake = ThreadsafeFunction<(), (), (), Status, false, true>;

/// A pull handle on a streamed completion, opened once its first chunk has arrived.
/// `take()` hands over everything buffered as one JSON array text (parsed once on the JS
/// side), `""` when nothing is buffered yet, `null` at the end; `cancel()` closes the
/// connection.
#[napi]
pub struct AiProxyStream {
    inner: Arc<ai::AiStream>,
    wake: Arc<Mutex<StreamWake>>,
}

impl AiProxyStream {
    /// Wires `wake` to the stream: the stream calls it from its reader, the handle keeps
    /// Node alive through it while the consumer waits.
    pub(super) fn new(inner: Arc<ai::AiStream>, wake: StreamWake) -> AiProxyStream {
        let wake = Arc::new(Mutex::new(wake));
        let call = wake.clone();
        inner.set_waker(Box::new(move || {
            let wake = call.lock().unwrap_or_else(|p| p.into_inner());
            let status = wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
            if status != Status::Ok {
                tracing::debug!(?status, "stream wake-up not delivered");
            }
        }));
        AiProxyStream { inner, wake }
    }

    /// Node stays alive while a consumer waits for the stream, and only then: a stream its
    /// consumer abandoned never holds the process.
    #[allow(deprecated)] // ref/unref of the loop is exactly what is meant here, not a clone
    fn keep_alive(&self, env: &Env, waiting: bool) {
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        let done = if waiting {
            wake.refer(env)
        } else {
            wake.unref(env)
        };
        if let Err(e) = done {
            tracing::debug!(error = %e, "stream keep-alive not changed");
        }
    }
}

#[napi]
impl AiProxyStream {
    /// The chunks buffered since the last call as the text of a JSON array; `""` when none
    /// is buffered yet (the wake function given at opening is then called once there is);
    /// `null` once the stream has reached `[DONE]`. Throws the stream's failure.
    #[napi]
    pub fn take(&self, env: &Env) -> napi::Result<Option<String>> {
        let pulled = self.inner.try_pull();
        self.keep_alive(env, matches!(pulled, Ok(Pull::Pending)));
        match pulled {
            Ok(Pull::Chunks(chunks)) => Ok(Some(chunks)),
            Ok(Pull::Pending) => Ok(Some(String::new())),
            Ok(Pull::End) => Ok(None),
            Err(e) => Err(to_js(env, e)),
        }
    }

    /// Closes the connection; later `take()`s return `null`.
    #[napi]
    pub fn cancel(&self, env: &Env) {
        self.inner.cancel();
        self.keep_alive(env, false);
    }
}
