//! The errors that end a command before or instead of its normal report,
//! and the exit status each leads to.

use super::ledger::LedgerError;
use crate::config::{ConfigError, UsageError};
use crate::engine::CoordinatorLost;
use crate::http::client::RequestError;
use crate::model::exit::ExitStatus;
use crate::store::output::OutputDirError;
use crate::store::state::StateError;
use crate::sys::server_thread::ServerError;
use crate::testserver::server::TestServerError;

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
    /// A server of the daemon (the admin endpoint) cannot start (status 3).
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The coordinator vanished (status 3; a bug).
    #[error(transparent)]
    Coordinator(#[from] CoordinatorLost),
    /// The daemon's admin endpoint cannot be reached, or refused (status 3).
    #[error("{0}")]
    Admin(String),
    /// The daemon has no batch of that name: it runs another configuration
    /// than the one read here (status 2).
    #[error("{daemon} has no batch named {batch}: it has not loaded this configuration (flagsd reload loads it)")]
    UnknownToDaemon {
        /// The daemon: `the daemon at http://127.0.0.1:9090`.
        daemon: String,
        /// The batch.
        batch: String,
    },
    /// The batch has a run in progress where another was asked for, so
    /// nothing was started (status 3): a batch never runs twice at once.
    #[error("{by} is running batch {batch}{}; nothing was started", .run.map(|id| format!(" (run {id})")).unwrap_or_default())]
    BatchRunning {
        /// Who runs it: `the daemon at http://127.0.0.1:9090`, `the daemon
        /// of flagsd.toml`.
        by: String,
        /// The batch.
        batch: String,
        /// Its run in progress, when known.
        run: Option<i64>,
    },
    /// The process named is not the daemon of this configuration, so it
    /// is not signalled (status 3).
    #[error("not signalling process {pid}: {why}")]
    NotTheDaemon {
        /// The process.
        pid: u32,
        /// What it is instead.
        why: String,
    },
    /// A signal could not be sent to a process (status 3).
    #[error("cannot signal process {pid}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers cannot be installed (status 3).
    #[error("cannot install the signal handler: {0}")]
    Signals(std::io::Error),
    /// The run ledger (the state database, or the fleet's NATS servers)
    /// cannot be used (status 3).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A generated file (man page, completions) cannot be written (status 3).
    #[error("cannot write '{}': {source}", path.display())]
    Generate {
        /// The file or directory (`-`: stdout).
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
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

impl From<StateError> for FatalError {
    fn from(error: StateError) -> Self {
        Self::Ledger(LedgerError::State(error))
    }
}

impl FatalError {
    /// The exit status this error leads to.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Self::Usage(_) | Self::Config(_) | Self::UnknownToDaemon { .. } => ExitStatus::Usage,
            _ => ExitStatus::Fatal,
        }
    }
}
