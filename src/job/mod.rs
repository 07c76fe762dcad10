//! Jobs: preparing one ([`prepare`]), the one recorded-run lifecycle that
//! every command uses ([`lifecycle`]), and the errors that end a command
//! ([`error`]).

pub mod error;
pub mod fetch;
pub mod lifecycle;
pub mod prepare;

pub use error::FatalError;
pub use lifecycle::{FETCH_BATCH, FinishedRun, Recording, RunEnd, SharedState};
pub use prepare::{JobContext, PreparedJob};
