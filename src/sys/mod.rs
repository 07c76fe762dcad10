//! Process plumbing.
pub mod limits;
pub mod logging;
pub mod server_thread;
pub mod signals;
