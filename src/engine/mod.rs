//! The actor system: one [`Coordinator`] and a fixed pool of [`Worker`]s.
//!
//! The coordinator owns the pool and the counts. It takes one task for each
//! idle worker from its [`WorkSource`] (a run's [`LocalQueue`] of codes, or
//! a fleet's shared queue) and the next one only when that worker answers
//! (pull dispatch): no worker holds a backlog, so one slow request never
//! strands codes behind it. Workers download one code at a time through a shared
//! [`Fetch`], and answer with a message of their own ([`Settled`]). The
//! coordinator runs on the current arbiter; the workers of a large enough
//! pool are spread over [`WorkerThreads`], one thread per core, the
//! coordinator's among them, and a small pool stays with the coordinator.
//!
//! The engine imports only [`crate::model`]: HTTP, files and reports reach
//! it through the [`Fetch`] and [`OutcomeSink`] traits it owns.

mod coordinator;
mod queue;
pub mod retry;
mod seams;
mod slots;
mod threads;
mod worker;

pub use coordinator::{Coordinator, CoordinatorLost, Pool, PoolOptions, Run, RunControls, RunSummary};
pub use queue::{LocalQueue, Waiting, due_or_changed};
pub use seams::{Fetch, OutcomeFuture, OutcomeSink, Supply, Task, WorkSource};
pub use threads::{MIN_WORKERS_PER_THREAD, Placement, WorkerThreads};
pub use worker::{Download, Settled, Ticket, Worker};
