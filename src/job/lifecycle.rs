//! The one recorded-run lifecycle that `fetch --state`, `run` and `serve`
//! share: begin, prepare, run, then finish, fail or abandon.
//!
//! A [`Recording`] is begun before anything else happens to a run (so the
//! daemon can answer a trigger with the run's id at once), and [`run`]
//! takes it through the rest in one place:
//!
//! - **prepare** the job; a failure ends the run with that error's status;
//! - **run** it, until every code has an outcome or `stop` completes;
//! - **finish**: the run's counts, exit status and outcomes are recorded;
//! - **fail**: a run that ended before any outcome (preparation failed, the
//!   coordinator vanished) is recorded with the error's exit status;
//! - **abandon**: a run stopped by a signal is recorded with that signal's
//!   status (130 for SIGINT, 143 for SIGTERM), whatever finished included.
//!
//! Without run state ([`Recording::none`]) the same steps run and nothing is
//! recorded.
//!
//! [`run`]: Recording::run

use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::error::FatalError;
use super::prepare::{JobContext, PreparedJob};
use crate::config::JobConfig;
use crate::engine::{OutcomeSink, RunSummary};
use crate::model::exit::ExitStatus;
use crate::model::outcome::StatusCounts;
use crate::store::state::{KnownFiles, StateError, StateHandle};
use crate::sys::signals::StopSignal;

/// The state database as the jobs of one process share it: on its own
/// thread, so that its locks never block the caller's.
pub type SharedState = StateHandle;

/// The batch name under which `flagsd fetch --state` records its runs (a
/// name no configured batch can have).
pub const FETCH_BATCH: &str = "(fetch)";

/// The exit status of a run that `signal` stopped.
pub fn signal_status(signal: StopSignal) -> ExitStatus {
    match signal {
        StopSignal::Interrupt => ExitStatus::Interrupted,
        StopSignal::Terminate => ExitStatus::Terminated,
    }
}

/// A run's row in the state database, from its start to its end.
#[derive(Debug)]
struct Record {
    db: SharedState,
    batch: String,
    id: i64,
}

impl Record {
    /// Records the end of the run: counts, exit status and outcomes.
    async fn finish(self, summary: &RunSummary, status: ExitStatus) -> Result<(), StateError> {
        let Self { db, batch, id } = self;
        let (counts, outcomes) = (summary.counts, summary.outcomes.clone());
        db.call(move |db| db.finish_run(id, &batch, &counts, status.code(), &outcomes)).await
    }

    /// Records a run that ended before any outcome; a failure to record it
    /// is logged (the error that ended the run is what the caller reports).
    async fn fail(self, status: ExitStatus) {
        let Self { db, batch, id } = self;
        let name = batch.clone();
        let recorded = db.call(move |db| db.finish_run(id, &name, &StatusCounts::default(), status.code(), &[])).await;
        if let Err(e) = recorded {
            tracing::error!(batch = %batch, run = id, error = %e, "the end of the run was not recorded");
        }
    }
}

/// A run about to be prepared: recorded in the state database from its
/// start, or not recorded at all.
#[derive(Debug)]
pub struct Recording {
    record: Option<Record>,
    known: Option<KnownFiles>,
}

/// A run that got as far as running.
pub struct FinishedRun {
    /// The job as it was prepared (its URL and pool, for reports).
    pub prepared: PreparedJob,
    /// What became of the codes.
    pub summary: RunSummary,
    /// The run's exit status (a signal's, when one stopped it).
    pub status: ExitStatus,
    /// From the start of the run to its end.
    pub elapsed: Duration,
}

/// How a run ended, as its command reports it.
pub struct RunEnd {
    /// The run's id in the state database, when it is recorded.
    pub run_id: Option<i64>,
    /// When the run started.
    pub started_at: SystemTime,
    /// The run, or the error that ended it before or while it ran.
    pub result: Result<FinishedRun, FatalError>,
    /// The end of a run that ran could not be recorded.
    pub record_error: Option<StateError>,
}

impl RunEnd {
    /// The exit status of the whole run: the run's own, or its error's.
    pub fn status(&self) -> ExitStatus {
        match &self.result {
            Ok(finished) => finished.status,
            Err(error) => error.exit_status(),
        }
    }
}

impl Recording {
    /// A run that is not recorded (`fetch` without `--state`).
    pub fn none() -> Self {
        Self { record: None, known: None }
    }

    /// Records the start of a run of `batch`, started by `trigger`
    /// (`schedule`, `admin`, `reload`, `run`, `fetch`), and reads what
    /// earlier runs of the batch saved (for conditional requests).
    pub async fn begin(db: &SharedState, batch: &str, trigger: &str) -> Result<Self, StateError> {
        let (name, trigger) = (batch.to_owned(), trigger.to_owned());
        let (known, id) = db
            .call(move |db| {
                let known = db.files(&name)?;
                Ok((known, db.begin_run(&name, &trigger, SystemTime::now())?))
            })
            .await?;
        let record = Record { db: db.clone(), batch: batch.to_owned(), id };
        Ok(Self { record: Some(record), known: Some(known) })
    }

    /// The run's id in the state database, when it is recorded.
    pub fn run_id(&self) -> Option<i64> {
        self.record.as_ref().map(|r| r.id)
    }

    /// Prepares `job` with what `context` shares, starts its coordinator
    /// with the sink that `sink` makes (it sees the prepared job first, to
    /// print the initial report), runs it until every code has an outcome
    /// or `stop` says which signal stopped it, and records how it ended.
    pub async fn run(
        self,
        job: &JobConfig,
        context: &JobContext,
        sink: impl FnOnce(&PreparedJob) -> Box<dyn OutcomeSink>,
        stop: impl Future<Output = StopSignal>,
    ) -> RunEnd {
        let Self { record, known } = self;
        let run_id = record.as_ref().map(|r| r.id);
        let started_at = SystemTime::now();
        let failed = async |record: Option<Record>, error: FatalError| {
            if let Some(record) = record {
                record.fail(error.exit_status()).await;
            }
            RunEnd { run_id, started_at, result: Err(error), record_error: None }
        };
        let prepared = match PreparedJob::prepare(job, context, known.map(|k| Arc::new(RwLock::new(k))).into()) {
            Ok(prepared) => prepared,
            Err(error) => return failed(record, error).await,
        };
        let sink = sink(&prepared);
        let started = Instant::now();
        let signal = Rc::new(std::cell::Cell::new(None));
        let stop = {
            let signal = Rc::clone(&signal);
            async move { signal.set(Some(stop.await)) }
        };
        let summary = match prepared.start(job, sink).finish_or_interrupt(stop).await {
            Ok(summary) => summary,
            Err(lost) => return failed(record, lost.into()).await,
        };
        let elapsed = started.elapsed();
        let status = if summary.interrupted {
            signal_status(signal.get().unwrap_or(StopSignal::Interrupt))
        } else {
            ExitStatus::of_counts(&summary.counts)
        };
        let record_error = match record {
            Some(record) => record.finish(&summary, status).await.err(),
            None => None,
        };
        RunEnd { run_id, started_at, result: Ok(FinishedRun { prepared, summary, status, elapsed }), record_error }
    }
}
