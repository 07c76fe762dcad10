//! `flagsd run`: configured batches, once, in parallel, one report each.
//!
//! Batches run at the same time on the one arbiter; each report (its
//! verbose lines included) is printed whole when its batch ends, in file
//! order, under a `== batch NAME ==` header, so reports never interleave.

use std::time::Instant;

use std::rc::Rc;

use tokio::sync::watch;

use crate::actors::{OutcomeSink, RunSummary};
use crate::config::settings::{BatchConfig, Settings};
use crate::exit::{ExitStatus, FatalError};
use crate::job::PreparedJob;
use crate::outcome::CodeOutcome;
use crate::rate::RateLimiters;
use crate::report::{final_report, initial_report, log_outcome, verbose_line};

/// Keeps a batch's verbose lines until its report is printed.
struct BufferedSink {
    verbose: bool,
    lines: std::rc::Rc<std::cell::RefCell<String>>,
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

/// Runs one batch to the end (or `stop`), returning its whole report text.
async fn run_batch(
    batch: BatchConfig,
    limiters: Rc<RateLimiters>,
    stop: watch::Receiver<bool>,
) -> (String, ExitStatus) {
    let mut report = format!("== batch {} ==\n", batch.name);
    let job = &batch.job;
    let prepared = match PreparedJob::prepare(job, &limiters) {
        Ok(p) => p,
        Err(e) => {
            report.push_str(&format!("*** Error: {e}\n"));
            return (report, e.exit_status());
        }
    };
    report.push_str(&initial_report(&job.server.label, &prepared.display_url, &job.codes, prepared.pool_size));
    let lines = std::rc::Rc::default();
    let sink = Box::new(BufferedSink { verbose: batch.verbose, lines: std::rc::Rc::clone(&lines) });
    let started = Instant::now();
    let summary: Result<RunSummary, _> = prepared.start(job, sink).finish_or_interrupt(stopped(stop)).await;
    report.push_str(&lines.borrow());
    match summary {
        Ok(summary) => {
            report.push_str(&final_report(&summary.counts, started.elapsed()));
            (report, ExitStatus::of_run(&summary))
        }
        Err(e) => {
            report.push_str(&format!("*** Error: {e}\n"));
            (report, ExitStatus::Fatal)
        }
    }
}

/// The worst of two statuses: interrupted, then fatal, usage, errors, success.
pub fn worst(a: ExitStatus, b: ExitStatus) -> ExitStatus {
    let rank = |s: ExitStatus| match s {
        ExitStatus::Success => 0,
        ExitStatus::SomeErrors => 1,
        ExitStatus::Usage => 2,
        ExitStatus::Fatal => 3,
        ExitStatus::Interrupted => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// Runs the batches named in `names` (all when empty) once.
pub async fn run(settings: Settings, names: &[String]) -> Result<ExitStatus, FatalError> {
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
    crate::limits::raise_open_files_limit();
    let limiters = Rc::new(RateLimiters::default());
    let interrupted = crate::signals::interrupted().map_err(FatalError::Signals)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    actix_rt::spawn(async move {
        interrupted.await;
        let _ = stop_tx.send(true);
    });
    let tasks: Vec<_> =
        batches.into_iter().map(|b| actix_rt::spawn(run_batch(b, Rc::clone(&limiters), stop_rx.clone()))).collect();
    let mut status = ExitStatus::Success;
    for (i, task) in tasks.into_iter().enumerate() {
        let (report, batch_status) =
            task.await.unwrap_or_else(|e| (format!("*** Error: batch task failed: {e}\n"), ExitStatus::Fatal));
        if i > 0 {
            println!();
        }
        print!("{report}");
        status = worst(status, batch_status);
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
