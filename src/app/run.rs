//! `flagsd run`: configured batches, once, in parallel, one report each.
//!
//! Batches run at the same time on the one arbiter; each report (its
//! verbose lines included) is printed whole when its batch ends, in file
//! order, under a `== batch NAME ==` header, so reports never interleave.
//! With `--json` one JSON document describes every batch instead. Each run
//! is recorded in the state database, and files saved by earlier runs of a
//! batch are asked for conditionally.
//!
//! Before it starts, it asks the daemon of the same configuration (its
//! admin endpoint, `GET /batches`, signed) whether it is running any of the
//! batches: two runs of a batch would write the same directory at once. It
//! warns on stderr and goes on, or with `--exclusive` refuses (status 3)
//! before any request. A daemon that does not answer is taken for none:
//! silently, or with `--exclusive` with a note saying why it could not be
//! asked. In a fleet the fleet itself refuses a running batch.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::sync::watch;

use super::admin_client::AdminClient;
use super::batch_report::{BatchReport, Ran};
use crate::config::{BatchConfig, ConfigSource, Settings, UsageError};
use crate::engine::OutcomeSink;
use crate::job::{FatalError, JobContext, Ledger, LocalLedger, PreparedJob, Recording};
use crate::model::exit::ExitStatus;
use crate::model::outcome::CodeOutcome;
use crate::model::run::CodeResult;
use crate::model::text::terminal_safe_lines;
use crate::present::report::{emit, initial_report, log_outcome};
use crate::present::results::{BatchResult, JobResult, RunDocument, SCHEMA_VERSION, to_json};
use crate::store::state::{StateDb, StateHandle};
use crate::sys::signals::{StopSignal, StopSignals};

/// Logs a batch's outcomes as they come (its report is printed whole at
/// the end).
struct LogOnly;

impl OutcomeSink for LogOnly {
    fn record(&mut self, outcome: &CodeOutcome) {
        log_outcome(outcome);
    }
}

/// Runs one batch to the end (or to the signal in `stop`), recorded in
/// `ledger`; its report.
async fn run_batch(
    batch: BatchConfig,
    context: Rc<JobContext>,
    ledger: Rc<dyn Ledger>,
    mut stop: watch::Receiver<Option<StopSignal>>,
) -> BatchReport {
    let job = &batch.job;
    let header = format!("== batch {} ==\n", batch.name);
    let recording = match Recording::begin(ledger, &batch.name, job, "run").await {
        Ok(recording) => recording,
        Err(e) => return BatchReport::failed(&batch, header, &e.into(), None, SystemTime::now()),
    };
    let started = RefCell::new(header);
    let sink = |prepared: &PreparedJob| -> Box<dyn OutcomeSink> {
        let initial = initial_report(&job.server.label, &prepared.display_url, &job.codes, prepared.pool_size);
        started.borrow_mut().push_str(&initial);
        Box::new(LogOnly)
    };
    let signal = async move {
        match stop.wait_for(Option::is_some).await.ok().and_then(|s| *s) {
            Some(signal) => signal,
            // The sender is gone without a signal: nothing will stop us.
            None => std::future::pending().await,
        }
    };
    let end = recording.run(job, &context, sink, signal).await;
    let finished = match end.result {
        Ok(finished) => finished,
        Err(e) => return BatchReport::failed(&batch, started.into_inner(), &e, end.run_id, end.started_at),
    };
    let summary = &finished.summary;
    let ran = Ran {
        url: finished.prepared.display_url.clone(),
        pool: finished.prepared.pool_size,
        counts: summary.counts,
        codes: summary.outcomes.iter().map(CodeResult::of).collect(),
        interrupted: summary.interrupted,
        status: finished.status,
        timing: (end.started_at, finished.elapsed),
        opened: Some(finished.prepared.opened()),
        run_id: end.run_id,
    };
    let report = BatchReport::of(&batch, ran);
    match end.record_error {
        None => report,
        Some(e) => {
            let failed = BatchReport::failed(&batch, report.report, &e.into(), end.run_id, end.started_at);
            BatchReport { result: report.result, ..failed }
        }
    }
}

/// What `flagsd run` prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printed {
    /// Each batch's report (the default).
    Reports,
    /// One JSON document (`--json`).
    Json,
    /// Nothing (`-q`): the exit status says how it went; a batch's fatal
    /// error is still said on stderr.
    Nothing,
}

/// What `flagsd run` does about a batch that the daemon of its
/// configuration is running: warn, or (`--exclusive`) refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The daemon, as messages name it: `the daemon of flagsd.toml`.
    daemon: String,
    /// Refuse instead of warning.
    exclusive: bool,
}

impl Overlap {
    /// For the daemon of the configuration of `source`; `exclusive` refuses.
    pub fn new(source: &ConfigSource, exclusive: bool) -> Self {
        let daemon = match &source.path {
            Some(path) => format!("the daemon of {}", path.display()),
            None => "the daemon".to_owned(),
        };
        Self { daemon, exclusive }
    }

    /// Asks the daemon of `settings` whether it is running any of
    /// `batches`; see the module documentation.
    async fn check(&self, settings: &Settings, batches: &[BatchConfig], printed: Printed) -> Result<(), FatalError> {
        let daemon = &self.daemon;
        let cannot_ask = |why: String| {
            tracing::debug!(%why, "{daemon} was not asked what it runs");
            if self.exclusive {
                eprintln!(
                    "note: --exclusive could not ask {daemon} whether it runs these batches ({why}); running them"
                );
            }
        };
        let Some(admin) = &settings.admin else {
            cannot_ask("the configuration has no admin endpoint ([admin] listen)".to_owned());
            return Ok(());
        };
        let names: Vec<&str> = batches.iter().map(|b| b.name.as_str()).collect();
        let asked = match AdminClient::new(admin) {
            Ok(client) => client.running(&names).await,
            Err(e) => Err(e),
        };
        let running = match asked {
            Ok(running) => running,
            Err(e) => {
                cannot_ask(e.to_string());
                return Ok(());
            }
        };
        if self.exclusive {
            if let Some(first) = running.into_iter().next() {
                return Err(FatalError::BatchRunning { by: daemon.clone(), batch: first.batch, run: first.run });
            }
        } else if printed != Printed::Nothing {
            for other in running {
                let run = other.run.map(|id| format!(" (run {id})")).unwrap_or_default();
                eprintln!(
                    "warning: {daemon} is running batch {}{run}; two runs would write the same directory at once",
                    other.batch
                );
            }
        }
        Ok(())
    }
}

/// Runs the batches named in `names` (all when empty) once, here or (with
/// `[fleet]`) in the fleet, printing what `printed` says; a batch that the
/// daemon runs is dealt with as `overlap` says.
pub async fn run(
    settings: Settings,
    names: &[String],
    printed: Printed,
    overlap: &Overlap,
) -> Result<ExitStatus, FatalError> {
    for warning in settings.secret_warnings("configuration", names) {
        tracing::warn!(key = warning.key.as_deref().unwrap_or_default(), "{}", warning.message);
    }
    let batches: Vec<BatchConfig> = settings.select(names).map_err(UsageError)?.into_iter().cloned().collect();
    if batches.is_empty() {
        return Err(FatalError::Usage(UsageError(
            "no batch is configured: add a [[batch]] table to the configuration file".to_owned(),
        )));
    }
    let mut printer = Printer { printed, status: ExitStatus::Success, results: Vec::new() };
    match &settings.fleet {
        Some(fleet) => {
            let reports = super::fleet_run::run(fleet, &batches, printed == Printed::Json).await?;
            for (batch, report) in batches.iter().zip(reports) {
                printer.print(&batch.name, report);
            }
        }
        None => {
            overlap.check(&settings, &batches, printed).await?;
            run_here(&settings, batches, &mut printer).await?
        }
    }
    Ok(printer.finish())
}

/// Prints each batch's report as it comes, in file order, and the JSON
/// document at the end.
struct Printer {
    printed: Printed,
    status: ExitStatus,
    results: Vec<BatchResult>,
}

impl Printer {
    fn print(&mut self, name: &str, batch: BatchReport) {
        if self.printed == Printed::Reports {
            emit(&format!("{}{}", if self.results.is_empty() { "" } else { "\n" }, batch.report));
            for note in &batch.notes {
                eprintln!("{}", terminal_safe_lines(note));
            }
        }
        if let Some(error) = batch.error {
            eprintln!("{}", terminal_safe_lines(&error));
        }
        self.status = self.status.worst(batch.status);
        self.results.push(BatchResult { name: name.to_owned(), result: batch.result });
    }

    /// Prints the JSON document (with `--json`); the exit status.
    fn finish(self) -> ExitStatus {
        if self.printed == Printed::Json {
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
    let ledger: Rc<dyn Ledger> = Rc::new(LocalLedger::new(StateHandle::spawn(StateDb::open(&settings.state_dir)?)?));
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
            let task = run_batch(b, Rc::clone(&context), Rc::clone(&ledger), stop_rx.clone());
            (name, actix_rt::spawn(task))
        })
        .collect();
    for (name, task) in tasks {
        let batch = task.await.unwrap_or_else(|e| {
            let error = format!("batch task failed: {e}");
            BatchReport {
                report: String::new(),
                notes: Vec::new(),
                error: Some(format!("*** Error: {error}")),
                status: ExitStatus::Fatal,
                result: JobResult::failed("", "", SystemTime::now(), error, ExitStatus::Fatal),
            }
        });
        printer.print(&name, batch);
    }
    Ok(())
}
