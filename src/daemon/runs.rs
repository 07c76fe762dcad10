//! The daemon's runs: starting one (unless its batch is running already),
//! running it through the recorded-run lifecycle, and what every run shares.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix_rt::task::JoinHandle;
use tokio::sync::{oneshot, watch};

use super::metrics::Metrics;
use super::notify::notify;
use crate::config::BatchConfig;
use crate::engine::OutcomeSink;
use crate::job::{JobContext, Recording, RunEnd, SharedState};
use crate::model::codes::CountryCode;
use crate::model::outcome::{CodeOutcome, Outcome};
use crate::sys::signals::StopSignal;

/// Logs each outcome of a daemon run (errors as warnings when the batch is
/// verbose, everything else at debug) and keeps the metrics.
pub struct LogSink {
    batch: Rc<str>,
    verbose: bool,
    metrics: Rc<RefCell<Metrics>>,
}

impl LogSink {
    /// A sink for `batch`'s outcomes, counted in `metrics`.
    pub fn new(batch: &BatchConfig, metrics: Rc<RefCell<Metrics>>) -> Self {
        Self { batch: batch.name.as_str().into(), verbose: batch.verbose, metrics }
    }
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
pub enum NotStarted {
    /// The batch is running already.
    Running,
    /// The state database refused the run's record.
    Failed(String),
    /// The daemon is stopping.
    Stopping,
}

/// State shared by the schedule tasks, the signal loop and the admin requests.
pub struct Shared {
    /// Runs in progress, by batch name.
    pub running: RefCell<BTreeMap<String, JoinHandle<()>>>,
    /// Batches whose settings changed while they ran: run again, with the
    /// new settings, as soon as the current run ends.
    pub deferred: RefCell<BTreeMap<String, Rc<BatchConfig>>>,
    /// Batches whose skipped tick has been logged during the current run.
    skip_logged: RefCell<HashSet<String>>,
    /// When each scheduled batch runs next.
    pub next_runs: RefCell<BTreeMap<String, SystemTime>>,
    /// Turns true when in-flight runs must be abandoned.
    abandon: watch::Receiver<bool>,
    /// Clients and rate limits, shared by every batch.
    context: JobContext,
    /// The run history and what each batch saved.
    pub state: SharedState,
    /// What `/metrics` shows.
    pub metrics: Rc<RefCell<Metrics>>,
    /// The signal that stopped the daemon, once one has: no run starts
    /// after it, and runs abandoned at the shutdown timeout end with its
    /// status.
    pub stopped_by: Cell<Option<StopSignal>>,
}

impl Shared {
    /// Shared state over `state`; in-flight runs are abandoned when
    /// `abandon` turns true. The workers run on at most `threads` threads,
    /// for about `workload` workers at once (both set at start: a reload
    /// does not change them).
    pub fn new(state: SharedState, abandon: watch::Receiver<bool>, (threads, workload): (usize, usize)) -> Self {
        Self {
            running: RefCell::default(),
            deferred: RefCell::default(),
            skip_logged: RefCell::default(),
            next_runs: RefCell::default(),
            abandon,
            context: JobContext::new(threads, workload),
            state,
            metrics: Rc::default(),
            stopped_by: Cell::new(None),
        }
    }

    /// Whether a run of `name` is in progress.
    pub fn is_running(&self, name: &str) -> bool {
        self.running.borrow().get(name).is_some_and(|h| !h.is_finished())
    }

    /// Starts a run of `batch` (recorded as started by `trigger`) unless one
    /// is in progress. From this call on the batch counts as running; the
    /// run id arrives on the returned channel once the run is recorded (the
    /// database works on its own thread), or why it could not start.
    pub fn try_start(
        self: &Rc<Self>,
        batch: &Rc<BatchConfig>,
        trigger: &str,
    ) -> Result<oneshot::Receiver<Result<i64, NotStarted>>, NotStarted> {
        if self.stopped_by.get().is_some() {
            return Err(NotStarted::Stopping);
        }
        if self.is_running(&batch.name) {
            return Err(NotStarted::Running);
        }
        let (started, run_id) = oneshot::channel();
        let me = Rc::clone(self);
        let batch = Rc::clone(batch);
        let (name, trigger) = (batch.name.clone(), trigger.to_owned());
        let task = actix_rt::spawn(async move {
            match Recording::begin(&me.state, &batch.name, &trigger).await {
                Ok(recording) => {
                    let _ = started.send(Ok(recording.run_id().unwrap_or_default()));
                    me.run(&batch, recording).await;
                }
                Err(e) => {
                    tracing::error!(batch = %batch.name, error = %e, "run not started");
                    let _ = started.send(Err(NotStarted::Failed(e.to_string())));
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
        self.running.borrow_mut().insert(name, task);
        Ok(run_id)
    }

    /// A scheduled tick: starts a run, or skips the tick (logged once per
    /// run) while one is in progress; with `defer`, the run starts as soon
    /// as the current one ends instead.
    pub fn tick(self: &Rc<Self>, batch: &Rc<BatchConfig>, defer: bool) {
        if let Err(NotStarted::Running) = self.try_start(batch, "schedule") {
            if defer {
                tracing::info!(batch = %batch.name, "run in progress; the new settings apply when it ends");
                self.deferred.borrow_mut().insert(batch.name.clone(), Rc::clone(batch));
            } else if self.skip_logged.borrow_mut().insert(batch.name.clone()) {
                tracing::warn!(batch = %batch.name, "previous run still in progress; skipping ticks until it ends");
            }
        }
    }

    /// Runs `batch` through the lifecycle `recording` began, with logs,
    /// metrics and a `STATUS=` line.
    async fn run(&self, batch: &BatchConfig, recording: Recording) {
        let job = &batch.job;
        let id = recording.run_id().unwrap_or_default();
        tracing::info!(batch = %batch.name, run = id, codes = job.codes.len(), server = %job.server.label, "run started");
        self.metrics.borrow_mut().run_started(&batch.name);
        let sink = |_: &crate::job::PreparedJob| -> Box<dyn OutcomeSink> {
            Box::new(LogSink::new(batch, Rc::clone(&self.metrics)))
        };
        let mut abandon = self.abandon.clone();
        let stop = async move {
            // An error means the sender is gone: then nothing will ever stop us.
            if abandon.wait_for(|a| *a).await.is_err() {
                std::future::pending::<()>().await;
            }
            self.stopped_by.get().unwrap_or(StopSignal::Interrupt)
        };
        let end = recording.run(job, &self.context, sink, stop).await;
        self.report(batch, id, &end);
        self.metrics.borrow_mut().run_finished(&batch.name, SystemTime::now(), end.status().code());
        if let Some(e) = &end.record_error {
            tracing::error!(batch = %batch.name, run = id, error = %e, "run not recorded");
        }
    }

    /// Logs how a run ended, and says so in `STATUS=`.
    fn report(&self, batch: &BatchConfig, id: i64, end: &RunEnd) {
        match &end.result {
            Ok(finished) => {
                let (c, summary) = (finished.summary.counts, &finished.summary);
                let elapsed = finished.elapsed.as_secs_f64();
                let opened = finished.prepared.opened();
                tracing::info!(
                    batch = %batch.name, run = id, downloaded = c.downloaded, unchanged = c.unchanged,
                    not_found = c.not_found, errors = c.errors, abandoned = summary.unfinished,
                    elapsed_s = elapsed, exit_status = finished.status.code(),
                    connections_http1 = opened.http1, connections_http2 = opened.http2, "run finished"
                );
                let text = format!(
                    "last run: {}: {} downloaded, {} unchanged, {} not found, {} errors in {elapsed:.2}s",
                    batch.name, c.downloaded, c.unchanged, c.not_found, c.errors
                );
                notify(&[sd_notify::NotifyState::Status(&text)]);
            }
            Err(e) => {
                tracing::error!(batch = %batch.name, run = id, error = %e, "run failed");
                notify(&[sd_notify::NotifyState::Status(&format!("{}: {e}", batch.name))]);
            }
        }
    }
}
