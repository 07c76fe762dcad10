//! `flagsd fetch`: one flags2 run from checked settings to exit status.
//!
//! With `--state DIR` the run is recorded in the state database (under the
//! batch name [`FETCH_BATCH`]) and files saved by earlier runs are asked for
//! conditionally; with `--json` the report is one JSON document; with
//! `--failed FILE` the codes to try again are written to FILE; with `-q`
//! nothing is printed but what stops the run (an error, a signal).

use crate::config::FetchConfig;
use crate::engine::OutcomeSink;
use std::rc::Rc;

use crate::job::{FETCH_BATCH, FatalError, JobContext, LocalLedger, PreparedJob, Recording};
use crate::model::causes::Causes;
use crate::model::exit::ExitStatus;
use crate::model::outcome::Outcome;
use crate::model::run::CodeResult;
use crate::model::text::terminal_safe_lines;
use crate::present::report::{ConsoleSink, causes_note, emit, final_report, initial_report};
use crate::present::results::{FetchDocument, SCHEMA_VERSION, failed_codes, to_json, write_code_list};
use crate::store::state::{StateDb, StateHandle};
use crate::sys::limits::raise_open_files_limit;
use crate::sys::signals::StopSignals;

/// Runs `fetch` on the current actix system: checks the output directory,
/// prints the initial report, downloads, prints the final report. SIGINT or
/// SIGTERM stops it early, still with a final report.
pub async fn run(config: FetchConfig) -> Result<ExitStatus, FatalError> {
    let job = &config.job;
    for warning in config.secret_warnings() {
        tracing::warn!("{warning}");
    }
    raise_open_files_limit();
    let mut signals = StopSignals::install().map_err(FatalError::Signals)?;
    let recording = match &config.state_dir {
        Some(dir) => {
            let ledger = Rc::new(LocalLedger::new(StateHandle::spawn(StateDb::open(dir)?)?));
            Recording::begin(ledger, FETCH_BATCH, job, "fetch").await?
        }
        None => Recording::none(),
    };
    let verbose = config.verbose && !config.json;
    let sink = |prepared: &PreparedJob| -> Box<dyn OutcomeSink> {
        if config.quiet {
            return Box::new(ConsoleSink::silent());
        }
        if !config.json {
            emit(&initial_report(&job.server.label, &prepared.display_url, &job.codes, prepared.pool_size));
        }
        Box::new(ConsoleSink::new(verbose, job.codes.len()))
    };
    let context = JobContext::new(config.threads, 0).with_timestamps(config.timestamping);
    // Only `-v` and `--json` report the connections opened.
    let context = if config.verbose || config.json { context } else { context.without_connection_counts() };
    let end = recording.run(job, &context, sink, signals.recv()).await;
    let finished = end.result?;
    let summary = &finished.summary;
    // The state and the failed list are written before the report, so that
    // the JSON document gives the status the process exits with.
    let written = match &config.failed {
        Some(path) => write_code_list(path, &failed_codes(&job.codes, summary))
            .map_err(|source| FatalError::FailedList { path: path.clone(), source }),
        None => Ok(()),
    };
    let written = match (written, end.record_error) {
        (Err(list), Some(state)) => {
            // Both failed: the list's error is the status, the state's is said too.
            eprintln!("*** Error: {}", terminal_safe_lines(&state.to_string()));
            Err(list)
        }
        (Err(list), None) => Err(list),
        (Ok(()), Some(state)) => Err(FatalError::from(state)),
        (Ok(()), None) => Ok(()),
    };
    if config.json {
        let timing = (end.started_at, finished.elapsed);
        let mut result = finished.prepared.result(job, summary, timing, finished.status, end.run_id);
        if let Err(error) = &written {
            result.exit_status = error.exit_status().code();
            result.error = Some(error.to_string());
        }
        emit(&to_json(&FetchDocument { schema_version: SCHEMA_VERSION, command: "fetch", result }));
    } else if !config.quiet {
        emit(&final_report(&summary.counts, finished.elapsed));
        if summary.counts.errors > 0 {
            let failed = summary.outcomes.iter().filter(|o| matches!(o.outcome, Outcome::Failed(_)));
            let results: Vec<CodeResult> = failed.map(CodeResult::of).collect();
            let hint = "is a server listening there? -s DEMO uses the built-in one";
            if let Some(note) = causes_note(&Causes::of(&results), &finished.prepared.display_url, hint) {
                eprintln!("{}", terminal_safe_lines(&note));
            }
        }
    }
    if verbose {
        eprintln!("{}.", finished.prepared.opened().describe());
    }
    if summary.interrupted {
        eprintln!("*** Interrupted: {} codes did not finish.", summary.unfinished);
    }
    written?;
    Ok(finished.status)
}
