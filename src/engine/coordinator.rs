//! The coordinator: the pool, the counts, and the one future a caller
//! awaits; its tasks come from a [`WorkSource`].
//!
//! Pull dispatch: the coordinator asks its source for work only when it
//! has idle workers, and for no more tasks than it has idle workers, so no
//! worker ever holds a backlog. The source is a run's own list of codes
//! ([`LocalQueue`](super::LocalQueue)) or a shared queue that several
//! processes pull from.
//!
//! It never awaits inside a handler. A dispatch is a message to the worker
//! ([`Download`]) naming the pool slot and the dispatch's number; the
//! worker answers with a message of its own ([`Settled`]), whose handler
//! settles the task and gives the worker its next one. A task leaves the
//! in-flight set of its slot in one of three ways, each settling it exactly
//! once:
//!
//! - the worker answers: its outcome;
//! - the worker is lost (it panicked: its download was dropped, which
//!   answers so), or cannot be reached: an internal error, and a fresh
//!   worker takes its place;
//! - the deadline passes with no answer (checked every
//!   [`BACKSTOP_SCAN`]): a connection error, and a fresh worker takes the
//!   place of the stuck one (which is abandoned, not reused; its late
//!   answer, if any, is stale and ignored).
//!
//! No future is kept per download: actix polls every future an actor has
//! spawned whenever the actor wakes, so a future per dispatch made every
//! answer cost work in proportion to the pool.
//!
//! A failed attempt that the retry policy allows is given back to the source
//! with its delay (no worker waits for it); any other outcome is final, is
//! counted, and goes to the sink and to the source.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::queue::LocalQueue;
use super::retry::RetryPolicy;
use super::seams::{Fetch, OutcomeSink, Supply, Task, WorkSource};
use super::slots::Slots;
use super::threads::Placement;
use super::worker::{Download, Settled, Worker, no_answer};
use crate::model::codes::CountryCode;
use crate::model::outcome::{CodeOutcome, DownloadError, Outcome, RetryCause, StatusCounts};
use crate::model::random::Dice;

/// How much longer than the attempt deadline the coordinator waits for a
/// worker's answer before it gives up on that worker.
const BACKSTOP_GRACE: Duration = Duration::from_secs(5);

/// How often the coordinator looks for workers that are past the backstop.
const BACKSTOP_SCAN: Duration = Duration::from_secs(1);

/// Size, deadline and retries of the worker pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Number of workers.
    pub pool_size: usize,
    /// Longest one attempt may take, all its requests included; the worker
    /// enforces it, and the coordinator waits a little longer (in case the
    /// worker itself is stuck) before replacing the worker.
    pub deadline: Duration,
    /// When to try a failed code again.
    pub retry: RetryPolicy,
    /// Keep every final outcome for the summary (a run of a list of codes);
    /// a long-lived coordinator keeps only the counts.
    pub keep_outcomes: bool,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Outcomes of the codes that finished.
    pub counts: StatusCounts,
    /// Each finished code's outcome, in completion order (when kept).
    pub outcomes: Vec<CodeOutcome>,
    /// The run was interrupted before every code finished.
    pub interrupted: bool,
    /// Codes that did not finish (queued, waiting for a retry or in flight
    /// at the interruption).
    pub unfinished: usize,
}

/// The coordinator stopped without a summary (it cannot, short of a bug).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the coordinator stopped without reporting its counts")]
pub struct CoordinatorLost;

/// Stops dispatching and resolves the run with what has finished; tasks in
/// flight are released to the source.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Interrupt;

/// Stops taking new tasks; the run resolves once the tasks in flight settle.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Drain;

/// What a run's pool is made of: how a code is fetched, the pool's size
/// and limits, and the threads its workers run on.
#[derive(Clone)]
pub struct Pool {
    /// Shared by every worker, whatever its thread.
    pub fetcher: Arc<dyn Fetch>,
    /// Size, deadline and retries.
    pub options: PoolOptions,
    /// Where the workers run.
    pub placement: Placement,
}

/// Owns the pool and the counts of one run, fed by a work source.
pub struct Coordinator {
    fetcher: Arc<dyn Fetch>,
    source: Rc<dyn WorkSource>,
    options: PoolOptions,
    /// The threads the workers run on.
    placement: Placement,
    /// Workers waiting for a task, with their slot in the pool.
    idle: Vec<(usize, Addr<Worker>)>,
    /// The tasks the workers are on.
    in_flight: Slots,
    /// A [`Supply::Later`] wait is under way.
    waiting: bool,
    /// No new task is taken ([`Drain`]).
    draining: bool,
    counts: StatusCounts,
    outcomes: Vec<CodeOutcome>,
    sink: Box<dyn OutcomeSink>,
    done: Option<oneshot::Sender<RunSummary>>,
    dice: Dice,
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let size = self.options.pool_size.max(1);
        self.idle = (0..size).map(|slot| (slot, self.new_worker(slot))).collect();
        self.in_flight = Slots::new(size);
        ctx.run_interval(BACKSTOP_SCAN, |act, ctx| act.replace_stuck_workers(ctx));
        self.feed(ctx);
    }
}

impl Coordinator {
    /// A worker for `slot`, on that slot's thread: a worker that replaces
    /// another runs where it did.
    fn new_worker(&self, slot: usize) -> Addr<Worker> {
        let (fetcher, deadline) = (Arc::clone(&self.fetcher), self.options.deadline);
        match self.placement.arbiter(slot) {
            None => Worker::new(fetcher, deadline).start(),
            Some(arbiter) => Worker::start_in_arbiter(arbiter, move |_| Worker::new(fetcher, deadline)),
        }
    }

    /// Gives idle workers tasks from the source, or waits for the source,
    /// or resolves the run when nothing is in flight and nothing will come.
    fn feed(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            if self.in_flight.is_empty() {
                self.resolve(ctx);
            }
            return;
        }
        if self.idle.is_empty() || self.waiting {
            return;
        }
        match self.source.take(self.idle.len()) {
            Supply::Tasks(tasks) => {
                let progress = !tasks.is_empty();
                for task in tasks {
                    match self.idle.pop() {
                        Some(worker) => self.dispatch(worker, task, ctx),
                        // A source that hands out more than asked: give the
                        // rest back rather than lose it.
                        None => self.source.release(task),
                    }
                }
                // Fewer tasks than idle workers: ask again (a shared queue
                // may hand out what it had buffered first, then fetch).
                if progress && !self.idle.is_empty() {
                    self.feed(ctx);
                }
            }
            Supply::Later(wait) => {
                self.waiting = true;
                ctx.spawn(wait.into_actor(self).map(|(), act, ctx| {
                    act.waiting = false;
                    act.feed(ctx);
                }));
            }
            Supply::Finished => {
                if self.in_flight.is_empty() {
                    self.resolve(ctx);
                }
            }
        }
    }

    /// Hands `task` to `worker`, whose answer ([`Settled`]) settles it.
    fn dispatch(&mut self, (slot, worker): (usize, Addr<Worker>), task: Task, ctx: &mut Context<Self>) {
        self.sink.attempt_started();
        let ticket = self.in_flight.start(slot, task, worker.clone());
        let sent = worker.try_send(Download { code: task.code, ticket, reply: ctx.address().recipient() });
        if sent.is_err() {
            // The worker is gone (its mailbox closed): as if it said so, in
            // a message of its own, so that `feed` is not entered again
            // while it hands out tasks.
            ctx.notify(Settled { ticket, outcome: None });
        }
    }

    /// Settles the task a worker answered for, and gives the worker (or the
    /// one that replaces a lost worker) its next task. A stale answer (for
    /// a task already settled by the backstop or released by an interrupt)
    /// is ignored.
    fn finish(&mut self, answer: Settled, ctx: &mut Context<Self>) {
        let slot = answer.ticket.slot;
        let Some(flight) = self.in_flight.finish(answer.ticket) else { return };
        self.sink.attempt_finished(flight.started.elapsed());
        let (outcome, worker) = match answer.outcome {
            Some(outcome) => (outcome, flight.worker),
            None => {
                tracing::error!(cc = %flight.task.code, "worker failed; starting a new one");
                let error = DownloadError::Internal { detail: "worker failed".to_owned() };
                (Outcome::Failed(error), self.new_worker(slot))
            }
        };
        self.settle(flight.task, outcome);
        self.idle.push((slot, worker));
        self.feed(ctx);
    }

    /// Settles, as a connection error, each task whose worker has not
    /// answered within the deadline and the grace, and puts a fresh worker
    /// in the place of each stuck one.
    fn replace_stuck_workers(&mut self, ctx: &mut Context<Self>) {
        let limit = self.options.deadline + BACKSTOP_GRACE;
        let overdue = self.in_flight.overdue(limit);
        if overdue.is_empty() {
            return;
        }
        for (slot, flight) in overdue {
            self.sink.attempt_finished(flight.started.elapsed());
            self.settle(flight.task, no_answer(limit));
            self.idle.push((slot, self.new_worker(slot)));
        }
        self.feed(ctx);
    }

    /// Settles an attempt at `task`: its outcome is final (counted, sent to
    /// the sink and the source), or the task goes back to the source to be
    /// tried again after the retry delay.
    fn settle(&mut self, task: Task, outcome: Outcome) {
        let task = Task { attempts: task.attempts + 1, ..task };
        let (cc, attempts) = (task.code, task.attempts);
        let Some(delay) = self.options.retry.delay(&outcome, task.attempts, &self.dice) else {
            match self.source.hand_back(task, &outcome) {
                Ok(()) => {
                    tracing::debug!(%cc, attempts, kind = outcome.kind(), "handed back to the source");
                    self.sink.retry_scheduled(cc);
                }
                Err(task) => self.end(task, outcome),
            }
            return;
        };
        let cause = RetryCause::of(&outcome);
        let task = Task { retry_cause: cause.or(task.retry_cause), ..task };
        let delay_ms = delay.as_millis() as u64;
        let cause = cause.map(|c| c.to_string());
        tracing::debug!(%cc, attempts, delay_ms, kind = outcome.kind(), cause, "will retry");
        self.sink.retry_scheduled(cc);
        self.source.retry(task, delay);
    }

    /// `task` ends in `outcome`: counted, and sent to the sink and the source.
    fn end(&mut self, task: Task, outcome: Outcome) {
        let url = self.fetcher.display_url(task.code);
        let (code, attempts, retry_cause) = (task.code, task.attempts, task.retry_cause);
        let outcome = CodeOutcome { code, url, outcome, attempts, retry_cause };
        self.counts.record(&outcome.outcome);
        self.sink.record(&outcome);
        self.source.done(task, &outcome);
        if self.options.keep_outcomes {
            self.outcomes.push(outcome);
        }
    }

    /// Resolves the run's future with what has finished, and stops. Tasks
    /// still in flight are released to the source.
    fn resolve(&mut self, ctx: &mut Context<Self>) {
        let in_flight = self.in_flight.drain();
        let unfinished = in_flight.len() + self.source.remaining();
        for task in in_flight {
            self.source.release(task);
        }
        let outcomes = std::mem::take(&mut self.outcomes);
        let summary = RunSummary { counts: self.counts, outcomes, interrupted: unfinished > 0, unfinished };
        if let Some(done) = self.done.take() {
            // The caller may have gone away; then nobody needs the summary.
            let _ = done.send(summary);
        }
        ctx.stop();
    }
}

impl Handler<Settled> for Coordinator {
    type Result = ();

    fn handle(&mut self, answer: Settled, ctx: &mut Self::Context) {
        self.finish(answer, ctx);
    }
}

impl Handler<Interrupt> for Coordinator {
    type Result = ();

    fn handle(&mut self, _msg: Interrupt, ctx: &mut Self::Context) {
        // Answers that come after the coordinator stopped are dropped; the
        // workers' downloads are abandoned with their threads' runtimes,
        // temporary files included.
        self.resolve(ctx);
    }
}

impl Handler<Drain> for Coordinator {
    type Result = ();

    fn handle(&mut self, _msg: Drain, ctx: &mut Self::Context) {
        self.draining = true;
        self.feed(ctx);
    }
}

/// Drains or interrupts a run from outside.
#[derive(Clone)]
pub struct RunControls {
    coordinator: Addr<Coordinator>,
}

impl RunControls {
    /// Stops taking new tasks: the run resolves once those in flight settle.
    pub fn drain(&self) {
        self.coordinator.do_send(Drain);
    }

    /// Resolves the run now with what has finished; tasks in flight are
    /// released to the source.
    pub fn interrupt(&self) {
        self.coordinator.do_send(Interrupt);
    }
}

/// A run in progress: the coordinator's address and its result.
pub struct Run {
    coordinator: Addr<Coordinator>,
    done: oneshot::Receiver<RunSummary>,
}

impl Run {
    /// Starts a coordinator for `codes` (a [`LocalQueue`]) on the current
    /// arbiter, its workers where `placement` says.
    pub fn start(codes: Vec<CountryCode>, pool: Pool, sink: Box<dyn OutcomeSink>) -> Self {
        Self::from_source(Rc::new(LocalQueue::new(codes)), pool, sink)
    }

    /// Starts a coordinator for the tasks of `source` on the current arbiter.
    pub fn from_source(source: Rc<dyn WorkSource>, pool: Pool, sink: Box<dyn OutcomeSink>) -> Self {
        let Pool { fetcher, options, placement } = pool;
        let (tx, done) = oneshot::channel();
        let coordinator = Coordinator {
            fetcher,
            source,
            options,
            placement,
            idle: Vec::new(),
            in_flight: Slots::default(),
            waiting: false,
            draining: false,
            counts: StatusCounts::default(),
            outcomes: Vec::new(),
            sink,
            done: Some(tx),
            dice: Dice::from_entropy(),
        }
        .start();
        Self { coordinator, done }
    }

    /// A handle that drains or interrupts the run while something else
    /// waits for its end.
    pub fn controls(&self) -> RunControls {
        RunControls { coordinator: self.coordinator.clone() }
    }

    /// Waits for the run to end, or for `stop` to complete first: then the
    /// run is interrupted and resolves with the codes that had finished.
    pub async fn finish_or_interrupt(mut self, stop: impl Future<Output = ()>) -> Result<RunSummary, CoordinatorLost> {
        tokio::select! {
            summary = &mut self.done => return summary.map_err(|_| CoordinatorLost),
            () = stop => {}
        }
        self.coordinator.do_send(Interrupt);
        self.done.await.map_err(|_| CoordinatorLost)
    }
}

#[cfg(test)]
mod tests;
