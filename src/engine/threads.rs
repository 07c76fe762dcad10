//! The threads a pool's workers run on: one actix arbiter per core (or as
//! many as asked for), shared by every run of the process.
//!
//! The coordinator stays on its own thread with its queue and counts; only
//! the workers move. A small pool stays on the coordinator's thread too: a
//! thread costs more to start and to talk to than a few downloads gain
//! from it, so [`WorkerThreads::placement`] spreads a pool only when it has
//! at least [`MIN_WORKERS_PER_THREAD`] workers for each thread it uses.
//! Arbiters are started on first use, and stopped and joined when the
//! [`WorkerThreads`] is dropped: the downloads still running on them are
//! dropped with them, temporary files included.

use std::cell::RefCell;

use actix::prelude::*;

/// Fewest workers per thread for a pool to be spread over several threads.
pub const MIN_WORKERS_PER_THREAD: usize = 8;

/// The worker threads of a process, started on first use.
pub struct WorkerThreads {
    limit: usize,
    arbiters: RefCell<Vec<Arbiter>>,
}

impl WorkerThreads {
    /// At most `limit` threads (at least one); none is started yet.
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), arbiters: RefCell::default() }
    }

    /// The most threads a pool may use.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Where a pool of `pool_size` workers runs: on the coordinator's
    /// thread, or spread over as many threads as it has
    /// [`MIN_WORKERS_PER_THREAD`] workers for (at most the limit).
    pub fn placement(&self, pool_size: usize) -> Placement {
        let wanted = (pool_size / MIN_WORKERS_PER_THREAD).min(self.limit);
        if wanted <= 1 {
            return Placement::default();
        }
        let mut arbiters = self.arbiters.borrow_mut();
        while arbiters.len() < wanted {
            arbiters.push(Arbiter::new());
        }
        Placement { arbiters: arbiters.iter().take(wanted).map(Arbiter::handle).collect() }
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        for arbiter in self.arbiters.get_mut().drain(..) {
            arbiter.stop();
            // A thread that panicked has nothing left to clean up.
            let _ = arbiter.join();
        }
    }
}

/// Where the workers of one pool run.
#[derive(Clone, Default)]
pub struct Placement {
    arbiters: Vec<ArbiterHandle>,
}

impl Placement {
    /// The arbiter of worker `slot` (round robin), or `None` for the
    /// coordinator's own.
    pub fn arbiter(&self, slot: usize) -> Option<&ArbiterHandle> {
        (!self.arbiters.is_empty()).then(|| &self.arbiters[slot % self.arbiters.len()])
    }

    /// How many threads the workers are spread over (0: the coordinator's).
    pub fn threads(&self) -> usize {
        self.arbiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pools_stay_on_the_coordinators_thread() {
        actix_rt::System::new().block_on(async {
            let threads = WorkerThreads::new(4);
            assert_eq!(threads.placement(3).threads(), 0);
            assert_eq!(threads.placement(2 * MIN_WORKERS_PER_THREAD - 1).threads(), 0);
            assert!(threads.arbiters.borrow().is_empty(), "no thread started for small pools");
            assert_eq!(threads.placement(2 * MIN_WORKERS_PER_THREAD).threads(), 2);
            assert_eq!(threads.placement(1000).threads(), 4);
            assert_eq!(threads.arbiters.borrow().len(), 4, "threads are shared by later pools");
            assert_eq!(WorkerThreads::new(1).placement(1000).threads(), 0);
        });
    }
}
