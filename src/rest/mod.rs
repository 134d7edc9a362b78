//! HTTP to Oboto Cloud: the transport (`http`), the authenticated client (`client`), safe
//! query building (`query`), listings read whole (`pages`), what a count proves about a page
//! (`range`) and retry timing (`backoff`).

pub mod backoff;
pub mod client;
pub mod http;
#[cfg(test)]
pub(crate) mod mock;
pub mod pages;
pub mod query;
pub mod range;
pub mod reply;
pub mod transfer;

pub use client::{Client, Credentials, Request};
pub use http::{Body, Http, Reply, Timeouts};
pub use reply::{raw_rows, Checked};
