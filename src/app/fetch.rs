//! `flagsd fetch`: one flags2 run from checked settings to exit status.
//!
//! With `--state DIR` the run is recorded in the state database (under the
//! batch name [`FETCH_BATCH`]) and files saved by earlier runs are asked for
//! conditionally; with `--json` the report is one JSON document; with
//! `--failed FILE` the codes to try again are written to FILE.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use crate::config::FetchConfig;
use crate::job::prepare::{JobContext, PreparedJob};
use crate::model::exit::{ExitStatus, FatalError};
use crate::present::report::{ConsoleSink, emit, final_report, initial_report};
use crate::present::results::{FetchDocument, SCHEMA_VERSION, failed_codes, to_json, write_code_list};
use crate::store::state::{FETCH_BATCH, RecordedRun, StateDb};
use crate::sys::limits::raise_open_files_limit;
use crate::sys::signals::StopSignals;

/// Runs `fetch` on the current actix system: checks the output directory,
/// prints the initial report, downloads, prints the final report. SIGINT or
/// SIGTERM stops it early, still with a final report.
pub async fn run(config: FetchConfig) -> Result<ExitStatus, FatalError> {
    let job = &config.job;
    raise_open_files_limit();
    let state = match &config.state_dir {
        Some(dir) => Some(Rc::new(RefCell::new(StateDb::open(dir)?))),
        None => None,
    };
    let (recorded, known) = match &state {
        Some(db) => {
            let (recorded, known) = RecordedRun::begin(db, FETCH_BATCH, "fetch")?;
            (Some(recorded), Some(known))
        }
        None => (None, None),
    };
    // The history shows a run that failed before any outcome, too.
    let failed = |recorded: Option<RecordedRun>, error: FatalError| {
        if let Some(recorded) = recorded {
            recorded.finish_failed(error.exit_status().code());
        }
        error
    };
    let prepared = match PreparedJob::prepare(job, &JobContext::default(), known) {
        Ok(prepared) => prepared,
        Err(error) => return Err(failed(recorded, error)),
    };
    let mut signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(e) => return Err(failed(recorded, FatalError::Signals(e))),
    };
    let received = Rc::new(Cell::new(None));
    let stop = {
        let received = Rc::clone(&received);
        async move { received.set(Some(signals.recv().await)) }
    };

    if !config.json {
        emit(&initial_report(&job.server.label, &prepared.display_url, &job.codes, prepared.pool_size));
    }
    let (started, started_at) = (Instant::now(), SystemTime::now());
    let sink = Box::new(ConsoleSink::new(config.verbose && !config.json, job.codes.len()));
    let summary = match prepared.start(job, sink).finish_or_interrupt(stop).await {
        Ok(summary) => summary,
        Err(lost) => return Err(failed(recorded, lost.into())),
    };
    let status = ExitStatus::of_run(&summary, received.get());
    let run_id = recorded.as_ref().map(|r| r.id);
    let elapsed = started.elapsed();
    // The state and the failed list are written before the report, so that
    // the JSON document gives the status the process exits with.
    let recorded = recorded.map(|r| r.finish(&summary.counts, status.code(), &summary.outcomes)).transpose();
    let written = match &config.failed {
        Some(path) => write_code_list(path, &failed_codes(&job.codes, &summary))
            .map_err(|source| FatalError::FailedList { path: path.clone(), source }),
        None => Ok(()),
    };
    let written = match (written, recorded) {
        (Err(list), Err(state)) => {
            // Both failed: the list's error is the status, the state's is said too.
            eprintln!("*** Error: {state}");
            Err(list)
        }
        (Err(list), Ok(_)) => Err(list),
        (Ok(()), recorded) => recorded.map(drop).map_err(FatalError::from),
    };
    if config.json {
        let mut result = prepared.result(job, &summary, (started_at, elapsed), status, run_id);
        if let Err(error) = &written {
            result.exit_status = error.exit_status().code();
            result.error = Some(error.to_string());
        }
        emit(&to_json(&FetchDocument { schema_version: SCHEMA_VERSION, command: "fetch", result }));
    } else {
        emit(&final_report(&summary.counts, elapsed));
    }
    if summary.interrupted {
        eprintln!("*** Interrupted: {} codes did not finish.", summary.unfinished);
    }
    written?;
    Ok(status)
}
