//! `flagsd run` with `[fleet]`: the named batches are begun in the fleet's
//! ledger (queued), its nodes fetch them; this process downloads nothing,
//! waits for every run to end, and prints the same reports (or `--json`
//! document) as a local run, through the same path, each code's result
//! naming the node that fetched it. Ctrl-C or SIGTERM cancels the runs
//! still going: their queued codes are removed and each run ends with what
//! had finished.

use std::time::{Duration, SystemTime};

use super::batch_report::{BatchReport, Ran};
use crate::config::{BatchConfig, FleetSettings};
use futures_util::StreamExt as _;

use crate::fleet::core::fleet_error;
use crate::fleet::messages::FleetRun;
use crate::fleet::names::last_key;
use crate::fleet::{Fleet, FleetError, Patience};
use crate::job::FatalError;
use crate::job::ledger::{FleetFailure, Ledger, RunKey, RunStart, Stop};
use crate::job::lifecycle::signal_status;
use crate::model::run::{RunRecord, RunState};
use crate::model::text::terminal_safe_lines;
use crate::sys::signals::StopSignals;

/// How often a waiting `run` reads its runs' records, besides watching
/// them.
const CHECK_EVERY: Duration = Duration::from_secs(1);

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
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "reading the fleet's records failed; trying again");
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until run `key` has ended; its record. The batch's record is
/// watched (its end shows at once, and is taken from the watch) and read
/// again every [`CHECK_EVERY`] (a watch that NATS dropped). A run whose
/// record is gone (NATS lost its state, the bucket was deleted) is an
/// error: it will not end.
pub(super) async fn ended(fleet: &Fleet, key: &RunKey) -> Result<RunRecord, FleetError> {
    let mut changes = fleet.runs.watch(last_key(&key.batch)).await.ok();
    loop {
        let record = patiently(|| own_record(fleet, key)).await?;
        match record {
            Some(record) if !record.is_running() => return Ok(record),
            Some(_) => {}
            None => {
                let why = "its record is gone (NATS lost its state, or the runs bucket was deleted)";
                return Err(fleet_error(format!("run {} cannot end", key.id), FleetFailure::Missing, why));
            }
        }
        let changed = async {
            match &mut changes {
                Some(watch) => match watch.next().await {
                    Some(Ok(entry)) => serde_json::from_slice::<FleetRun>(&entry.value)
                        .ok()
                        .filter(|run| run.key() == *key && !run.record.is_running()),
                    _ => {
                        changes = None;
                        None
                    }
                },
                None => std::future::pending().await,
            }
        };
        if let Ok(Some(run)) = tokio::time::timeout(CHECK_EVERY, changed).await {
            return Ok(run.record);
        }
    }
}

/// Run `key`'s record: run `key.id` if it has `key`'s nonce (ids start
/// again at 1 when the runs bucket is lost: another run may have the id).
async fn own_record(fleet: &Fleet, key: &RunKey) -> Result<Option<RunRecord>, FleetError> {
    let run = fleet.run_record(key.id).await?;
    Ok(run.filter(|run| run.key() == *key).map(|run| run.record))
}

/// Waits until every run of `keys` has ended; their records.
async fn all_ended(fleet: &Fleet, keys: &[RunKey]) -> Result<Vec<RunRecord>, FleetError> {
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        records.push(ended(fleet, key).await?);
    }
    Ok(records)
}

/// Begins `batches` in the fleet of `settings`, waits for their runs, and
/// returns each batch's report (with every code's result for `json`).
pub async fn run(
    settings: &FleetSettings,
    batches: &[BatchConfig],
    json: bool,
) -> Result<Vec<BatchReport>, FatalError> {
    let mut signals = StopSignals::install().map_err(FatalError::Signals)?;
    let fleet = Fleet::join(settings, "flagsd-run", Patience::Once, |_| {}).await?;
    let submitted_at = SystemTime::now();
    let mut begun = Vec::new();
    for batch in batches {
        begun.push(fleet.begin(RunStart::of(batch, "run")).await.map(|begun| begun.key));
    }
    let keys: Vec<RunKey> = begun.iter().filter_map(|b| b.as_ref().ok().cloned()).collect();
    let mut records = Vec::new();
    let stopped_by = tokio::select! {
        done = all_ended(&fleet, &keys) => { records = done?; None }
        signal = signals.recv() => Some(signal),
    };
    if let Some(signal) = stopped_by {
        for key in &keys {
            if let Err(e) = fleet.stop(key, Stop::Cancelled(signal_status(signal))).await {
                eprintln!("*** Error: {}", terminal_safe_lines(&e.to_string()));
            }
        }
    }
    let mut reports = Vec::new();
    for (batch, begun) in batches.iter().zip(begun) {
        let report = match begun {
            Ok(key) => {
                // The run's end as it was seen.
                let known = records.iter().find(|r| r.id == key.id && r.batch == key.batch).cloned();
                report(&fleet, batch, &key, submitted_at, json || batch.verbose, known).await
            }
            Err(e) => {
                BatchReport::failed(batch, format!("== batch {} ==\n", batch.name), &e.into(), None, submitted_at)
            }
        };
        reports.push(report);
    }
    Ok(reports)
}

/// The report of run `key` of `batch`, from the fleet's records (or from
/// `known`, its ended record, when given). The per-code outcomes are read
/// only for verbose lines and the JSON document (`details`); the counts
/// are in the run's record.
pub(super) async fn report(
    fleet: &Fleet,
    batch: &BatchConfig,
    key: &RunKey,
    submitted_at: SystemTime,
    details: bool,
    known: Option<RunRecord>,
) -> BatchReport {
    let header = format!("== batch {} ==\n", batch.name);
    let read = patiently(|| async {
        if let Some(record) = known.clone().filter(|_| !details) {
            return Ok(Some((record, Vec::new())));
        }
        match fleet.run_record(key.id).await?.filter(|run| run.key() == *key) {
            Some(run) if details => {
                let (codes, _) = fleet.outcomes_of(&run).await?;
                Ok(Some((run.record, codes)))
            }
            Some(run) => Ok(Some((run.record, Vec::new()))),
            None => Ok(None),
        }
    });
    let (record, codes) = match read.await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let error = fleet_error(format!("run {}", key.id), FleetFailure::Missing, "it has no record in the fleet");
            return BatchReport::failed(batch, header, &error.into(), Some(key.id), submitted_at);
        }
        Err(e) => return BatchReport::failed(batch, header, &e.into(), Some(key.id), submitted_at),
    };
    if record.state == RunState::Cancelled {
        eprintln!("*** Interrupted: run {} of batch {} was cancelled.", key.id, batch.name);
    }
    if let Some(error) = &record.error {
        let error = fleet_error(format!("run {} failed", key.id), FleetFailure::Other, error.clone());
        return BatchReport::failed(batch, header, &error.into(), Some(key.id), submitted_at);
    }
    BatchReport::of(batch, Ran::of_record(batch, &record, codes, submitted_at))
}
