//! What the admin endpoint asks of the daemon, as typed messages.
//!
//! Each request carries the one-shot sender on which the daemon answers; a
//! dropped sender counts as no answer. The answers are the admin API's own
//! types ([`crate::present::api`]), so what the daemon builds is what the
//! endpoint serializes, and what `flagsd status` reads back.

use tokio::sync::oneshot;

use crate::model::run::{RunDetails, RunRecord};
use crate::present::api::{BatchView, FleetView, Reloaded};

/// Runs listed by `GET /runs` when the request gives no `limit`.
pub const DEFAULT_RUNS_LIMIT: usize = 20;

/// The largest `limit` `GET /runs` accepts.
pub const MAX_RUNS_LIMIT: usize = 1000;

/// A request of the admin endpoint to the daemon.
#[derive(Debug)]
pub enum AdminRequest {
    /// `GET /healthz`: answer to show the daemon's loop is alive.
    Ping(oneshot::Sender<()>),
    /// `GET /readyz`: `Ok` when ready, `Err(reason)` otherwise (`503`).
    Ready(oneshot::Sender<Result<(), String>>),
    /// `GET /metrics`: the metrics in the Prometheus text format.
    Metrics(oneshot::Sender<String>),
    /// `GET /batches`: every configured batch with its live facts.
    Batches(oneshot::Sender<Vec<BatchView>>),
    /// `GET /about`: what the daemon says of itself.
    About(oneshot::Sender<DaemonFacts>),
    /// `GET /fleet`: the fleet's live nodes and queues (`None`: the daemon
    /// is not a node of a fleet).
    Fleet(oneshot::Sender<Result<Option<FleetView>, Unavailable>>),
    /// `GET /runs`: the latest `limit` runs, of one batch or of all, with
    /// an id below `before` (the next page).
    Runs {
        /// Only runs of this batch, if given (an empty `batch=` means all).
        batch: Option<String>,
        /// Runs wanted at most, from 1 to [`MAX_RUNS_LIMIT`].
        limit: usize,
        /// Only runs with a smaller id.
        before: Option<i64>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Vec<RunRecord>, Unavailable>>,
    },
    /// `GET /runs/{id}`: one run with each code's outcome.
    Run {
        /// The run id.
        id: i64,
        /// Where the answer goes (`None`: no such run).
        reply: oneshot::Sender<Result<Option<RunDetails>, Unavailable>>,
    },
    /// `POST /batches/{name}/run`: start a run of `batch` now.
    Trigger {
        /// The batch name from the path (percent-decoded).
        batch: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Trigger>,
    },
    /// `POST /batches/{name}/cancel`: cancel `batch`'s run in progress.
    Cancel {
        /// The batch name from the path (percent-decoded).
        batch: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Cancel>,
    },
    /// `POST /reload`: read the configuration file again, as SIGHUP does.
    Reload(oneshot::Sender<Reload>),
}

/// What the daemon says of itself in `GET /about`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonFacts {
    /// When the configuration in force was loaded (at start, or by the
    /// last good reload), RFC 3339 UTC.
    pub loaded_at: String,
    /// The batches configured.
    pub batches: usize,
    /// The fleet's name, for a node of a fleet.
    pub fleet: Option<String>,
    /// `Ok` when ready, else why not.
    pub ready: Result<(), String>,
}

/// Why the daemon cannot answer a request about runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Not yet (a node that has not joined its fleet): `503`.
    NotReady(String),
    /// The ledger failed: `500`.
    Failed(String),
}

/// The daemon's answer to a [`AdminRequest::Trigger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A run started (`202`).
    Started {
        /// The new run's identifier.
        run_id: i64,
    },
    /// A run of the batch is already in progress (`409`).
    Running,
    /// No batch has that name (`404`).
    Unknown,
    /// The run cannot start now (`503`): the daemon is stopping, or a node
    /// has not joined its fleet; the message says which.
    NotReady(String),
    /// The run could not start (`500`); the message says why.
    Failed(String),
}

/// The daemon's answer to a [`AdminRequest::Cancel`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// The run was cancelled (`200`, with its record).
    Cancelled(Box<RunRecord>),
    /// The batch has no run in progress (`409`).
    NotRunning,
    /// No batch has that name (`404`).
    Unknown,
    /// Not now (`503`): why.
    NotReady(String),
    /// The run could not be cancelled (`500`): why.
    Failed(String),
}

/// The daemon's answer to a [`AdminRequest::Reload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file loaded and is now in force (`200`).
    Reloaded(Reloaded),
    /// The file did not load, and the previous configuration stays in
    /// force (`422`).
    Refused {
        /// The file, as the daemon names it.
        config: String,
        /// Every problem found, one a line, as `check-config` says them.
        problems: Vec<String>,
    },
}
