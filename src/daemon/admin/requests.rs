//! What the admin endpoint asks of the daemon, as typed messages.
//!
//! Each request carries the one-shot sender on which the daemon answers; a
//! dropped sender counts as no answer. The answers are the admin API's own
//! types ([`crate::present::api`]), so what the daemon builds is what the
//! endpoint serializes, and what `flagsd status` reads back.

use tokio::sync::oneshot;

use crate::present::api::{BatchView, RunRecord};

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
    /// `GET /runs`: the latest `limit` runs, of one batch or of all; an
    /// `Err` becomes `500`.
    Runs {
        /// Only runs of this batch, if given (an empty `batch=` means all).
        batch: Option<String>,
        /// Runs wanted at most, from 1 to [`MAX_RUNS_LIMIT`].
        limit: usize,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Vec<RunRecord>, String>>,
    },
    /// `POST /batches/{name}/run`: start a run of `batch` now.
    Trigger {
        /// The batch name from the path (percent-decoded).
        batch: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Trigger>,
    },
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
    /// The run could not start (`500`); the message says why.
    Failed(String),
}
