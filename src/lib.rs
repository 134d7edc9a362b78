//! `oboto-cloud`: the native Oboto Cloud client for Node.js.
//!
//! The core (`auth`, `rest`, `token_store`, `cloud`, …) is plain async Rust; `js/` is the
//! only place that knows napi.

#![deny(clippy::all)]

pub mod agents;
pub mod ai;
pub mod auth;
pub mod cloud;
pub mod config;
pub mod conversations;
pub mod error;
pub mod events;
pub mod files;
pub mod link_file;
pub mod log;
pub mod realtime;
pub mod rest;
pub mod sse;
pub mod sync;
pub mod token_store;
pub mod workspace;

mod js;

pub use error::{Error, Result};
