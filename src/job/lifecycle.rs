//! The one lifecycle of a run that this process fetches itself (`fetch
//! --state`, `run`, `serve`): begin, prepare, run, then finish, fail or
//! cancel, each recorded in the run [ledger](super::ledger).
//!
//! A [`Recording`] is begun before anything else happens to a run (so the
//! daemon can answer a trigger with the run's id at once), and [`run`]
//! takes it through the rest in one place:
//!
//! - **prepare** the job; a failure ends the run with that error's status;
//! - **run** it, until every code has an outcome or `stop` completes;
//! - **finish**: each code's outcome is recorded (the first of a code wins),
//!   then the run's end, with its counts and exit status;
//! - **fail**: a run that ended before any outcome (preparation failed, the
//!   coordinator vanished) is recorded as failed, with the error and its
//!   exit status;
//! - **cancel**: a run stopped by a signal is recorded as cancelled with
//!   that signal's status (130 for SIGINT, 143 for SIGTERM), whatever
//!   finished included.
//!
//! Without run state ([`Recording::none`]) the same steps run and nothing is
//! recorded. A fleet's runs are fetched by its nodes instead
//! (`fleet::node`), and recorded in the same kind of ledger.
//!
//! [`run`]: Recording::run

use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::error::FatalError;
use super::ledger::{Ledger, LedgerError, RunKey, RunStart, Stop};
use super::prepare::{JobContext, PreparedJob};
use crate::config::JobConfig;
use crate::engine::{OutcomeSink, RunSummary};
use crate::model::exit::ExitStatus;
use crate::model::run::RunRecord;
use crate::store::state::{KnownFiles, StateHandle};
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

/// A run about to be prepared: recorded in a ledger from its start, or not
/// recorded at all.
pub struct Recording {
    record: Option<(Rc<dyn Ledger>, RunKey)>,
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
    /// The run's id in its ledger, when it is recorded.
    pub run_id: Option<i64>,
    /// When the run started.
    pub started_at: SystemTime,
    /// The run, or the error that ended it before or while it ran.
    pub result: Result<FinishedRun, FatalError>,
    /// The run's record as its ledger ended it (none without a ledger, or
    /// when recording failed).
    pub recorded: Option<RunRecord>,
    /// The end of a run that ran could not be recorded.
    pub record_error: Option<LedgerError>,
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

    /// Begins a run of the codes of `job` as batch `batch`, started by
    /// `trigger` (`schedule`, `admin`, `reload`, `run`, `fetch`), in
    /// `ledger`, which also says what earlier runs of the batch saved (for
    /// conditional requests).
    pub async fn begin(
        ledger: Rc<dyn Ledger>,
        batch: &str,
        job: &JobConfig,
        trigger: &str,
    ) -> Result<Self, LedgerError> {
        let begun = ledger.begin(RunStart { batch, codes: &job.codes, trigger, tick: None }).await?;
        Ok(Self { record: Some((ledger, begun.key)), known: begun.known })
    }

    /// The run's id in its ledger, when it is recorded.
    pub fn run_id(&self) -> Option<i64> {
        self.record.as_ref().map(|(_, key)| key.id)
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
        let run_id = record.as_ref().map(|(_, key)| key.id);
        let started_at = SystemTime::now();
        let failed = async |record: Option<(Rc<dyn Ledger>, RunKey)>, error: FatalError| {
            let mut recorded = None;
            if let Some((ledger, key)) = record {
                let stop = Stop::Failed { status: error.exit_status(), error: error.to_string() };
                match ledger.stop(&key, stop).await {
                    Ok(record) => recorded = record,
                    Err(e) => tracing::error!(run = key.id, error = %e, "the end of the run was not recorded"),
                }
            }
            RunEnd { run_id, started_at, result: Err(error), recorded, record_error: None }
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
        let (recorded, record_error) = match record {
            Some((ledger, key)) => match end(&*ledger, &key, &summary, status).await {
                Ok(recorded) => (recorded, None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        };
        let result = Ok(FinishedRun { prepared, summary, status, elapsed });
        RunEnd { run_id, started_at, result, recorded, record_error }
    }
}

/// Records the outcomes of `summary` as run `key`'s, and its end: finished,
/// or cancelled with `status` when a signal interrupted it.
async fn end(
    ledger: &dyn Ledger,
    key: &RunKey,
    summary: &RunSummary,
    status: ExitStatus,
) -> Result<Option<RunRecord>, LedgerError> {
    for outcome in &summary.outcomes {
        ledger.record(key, outcome, None).await?;
    }
    if summary.interrupted {
        return ledger.stop(key, Stop::Cancelled(status)).await;
    }
    match ledger.finish(key).await? {
        Some(record) => Ok(Some(record)),
        None => {
            // The coordinator settles every code once: short of a bug, a
            // run that was not interrupted is complete.
            let error = format!("{} codes ended without an outcome", summary.unfinished);
            ledger.stop(key, Stop::Failed { status: ExitStatus::Fatal, error }).await
        }
    }
}
