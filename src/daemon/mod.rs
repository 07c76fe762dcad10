//! `flagsd serve`: scheduled batches as a long-running service.
//!
//! Each batch with an `every` interval has a schedule task that starts a
//! run at start-up and then at each interval. A batch never runs twice at
//! once: a tick that finds the previous run still going is skipped and
//! logged. Batches run in parallel, on the one arbiter. Every run is
//! recorded in the state database (opened at start: a corrupt or locked one
//! is a fatal error), and files saved by earlier runs are asked for
//! conditionally.
//!
//! Signals: SIGHUP reloads the configuration (a bad file is logged and the
//! old schedule keeps running; a good one replaces the schedules of new,
//! changed and removed batches, while runs in progress finish under their
//! old settings); the admin endpoint's `POST /reload` does the same, and
//! answers with what came of it. SIGTERM or SIGINT stops scheduling, gives in-flight runs
//! `daemon.shutdown_timeout` to finish, then abandons them (their temporary
//! files are deleted) and exits 0.
//!
//! With `[fleet]` set, the daemon is a node of a fleet instead (see
//! [`crate::fleet`]): the batches' runs are shared through NATS. Either
//! way the loop below, the admin answers and the reports are the same: the
//! daemon drives a [`runner::Runner`] (alone: [`runs`]; a node: [`fleet`])
//! and reads the run [ledger](crate::job::ledger) behind it.
//!
//! With `admin.listen` set, the [`admin`] endpoint runs on its
//! own thread and forwards each request here over a channel: this loop owns
//! every piece of state (schedules, runs, metrics, the database), so nothing
//! is shared between threads.
//!
//! The systemd notify protocol is spoken throughout (no-ops without
//! `NOTIFY_SOCKET`): `READY=1`, `RELOADING=1`/`READY=1`, `STOPPING=1`,
//! `STATUS=` after each run, `WATCHDOG=1` when `WATCHDOG_USEC` is set.

pub mod admin;
mod answer;
mod fleet;
pub mod metrics;
mod notify;
mod runner;
mod runs;
mod schedule;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::{ConfigError, ConfigSource, Settings};
use crate::job::{FatalError, LocalLedger};
use crate::model::exit::ExitStatus;
use crate::present::api::Reloaded;
use crate::store::state::{StateDb, StateHandle};
use crate::sys::signals::StopSignals;
use admin::{AdminOptions, AdminRequest, AdminServer, Reload};
use answer::answer;
use metrics::Metrics;
use notify::{notify, start_watchdog};
use runner::Runner;

/// Logs every problem of a configuration that could not be (re)loaded.
fn log_config_error(error: &ConfigError, action: &str) {
    for problem in &error.problems {
        tracing::error!(%problem, "{action}");
    }
}

/// Starts the admin endpoint if `settings` asks for one. An unreadable
/// token file is a configuration error (status 2), a failed bind fatal (3).
fn start_admin(
    settings: &Settings,
    origin: &str,
    requests: mpsc::Sender<AdminRequest>,
) -> Result<Option<AdminServer>, FatalError> {
    let Some(admin) = &settings.admin else { return Ok(None) };
    let token = admin.token().map_err(|message| ConfigError {
        problems: vec![settings.places.problem(origin, "admin.token_file", message)],
    })?;
    let with_token = token.is_some();
    let options = AdminOptions { listen: admin.listen, token, hosts: admin.hosts.clone(), config: origin.to_owned() };
    let server = AdminServer::spawn(options, requests)?;
    tracing::info!(address = %server.addr(), token = with_token, "admin endpoint listening");
    Ok(Some(server))
}

/// The configuration in force, the file it comes from, and what it was at
/// start (which a reload cannot change).
struct Configuration {
    source: ConfigSource,
    at_start: Settings,
    settings: Settings,
    /// When `settings` was loaded: at start, or by the last good reload.
    loaded_at: SystemTime,
}

impl Configuration {
    /// Reads the file again (on SIGHUP and `POST /reload`), between
    /// `RELOADING=1` and `READY=1`: a file that loads replaces the batches
    /// of `runner` and `metrics`; one that does not is logged, and the
    /// previous configuration stays. What came of it, for the endpoint.
    fn reload(&mut self, runner: &Rc<dyn Runner>, metrics: &RefCell<Metrics>) -> Reload {
        notify(&[sd_notify::NotifyState::Reloading]);
        let config = self.source.origin();
        let answer = match self.source.load_checked() {
            Ok(new) => {
                let at_start = &self.at_start;
                let mut warnings = Vec::new();
                if new.state_dir != at_start.state_dir || new.admin != at_start.admin || new.fleet != at_start.fleet {
                    let warning = "state.dir, [admin] and [fleet] changes take effect at the next start";
                    tracing::warn!("{warning}");
                    warnings.push(warning.to_owned());
                }
                tracing::info!(batches = new.batches.len(), "configuration reloaded");
                Rc::clone(runner).apply(&new);
                configured(metrics, &new);
                let batches = new.batches.iter().map(|b| b.name.clone()).collect();
                self.settings = new;
                self.loaded_at = SystemTime::now();
                Reload::Reloaded(Reloaded { config, batches, warnings })
            }
            Err(e) => {
                log_config_error(&e, "configuration not reloaded; the previous one stays in force");
                Reload::Refused { config, problems: e.problems.iter().map(ToString::to_string).collect() }
            }
        };
        notify(&[sd_notify::NotifyState::Ready]);
        answer
    }
}

/// Tells the metrics which batches `settings` has, and their schedules.
fn configured(metrics: &RefCell<Metrics>, settings: &Settings) {
    metrics.borrow_mut().configured(settings.batches.iter().map(|b| (b.name.as_str(), b.every)));
}

/// Runs the daemon until SIGTERM or SIGINT: alone, or as a node of the fleet
/// that `[fleet]` names. A configuration that does not load at start is an
/// error (status 2) before `READY=1`; so is a state database that cannot be
/// opened or an admin address that cannot be bound (status 3).
pub async fn serve(source: ConfigSource) -> Result<ExitStatus, FatalError> {
    let settings = source.load_for_start()?;
    for warning in settings.secret_warnings(&source.origin(), &[]) {
        tracing::warn!(key = warning.key.as_deref().unwrap_or_default(), "{}", warning.message);
    }
    crate::sys::limits::raise_open_files_limit();
    let mut hangups = signal(SignalKind::hangup()).map_err(FatalError::Signals)?;
    let mut stops = StopSignals::install().map_err(FatalError::Signals)?;
    let (admin_tx, mut admin_requests) = mpsc::channel(64);
    let _admin = start_admin(&settings, &source.origin(), admin_tx)?;
    let metrics: Rc<RefCell<Metrics>> = Rc::default();
    configured(&metrics, &settings);
    let (fatal_tx, mut fatal) = mpsc::channel(1);
    start_watchdog();
    let runner: Rc<dyn Runner> = match settings.fleet.clone() {
        Some(fleet) => fleet::Member::start(&settings, fleet, Rc::clone(&metrics), fatal_tx),
        None => {
            let ledger = LocalLedger::new(StateHandle::spawn(StateDb::open(&settings.state_dir)?)?);
            let alone = runs::Alone::start(ledger, Rc::clone(&metrics), &settings);
            notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
            alone
        }
    };
    tracing::info!(config = %source.origin(), batches = settings.batches.len(), "serving");
    let mut config = Configuration { source, at_start: settings.clone(), settings, loaded_at: SystemTime::now() };

    let ended = loop {
        tokio::select! {
            _ = hangups.recv() => {
                config.reload(&runner, &metrics);
            }
            Some(request) = admin_requests.recv() => answer(&runner, &metrics, &mut config, request),
            Some(error) = fatal.recv() => break Err(error),
            signal = stops.recv() => {
                tracing::info!(?signal, "stop requested");
                runner.stopping(signal);
                break Ok(ExitStatus::Success);
            }
        }
    };

    notify(&[sd_notify::NotifyState::Stopping]);
    runner.stop(config.settings.shutdown_timeout).await;
    tracing::info!("stopped");
    ended
}
