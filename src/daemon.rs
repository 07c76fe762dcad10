//! `flagsd serve`: scheduled batches as a long-running service.
//!
//! Each batch with an `every` interval has a schedule task that starts a
//! run at start-up and then at each interval. A batch never runs twice at
//! once: a tick that finds the previous run still going is skipped and
//! logged. Batches run in parallel, on the one arbiter.
//!
//! Signals: SIGHUP reloads the configuration (a bad file is logged and the
//! old schedule keeps running; a good one replaces the schedules of new,
//! changed and removed batches, while runs in progress finish under their
//! old settings). SIGTERM or SIGINT stops scheduling, gives in-flight runs
//! `daemon.shutdown_timeout` to finish, then abandons them (their temporary
//! files are deleted) and exits 0.
//!
//! The systemd notify protocol is spoken throughout (no-ops without
//! `NOTIFY_SOCKET`): `READY=1`, `RELOADING=1`/`READY=1`, `STOPPING=1`,
//! `STATUS=` after each run, `WATCHDOG=1` when `WATCHDOG_USEC` is set.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_rt::task::JoinHandle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::actors::OutcomeSink;
use crate::config::ConfigSource;
use crate::config::settings::{BatchConfig, Settings};
use crate::exit::{ExitStatus, FatalError};
use crate::job::{JobContext, PreparedJob};
use crate::outcome::{CodeOutcome, Outcome};
use crate::run::stopped;
use crate::signals::StopSignals;

/// Tells systemd what the daemon is doing; silent without `NOTIFY_SOCKET`.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// Logs each outcome of a daemon run: errors as warnings when the batch is
/// verbose, everything else at debug.
struct LogSink {
    batch: Rc<str>,
    verbose: bool,
}

impl OutcomeSink for LogSink {
    fn record(&mut self, o: &CodeOutcome) {
        let (kind, status) = (o.outcome.kind(), o.outcome.http_status());
        match &o.outcome {
            Outcome::Failed(error) if self.verbose => {
                tracing::warn!(batch = %self.batch, cc = %o.code, url = %o.url, kind, status, %error, "download failed");
            }
            _ => {
                tracing::debug!(batch = %self.batch, cc = %o.code, url = %o.url, kind, status, "download finished")
            }
        }
    }
}

/// State shared by the schedule tasks and the signal loop.
struct Shared {
    /// Runs in progress, by batch name.
    running: RefCell<BTreeMap<String, JoinHandle<()>>>,
    /// Batches whose settings changed while they ran: run again, with the
    /// new settings, as soon as the current run ends.
    deferred: RefCell<BTreeMap<String, Rc<BatchConfig>>>,
    /// Batches whose skipped tick has been logged during the current run.
    skip_logged: RefCell<HashSet<String>>,
    /// Turns true when in-flight runs must be abandoned.
    abandon: watch::Receiver<bool>,
    /// Clients and rate limits, shared by every batch.
    context: JobContext,
}

impl Shared {
    /// Starts a run of `batch` unless one is in progress. If one is, the
    /// tick is skipped (logged once per run), or with `defer` the run starts
    /// as soon as the current one ends.
    fn start_run(self: &Rc<Self>, batch: &Rc<BatchConfig>, defer: bool) {
        let mut running = self.running.borrow_mut();
        if running.get(&batch.name).is_some_and(|h| !h.is_finished()) {
            if defer {
                tracing::info!(batch = %batch.name, "run in progress; the new settings apply when it ends");
                self.deferred.borrow_mut().insert(batch.name.clone(), Rc::clone(batch));
            } else if self.skip_logged.borrow_mut().insert(batch.name.clone()) {
                tracing::warn!(batch = %batch.name, "previous run still in progress; skipping ticks until it ends");
            }
            return;
        }
        let me = Rc::clone(self);
        let batch = Rc::clone(batch);
        let name = batch.name.clone();
        let task = actix_rt::spawn(async move {
            me.run(&batch).await;
            me.skip_logged.borrow_mut().remove(&batch.name);
            let next = me.deferred.borrow_mut().remove(&batch.name);
            if let Some(next) = next {
                // Let this task finish first, so `start_run` sees it done.
                actix_rt::spawn(async move { me.start_run(&next, false) });
            }
        });
        running.insert(name, task);
    }

    async fn run(&self, batch: &BatchConfig) {
        let job = &batch.job;
        tracing::info!(batch = %batch.name, codes = job.codes.len(), server = %job.server.label, "run started");
        let started = Instant::now();
        let prepared = match PreparedJob::prepare(job, &self.context) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(batch = %batch.name, error = %e, "run failed to start");
                notify(&[sd_notify::NotifyState::Status(&format!("{}: {e}", batch.name))]);
                return;
            }
        };
        let sink = Box::new(LogSink { batch: batch.name.as_str().into(), verbose: batch.verbose });
        match prepared.start(job, sink).finish_or_interrupt(stopped(self.abandon.clone())).await {
            Ok(summary) => {
                let c = summary.counts;
                let elapsed = started.elapsed().as_secs_f64();
                tracing::info!(
                    batch = %batch.name, downloaded = c.downloaded, not_found = c.not_found, errors = c.errors,
                    abandoned = summary.unfinished, elapsed_s = elapsed, exit_status = ExitStatus::of_run(&summary, None).code(),
                    "run finished"
                );
                let status = format!(
                    "last run: {}: {} downloaded, {} not found, {} errors in {elapsed:.2}s",
                    batch.name, c.downloaded, c.not_found, c.errors
                );
                notify(&[sd_notify::NotifyState::Status(&status)]);
            }
            Err(e) => tracing::error!(batch = %batch.name, error = %e, "run failed"),
        }
    }
}

/// Starts a run of `batch` now and then every `every`.
async fn schedule(shared: Rc<Shared>, batch: Rc<BatchConfig>, every: Duration) {
    let mut ticks = actix_rt::time::interval(every);
    // A tick missed while the thread was busy is dropped, not caught up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The first tick (at start or after a reload) waits for a run in
    // progress instead of being skipped, so changed settings apply at once.
    ticks.tick().await;
    shared.start_run(&batch, true);
    loop {
        ticks.tick().await;
        shared.start_run(&batch, false);
    }
}

/// The schedules in force: one task per scheduled batch.
struct Schedules {
    shared: Rc<Shared>,
    tasks: BTreeMap<String, (Rc<BatchConfig>, JoinHandle<()>)>,
}

impl Schedules {
    /// Makes the schedules match `settings`: new and changed batches get a
    /// fresh schedule (first run now), removed ones lose theirs. Runs in
    /// progress are not touched.
    fn apply(&mut self, settings: &Settings) {
        let wanted: HashSet<&str> =
            settings.batches.iter().filter(|b| b.every.is_some()).map(|b| b.name.as_str()).collect();
        self.tasks.retain(|name, (_, task)| {
            let keep = wanted.contains(name.as_str());
            if !keep {
                tracing::info!(batch = %name, "batch removed from the schedule");
                task.abort();
            }
            keep
        });
        for batch in &settings.batches {
            let Some(every) = batch.every else { continue };
            if self.tasks.get(&batch.name).is_some_and(|(old, _)| **old == *batch) {
                continue;
            }
            tracing::info!(batch = %batch.name, every = %humantime::format_duration(every), "batch scheduled");
            let batch = Rc::new(batch.clone());
            let task = actix_rt::spawn(schedule(Rc::clone(&self.shared), Rc::clone(&batch), every));
            if let Some((_, old)) = self.tasks.insert(batch.name.clone(), (batch, task)) {
                old.abort();
            }
        }
        if self.tasks.is_empty() {
            tracing::warn!("no batch has an `every` interval: nothing is scheduled");
        }
    }

    /// Stops every schedule (runs in progress go on).
    fn stop(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.tasks) {
            task.abort();
        }
    }
}

/// Sends `WATCHDOG=1` at half the interval systemd asked for.
fn start_watchdog() {
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tracing::debug!(interval_ms = interval.as_millis() as u64, "watchdog enabled");
        actix_rt::spawn(async move {
            let mut ticks = actix_rt::time::interval(interval / 2);
            loop {
                ticks.tick().await;
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

/// Logs every problem of a configuration that could not be (re)loaded.
fn log_config_error(error: &crate::config::file::ConfigError, action: &str) {
    for problem in &error.problems {
        tracing::error!(%problem, "{action}");
    }
}

/// Runs the daemon until SIGTERM or SIGINT. A configuration that does not
/// load at start is an error (status 2) before `READY=1`.
pub async fn serve(source: ConfigSource) -> Result<ExitStatus, FatalError> {
    let settings = source.load_checked()?;
    crate::limits::raise_open_files_limit();
    let mut hangups = signal(SignalKind::hangup()).map_err(FatalError::Signals)?;
    let mut stops = StopSignals::install().map_err(FatalError::Signals)?;

    let (abandon_tx, abandon) = watch::channel(false);
    let shared = Rc::new(Shared {
        running: RefCell::default(),
        deferred: RefCell::default(),
        skip_logged: RefCell::default(),
        abandon,
        context: JobContext::default(),
    });
    let mut schedules = Schedules { shared: Rc::clone(&shared), tasks: BTreeMap::new() };
    schedules.apply(&settings);
    let mut shutdown_timeout = settings.shutdown_timeout;
    start_watchdog();
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
    tracing::info!(config = %source.origin(), batches = settings.batches.len(), "serving");

    loop {
        tokio::select! {
            _ = hangups.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                match source.load_checked() {
                    Ok(new) => {
                        schedules.apply(&new);
                        shutdown_timeout = new.shutdown_timeout;
                        tracing::info!(batches = new.batches.len(), "configuration reloaded");
                    }
                    Err(e) => log_config_error(&e, "configuration not reloaded; the previous one stays in force"),
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            signal = stops.recv() => {
                tracing::info!(?signal, "stop requested");
                break;
            }
        }
    }

    notify(&[sd_notify::NotifyState::Stopping]);
    schedules.stop();
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
