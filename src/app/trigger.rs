//! `flagsd trigger BATCH [--wait]`: starts a run of the batch now, where
//! `cancel` would cancel it: in the fleet that `[fleet]` names (through
//! NATS), else in the daemon of the configuration (through its admin
//! endpoint, `POST /batches/{name}/run`, signed with the token). It prints
//! the run's id; with `--wait` it waits for the run to end (the daemon's
//! `GET /runs/{id}` asked every [`POLL_EVERY`]; the fleet's record watched)
//! and prints the report `flagsd run` prints, rebuilt from the run's
//! record, exiting with the run's status. Ctrl-C stops the waiting, not
//! the run (`flagsd cancel` stops that).
//!
//! Exit statuses: 0 when the run started (with `--wait`, the run's own: 0,
//! 1, 3, 130, 143), 2 for a batch the configuration (or the daemon's) does
//! not have, 3 when the batch is running already or the daemon or NATS
//! cannot be reached.

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};

use super::admin_client::{AdminClient, AdminError};
use super::batch_report::{BatchReport, Ran};
use super::fleet_run;
use crate::config::{BatchConfig, FleetSettings, Settings, UsageError};
use crate::fleet::{Fleet, Patience};
use crate::job::FatalError;
use crate::job::ledger::{Ledger as _, RunStart};
use crate::model::exit::ExitStatus;
use crate::model::run::{RunDetails, RunState};
use crate::model::text::terminal_safe_lines;
use crate::present::api::Started;
use crate::present::report::emit;

/// How often `--wait` asks the daemon about its run.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// What a run started by `trigger` is recorded as having been started by:
/// the same as a request to the admin endpoint.
const TRIGGER: &str = "admin";

/// Starts a run of `batch`; see the module documentation.
pub async fn trigger(settings: &Settings, batch: &str, wait: bool) -> Result<ExitStatus, FatalError> {
    let Some(config) = settings.batches.iter().find(|b| b.name == batch) else {
        return Err(UsageError(format!("no batch named {batch} in the configuration")).into());
    };
    match &settings.fleet {
        Some(fleet) => in_fleet(fleet, config, wait).await,
        None => by_daemon(settings, config, wait).await,
    }
}

/// Says which run started.
fn announce(run_id: i64, batch: &str) {
    emit(&format!("started run {run_id} of batch {batch}\n"));
}

/// Prints `report` as `flagsd run` does; its status.
fn print(report: BatchReport) -> ExitStatus {
    emit(&report.report);
    if let Some(error) = report.error {
        eprintln!("{}", terminal_safe_lines(&error));
    }
    report.status
}

/// Begins a run of `batch` in the fleet, for its nodes to fetch; with
/// `wait`, waits for it to end and prints its report.
async fn in_fleet(settings: &FleetSettings, batch: &BatchConfig, wait: bool) -> Result<ExitStatus, FatalError> {
    let fleet = Fleet::join(settings, "flagsd-trigger", Patience::Once, |_| {}).await?;
    let submitted_at = SystemTime::now();
    let begun = fleet.begin(RunStart::of(batch, TRIGGER)).await?;
    announce(begun.key.id, &batch.name);
    if !wait {
        return Ok(ExitStatus::Success);
    }
    let record = fleet_run::ended(&fleet, &begun.key).await?;
    Ok(print(fleet_run::report(&fleet, batch, &begun.key, submitted_at, batch.verbose, Some(record)).await))
}

/// Asks the daemon of `settings` to start a run of `batch`; with `wait`,
/// waits for it to end and prints its report.
async fn by_daemon(settings: &Settings, batch: &BatchConfig, wait: bool) -> Result<ExitStatus, FatalError> {
    let Some(admin) = &settings.admin else {
        let why = "the daemon has no admin endpoint ([admin] listen): nothing can reach it";
        return Err(FatalError::Admin(why.to_owned()));
    };
    let client = AdminClient::new(admin).map_err(|e| FatalError::Admin(e.to_string()))?;
    let name = &batch.name;
    let daemon = || format!("the daemon at {}", client.url());
    let path =
        format!("/batches/{}/run", percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC));
    let submitted_at = SystemTime::now();
    let run_id = match client.call::<Started>(Method::POST, &path).await {
        Ok(started) => started.run_id,
        Err(AdminError::Refused { status: StatusCode::NOT_FOUND, .. }) => {
            return Err(FatalError::UnknownToDaemon { daemon: daemon(), batch: name.clone() });
        }
        Err(AdminError::Refused { status: StatusCode::CONFLICT, .. }) => {
            // Which run, if the daemon says: the refusal does not.
            let running = client.running(&[name.as_str()]).await.unwrap_or_default();
            let run = running.into_iter().next().and_then(|r| r.run);
            return Err(FatalError::BatchRunning { by: daemon(), batch: name.clone(), run });
        }
        Err(e) => return Err(FatalError::Admin(e.to_string())),
    };
    announce(run_id, name);
    if !wait {
        return Ok(ExitStatus::Success);
    }
    let details = loop {
        let details = client
            .call::<RunDetails>(Method::GET, &format!("/runs/{run_id}"))
            .await
            .map_err(|e| FatalError::Admin(format!("waiting for run {run_id} of batch {name}: {e}")))?;
        if !details.record.is_running() {
            break details;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    Ok(print(report(batch, details, submitted_at)))
}

/// The report of `batch`'s run that ended as `details` says, with the
/// run's own exit status.
fn report(batch: &BatchConfig, details: RunDetails, submitted_at: SystemTime) -> BatchReport {
    let RunDetails { record, codes } = details;
    if record.state == RunState::Cancelled {
        eprintln!("*** Interrupted: run {} of batch {} was cancelled.", record.id, batch.name);
    }
    let status = record.status().unwrap_or(ExitStatus::Fatal);
    match &record.error {
        Some(error) => {
            let header = format!("== batch {} ==\n", batch.name);
            let error = FatalError::Admin(format!("run {} failed: {error}", record.id));
            BatchReport { status, ..BatchReport::failed(batch, header, &error, Some(record.id), submitted_at) }
        }
        None => BatchReport::of(batch, Ran::of_record(batch, &record, codes, submitted_at)),
    }
}
