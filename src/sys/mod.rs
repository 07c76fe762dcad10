//! Process plumbing: signals, the open-files limit, logging (to stderr or
//! the journal), the process's own resources, careful file access, and
//! servers on threads of their own. Nothing here imports anything else of
//! the crate.

pub mod files;
pub mod journal;
pub mod limits;
pub mod logging;
pub mod process;
pub mod server_thread;
pub mod signals;
