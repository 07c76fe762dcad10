//! `flagsd run`: configured batches, once, in parallel, one report each.
//!
//! Batches run at the same time on the one arbiter; each report (its
//! verbose lines included) is printed whole when its batch ends, in file
//! order, under a `== batch NAME ==` header, so reports never interleave.
//! With `--json` one JSON document describes every batch instead. Each run
//! is recorded in the state database, and files saved by earlier runs of a
//! batch are asked for conditionally.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use crate::config::ServerTarget;
use crate::config::settings::{BatchConfig, Settings};
use crate::engine::OutcomeSink;
use crate::http::download::redact_credentials;
use crate::job::prepare::{JobContext, PreparedJob};
use crate::model::exit::{ExitStatus, FatalError};
use crate::model::outcome::CodeOutcome;
use crate::present::report::{emit, final_report, initial_report, log_outcome, verbose_line};
use crate::present::results::{BatchResult, JobResult, RunDocument, SCHEMA_VERSION, to_json};
use crate::store::state::{RecordedRun, SharedState, StateDb};
use crate::sys::signals::{StopSignal, StopSignals};

/// Keeps a batch's verbose lines until its report is printed.
struct BufferedSink {
    verbose: bool,
    lines: Rc<RefCell<String>>,
}

impl OutcomeSink for BufferedSink {
    fn record(&mut self, outcome: &CodeOutcome) {
        log_outcome(outcome);
        if self.verbose {
            let mut lines = self.lines.borrow_mut();
            lines.push_str(&verbose_line(outcome));
            lines.push('\n');
        }
    }
}

/// Completes when `stop` turns true: the interrupt signal shared by all batches.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the sender is gone: then nothing will ever stop us.
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What a batch run leaves to print: its report (stdout) and any fatal
/// error (stderr), its exit status, and its result for `--json`.
struct BatchReport {
    report: String,
    error: Option<String>,
    status: ExitStatus,
    result: JobResult,
}

/// Runs one batch to the end (or `stop`), keeping its report text; records
/// it in `state`.
async fn run_batch(
    batch: BatchConfig,
    context: Rc<JobContext>,
    state: SharedState,
    stop: watch::Receiver<bool>,
    signal: Rc<Cell<Option<StopSignal>>>,
) -> BatchReport {
    let mut report = format!("== batch {} ==\n", batch.name);
    let job = &batch.job;
    let started_at = SystemTime::now();
    let url = match &job.server.target {
        ServerTarget::Url(url) => redact_credentials(url),
        ServerTarget::Demo => String::new(),
    };
    let failed = |report, e: FatalError, run_id| BatchReport {
        report,
        error: Some(format!("*** Error in batch {}: {e}", batch.name)),
        status: e.exit_status(),
        result: JobResult {
            run_id,
            ..JobResult::failed(&job.server.label, &url, started_at, e.to_string(), e.exit_status())
        },
    };
    let (recorded, known) = match RecordedRun::begin(&state, &batch.name, "run") {
        Ok(begun) => begun,
        Err(e) => return failed(report, e.into(), None),
    };
    let run_id = Some(recorded.id);
    let prepared = match PreparedJob::prepare(job, &context, Some(known)) {
        Ok(p) => p,
        Err(e) => {
            recorded.finish_failed(e.exit_status().code());
            return failed(report, e, run_id);
        }
    };
    report.push_str(&initial_report(&job.server.label, &prepared.display_url, &job.codes, prepared.pool_size));
    let lines = Rc::default();
    let sink = Box::new(BufferedSink { verbose: batch.verbose, lines: Rc::clone(&lines) });
    let started = Instant::now();
    let summary = prepared.start(job, sink).finish_or_interrupt(stopped(stop)).await;
    report.push_str(&lines.borrow());
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            let e = FatalError::from(e);
            recorded.finish_failed(e.exit_status().code());
            return failed(report, e, run_id);
        }
    };
    report.push_str(&final_report(&summary.counts, started.elapsed()));
    let status = ExitStatus::of_run(&summary, signal.get());
    let result = prepared.result(job, &summary, (started_at, started.elapsed()), status, Some(recorded.id));
    match recorded.finish(&summary.counts, status.code(), &summary.outcomes) {
        Ok(()) => BatchReport { report, error: None, status, result },
        Err(e) => BatchReport { result, ..failed(report, e.into(), run_id) },
    }
}

/// The worst of two statuses: interrupted, then fatal, usage, errors, success.
pub fn worst(a: ExitStatus, b: ExitStatus) -> ExitStatus {
    let rank = |s: ExitStatus| match s {
        ExitStatus::Success => 0,
        ExitStatus::SomeErrors => 1,
        ExitStatus::Usage => 2,
        ExitStatus::Fatal => 3,
        ExitStatus::Interrupted | ExitStatus::Terminated => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// Runs the batches named in `names` (all when empty) once; prints one
/// JSON document instead of the reports with `json`.
pub async fn run(settings: Settings, names: &[String], json: bool) -> Result<ExitStatus, FatalError> {
    let batches: Vec<BatchConfig> = settings
        .select(names)
        .map_err(|e| FatalError::Usage(crate::config::UsageError(e)))?
        .into_iter()
        .cloned()
        .collect();
    if batches.is_empty() {
        return Err(FatalError::Usage(crate::config::UsageError(
            "no batch is configured: add a [[batch]] table to the configuration file".to_owned(),
        )));
    }
    let state = Rc::new(RefCell::new(StateDb::open(&settings.state_dir)?));
    crate::sys::limits::raise_open_files_limit();
    let context = Rc::new(JobContext::default());
    let mut signals = StopSignals::install().map_err(FatalError::Signals)?;
    let received = Rc::new(Cell::new(None));
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let received = Rc::clone(&received);
        actix_rt::spawn(async move {
            received.set(Some(signals.recv().await));
            let _ = stop_tx.send(true);
        });
    }
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|b| {
            let name = b.name.clone();
            let task = run_batch(b, Rc::clone(&context), Rc::clone(&state), stop_rx.clone(), Rc::clone(&received));
            (name, actix_rt::spawn(task))
        })
        .collect();
    let mut status = ExitStatus::Success;
    let mut results = Vec::new();
    for (i, (name, task)) in tasks.into_iter().enumerate() {
        let batch = task.await.unwrap_or_else(|e| {
            let error = format!("batch task failed: {e}");
            BatchReport {
                report: String::new(),
                error: Some(format!("*** Error: {error}")),
                status: ExitStatus::Fatal,
                result: JobResult::failed("", "", SystemTime::now(), error, ExitStatus::Fatal),
            }
        });
        if !json {
            emit(&format!("{}{}", if i > 0 { "\n" } else { "" }, batch.report));
        }
        if let Some(error) = batch.error {
            eprintln!("{error}");
        }
        status = worst(status, batch.status);
        results.push(BatchResult { name, result: batch.result });
    }
    if json {
        let document = RunDocument {
            schema_version: SCHEMA_VERSION,
            command: "run",
            exit_status: status.code(),
            batches: results,
        };
        emit(&to_json(&document));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_wins() {
        use ExitStatus::*;
        assert_eq!(worst(Success, SomeErrors), SomeErrors);
        assert_eq!(worst(Fatal, SomeErrors), Fatal);
        assert_eq!(worst(Usage, Fatal), Fatal);
        assert_eq!(worst(Interrupted, Fatal), Interrupted);
        assert_eq!(worst(Success, Success), Success);
    }
}
