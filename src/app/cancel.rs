//! `flagsd cancel BATCH`: cancels the batch's run in progress, wherever it
//! runs: in the fleet that `[fleet]` names (through NATS), else in the
//! daemon of the configuration (through its admin endpoint). The run's
//! queued codes are dropped, codes in flight finish, and its record says
//! `cancelled`; the batch can start again at once.
//!
//! Exit statuses: 0 when a run was cancelled, 1 when none was running, 2
//! for a batch the configuration does not have, 3 when the daemon or NATS
//! cannot be reached.

use reqwest::{Method, StatusCode};

use super::admin_client::{AdminClient, AdminError};
use crate::config::{Settings, UsageError};
use crate::fleet::{Fleet, Patience};
use crate::job::FatalError;
use crate::job::ledger::Stop;
use crate::model::exit::ExitStatus;
use crate::model::run::RunRecord;
use crate::present::report::emit;

/// Cancels `batch`'s run in progress; see the module documentation.
pub async fn cancel(settings: &Settings, batch: &str) -> Result<ExitStatus, FatalError> {
    if !settings.batches.iter().any(|b| b.name == batch) {
        return Err(UsageError(format!("no batch named {batch} in the configuration")).into());
    }
    let cancelled = match &settings.fleet {
        Some(fleet) => {
            let fleet = Fleet::join(fleet, "flagsd-cancel", Patience::Once, |_| {}).await?;
            match fleet.last_run(batch).await? {
                Some((run, _)) if run.record.is_running() => {
                    fleet.stop_run(&run.key(), Stop::Cancelled(ExitStatus::Interrupted)).await?
                }
                _ => None,
            }
        }
        None => by_daemon(settings, batch).await?,
    };
    match cancelled {
        Some(record) => {
            let c = record.counts.unwrap_or_default();
            emit(&format!(
                "cancelled run {} of batch {batch}: {} downloaded, {} unchanged, {} not found, {} errors before it stopped\n",
                record.id, c.downloaded, c.unchanged, c.not_found, c.errors
            ));
            Ok(ExitStatus::Success)
        }
        None => {
            eprintln!("batch {batch} has no run in progress");
            Ok(ExitStatus::SomeErrors)
        }
    }
}

/// Asks the daemon of `settings` to cancel `batch`'s run: the cancelled
/// run, or `None` when it had none in progress.
async fn by_daemon(settings: &Settings, batch: &str) -> Result<Option<RunRecord>, FatalError> {
    let Some(admin) = &settings.admin else {
        let why = "the daemon has no admin endpoint ([admin] listen): nothing can reach it";
        return Err(FatalError::Admin(why.to_owned()));
    };
    let client = AdminClient::new(admin).map_err(|e| FatalError::Admin(e.to_string()))?;
    let path =
        format!("/batches/{}/cancel", percent_encoding::utf8_percent_encode(batch, percent_encoding::NON_ALPHANUMERIC));
    match client.call::<RunRecord>(Method::POST, &path).await {
        Ok(record) => Ok(Some(record)),
        Err(AdminError::Refused { status: StatusCode::CONFLICT, .. }) => Ok(None),
        Err(e) => Err(FatalError::Admin(e.to_string())),
    }
}
