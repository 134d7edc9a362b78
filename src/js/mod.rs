//! The napi boundary: the only code that uses `#[napi]`, `Env` or threadsafe functions.

mod cloud_sync;
mod error;
mod events;
mod secrets;
mod types;
