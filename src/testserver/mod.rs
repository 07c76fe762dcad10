//! The built-in flag server: what `DEMO`, the tests and the benchmarks use.
//!
//! [`server`] runs it (in-process on a thread of its own, or in the
//! foreground as `flagsd testserver`); [`options`] says what it serves and
//! how it misbehaves; [`files`] finds a flag and its validators in the
//! embedded [`dataset`] or a directory; [`conditional`] answers conditional
//! requests; [`faults`] draws and shapes the faults it injects.

pub mod conditional;
pub mod dataset;
pub mod faults;
pub mod files;
pub mod options;
pub mod ranges;
pub mod server;

pub use options::{DelayRange, Faults, TestServerOptions};
pub use server::{TestServer, TestServerError};
