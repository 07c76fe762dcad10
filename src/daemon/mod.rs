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
//! With `admin.listen` set, the [`admin`](crate::daemon::admin) endpoint runs on its
//! own thread and forwards each request here over a channel: this loop owns
//! every piece of state (schedules, runs, metrics, the database), so nothing
//! is shared between threads.
//!
//! The systemd notify protocol is spoken throughout (no-ops without
//! `NOTIFY_SOCKET`): `READY=1`, `RELOADING=1`/`READY=1`, `STOPPING=1`,
//! `STATUS=` after each run, `WATCHDOG=1` when `WATCHDOG_USEC` is set.

pub mod admin;
pub mod metrics;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use actix_rt::task::JoinHandle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::app::run::stopped;
use crate::app::status::BatchView;
use crate::config::ConfigSource;
use crate::config::settings::{BatchConfig, Settings};
use crate::daemon::admin::{AdminOptions, AdminRequest, AdminServer, Trigger};
use crate::daemon::metrics::Metrics;
use crate::engine::OutcomeSink;
use crate::job::prepare::{JobContext, PreparedJob};
use crate::model::codes::CountryCode;
use crate::model::exit::{ExitStatus, FatalError};
use crate::model::outcome::{CodeOutcome, Outcome};
use crate::store::state::{RecordedRun, SharedState, StateDb};
use crate::sys::signals::{StopSignal, StopSignals};

/// Tells systemd what the daemon is doing; silent without `NOTIFY_SOCKET`.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// Logs each outcome of a daemon run (errors as warnings when the batch is
/// verbose, everything else at debug) and keeps the metrics.
struct LogSink {
    batch: Rc<str>,
    verbose: bool,
    metrics: Rc<RefCell<Metrics>>,
}

impl OutcomeSink for LogSink {
    fn record(&mut self, o: &CodeOutcome) {
        let (kind, status) = (o.outcome.kind(), o.outcome.http_status());
        self.metrics.borrow_mut().outcome(&self.batch, kind, o.outcome.bytes());
        match &o.outcome {
            Outcome::Failed(error) if self.verbose => {
                tracing::warn!(batch = %self.batch, cc = %o.code, url = %o.url, kind, status, %error, "download failed");
            }
            _ => {
                tracing::debug!(batch = %self.batch, cc = %o.code, url = %o.url, kind, status, "download finished")
            }
        }
    }

    fn attempt_started(&mut self) {
        self.metrics.borrow_mut().attempt_started(&self.batch);
    }

    fn attempt_finished(&mut self, elapsed: Duration) {
        self.metrics.borrow_mut().attempt_finished(&self.batch, elapsed);
    }

    fn retry_scheduled(&mut self, _code: CountryCode) {
        self.metrics.borrow_mut().retry(&self.batch);
    }
}

/// Why a run did not start.
enum NotStarted {
    /// The batch is running already.
    Running,
    /// The state database refused the run's record.
    Failed(String),
    /// The daemon is stopping.
    Stopping,
}

/// State shared by the schedule tasks, the signal loop and the admin requests.
struct Shared {
    /// Runs in progress, by batch name.
    running: RefCell<BTreeMap<String, JoinHandle<()>>>,
    /// Batches whose settings changed while they ran: run again, with the
    /// new settings, as soon as the current run ends.
    deferred: RefCell<BTreeMap<String, Rc<BatchConfig>>>,
    /// Batches whose skipped tick has been logged during the current run.
    skip_logged: RefCell<HashSet<String>>,
    /// When each scheduled batch runs next.
    next_runs: RefCell<BTreeMap<String, SystemTime>>,
    /// Turns true when in-flight runs must be abandoned.
    abandon: watch::Receiver<bool>,
    /// Clients and rate limits, shared by every batch.
    context: JobContext,
    /// The run history and what each batch saved.
    state: SharedState,
    /// What `/metrics` shows.
    metrics: Rc<RefCell<Metrics>>,
    /// The signal that stopped the daemon, once one has: no run starts
    /// after it, and runs abandoned at the shutdown timeout end with its
    /// status.
    stopped_by: Cell<Option<StopSignal>>,
}

impl Shared {
    fn is_running(&self, name: &str) -> bool {
        self.running.borrow().get(name).is_some_and(|h| !h.is_finished())
    }

    /// Starts a run of `batch` (recorded as started by `trigger`) unless one
    /// is in progress; returns the run id.
    fn try_start(self: &Rc<Self>, batch: &Rc<BatchConfig>, trigger: &str) -> Result<i64, NotStarted> {
        if self.stopped_by.get().is_some() {
            return Err(NotStarted::Stopping);
        }
        if self.is_running(&batch.name) {
            return Err(NotStarted::Running);
        }
        let (recorded, known) = RecordedRun::begin(&self.state, &batch.name, trigger).map_err(|e| {
            tracing::error!(batch = %batch.name, error = %e, "run not started");
            NotStarted::Failed(e.to_string())
        })?;
        let id = recorded.id;
        let me = Rc::clone(self);
        let batch = Rc::clone(batch);
        let name = batch.name.clone();
        let task = actix_rt::spawn(async move {
            me.run(&batch, recorded, known).await;
            me.skip_logged.borrow_mut().remove(&batch.name);
            let next = me.deferred.borrow_mut().remove(&batch.name);
            if let Some(next) = next {
                // Let this task finish first, so `try_start` sees it done.
                actix_rt::spawn(async move {
                    let _ = me.try_start(&next, "reload");
                });
            }
        });
        self.running.borrow_mut().insert(name, task);
        Ok(id)
    }

    /// A scheduled tick: starts a run, or skips the tick (logged once per
    /// run) while one is in progress; with `defer`, the run starts as soon
    /// as the current one ends instead.
    fn tick(self: &Rc<Self>, batch: &Rc<BatchConfig>, defer: bool) {
        if let Err(NotStarted::Running) = self.try_start(batch, "schedule") {
            if defer {
                tracing::info!(batch = %batch.name, "run in progress; the new settings apply when it ends");
                self.deferred.borrow_mut().insert(batch.name.clone(), Rc::clone(batch));
            } else if self.skip_logged.borrow_mut().insert(batch.name.clone()) {
                tracing::warn!(batch = %batch.name, "previous run still in progress; skipping ticks until it ends");
            }
        }
    }

    async fn run(&self, batch: &BatchConfig, recorded: RecordedRun, known: crate::store::state::KnownFiles) {
        let job = &batch.job;
        let id = recorded.id;
        tracing::info!(batch = %batch.name, run = id, codes = job.codes.len(), server = %job.server.label, "run started");
        let started = Instant::now();
        self.metrics.borrow_mut().run_started(&batch.name);
        let (counts, status, outcomes) = match PreparedJob::prepare(job, &self.context, Some(known)) {
            Ok(prepared) => {
                let sink = Box::new(LogSink {
                    batch: batch.name.as_str().into(),
                    verbose: batch.verbose,
                    metrics: Rc::clone(&self.metrics),
                });
                match prepared.start(job, sink).finish_or_interrupt(stopped(self.abandon.clone())).await {
                    Ok(summary) => {
                        let status = ExitStatus::of_run(&summary, self.stopped_by.get());
                        let c = summary.counts;
                        let elapsed = started.elapsed().as_secs_f64();
                        tracing::info!(
                            batch = %batch.name, run = id, downloaded = c.downloaded, unchanged = c.unchanged,
                            not_found = c.not_found, errors = c.errors, abandoned = summary.unfinished,
                            elapsed_s = elapsed, exit_status = status.code(), "run finished"
                        );
                        let text = format!(
                            "last run: {}: {} downloaded, {} unchanged, {} not found, {} errors in {elapsed:.2}s",
                            batch.name, c.downloaded, c.unchanged, c.not_found, c.errors
                        );
                        notify(&[sd_notify::NotifyState::Status(&text)]);
                        (c, status, summary.outcomes)
                    }
                    Err(e) => {
                        tracing::error!(batch = %batch.name, run = id, error = %e, "run failed");
                        (Default::default(), ExitStatus::Fatal, Vec::new())
                    }
                }
            }
            Err(e) => {
                tracing::error!(batch = %batch.name, run = id, error = %e, "run failed to start");
                notify(&[sd_notify::NotifyState::Status(&format!("{}: {e}", batch.name))]);
                (Default::default(), e.exit_status(), Vec::new())
            }
        };
        self.metrics.borrow_mut().run_finished(&batch.name, SystemTime::now(), status.code());
        if let Err(e) = recorded.finish(&counts, status.code(), &outcomes) {
            tracing::error!(batch = %batch.name, run = id, error = %e, "run not recorded");
        }
    }
}

/// Starts a run of `batch` now and then every `every`. A tick missed while
/// a run was in progress is skipped, not caught up.
async fn schedule(shared: Rc<Shared>, batch: Rc<BatchConfig>, every: Duration) {
    let mut next = tokio::time::Instant::now();
    // The first tick (at start or after a reload) waits for a run in
    // progress instead of being skipped, so changed settings apply at once.
    let mut defer = true;
    loop {
        shared
            .next_runs
            .borrow_mut()
            .insert(batch.name.clone(), SystemTime::now() + next.duration_since(tokio::time::Instant::now()));
        tokio::time::sleep_until(next).await;
        shared.tick(&batch, defer);
        defer = false;
        let now = tokio::time::Instant::now();
        while next <= now {
            next += every;
        }
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
                self.shared.next_runs.borrow_mut().remove(name);
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
        self.shared.next_runs.borrow_mut().clear();
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

/// Answers one request of the admin endpoint from the daemon's state.
fn answer(shared: &Rc<Shared>, settings: &Settings, request: AdminRequest) {
    // A reply that cannot be delivered means the HTTP request is gone.
    match request {
        AdminRequest::Ping(reply) => {
            let _ = reply.send(());
        }
        AdminRequest::Ready(reply) => {
            let _ = reply.send(shared.state.borrow().check_writable().map_err(|e| e.to_string()));
        }
        AdminRequest::Metrics(reply) => {
            let _ = reply.send(shared.metrics.borrow().render());
        }
        AdminRequest::Batches(reply) => {
            let _ = reply.send(batch_views(shared, settings));
        }
        AdminRequest::Runs { batch, limit, reply } => {
            let runs = shared.state.borrow().runs(batch.as_deref(), limit).map_err(|e| e.to_string());
            let _ = reply.send(runs.and_then(|runs| serde_json::to_value(runs).map_err(|e| e.to_string())));
        }
        AdminRequest::Trigger { batch, reply } => {
            let answer = match settings.batches.iter().find(|b| b.name == batch) {
                None => Trigger::Unknown,
                Some(config) => match shared.try_start(&Rc::new(config.clone()), "admin") {
                    Ok(run_id) => {
                        tracing::info!(batch = %batch, run = run_id, "run requested through the admin endpoint");
                        Trigger::Started { run_id }
                    }
                    Err(NotStarted::Running) => Trigger::Running,
                    Err(NotStarted::Failed(message)) => Trigger::Failed(message),
                    Err(NotStarted::Stopping) => Trigger::Failed("the daemon is stopping".to_owned()),
                },
            };
            let _ = reply.send(answer);
        }
    }
}

/// `GET /batches`: every configured batch with its live facts.
fn batch_views(shared: &Shared, settings: &Settings) -> serde_json::Value {
    let mut last = shared.state.borrow().last_runs().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the run history");
        BTreeMap::new()
    });
    let next_runs = shared.next_runs.borrow();
    let views: Vec<BatchView> = settings
        .batches
        .iter()
        .map(|b| BatchView {
            running: Some(shared.is_running(&b.name)),
            next_run: next_runs.get(&b.name).map(|t| crate::present::results::rfc3339(*t)),
            ..BatchView::of(b, last.remove(&b.name))
        })
        .collect();
    serde_json::to_value(views).unwrap_or_default()
}

/// Starts the admin endpoint if `settings` asks for one. An unreadable
/// token file is a configuration error (status 2), a failed bind fatal (3).
fn start_admin(
    settings: &Settings,
    origin: &str,
    requests: mpsc::Sender<AdminRequest>,
) -> Result<Option<AdminServer>, FatalError> {
    let Some(admin) = &settings.admin else { return Ok(None) };
    let token = admin
        .token()
        .map_err(|message| crate::config::file::ConfigError::single(origin, Some("admin.token_file"), message))?;
    let with_token = token.is_some();
    let server = AdminServer::spawn(AdminOptions { listen: admin.listen, token }, requests)?;
    tracing::info!(address = %server.addr(), token = with_token, "admin endpoint listening");
    Ok(Some(server))
}

/// Runs the daemon until SIGTERM or SIGINT. A configuration that does not
/// load at start is an error (status 2) before `READY=1`; so is a state
/// database that cannot be opened or an admin address that cannot be bound
/// (status 3).
pub async fn serve(source: ConfigSource) -> Result<ExitStatus, FatalError> {
    let mut settings = source.load_checked()?;
    // What a reload cannot change: compared with each new file.
    let at_start = settings.clone();
    let state = Rc::new(RefCell::new(StateDb::open(&settings.state_dir)?));
    crate::sys::limits::raise_open_files_limit();
    let mut hangups = signal(SignalKind::hangup()).map_err(FatalError::Signals)?;
    let mut stops = StopSignals::install().map_err(FatalError::Signals)?;
    let (admin_tx, mut admin_rx) = mpsc::channel(64);
    let _admin = start_admin(&settings, &source.origin(), admin_tx)?;

    let (abandon_tx, abandon) = watch::channel(false);
    let shared = Rc::new(Shared {
        running: RefCell::default(),
        deferred: RefCell::default(),
        skip_logged: RefCell::default(),
        next_runs: RefCell::default(),
        abandon,
        context: JobContext::default(),
        state,
        metrics: Rc::default(),
        stopped_by: Cell::new(None),
    });
    let mut schedules = Schedules { shared: Rc::clone(&shared), tasks: BTreeMap::new() };
    schedules.apply(&settings);
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
                        if new.state_dir != at_start.state_dir || new.admin != at_start.admin {
                            tracing::warn!("state.dir and [admin] changes take effect at the next start");
                        }
                        tracing::info!(batches = new.batches.len(), "configuration reloaded");
                        settings = new;
                    }
                    Err(e) => log_config_error(&e, "configuration not reloaded; the previous one stays in force"),
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            Some(request) = admin_rx.recv() => answer(&shared, &settings, request),
            signal = stops.recv() => {
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
