//! The daemon alone: its own schedules and runs, each run going through the
//! recorded-run lifecycle into the state database's ledger.
//!
//! A batch never runs twice at once: a tick that finds the previous run
//! still going is skipped and logged (a reload's first tick waits for it
//! instead, so changed settings apply as soon as it ends). A run can be
//! cancelled (`POST /batches/{name}/cancel`, `flagsd cancel`): it stops
//! like a run interrupted by a signal, and its record says `cancelled`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use actix_rt::task::JoinHandle;
use tokio::sync::{oneshot, watch};

use super::metrics::Metrics;
use super::runner::{Local, Refused, Runner, run_ended, run_started};
use super::schedule::{Schedules, Ticks};
use crate::config::{BatchConfig, Settings};
use crate::engine::OutcomeSink;
use crate::job::{JobContext, Ledger, LocalLedger, Recording};
use crate::model::codes::CountryCode;
use crate::model::outcome::{CodeOutcome, Outcome};
use crate::model::run::RunRecord;
use crate::present::api::{FleetView, Progress};
use crate::sys::signals::StopSignal;

/// Logs each outcome of a daemon run (errors as warnings when the batch is
/// verbose, everything else at debug) and keeps the metrics.
pub struct LogSink {
    batch: Rc<str>,
    verbose: bool,
    metrics: Rc<RefCell<Metrics>>,
    /// Codes with an outcome so far, for the run's progress.
    done: Rc<Cell<usize>>,
}

impl LogSink {
    /// A sink for `batch`'s outcomes, counted in `metrics`.
    pub fn new(batch: &BatchConfig, metrics: Rc<RefCell<Metrics>>) -> Self {
        Self { batch: batch.name.as_str().into(), verbose: batch.verbose, metrics, done: Rc::default() }
    }

    /// The sink, also counting the outcomes in `done`.
    fn counting(self, done: Rc<Cell<usize>>) -> Self {
        Self { done, ..self }
    }
}

impl OutcomeSink for LogSink {
    fn record(&mut self, o: &CodeOutcome) {
        self.done.set(self.done.get() + 1);
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

/// A run in progress.
struct LocalRun {
    task: JoinHandle<()>,
    /// Turns true to cancel the run.
    cancel: watch::Sender<bool>,
    /// The run's record once it ended.
    ended: watch::Receiver<Option<RunRecord>>,
    /// Codes with an outcome so far.
    done: Rc<Cell<usize>>,
    /// Codes in the run.
    total: usize,
    /// When it started.
    started: Instant,
}

/// The daemon alone; see the module documentation.
pub struct Alone {
    /// Runs in progress, by batch name.
    running: RefCell<BTreeMap<String, LocalRun>>,
    /// Batches whose settings changed while they ran: run again, with the
    /// new settings, as soon as the current run ends.
    deferred: RefCell<BTreeMap<String, Rc<BatchConfig>>>,
    /// Batches whose skipped tick has been logged during the current run.
    skip_logged: RefCell<HashSet<String>>,
    /// When each scheduled batch runs next.
    next_runs: RefCell<BTreeMap<String, SystemTime>>,
    schedules: RefCell<Schedules>,
    /// Turns true when in-flight runs must be abandoned.
    abandon: watch::Sender<bool>,
    /// Clients and rate limits, shared by every batch.
    context: JobContext,
    /// The run history and what each batch saved.
    ledger: Rc<LocalLedger>,
    /// What `/metrics` shows.
    metrics: Rc<RefCell<Metrics>>,
    /// The signal that stopped the daemon, once one has: no run starts
    /// after it, and runs abandoned at the shutdown timeout end with its
    /// status.
    stopped_by: Cell<Option<StopSignal>>,
}

impl Alone {
    /// The daemon's runs over `ledger`, counted in `metrics`, for
    /// `settings` (its schedules started). The workers run on at most
    /// `settings.threads` threads, for about its workload of workers at once
    /// (both set at start: a reload does not change them).
    pub fn start(ledger: LocalLedger, metrics: Rc<RefCell<Metrics>>, settings: &Settings) -> Rc<Self> {
        let alone = Rc::new(Self {
            running: RefCell::default(),
            deferred: RefCell::default(),
            skip_logged: RefCell::default(),
            next_runs: RefCell::default(),
            schedules: RefCell::default(),
            abandon: watch::Sender::new(false),
            context: JobContext::new(settings.threads, settings.workload()),
            ledger: Rc::new(ledger),
            metrics,
            stopped_by: Cell::new(None),
        });
        Rc::clone(&alone).apply(settings);
        alone
    }

    /// Whether a run of `name` is in progress.
    fn is_running(&self, name: &str) -> bool {
        self.running.borrow().get(name).is_some_and(|r| !r.task.is_finished())
    }

    /// Starts a run of `batch` (recorded as started by `trigger`) unless one
    /// is in progress. From this call on the batch counts as running; the
    /// run's record arrives on the returned channel once it is recorded (the
    /// database works on its own thread), or why it could not start.
    fn try_start(
        self: &Rc<Self>,
        batch: &Rc<BatchConfig>,
        trigger: &str,
    ) -> Result<oneshot::Receiver<Result<RunRecord, Refused>>, Refused> {
        if self.stopped_by.get().is_some() {
            return Err(Refused::Stopping);
        }
        if self.is_running(&batch.name) {
            return Err(Refused::Running(true));
        }
        let (started, record) = oneshot::channel();
        let (cancel, cancelled) = watch::channel(false);
        let (ended_tx, ended) = watch::channel(None);
        let done: Rc<Cell<usize>> = Rc::default();
        let counted = Rc::clone(&done);
        let total = batch.job.codes.len();
        let me = Rc::clone(self);
        let batch = Rc::clone(batch);
        let (name, trigger) = (batch.name.clone(), trigger.to_owned());
        let task = actix_rt::spawn(async move {
            let ledger: Rc<dyn Ledger> = Rc::clone(&me.ledger) as Rc<dyn Ledger>;
            match Recording::begin(ledger, &batch.name, &batch.job, &trigger).await {
                Ok(recording) => {
                    let id = recording.run_id().unwrap_or_default();
                    let record =
                        RunRecord::started(id, &batch.name, &trigger, crate::model::time::rfc3339(SystemTime::now()));
                    run_started(&mut me.metrics.borrow_mut(), &record);
                    let _ = started.send(Ok(record));
                    let ended = me.run(&batch, recording, cancelled, counted).await;
                    ended_tx.send_replace(ended);
                }
                Err(e) => {
                    tracing::error!(batch = %batch.name, error = %e, "run not started");
                    let _ = started.send(Err(Refused::Failed(e.to_string())));
                }
            }
            me.skip_logged.borrow_mut().remove(&batch.name);
            let next = me.deferred.borrow_mut().remove(&batch.name);
            if let Some(next) = next {
                // Let this task finish first, so `try_start` sees it done.
                actix_rt::spawn(async move {
                    let _ = me.try_start(&next, "reload");
                });
            }
        });
        let run = LocalRun { task, cancel, ended, done, total, started: Instant::now() };
        self.running.borrow_mut().insert(name, run);
        Ok(record)
    }

    /// Runs `batch` through the lifecycle `recording` began, with logs,
    /// metrics and a `STATUS=` line, until it ends or `cancelled` or the
    /// daemon's shutdown timeout stops it; its ended record.
    async fn run(
        &self,
        batch: &BatchConfig,
        recording: Recording,
        mut cancelled: watch::Receiver<bool>,
        done: Rc<Cell<usize>>,
    ) -> Option<RunRecord> {
        let sink = |_: &crate::job::PreparedJob| -> Box<dyn OutcomeSink> {
            Box::new(LogSink::new(batch, Rc::clone(&self.metrics)).counting(Rc::clone(&done)))
        };
        let mut abandon = self.abandon.subscribe();
        let stop = async move {
            // An error means the sender is gone: then nothing stops us that way.
            let abandoned = async {
                if abandon.wait_for(|a| *a).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let cancel = async {
                if cancelled.wait_for(|c| *c).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = abandoned => self.stopped_by.get().unwrap_or(StopSignal::Interrupt),
                () = cancel => StopSignal::Interrupt,
            }
        };
        let end = recording.run(&batch.job, &self.context, sink, stop).await;
        if let Some(e) = &end.record_error {
            tracing::error!(batch = %batch.name, run = end.run_id, error = %e, "run not recorded");
        }
        let elapsed = end.result.as_ref().ok().map(|finished| finished.elapsed);
        if let Some(record) = &end.recorded {
            run_ended(&mut self.metrics.borrow_mut(), record, elapsed);
        }
        end.recorded
    }
}

impl Ticks for Alone {
    /// A scheduled tick: starts a run, or skips the tick (logged once per
    /// run) while one is in progress; with `defer`, the run starts as soon
    /// as the current one ends instead.
    fn tick(self: Rc<Self>, batch: &Rc<BatchConfig>, defer: bool) {
        if let Err(Refused::Running(true)) = self.try_start(batch, "schedule") {
            if defer {
                tracing::info!(batch = %batch.name, "run in progress; the new settings apply when it ends");
                self.deferred.borrow_mut().insert(batch.name.clone(), Rc::clone(batch));
            } else if self.skip_logged.borrow_mut().insert(batch.name.clone()) {
                tracing::warn!(batch = %batch.name, "previous run still in progress; skipping ticks until it ends");
            }
        }
    }

    fn set_next_run(&self, batch: &str, at: Option<SystemTime>) {
        match at {
            Some(at) => self.next_runs.borrow_mut().insert(batch.to_owned(), at),
            None => self.next_runs.borrow_mut().remove(batch),
        };
    }
}

impl Runner for Alone {
    fn ledger(&self) -> Option<Rc<dyn Ledger>> {
        Some(Rc::clone(&self.ledger) as Rc<dyn Ledger>)
    }

    fn ready(&self) -> Result<(), String> {
        self.ledger.db().check_writable().map_err(|e| e.to_string())
    }

    fn apply(self: Rc<Self>, settings: &Settings) {
        let ticks: Rc<dyn Ticks> = Rc::clone(&self) as Rc<dyn Ticks>;
        self.schedules.borrow_mut().apply(&ticks, settings);
    }

    fn start(
        self: Rc<Self>,
        batch: Rc<BatchConfig>,
        trigger: &'static str,
    ) -> Local<'static, Result<RunRecord, Refused>> {
        let started = self.try_start(&batch, trigger);
        Box::pin(async move {
            match started?.await {
                Ok(answer) => answer,
                Err(_) => Err(Refused::Failed("the run ended before it was recorded".to_owned())),
            }
        })
    }

    fn cancel(self: Rc<Self>, batch: String) -> Local<'static, Result<RunRecord, Refused>> {
        Box::pin(async move {
            let ended = match self.running.borrow().get(&batch).filter(|r| !r.task.is_finished()) {
                Some(run) => {
                    run.cancel.send_replace(true);
                    run.ended.clone()
                }
                None => return Err(Refused::Running(false)),
            };
            let mut ended = ended;
            match ended.wait_for(Option::is_some).await {
                Ok(record) => record.clone().ok_or(Refused::Running(false)),
                Err(_) => Err(Refused::Failed("the run's end was not recorded".to_owned())),
            }
        })
    }

    fn running(&self, batch: &str) -> Option<bool> {
        Some(self.is_running(batch))
    }

    fn fleet_view(&self) -> Option<Local<'static, Result<FleetView, String>>> {
        None
    }

    fn progress(&self, batch: &str) -> Option<Progress> {
        let running = self.running.borrow();
        let run = running.get(batch).filter(|r| !r.task.is_finished())?;
        Some(Progress::of(run.done.get(), run.total, run.started.elapsed()))
    }

    fn next_run(&self, batch: &str) -> Option<SystemTime> {
        self.next_runs.borrow().get(batch).copied()
    }

    fn measure(&self, _metrics: &mut Metrics) {}

    fn stopping(&self, signal: StopSignal) {
        self.stopped_by.set(Some(signal));
        self.deferred.borrow_mut().clear();
    }

    fn stop(self: Rc<Self>, timeout: Duration) -> Local<'static, ()> {
        Box::pin(async move {
            self.schedules.borrow_mut().stop();
            self.next_runs.borrow_mut().clear();
            self.deferred.borrow_mut().clear();
            let runs: Vec<(String, LocalRun)> = std::mem::take(&mut *self.running.borrow_mut()).into_iter().collect();
            let in_flight = runs.iter().filter(|(_, r)| !r.task.is_finished()).count();
            tracing::info!(in_flight, timeout = %humantime::format_duration(timeout), "stopping");
            let deadline = tokio::time::Instant::now() + timeout;
            for (name, mut run) in runs {
                if tokio::time::timeout_at(deadline, &mut run.task).await.is_err() {
                    tracing::warn!(batch = %name, "run still in progress at the shutdown timeout; abandoning it");
                    self.abandon.send_replace(true);
                    let _ = run.task.await;
                }
            }
        })
    }
}
