//! Exit statuses, and the fatal errors that lead to them.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | every code downloaded or not found |
//! | 1 | at least one error outcome |
//! | 2 | usage or configuration error (nothing was downloaded) |
//! | 3 | fatal runtime error: output directory, client set-up, server bind, state database |
//! | 130 | interrupted (Ctrl-C, SIGINT) |
//! | 143 | terminated (SIGTERM) |

use crate::config::UsageError;
use crate::config::file::ConfigError;
use crate::engine::{CoordinatorLost, RunSummary};
use crate::http::client::RequestError;
use crate::store::output::OutputDirError;
use crate::store::state::StateError;
use crate::sys::signals::StopSignal;
use crate::testserver::server::TestServerError;

/// How a command ended, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every code downloaded or not found.
    Success = 0,
    /// At least one code ended in an error.
    SomeErrors = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Fatal runtime error.
    Fatal = 3,
    /// Interrupted by SIGINT.
    Interrupted = 130,
    /// Stopped by SIGTERM.
    Terminated = 143,
}

impl ExitStatus {
    /// The status of a finished (or interrupted) run; `signal` is what
    /// stopped it, if anything did.
    pub fn of_run(summary: &RunSummary, signal: Option<StopSignal>) -> Self {
        if summary.interrupted {
            match signal {
                Some(StopSignal::Terminate) => Self::Terminated,
                _ => Self::Interrupted,
            }
        } else if summary.counts.errors > 0 {
            Self::SomeErrors
        } else {
            Self::Success
        }
    }

    /// The numeric status for `std::process::exit`.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// An error that ends a command before or instead of its normal report.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// A bad argument or setting (status 2).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The configuration cannot be used (status 2): one problem a line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The output directory cannot be used (status 3).
    #[error(transparent)]
    OutputDir(#[from] OutputDirError),
    /// The HTTP client cannot be built (status 3).
    #[error(transparent)]
    Client(#[from] RequestError),
    /// The test server cannot start (status 3).
    #[error(transparent)]
    TestServer(#[from] TestServerError),
    /// The coordinator vanished (status 3; a bug).
    #[error(transparent)]
    Coordinator(#[from] CoordinatorLost),
    /// Signal handlers cannot be installed (status 3).
    #[error("cannot install the signal handler: {0}")]
    Signals(std::io::Error),
    /// The admin endpoint cannot start (status 3).
    #[error(transparent)]
    Admin(#[from] crate::daemon::admin::AdminError),
    /// The state database cannot be used (status 3).
    #[error(transparent)]
    State(#[from] StateError),
    /// The `--failed` list cannot be written (status 3).
    #[error("cannot write the list of failed codes to '{}': {source}", path.display())]
    FailedList {
        /// The file asked for.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

impl FatalError {
    /// The exit status this error leads to.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Self::Usage(_) | Self::Config(_) => ExitStatus::Usage,
            _ => ExitStatus::Fatal,
        }
    }
}
