//! The engine's seams: where work comes from ([`WorkSource`]), how a code
//! turns into an outcome ([`Fetch`]), and where outcomes go
//! ([`OutcomeSink`]).
//!
//! The coordinator and its workers hold only these traits, so the actor
//! system knows nothing of HTTP, files, reports or NATS. A job implements
//! [`Fetch`] with the HTTP side's answers and the store's saving; reports,
//! logs and metrics implement [`OutcomeSink`]; a run's list of codes is a
//! [`LocalQueue`] and a fleet's work queue another [`WorkSource`]. The coordinator's guarantees (one
//! outcome per code, also when a worker panics or hangs) are tested with
//! fetchers that misbehave on purpose.
//!
//! [`LocalQueue`]: super::LocalQueue

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::model::codes::CountryCode;
use crate::model::outcome::{CodeOutcome, Outcome, RetryCause};

/// A boxed, single-threaded future yielding one outcome.
pub type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome>>>;

/// Turns a country code into an outcome. Shared by workers on several
/// threads; each future it returns runs on the thread that asked for it.
pub trait Fetch: Send + Sync + 'static {
    /// The URL of `code` as reports and logs show it: credentials masked.
    fn display_url(&self, code: CountryCode) -> String;
    /// Downloads `code` and says how it ended. Never panics on anything a
    /// server or the disk does. The future holds the fetcher (one reference
    /// count, however much the fetcher holds).
    ///
    /// `lane` is the asking worker's slot in its pool. A worker keeps its
    /// lane for life and downloads one code at a time, so a fetcher may keep
    /// a resource per lane (a connection) that no other worker of the pool
    /// takes from it. The one exception: a worker replaced because its
    /// thread is stuck hands its lane to its replacement while it may still
    /// be running.
    fn fetch(self: Arc<Self>, code: CountryCode, lane: usize) -> OutcomeFuture;
}

/// Receives each outcome as it arrives (report lines, progress, logs), and
/// optionally each attempt (metrics).
pub trait OutcomeSink {
    /// Called once per finished code, in completion order.
    fn record(&mut self, outcome: &CodeOutcome);
    /// Called when an attempt is handed to a worker.
    fn attempt_started(&mut self) {}
    /// Called when an attempt ends (answered, failed or timed out), after
    /// `elapsed`.
    fn attempt_finished(&mut self, _elapsed: Duration) {}
    /// Called when a failed attempt is to be tried again.
    fn retry_scheduled(&mut self, _code: CountryCode) {}
}

/// A code handed out by a [`WorkSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// The country code.
    pub code: CountryCode,
    /// Attempts already made at it, wherever they ran.
    pub attempts: u32,
    /// Why the last of them failed, when this process saw it.
    pub retry_cause: Option<RetryCause>,
    /// The source's own handle for it (a message, a slot in a list).
    pub ticket: u64,
}

/// What a [`WorkSource`] has for idle workers.
pub enum Supply {
    /// Tasks to start now (never more than asked for).
    Tasks(Vec<Task>),
    /// Nothing now; ask again when this completes.
    Later(Pin<Box<dyn Future<Output = ()>>>),
    /// Nothing will come again, unless a task in flight is given back for a
    /// retry.
    Finished,
}

/// Where a coordinator's tasks come from, and where they go when settled.
///
/// The coordinator takes tasks only when it has idle workers (pull
/// dispatch), and settles each task exactly once: [`done`](Self::done) with
/// its final outcome, [`retry`](Self::retry) to have it handed out again
/// later, or [`release`](Self::release) when the run is interrupted.
pub trait WorkSource {
    /// Up to `max` tasks that can start now, or when to ask again.
    fn take(&self, max: usize) -> Supply;
    /// `task` ended in `outcome`, its final one.
    fn done(&self, task: Task, outcome: &CodeOutcome);
    /// `task` failed and is to be tried again, not before `delay`
    /// (`task.attempts` counts the attempt that failed).
    fn retry(&self, task: Task, delay: Duration);
    /// `task` did not finish: the run was interrupted while it was in flight.
    fn release(&self, task: Task);
    /// Tasks known to the source and not handed out yet (queued, or waiting
    /// for their retry time).
    fn remaining(&self) -> usize;
    /// Takes `task` back (`Ok`: it is settled) rather than let `outcome`
    /// (which the retry policy made final) end it here (`Err`, the task
    /// given back to the engine): a shared queue hands a fault of this
    /// process (its disk) to another process. `task.attempts` counts the
    /// attempt that failed.
    fn hand_back(&self, task: Task, _outcome: &Outcome) -> Result<(), Task> {
        Err(task)
    }
}
