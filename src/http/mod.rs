//! The HTTP side: clients built once and shared, a flag asked for and its
//! answer checked (nothing of files: saving is the store's), and per-server
//! rate limits.

pub mod answer;
pub mod causes;
pub mod client;
pub mod connections;
pub mod protocol;
pub mod proxy;
pub mod rate;
pub mod redirect;
pub mod refused;
pub mod response;
pub mod tls;
pub mod url;
