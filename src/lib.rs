//! `oboto-cloud`: the native Oboto Cloud client for Node.js.
//!
//! The core is plain async Rust: `cloud_sync` (the lifecycle and the host's calls) composes
//! `cloud` (one initialized connection and its features), and the features (`workspace`,
//! `conversations`, `sync`, `agents`, `ai`, `files`, `realtime`) take the `connection`
//! parts they need. `js/` is the only place that knows napi.

#![deny(clippy::all)]

pub mod agents;
pub mod ai;
pub mod auth;
pub mod cloud;
pub mod cloud_sync;
pub mod config;
pub mod connection;
pub mod conversations;
pub mod error;
pub mod events;
pub mod files;
pub mod heap;
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
