//! Test server.
pub mod dataset;
pub mod server;
