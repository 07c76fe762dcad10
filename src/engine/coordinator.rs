//! The coordinator: queue, pool, counts, and the one future a caller awaits.
//!
//! It never awaits inside a handler. Each dispatch spawns a small actor
//! future (`send` to the worker, with a deadline) whose continuation records
//! the outcome and dispatches the worker's next code. That continuation is
//! the only place a code leaves the in-flight set, and every path through it
//! records exactly one outcome:
//!
//! - the worker answers: its outcome;
//! - the worker's mailbox closes (the worker panicked): an internal error,
//!   and a fresh worker takes its place;
//! - the deadline passes: a connection error, and a fresh worker takes the
//!   place of the stuck one (which is abandoned, not reused).

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::retry::RetryPolicy;
use super::seams::{Fetch, OutcomeSink};
use super::worker::{Download, Worker};
use crate::model::codes::CountryCode;
use crate::model::outcome::{CodeOutcome, DownloadError, Outcome, StatusCounts};
use crate::model::random::Dice;

/// How much longer than the attempt deadline the coordinator waits for a
/// worker's answer before it gives up on that worker.
const BACKSTOP_GRACE: Duration = Duration::from_secs(5);

/// Size, deadline and retries of the worker pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Number of workers (at most the number of codes are started).
    pub pool_size: usize,
    /// Longest one attempt may take, all its requests included; the worker
    /// enforces it, and the coordinator waits a little longer (in case the
    /// worker itself is stuck) before replacing the worker.
    pub deadline: Duration,
    /// When to try a failed code again.
    pub retry: RetryPolicy,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Outcomes of the codes that finished.
    pub counts: StatusCounts,
    /// Each finished code's outcome, in completion order.
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

/// Stops dispatching and resolves the run with what has finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Interrupt;

/// A code waiting in the queue, with the attempts it has had.
#[derive(Debug, Clone, Copy)]
struct Pending {
    code: CountryCode,
    attempts: u32,
}

/// Owns the queue of codes, the pool and the counts of one run.
pub struct Coordinator {
    fetcher: Rc<dyn Fetch>,
    queue: VecDeque<Pending>,
    /// Workers with nothing to do while codes wait for their retry time.
    idle: Vec<Addr<Worker>>,
    options: PoolOptions,
    in_flight: usize,
    /// Codes waiting for their retry time (not in the queue yet).
    waiting: usize,
    counts: StatusCounts,
    outcomes: Vec<CodeOutcome>,
    sink: Box<dyn OutcomeSink>,
    done: Option<oneshot::Sender<RunSummary>>,
    dice: Dice,
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let workers = self.options.pool_size.clamp(1, self.queue.len().max(1));
        for _ in 0..workers {
            let worker = self.new_worker();
            self.dispatch(worker, ctx);
        }
    }
}

impl Coordinator {
    fn new_worker(&self) -> Addr<Worker> {
        Worker::new(Rc::clone(&self.fetcher), self.options.deadline).start()
    }

    /// Gives `worker` the next code; parks it when the queue is empty but
    /// retries are pending, and lets it go when the run is over.
    fn dispatch(&mut self, worker: Addr<Worker>, ctx: &mut Context<Self>) {
        let Some(Pending { code, attempts }) = self.queue.pop_front() else {
            if self.waiting > 0 {
                self.idle.push(worker);
            }
            self.finish_if_done(ctx);
            return;
        };
        let deadline = self.options.deadline + BACKSTOP_GRACE;
        self.in_flight += 1;
        self.sink.attempt_started();
        let started = Instant::now();
        let request = worker.send(Download { code, url: self.fetcher.url(code) }).timeout(deadline);
        ctx.spawn(request.into_actor(self).map(move |answer, act, ctx| {
            act.in_flight -= 1;
            act.sink.attempt_finished(started.elapsed());
            let (outcome, worker) = match answer {
                Ok(outcome) => (outcome, worker),
                Err(MailboxError::Timeout) => {
                    let detail = format!("no answer within {}s", deadline.as_secs_f64());
                    let error = DownloadError::Connection { detail: Some(detail) };
                    (Outcome::Failed(error), act.new_worker())
                }
                Err(MailboxError::Closed) => {
                    tracing::error!(cc = %code, "worker failed; starting a new one");
                    let error = DownloadError::Internal { detail: "worker failed".to_owned() };
                    (Outcome::Failed(error), act.new_worker())
                }
            };
            act.settle(code, attempts + 1, outcome, ctx);
            act.dispatch(worker, ctx);
        }));
    }

    /// Records the outcome of an attempt, or queues the code again after
    /// the retry delay (no worker waits for it meanwhile).
    fn settle(&mut self, code: CountryCode, attempts: u32, outcome: Outcome, ctx: &mut Context<Self>) {
        let Some(delay) = self.options.retry.delay(&outcome, attempts, &self.dice) else {
            let url = self.fetcher.display_url(code);
            let outcome = CodeOutcome { code, url, outcome, attempts };
            self.counts.record(&outcome.outcome);
            self.sink.record(&outcome);
            self.outcomes.push(outcome);
            return;
        };
        tracing::debug!(cc = %code, attempts, delay_ms = delay.as_millis() as u64, kind = outcome.kind(), "will retry");
        self.sink.retry_scheduled(code);
        self.waiting += 1;
        ctx.run_later(delay, move |act, ctx| {
            act.waiting -= 1;
            act.queue.push_back(Pending { code, attempts });
            if let Some(worker) = act.idle.pop() {
                act.dispatch(worker, ctx);
            }
        });
    }

    fn finish_if_done(&mut self, ctx: &mut Context<Self>) {
        if self.queue.is_empty() && self.in_flight == 0 && self.waiting == 0 {
            self.resolve(ctx);
        }
    }

    fn resolve(&mut self, ctx: &mut Context<Self>) {
        let unfinished = self.queue.len() + self.in_flight + self.waiting;
        let outcomes = std::mem::take(&mut self.outcomes);
        let summary = RunSummary { counts: self.counts, outcomes, interrupted: unfinished > 0, unfinished };
        if let Some(done) = self.done.take() {
            // The caller may have gone away; then nobody needs the summary.
            let _ = done.send(summary);
        }
        ctx.stop();
    }
}

impl Handler<Interrupt> for Coordinator {
    type Result = ();

    fn handle(&mut self, _msg: Interrupt, ctx: &mut Self::Context) {
        // Stopping the coordinator drops its pending sends; the workers'
        // downloads are abandoned with the runtime, temporary files included.
        self.resolve(ctx);
    }
}

/// A run in progress: the coordinator's address and its result.
pub struct Run {
    coordinator: Addr<Coordinator>,
    done: oneshot::Receiver<RunSummary>,
}

impl Run {
    /// Starts a coordinator for `codes` on the current arbiter.
    pub fn start(
        codes: Vec<CountryCode>,
        fetcher: Rc<dyn Fetch>,
        options: PoolOptions,
        sink: Box<dyn OutcomeSink>,
    ) -> Self {
        let (tx, done) = oneshot::channel();
        let coordinator = Coordinator {
            fetcher,
            queue: codes.into_iter().map(|code| Pending { code, attempts: 0 }).collect(),
            idle: Vec::new(),
            options,
            in_flight: 0,
            waiting: 0,
            dice: Dice::from_entropy(),
            counts: StatusCounts::default(),
            outcomes: Vec::new(),
            sink,
            done: Some(tx),
        }
        .start();
        Self { coordinator, done }
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
mod tests {
    use std::cell::RefCell;
    use std::future::pending;

    use super::*;
    use crate::engine::OutcomeFuture;

    /// Answers by code: `NF…` not found, `PA…` panics, `HA…` hangs, else OK.
    /// Counts how many downloads run at once.
    #[derive(Default)]
    struct ScriptedFetcher {
        running: RefCell<usize>,
        peak: RefCell<usize>,
    }

    impl Fetch for Rc<ScriptedFetcher> {
        fn url(&self, code: CountryCode) -> String {
            format!("test://{code}")
        }

        fn display_url(&self, code: CountryCode) -> String {
            self.url(code)
        }

        fn fetch(&self, code: CountryCode, _url: String) -> OutcomeFuture {
            let me = Rc::clone(self);
            Box::pin(async move {
                *me.running.borrow_mut() += 1;
                let now = *me.running.borrow();
                me.peak.replace_with(|p| (*p).max(now));
                actix_rt::time::sleep(Duration::from_millis(1)).await;
                *me.running.borrow_mut() -= 1;
                match code.as_str() {
                    c if c.starts_with('N') => Outcome::NotFound,
                    c if c.starts_with('P') => panic!("scripted panic for {c}"),
                    c if c.starts_with('H') => pending().await,
                    _ => Outcome::Downloaded(crate::model::outcome::SavedFile::new(format!("{code}.gif"), 1)),
                }
            })
        }
    }

    #[derive(Clone, Default)]
    struct Collect(Rc<RefCell<Vec<CodeOutcome>>>);

    impl OutcomeSink for Collect {
        fn record(&mut self, outcome: &CodeOutcome) {
            self.0.borrow_mut().push(outcome.clone());
        }
    }

    fn no_retries() -> RetryPolicy {
        RetryPolicy { retries: 0, base: Duration::ZERO, cap: Duration::ZERO, retry_after_cap: Duration::ZERO }
    }

    fn codes(letters: &[&str]) -> Vec<CountryCode> {
        letters.iter().flat_map(|l| crate::model::codes::expand_argument(l).unwrap()).collect()
    }

    fn run(codes: Vec<CountryCode>, pool_size: usize) -> (RunSummary, Vec<CodeOutcome>, usize) {
        let fetcher = Rc::new(ScriptedFetcher::default());
        let sink = Collect::default();
        let options = PoolOptions { pool_size, deadline: Duration::from_millis(200), retry: no_retries() };
        let summary = actix_rt::System::new().block_on({
            let fetcher: Rc<dyn Fetch> = Rc::new(Rc::clone(&fetcher));
            let sink = sink.clone();
            async move { Run::start(codes, fetcher, options, Box::new(sink)).finish_or_interrupt(pending()).await }
        });
        let peak = *fetcher.peak.borrow();
        let outcomes = sink.0.borrow().clone();
        (summary.unwrap(), outcomes, peak)
    }

    #[test]
    fn every_code_gets_exactly_one_outcome_even_when_workers_panic_or_hang() {
        let mut input = codes(&["A", "N", "P", "H"]);
        let (summary, outcomes, _) = run(input.clone(), 8);
        input.sort();
        assert_eq!(outcomes.len(), input.len());
        let mut seen: Vec<_> = outcomes.iter().map(|o| o.code).collect();
        seen.sort();
        assert_eq!(seen, input);
        assert_eq!(summary.counts, StatusCounts { downloaded: 26, not_found: 26, errors: 52, unchanged: 0 });
        assert_eq!(summary.outcomes, outcomes);
        assert!(!summary.interrupted);
        let kinds = |prefix: char| -> Vec<&'static str> {
            let mut k: Vec<_> =
                outcomes.iter().filter(|o| o.code.as_str().starts_with(prefix)).map(|o| o.outcome.kind()).collect();
            k.dedup();
            k
        };
        assert_eq!(kinds('P'), ["internal_error"]);
        assert_eq!(kinds('H'), ["connection_error"]);
    }

    #[test]
    fn pool_never_runs_more_downloads_than_its_size() {
        let (summary, _, peak) = run(codes(&["A", "B", "C"]), 5);
        assert_eq!(summary.counts.downloaded, 78);
        assert_eq!(peak, 5);
    }

    #[test]
    fn a_pool_of_one_downloads_one_at_a_time() {
        let (summary, _, peak) = run(codes(&["A"]), 1);
        assert_eq!(summary.counts.downloaded, 26);
        assert_eq!(peak, 1);
    }

    #[test]
    fn an_empty_run_resolves_at_once() {
        let (summary, outcomes, _) = run(vec![], 3);
        assert_eq!(summary.counts.total(), 0);
        assert!(outcomes.is_empty());
    }

    #[test]
    fn interrupting_resolves_with_what_finished() {
        let input = codes(&["H"]);
        let sink = Collect::default();
        let options = PoolOptions { pool_size: 2, deadline: Duration::from_secs(60), retry: no_retries() };
        let summary = actix_rt::System::new()
            .block_on(async move {
                let fetcher: Rc<dyn Fetch> = Rc::new(Rc::new(ScriptedFetcher::default()));
                let stop = actix_rt::time::sleep(Duration::from_millis(50));
                Run::start(input, fetcher, options, Box::new(sink)).finish_or_interrupt(stop).await
            })
            .unwrap();
        assert!(summary.interrupted);
        assert_eq!(summary.counts.total(), 0);
        assert_eq!(summary.unfinished, 26);
    }
}
