//! `flagsd run`: configured batches, once, in parallel, one report each.
//!
//! Batches run at the same time on the one arbiter; each report (its
//! verbose lines included) is printed whole when its batch ends, in file
//! order, under a `== batch NAME ==` header, so reports never interleave.
//! With `--json` one JSON document describes every batch instead. Each run
//! is recorded in the state database, and files saved by earlier runs of a
//! batch are asked for conditionally.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::sync::watch;

use super::batch_report::{BatchReport, display_url};
use crate::config::{BatchConfig, Settings, UsageError};
use crate::engine::OutcomeSink;
use crate::job::{FatalError, JobContext, PreparedJob, Recording, SharedState};
use crate::model::exit::ExitStatus;
use crate::model::outcome::CodeOutcome;
use crate::present::report::{emit, final_report, initial_report, log_outcome, verbose_line};
use crate::present::results::{BatchResult, JobResult, RunDocument, SCHEMA_VERSION, to_json};
use crate::store::state::{StateDb, StateHandle};
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

/// Runs one batch to the end (or to the signal in `stop`), keeping its
/// report text; records it in `state`.
async fn run_batch(
    batch: BatchConfig,
    context: Rc<JobContext>,
    state: SharedState,
    mut stop: watch::Receiver<Option<StopSignal>>,
) -> BatchReport {
    let report = RefCell::new(format!("== batch {} ==\n", batch.name));
    let job = &batch.job;
    let failed = |report: String, e: FatalError, run_id, started_at| BatchReport {
        report,
        error: Some(format!("*** Error in batch {}: {e}", batch.name)),
        status: e.exit_status(),
        result: JobResult {
            run_id,
            ..JobResult::failed(&job.server.label, &display_url(&batch), started_at, e.to_string(), e.exit_status())
        },
    };
    let recording = match Recording::begin(&state, &batch.name, "run").await {
        Ok(recording) => recording,
        Err(e) => return failed(report.into_inner(), e.into(), None, SystemTime::now()),
    };
    let lines = Rc::default();
    let sink = |prepared: &PreparedJob| -> Box<dyn OutcomeSink> {
        let initial = initial_report(&job.server.label, &prepared.display_url, &job.codes, prepared.pool_size);
        report.borrow_mut().push_str(&initial);
        Box::new(BufferedSink { verbose: batch.verbose, lines: Rc::clone(&lines) })
    };
    let signal = async move {
        match stop.wait_for(Option::is_some).await.ok().and_then(|s| *s) {
            Some(signal) => signal,
            // The sender is gone without a signal: nothing will stop us.
            None => std::future::pending().await,
        }
    };
    let end = recording.run(job, &context, sink, signal).await;
    let mut report = report.into_inner();
    report.push_str(&lines.borrow());
    let finished = match end.result {
        Ok(finished) => finished,
        Err(e) => return failed(report, e, end.run_id, end.started_at),
    };
    if batch.verbose {
        report.push_str(&format!("{}.\n", finished.prepared.opened().describe()));
    }
    report.push_str(&final_report(&finished.summary.counts, finished.elapsed));
    let timing = (end.started_at, finished.elapsed);
    let result = finished.prepared.result(job, &finished.summary, timing, finished.status, end.run_id);
    match end.record_error {
        None => BatchReport { report, error: None, status: finished.status, result },
        Some(e) => BatchReport { result, ..failed(report, e.into(), end.run_id, end.started_at) },
    }
}

/// Runs the batches named in `names` (all when empty) once, here or (with
/// `[fleet]`) in the fleet; prints one JSON document instead of the
/// reports with `json`.
pub async fn run(settings: Settings, names: &[String], json: bool) -> Result<ExitStatus, FatalError> {
    let batches: Vec<BatchConfig> = settings.select(names).map_err(UsageError)?.into_iter().cloned().collect();
    if batches.is_empty() {
        return Err(FatalError::Usage(UsageError(
            "no batch is configured: add a [[batch]] table to the configuration file".to_owned(),
        )));
    }
    let mut printer = Printer { json, status: ExitStatus::Success, results: Vec::new() };
    match &settings.fleet {
        Some(fleet) => {
            let reports = super::fleet_run::run(fleet, &batches, json).await?;
            for (batch, report) in batches.iter().zip(reports) {
                printer.print(&batch.name, report);
            }
        }
        None => run_here(&settings, batches, &mut printer).await?,
    }
    Ok(printer.finish())
}

/// Prints each batch's report as it comes, in file order, and the JSON
/// document at the end.
struct Printer {
    json: bool,
    status: ExitStatus,
    results: Vec<BatchResult>,
}

impl Printer {
    fn print(&mut self, name: &str, batch: BatchReport) {
        if !self.json {
            emit(&format!("{}{}", if self.results.is_empty() { "" } else { "\n" }, batch.report));
        }
        if let Some(error) = batch.error {
            eprintln!("{error}");
        }
        self.status = self.status.worst(batch.status);
        self.results.push(BatchResult { name: name.to_owned(), result: batch.result });
    }

    /// Prints the JSON document (with `--json`); the exit status.
    fn finish(self) -> ExitStatus {
        if self.json {
            let document = RunDocument {
                schema_version: SCHEMA_VERSION,
                command: "run",
                exit_status: self.status.code(),
                batches: self.results,
            };
            emit(&to_json(&document));
        }
        self.status
    }
}

/// Runs `batches` in this process, in parallel, recorded in the state
/// database.
async fn run_here(settings: &Settings, batches: Vec<BatchConfig>, printer: &mut Printer) -> Result<(), FatalError> {
    let state = StateHandle::spawn(StateDb::open(&settings.state_dir)?)?;
    crate::sys::limits::raise_open_files_limit();
    let context = Rc::new(JobContext::new(settings.threads, batches.iter().map(|b| b.job.pool_size).sum()));
    let mut signals = StopSignals::install().map_err(FatalError::Signals)?;
    let (stop_tx, stop_rx) = watch::channel(None);
    actix_rt::spawn(async move {
        let signal = signals.recv().await;
        let _ = stop_tx.send(Some(signal));
    });
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|b| {
            let name = b.name.clone();
            let task = run_batch(b, Rc::clone(&context), state.clone(), stop_rx.clone());
            (name, actix_rt::spawn(task))
        })
        .collect();
    for (name, task) in tasks {
        let batch = task.await.unwrap_or_else(|e| {
            let error = format!("batch task failed: {e}");
            BatchReport {
                report: String::new(),
                error: Some(format!("*** Error: {error}")),
                status: ExitStatus::Fatal,
                result: JobResult::failed("", "", SystemTime::now(), error, ExitStatus::Fatal),
            }
        });
        printer.print(&name, batch);
    }
    Ok(())
}
