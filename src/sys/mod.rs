//! Process plumbing: signals, the open-files limit, logging, and servers on
//! threads of their own. Nothing here imports anything else of the crate.

pub mod limits;
pub mod logging;
pub mod server_thread;
pub mod signals;
