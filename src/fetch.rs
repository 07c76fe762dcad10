//! `flagsd fetch`: one flags2 run from checked settings to exit status.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use crate::config::FetchConfig;
use crate::exit::{ExitStatus, FatalError};
use crate::job::{JobContext, PreparedJob};
use crate::limits::raise_open_files_limit;
use crate::report::{ConsoleSink, emit, final_report, initial_report};
use crate::signals::StopSignals;

/// Runs `fetch` on the current actix system: checks the output directory,
/// prints the initial report, downloads, prints the final report. SIGINT or
/// SIGTERM stops it early, still with a final report.
pub async fn run(config: FetchConfig) -> Result<ExitStatus, FatalError> {
    let job = &config.job;
    raise_open_files_limit();
    let prepared = PreparedJob::prepare(job, &JobContext::default())?;
    let mut signals = StopSignals::install().map_err(FatalError::Signals)?;
    let received = Rc::new(Cell::new(None));
    let stop = {
        let received = Rc::clone(&received);
        async move { received.set(Some(signals.recv().await)) }
    };

    emit(&initial_report(&job.server.label, &prepared.display_url, &job.codes, prepared.pool_size));
    let started = Instant::now();
    let sink = Box::new(ConsoleSink::new(config.verbose, job.codes.len()));
    let summary = prepared.start(job, sink).finish_or_interrupt(stop).await?;
    emit(&final_report(&summary.counts, started.elapsed()));
    if summary.interrupted {
        eprintln!("*** Interrupted: {} codes did not finish.", summary.unfinished);
    }
    Ok(ExitStatus::of_run(&summary, received.get()))
}
