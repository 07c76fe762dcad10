//! The coordinator's guarantees, checked with fetchers that misbehave on
//! purpose.

use std::cell::RefCell;
use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::engine::{OutcomeFuture, WorkerThreads};

/// Answers by code: `NF…` not found, `PA…` panics, `HA…` hangs, `S…`
/// blocks its thread (the first such code run away from `home`, the
/// coordinator's thread) past the backstop, else OK. Counts how many
/// downloads run at once, on any thread, and whether a lane was ever asked
/// for a second download while its first was running.
#[derive(Default)]
struct ScriptedFetcher {
    running: AtomicUsize,
    peak: AtomicUsize,
    lanes: Arc<Lanes>,
    home: std::sync::OnceLock<std::thread::ThreadId>,
    blocked: std::sync::atomic::AtomicBool,
}

impl Fetch for ScriptedFetcher {
    fn display_url(&self, code: CountryCode) -> String {
        format!("test://{code}")
    }

    fn fetch(self: Arc<Self>, code: CountryCode, lane: usize) -> OutcomeFuture {
        Box::pin(async move {
            let _lane = Lanes::enter(&self.lanes, lane);
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            actix_rt::time::sleep(Duration::from_millis(1)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            match code.as_str() {
                c if c.starts_with('N') => Outcome::NotFound,
                c if c.starts_with('P') => panic!("scripted panic for {c}"),
                c if c.starts_with('H') => pending().await,
                c if c.starts_with('S')
                    && self.home.get() != Some(&std::thread::current().id())
                    && !self.blocked.swap(true, Ordering::SeqCst) =>
                {
                    std::thread::sleep(BACKSTOP_GRACE + Duration::from_secs(2));
                    Outcome::NotFound
                }
                _ => Outcome::Downloaded(crate::model::outcome::SavedFile::new(format!("{code}.gif"), 1)),
            }
        })
    }
}

/// The lanes with a download running, and what was seen of them.
#[derive(Default)]
struct Lanes {
    busy: std::sync::Mutex<std::collections::BTreeSet<usize>>,
    /// The highest lane asked for.
    highest: AtomicUsize,
    /// A lane was asked for while busy.
    shared: std::sync::atomic::AtomicBool,
}

/// A running download's hold on its lane, let go when the download ends or
/// is dropped (a panic, a deadline).
struct LaneHold(Arc<Lanes>, usize);

impl Lanes {
    fn enter(lanes: &Arc<Lanes>, lane: usize) -> LaneHold {
        lanes.highest.fetch_max(lane, Ordering::SeqCst);
        if !lanes.busy.lock().unwrap().insert(lane) {
            lanes.shared.store(true, Ordering::SeqCst);
        }
        LaneHold(Arc::clone(lanes), lane)
    }
}

impl Drop for LaneHold {
    fn drop(&mut self) {
        self.0.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.1);
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

/// A pool of scripted fetchers whose workers run on up to `threads`
/// threads.
fn pool(options: PoolOptions, threads: &WorkerThreads) -> (Pool, Arc<ScriptedFetcher>) {
    let scripted = Arc::new(ScriptedFetcher::default());
    let _ = scripted.home.set(std::thread::current().id());
    let fetcher = Arc::clone(&scripted) as Arc<dyn Fetch>;
    (Pool { fetcher, options, placement: threads.placement(options.pool_size) }, scripted)
}

fn run(codes: Vec<CountryCode>, pool_size: usize, threads: usize) -> (RunSummary, Vec<CodeOutcome>, usize) {
    let sink = Collect::default();
    let options =
        PoolOptions { pool_size, deadline: Duration::from_millis(200), retry: no_retries(), keep_outcomes: true };
    // Only a worker replaced because its thread is stuck shares its lane.
    let lanes_are_exclusive = !codes.iter().any(|c| c.as_str().starts_with('S'));
    let (summary, scripted) = actix_rt::System::new().block_on({
        let sink = sink.clone();
        async move {
            let threads = WorkerThreads::new(threads, 0);
            let (pool, scripted) = pool(options, &threads);
            assert_eq!(pool.placement.threads(), if threads.limit() > 1 { threads.limit() } else { 0 });
            let summary = Run::start(codes, pool, Box::new(sink)).finish_or_interrupt(pending()).await;
            (summary, scripted)
        }
    });
    let (peak, lanes) = (scripted.peak.load(Ordering::SeqCst), &scripted.lanes);
    assert!(peak == 0 || lanes.highest.load(Ordering::SeqCst) < pool_size, "a lane beyond the pool");
    if lanes_are_exclusive {
        assert!(!lanes.shared.load(Ordering::SeqCst), "a lane was asked for twice at once");
    }
    let outcomes = sink.0.borrow().clone();
    (summary.unwrap(), outcomes, peak)
}

#[test]
fn every_code_gets_exactly_one_outcome_even_when_workers_panic_or_hang() {
    for threads in [1, 2, 3] {
        one_outcome_each_on(threads);
    }
}

fn one_outcome_each_on(threads: usize) {
    let mut input = codes(&["A", "N", "P", "H"]);
    let (summary, outcomes, _) = run(input.clone(), 24, threads);
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
fn a_worker_whose_thread_is_stuck_is_replaced_after_the_backstop() {
    // Two threads: the first S code on the other thread blocks it; the
    // coordinator's thread goes on, and settles what the stuck workers
    // hold once the deadline and the grace have passed.
    let input = codes(&["A", "S"]);
    let (summary, outcomes, _) = run(input.clone(), 16, 2);
    let mut seen: Vec<_> = outcomes.iter().map(|o| o.code).collect();
    seen.sort();
    assert_eq!(seen, input, "one outcome per code");
    let stuck = outcomes.iter().filter(|o| match &o.outcome {
        Outcome::Failed(DownloadError::Connection { detail: Some(d) }) => d.starts_with("no answer within 5.2s"),
        _ => false,
    });
    assert!(stuck.count() >= 1, "{outcomes:?}");
    assert_eq!(summary.counts.total(), 52);
}

#[test]
fn pool_never_runs_more_downloads_than_its_size() {
    let (summary, _, peak) = run(codes(&["A", "B", "C"]), 5, 1);
    assert_eq!(summary.counts.downloaded, 78);
    assert_eq!(peak, 5);
    let (summary, _, peak) = run(codes(&["A", "B", "C"]), 16, 2);
    assert_eq!(summary.counts.downloaded, 78);
    assert!(peak <= 16, "{peak} downloads at once on two threads");
}

#[test]
fn a_pool_of_one_downloads_one_at_a_time() {
    let (summary, _, peak) = run(codes(&["A"]), 1, 1);
    assert_eq!(summary.counts.downloaded, 26);
    assert_eq!(peak, 1);
}

#[test]
fn an_empty_run_resolves_at_once() {
    let (summary, outcomes, _) = run(vec![], 3, 1);
    assert_eq!(summary.counts.total(), 0);
    assert!(outcomes.is_empty());
}

#[test]
fn interrupting_resolves_with_what_finished() {
    let input = codes(&["H"]);
    let sink = Collect::default();
    let options =
        PoolOptions { pool_size: 2, deadline: Duration::from_secs(60), retry: no_retries(), keep_outcomes: true };
    let summary = actix_rt::System::new()
        .block_on(async move {
            let threads = WorkerThreads::new(1, 0);
            let stop = actix_rt::time::sleep(Duration::from_millis(50));
            Run::start(input, pool(options, &threads).0, Box::new(sink)).finish_or_interrupt(stop).await
        })
        .unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.counts.total(), 0);
    assert_eq!(summary.unfinished, 26);
}

/// A source that hands out its tasks once, then waits (`endless`) or is
/// finished, and writes down how each task was settled.
struct RecordingSource {
    tasks: RefCell<Vec<Task>>,
    endless: bool,
    log: Rc<RefCell<Vec<String>>>,
}

impl RecordingSource {
    fn new(codes: Vec<CountryCode>, endless: bool) -> (Rc<Self>, Rc<RefCell<Vec<String>>>) {
        let tasks = codes
            .into_iter()
            .zip(0..)
            .map(|(code, ticket)| Task { code, attempts: 0, ticket, retry_cause: None })
            .collect();
        let log = Rc::default();
        (Rc::new(Self { tasks: RefCell::new(tasks), endless, log: Rc::clone(&log) }), log)
    }
}

impl WorkSource for RecordingSource {
    fn take(&self, max: usize) -> Supply {
        let mut tasks = self.tasks.borrow_mut();
        if tasks.is_empty() {
            return if self.endless { Supply::Later(Box::pin(pending())) } else { Supply::Finished };
        }
        let n = max.min(tasks.len());
        Supply::Tasks(tasks.drain(..n).collect())
    }

    fn done(&self, task: Task, outcome: &CodeOutcome) {
        self.log.borrow_mut().push(format!("done {} {} {}", task.code, task.attempts, outcome.outcome.kind()));
    }

    fn retry(&self, task: Task, _delay: Duration) {
        self.log.borrow_mut().push(format!("retry {} {}", task.code, task.attempts));
    }

    fn release(&self, task: Task) {
        self.log.borrow_mut().push(format!("release {} {}", task.code, task.attempts));
    }

    fn remaining(&self) -> usize {
        self.tasks.borrow().len()
    }
}

/// Runs `source` to its end, or interrupts it after `stop`, its workers
/// on two threads when the pool is large enough.
fn run_source(source: Rc<RecordingSource>, options: PoolOptions, stop: Option<Duration>) -> RunSummary {
    actix_rt::System::new()
        .block_on(async move {
            let threads = WorkerThreads::new(2, 0);
            let stop = async move {
                match stop {
                    Some(after) => actix_rt::time::sleep(after).await,
                    None => pending().await,
                }
            };
            let pool = pool(options, &threads).0;
            Run::from_source(source, pool, Box::new(Collect::default())).finish_or_interrupt(stop).await
        })
        .unwrap()
}

#[test]
fn a_source_settles_each_task_once_and_takes_its_retries_back() {
    let (source, log) = RecordingSource::new(codes(&["A", "H"]), false);
    let retry = RetryPolicy { retries: 1, ..no_retries() };
    let options = PoolOptions { pool_size: 52, deadline: Duration::from_millis(100), retry, keep_outcomes: false };
    let summary = run_source(source, options, None);
    let log = log.borrow();
    assert_eq!(log.len(), 52, "{log:?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("done A") && l.ends_with(" 1 downloaded")).count(), 26);
    assert_eq!(log.iter().filter(|l| l.starts_with("retry H") && l.ends_with(" 1")).count(), 26);
    assert_eq!(summary.counts, StatusCounts { downloaded: 26, ..StatusCounts::default() });
    assert!(summary.outcomes.is_empty(), "outcomes are not kept");
    assert!(!summary.interrupted);
}

#[test]
fn an_interrupt_releases_the_tasks_in_flight() {
    let (source, log) = RecordingSource::new(codes(&["H"]), true);
    let options =
        PoolOptions { pool_size: 2, deadline: Duration::from_secs(60), retry: no_retries(), keep_outcomes: true };
    let summary = run_source(source, options, Some(Duration::from_millis(50)));
    let mut released = log.borrow().clone();
    released.sort();
    assert_eq!(released, ["release HA 0", "release HB 0"]);
    assert!(summary.interrupted);
    assert_eq!(summary.unfinished, 26);
}

#[test]
fn a_drained_run_ends_when_its_tasks_in_flight_settle() {
    let (source, log) = RecordingSource::new(codes(&["A"]), true);
    let options =
        PoolOptions { pool_size: 3, deadline: Duration::from_secs(5), retry: no_retries(), keep_outcomes: true };
    let summary = actix_rt::System::new()
        .block_on(async move {
            let threads = WorkerThreads::new(1, 0);
            let run = Run::from_source(source, pool(options, &threads).0, Box::new(Collect::default()));
            run.controls().drain();
            run.finish_or_interrupt(pending()).await
        })
        .unwrap();
    // Whatever was in flight when the drain arrived finished; nothing new
    // was taken after it, and nothing was released.
    let log = log.borrow();
    assert!(log.iter().all(|l| l.starts_with("done ")), "{log:?}");
    assert_eq!(summary.counts.downloaded, log.len());
    assert!(log.len() <= 3, "{log:?}");
    assert_eq!(summary.unfinished, 26 - log.len());
}
