//! Jobs: preparing one ([`prepare`]), the run ledger every command and the
//! daemon record runs in ([`ledger`], kept locally by [`local`]), the one
//! lifecycle of a run this process fetches ([`lifecycle`]), and the errors
//! that end a command ([`error`]).

pub mod error;
pub mod fetch;
pub mod ledger;
pub mod lifecycle;
pub mod local;
pub mod prepare;

pub use error::FatalError;
pub use ledger::{Ledger, LedgerError, RunKey, RunQuery};
pub use lifecycle::{FETCH_BATCH, FinishedRun, Recording, RunEnd, SharedState};
pub use local::LocalLedger;
pub use prepare::{JobContext, PreparedJob};
