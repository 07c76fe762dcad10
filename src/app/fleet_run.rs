//! `flagsd run` with `[fleet]`: the named batches are submitted to the
//! fleet, whose nodes fetch them; this process downloads nothing, waits for
//! every run to end, and prints the same reports (or `--json` document) as
//! a local run, each code's result naming the node that fetched it. Ctrl-C
//! or SIGTERM cancels the runs still going: their queued codes are removed
//! and each run ends with what had finished.

use std::time::{Duration, SystemTime};

use super::batch_report::{BatchReport, display_url};
use crate::config::{BatchConfig, FleetSettings};
use crate::fleet::messages::{RunEntry, RunState};
use crate::fleet::{Fleet, FleetError, Patience};
use crate::http::url::flag_url;
use crate::job::FatalError;
use crate::job::lifecycle::signal_status;
use crate::model::exit::ExitStatus;
use crate::model::outcome::StatusCounts;
use crate::present::report::{final_report, initial_report, result_line};
use crate::present::results::{JobFacts, JobResult, job_result_of};
use crate::sys::signals::StopSignals;

/// How long to wait before reading the fleet's records again after NATS
/// failed.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// How long a read of the fleet's records is tried again while NATS fails
/// (a cluster electing a new leader takes a few seconds).
const PATIENCE: Duration = Duration::from_secs(60);

/// `read`'s result, tried again while NATS fails, [`PATIENCE`] at most.
async fn patiently<T, F, Fut>(mut read: F) -> Result<T, FleetError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, FleetError>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match read().await {
            Ok(value) => return Ok(value),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "reading the fleet's records failed; trying again");
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until none of `ids` is running.
async fn all_ended(fleet: &Fleet, ids: &[i64]) -> Result<(), FatalError> {
    for &id in ids {
        patiently(|| fleet.wait_ended(id)).await.map_err(|e| FatalError::Fleet(e.to_string()))?;
    }
    Ok(())
}

/// Submits `batches` to the fleet of `settings`, waits for their runs, and
/// returns each batch's report (with every code's result for `json`).
pub async fn run(
    settings: &FleetSettings,
    batches: &[BatchConfig],
    json: bool,
) -> Result<Vec<BatchReport>, FatalError> {
    let mut signals = StopSignals::install().map_err(FatalError::Signals)?;
    let joined = Fleet::join(settings, "flagsd-run", Patience::Once, |_| {}).await;
    let fleet = joined.map_err(|e| FatalError::Fleet(e.to_string()))?;
    let submitted_at = SystemTime::now();
    let mut started = Vec::new();
    for batch in batches {
        started.push(fleet.start_run(batch, "run", None).await);
    }
    let ids: Vec<i64> = started.iter().filter_map(|s| s.as_ref().ok().copied()).collect();
    let stopped_by = tokio::select! {
        ended = all_ended(&fleet, &ids) => { ended?; None }
        signal = signals.recv() => Some(signal),
    };
    if let Some(signal) = stopped_by {
        for &id in &ids {
            if let Err(e) = fleet.cancel_run(id, signal_status(signal)).await {
                eprintln!("*** Error: {e}");
            }
        }
    }
    let mut reports = Vec::new();
    for (batch, start) in batches.iter().zip(started) {
        let report = match start {
            Ok(id) => report(&fleet, batch, id, submitted_at, json || batch.verbose).await,
            Err(e) => {
                let error = FatalError::Fleet(e.to_string());
                BatchReport::failed(batch, format!("== batch {} ==\n", batch.name), &error, None, submitted_at)
            }
        };
        reports.push(report);
    }
    Ok(reports)
}

/// The report of run `id` of `batch`, from the fleet's records.
/// The per-code outcomes are read only for verbose lines and the JSON
/// document (`details`); the counts are in the run's record.
async fn report(fleet: &Fleet, batch: &BatchConfig, id: i64, submitted_at: SystemTime, details: bool) -> BatchReport {
    let mut text = format!("== batch {} ==\n", batch.name);
    let read = patiently(|| async {
        let outcomes = if details { fleet.outcomes(id).await? } else { Vec::new() };
        Ok((fleet.run_entry(id).await?, outcomes))
    });
    let (entry, outcomes) = match read.await {
        Ok((Some((entry, _)), outcomes)) => (entry, outcomes),
        Ok((None, _)) => {
            let error = FatalError::Fleet(format!("run {id} has no record in the fleet"));
            return BatchReport::failed(batch, text, &error, Some(id), submitted_at);
        }
        Err(e) => return BatchReport::failed(batch, text, &FatalError::Fleet(e.to_string()), Some(id), submitted_at),
    };
    let job = &batch.job;
    let url = display_url(batch);
    text.push_str(&initial_report(&job.server.label, &url, &job.codes, job.pool_size));
    if batch.verbose {
        for outcome in &outcomes {
            text.push_str(&result_line(&outcome.result));
            text.push('\n');
        }
    }
    let n = |count: i64| usize::try_from(count).unwrap_or(0);
    let counts = entry.counts.map_or_else(StatusCounts::default, |c| StatusCounts {
        downloaded: n(c.downloaded),
        unchanged: n(c.unchanged),
        not_found: n(c.not_found),
        errors: n(c.errors),
    });
    let elapsed = elapsed(&entry);
    text.push_str(&final_report(&counts, elapsed));
    let interrupted = entry.state == RunState::Cancelled;
    let status = match entry.exit_status {
        Some(code) if interrupted && code == ExitStatus::Terminated.code() => ExitStatus::Terminated,
        Some(_) if interrupted => ExitStatus::Interrupted,
        _ => ExitStatus::of_counts(&counts),
    };
    let started = humantime::parse_rfc3339(&entry.started_at).unwrap_or(submitted_at);
    let facts = JobFacts {
        server: &job.server.label,
        url: &url,
        connections: job.pool_size,
        opened: None,
        codes: &job.codes,
        url_of: &|code| flag_url(&url, code),
        started,
        elapsed,
    };
    let results = outcomes.into_iter().map(|o| o.result).collect();
    let result = job_result_of(&facts, results, interrupted, status, Some(id));
    if interrupted {
        eprintln!("*** Interrupted: run {id} of batch {} was cancelled.", batch.name);
    }
    BatchReport { report: text, error: None, status, result }
}

/// How long a run took, from its record.
fn elapsed(entry: &RunEntry) -> Duration {
    let time = |text: &Option<String>| text.as_deref().and_then(|t| humantime::parse_rfc3339(t).ok());
    match (time(&Some(entry.started_at.clone())), time(&entry.ended_at)) {
        (Some(start), Some(end)) => end.duration_since(start).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

impl BatchReport {
    /// The report of a batch that `error` stopped before it ran (as run
    /// `run_id`, when it got one).
    fn failed(batch: &BatchConfig, report: String, error: &FatalError, run_id: Option<i64>, at: SystemTime) -> Self {
        let result = JobResult {
            run_id,
            ..JobResult::failed(
                &batch.job.server.label,
                &display_url(batch),
                at,
                error.to_string(),
                error.exit_status(),
            )
        };
        Self {
            report,
            error: Some(format!("*** Error in batch {}: {error}", batch.name)),
            status: error.exit_status(),
            result,
        }
    }
}
