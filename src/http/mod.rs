//! The HTTP side: clients built once and shared, one request turned into
//! one outcome (the engine's [`Fetch`](crate::engine::Fetch) implemented),
//! and per-server rate limits.

pub mod causes;
pub mod client;
pub mod connections;
pub mod download;
pub mod protocol;
pub mod proxy;
pub mod rate;
pub mod refused;
pub mod response;
pub mod tls;
pub mod url;
