//! The actor system: one [`Coordinator`] and a fixed pool of [`Worker`]s.
//!
//! The coordinator owns the pool and the counts. It takes one task for each
//! idle worker from its [`WorkSource`] (a run's [`LocalQueue`] of codes, or
//! a fleet's shared queue) and the next one only when that worker answers
//! (pull dispatch): no worker holds a backlog, so one slow request never
//! strands codes behind it. Workers download one code at a time through a shared
//! [`Fetch`]. Everything runs on the current arbiter: measurements on this
//! 2-core machine found one thread fastest, because connection set-up and
//! file system calls dominate, not parsing.
//!
//! The engine imports only [`crate::model`]: HTTP, files and reports reach
//! it through the [`Fetch`] and [`OutcomeSink`] traits it owns.

mod coordinator;
mod queue;
pub mod retry;
mod seams;
mod worker;

pub use coordinator::{Coordinator, CoordinatorLost, PoolOptions, Run, RunControls, RunSummary};
pub use queue::LocalQueue;
pub use seams::{Fetch, OutcomeFuture, OutcomeSink, Supply, Task, WorkSource};
pub use worker::{Download, Worker};
