//! The actor system: one [`Coordinator`] and a fixed pool of [`Worker`]s.
//!
//! The coordinator owns the queue of codes and the counts. It hands one code
//! to each idle worker and the next one only when that worker answers (pull
//! dispatch): no worker holds a backlog, so one slow request never strands
//! codes behind it. Workers download one code at a time through a shared
//! [`Fetch`]. Everything runs on the current arbiter: measurements on this
//! 2-core machine found one thread fastest, because connection set-up and
//! file system calls dominate, not parsing.
//!
//! The engine imports only [`crate::model`]: HTTP, files and reports reach
//! it through the [`Fetch`] and [`OutcomeSink`] traits it owns.

mod coordinator;
pub mod retry;
mod seams;
mod worker;

pub use coordinator::{Coordinator, CoordinatorLost, PoolOptions, Run, RunSummary};
pub use seams::{Fetch, OutcomeFuture, OutcomeSink};
pub use worker::{Download, Worker};
