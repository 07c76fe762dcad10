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
//! old settings). SIGTERM or SIGINT stops scheduling, gives in-flight runs
//! `daemon.shutdown_timeout` to finish, then abandons them (their temporary
//! files are deleted) and exits 0.
//!
//! With `[fleet]` set, the daemon is a node of a fleet instead (see
//! [`crate::fleet`]): the batches' runs are shared through NATS.
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
mod runs;
mod schedule;

use std::rc::Rc;

use actix_rt::task::JoinHandle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::config::{ConfigError, ConfigSource, Settings};
use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::store::state::{StateDb, StateHandle};
use crate::sys::signals::StopSignals;
use admin::{AdminOptions, AdminRequest, AdminServer};
use answer::answer;
use notify::{notify, start_watchdog};
use runs::Shared;
use schedule::Schedules;

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
    let token = admin.token().map_err(|message| ConfigError::single(origin, Some("admin.token_file"), message))?;
    let with_token = token.is_some();
    let server = AdminServer::spawn(AdminOptions { listen: admin.listen, token }, requests)?;
    tracing::info!(address = %server.addr(), token = with_token, "admin endpoint listening");
    Ok(Some(server))
}

/// What both kinds of daemon (alone, or a node of a fleet) share: the
/// configuration's source, the signals, and the admin endpoint's requests.
pub struct Daemon {
    source: ConfigSource,
    /// What a reload cannot change: compared with each new file.
    at_start: Settings,
    hangups: tokio::signal::unix::Signal,
    stops: StopSignals,
    admin_requests: mpsc::Receiver<AdminRequest>,
    _admin: Option<AdminServer>,
}

impl Daemon {
    /// Reads the configuration again (on SIGHUP): the new settings, or
    /// `None` (logged) when the file does not load and the old ones stay.
    fn reload(&self) -> Option<Settings> {
        match self.source.load_checked() {
            Ok(new) => {
                let at_start = &self.at_start;
                if new.state_dir != at_start.state_dir || new.admin != at_start.admin || new.fleet != at_start.fleet {
                    tracing::warn!("state.dir, [admin] and [fleet] changes take effect at the next start");
                }
                tracing::info!(batches = new.batches.len(), "configuration reloaded");
                Some(new)
            }
            Err(e) => {
                log_config_error(&e, "configuration not reloaded; the previous one stays in force");
                None
            }
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT: alone, or as a node of the fleet
/// that `[fleet]` names. A configuration that does not load at start is an
/// error (status 2) before `READY=1`; so is a state database that cannot be
/// opened or an admin address that cannot be bound (status 3).
pub async fn serve(source: ConfigSource) -> Result<ExitStatus, FatalError> {
    let settings = source.load_for_start()?;
    crate::sys::limits::raise_open_files_limit();
    let hangups = signal(SignalKind::hangup()).map_err(FatalError::Signals)?;
    let stops = StopSignals::install().map_err(FatalError::Signals)?;
    let (admin_tx, admin_requests) = mpsc::channel(64);
    let admin = start_admin(&settings, &source.origin(), admin_tx)?;
    let daemon = Daemon { source, at_start: settings.clone(), hangups, stops, admin_requests, _admin: admin };
    match settings.fleet.clone() {
        Some(fleet_settings) => fleet::serve(daemon, settings, fleet_settings).await,
        None => serve_alone(daemon, settings).await,
    }
}

/// The daemon alone: its own schedules, runs and state database.
async fn serve_alone(mut daemon: Daemon, mut settings: Settings) -> Result<ExitStatus, FatalError> {
    let state = StateHandle::spawn(StateDb::open(&settings.state_dir)?)?;
    let (abandon_tx, abandon) = watch::channel(false);
    let shared = Rc::new(Shared::new(state, abandon, (settings.threads, settings.workload())));
    let mut schedules = Schedules::new(Rc::clone(&shared));
    schedules.apply(&settings);
    start_watchdog();
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
    tracing::info!(config = %daemon.source.origin(), batches = settings.batches.len(), "serving");

    loop {
        tokio::select! {
            _ = daemon.hangups.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                if let Some(new) = daemon.reload() {
                    schedules.apply(&new);
                    settings = new;
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            Some(request) = daemon.admin_requests.recv() => answer(&shared, &settings, request),
            signal = daemon.stops.recv() => {
                tracing::info!(?signal, "stop requested");
                shared.stopped_by.set(Some(signal));
                shared.deferred.borrow_mut().clear();
                break;
            }
        }
    }

    notify(&[sd_notify::NotifyState::Stopping]);
    schedules.stop();
    let shutdown_timeout = settings.shutdown_timeout;
    let runs: Vec<(String, JoinHandle<()>)> = std::mem::take(&mut *shared.running.borrow_mut()).into_iter().collect();
    let in_flight = runs.iter().filter(|(_, h)| !h.is_finished()).count();
    tracing::info!(in_flight, timeout = %humantime::format_duration(shutdown_timeout), "stopping");
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    for (name, mut run) in runs {
        if tokio::time::timeout_at(deadline, &mut run).await.is_err() {
            tracing::warn!(batch = %name, "run still in progress at the shutdown timeout; abandoning it");
            let _ = abandon_tx.send(true);
            let _ = run.await;
        }
    }
    tracing::info!("stopped");
    Ok(ExitStatus::Success)
}
