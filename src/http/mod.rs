//! HTTP.
pub mod client;
pub mod download;
pub mod rate;
