//! Server-sent events (`text/event-stream`).

pub mod parser;

pub use parser::{Event, Parser};
