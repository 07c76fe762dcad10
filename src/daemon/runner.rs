//! What runs the daemon's batches: this process alone ([`Alone`]), or a
//! node of a fleet ([`Member`]). The daemon's loop, its admin answers and
//! its reports go through this one trait and the run
//! [ledger](crate::job::ledger) behind it, so they are written once for
//! both.
//!
//! [`Alone`]: super::runs::Alone
//! [`Member`]: super::fleet::Member

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use sd_notify::NotifyState;

use super::metrics::{Metrics, RunResult};
use super::notify::notify;
use crate::config::{BatchConfig, Settings};
use crate::job::Ledger;
use crate::model::causes::Causes;
use crate::model::exit::ExitStatus;
use crate::model::run::{RunRecord, RunState};
use crate::present::api::{FleetView, Progress};

/// A future on the daemon's thread.
pub type Local<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Why a run did not start, or was not cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The batch is running already (a start), or is not (a cancel).
    Running(bool),
    /// The daemon is stopping.
    Stopping,
    /// Not now: a node that has not joined its fleet, or cannot reach it.
    NotReady(String),
    /// The ledger failed: why.
    Failed(String),
}

/// What runs the daemon's batches; see the module documentation.
pub trait Runner {
    /// The run ledger, once there is one (a node's, once it joined).
    fn ledger(&self) -> Option<Rc<dyn Ledger>>;

    /// `Ok` when the daemon can take work, else why not.
    fn ready(&self) -> Result<(), String>;

    /// Makes the schedules (and a node's lanes) match `settings`.
    fn apply(self: Rc<Self>, settings: &Settings);

    /// Starts a run of `batch` now, started by `trigger`; its record.
    fn start(
        self: Rc<Self>,
        batch: Rc<BatchConfig>,
        trigger: &'static str,
    ) -> Local<'static, Result<RunRecord, Refused>>;

    /// Cancels `batch`'s running run; its ended record.
    fn cancel(self: Rc<Self>, batch: String) -> Local<'static, Result<RunRecord, Refused>>;

    /// Whether `batch` has a run in progress, when the runner knows better
    /// than the ledger's newest record.
    fn running(&self, batch: &str) -> Option<bool>;

    /// When `batch` runs next, if it is scheduled.
    fn next_run(&self, batch: &str) -> Option<SystemTime>;

    /// How far `batch`'s run in progress has come, when one runs and the
    /// runner can tell.
    fn progress(&self, batch: &str) -> Option<Progress>;

    /// The fleet's live nodes and queues (`None`: not a node of a fleet;
    /// `Err`: not joined yet, or NATS failed, and why).
    fn fleet_view(&self) -> Option<Local<'static, Result<FleetView, String>>>;

    /// Adds what the runner measures (a node's fleet gauges) to `metrics`.
    fn measure(&self, metrics: &mut Metrics);

    /// Stops: no new run; runs in progress get `timeout` to finish.
    fn stop(self: Rc<Self>, timeout: Duration) -> Local<'static, ()>;

    /// The stop signal came (`SIGTERM`, `SIGINT`): nothing starts any more.
    fn stopping(&self, signal: crate::sys::signals::StopSignal);
}

/// Logs a run that started.
pub fn run_started(metrics: &mut Metrics, record: &RunRecord) {
    metrics.run_started(&record.batch);
    tracing::info!(batch = %record.batch, run = record.id, trigger = %record.trigger, "run started");
}

/// Logs a run that ended, counts it, and says so in systemd's `STATUS=`:
/// one report for a run of this process and a run of the fleet.
pub fn run_ended(metrics: &mut Metrics, record: &RunRecord, elapsed: Option<Duration>) {
    let status = record.exit_status.unwrap_or(ExitStatus::Fatal.code());
    let result = match record.state {
        RunState::Finished if status == ExitStatus::Success.code() => RunResult::Success,
        RunState::Finished => RunResult::Errors,
        RunState::Cancelled => RunResult::Cancelled,
        RunState::Failed | RunState::Running => RunResult::Failed,
    };
    metrics.run_finished(&record.batch, SystemTime::now(), status, result);
    let c = record.counts.unwrap_or_default();
    let elapsed_s = elapsed.map(|e| e.as_secs_f64());
    match &record.error {
        Some(error) => {
            tracing::error!(batch = %record.batch, run = record.id, %error, exit_status = status, "run failed");
            notify(&[NotifyState::Status(&format!("last run: {}: failed: {error}", record.batch))]);
        }
        None => {
            let causes = Causes::from_kept(&record.causes);
            if c.errors > 0 {
                tracing::warn!(
                    batch = %record.batch, run = record.id, downloaded = c.downloaded, unchanged = c.unchanged,
                    not_found = c.not_found, errors = c.errors, %causes, elapsed_s, exit_status = status,
                    state = %record.state.as_str(), "run finished with errors"
                );
            } else {
                tracing::info!(
                    batch = %record.batch, run = record.id, downloaded = c.downloaded, unchanged = c.unchanged,
                    not_found = c.not_found, errors = c.errors, elapsed_s, exit_status = status,
                    state = %record.state.as_str(), "run finished"
                );
            }
            let took = elapsed_s.map(|s| format!(" in {s:.2}s")).unwrap_or_default();
            let why = if causes.is_empty() { String::new() } else { format!(" ({causes})") };
            let text = format!(
                "last run: {}: {} downloaded, {} unchanged, {} not found, {} errors{why}{took}",
                record.batch, c.downloaded, c.unchanged, c.not_found, c.errors
            );
            notify(&[NotifyState::Status(&text)]);
        }
    }
}
