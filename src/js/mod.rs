//! The napi boundary: the only code that uses `#[napi]`, `Env` or threadsafe functions.

// Exports are reached only through napi's registration, which unit-test builds leave out.
#![cfg_attr(test, allow(dead_code))]

mod ai_stream;
mod arg;
mod cloud_auth;
mod cloud_client;
mod cloud_sync;
mod error;
mod events;
mod file_sync;
mod secrets;
mod types;
mod workspace_sync;
