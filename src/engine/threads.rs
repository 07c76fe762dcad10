//! The threads a pool's workers run on: one per core (or as many as asked
//! for), shared by every run of the process. The first is the thread the
//! coordinators run on; the others are actix arbiters.
//!
//! The coordinator stays on its own thread with its queue and counts, and
//! its share of the workers runs there too: a worker next to the
//! coordinator is told of its next code without waking another thread, and
//! N threads keep N cores busy rather than N + 1 threads taking turns on
//! them. A small job stays on the coordinator's thread entirely: a
//! thread costs more to start and to talk to than a few downloads gain
//! from it, so [`WorkerThreads::placement`] spreads workers only when the
//! process runs at least [`MIN_WORKERS_PER_THREAD`] workers for each
//! thread it uses: a big pool, or many batches with small pools (the
//! process's expected workload, given at the start). Successive pools start
//! on successive threads, so that fifty pools of two share the threads
//! evenly.
//! Arbiters are started on first use, and stopped and joined when the
//! [`WorkerThreads`] is dropped: the downloads still running on them are
//! dropped with them, temporary files included.

use std::cell::{Cell, RefCell};

use actix::prelude::*;

/// Fewest workers per thread for a pool to be spread over several threads.
pub const MIN_WORKERS_PER_THREAD: usize = 8;

/// The worker threads of a process, started on first use.
pub struct WorkerThreads {
    /// Threads a pool may use, the coordinator's included.
    limit: usize,
    /// Workers the process expects to run at once, all pools together.
    workload: usize,
    /// The thread the next pool starts on.
    next: Cell<usize>,
    /// The threads besides the coordinator's.
    arbiters: RefCell<Vec<Arbiter>>,
}

impl WorkerThreads {
    /// At most `limit` threads (at least one) for a process that runs
    /// about `workload` workers at once; none is started yet.
    pub fn new(limit: usize, workload: usize) -> Self {
        Self { limit: limit.max(1), workload, next: Cell::new(0), arbiters: RefCell::default() }
    }

    /// The most threads a pool may use, the coordinator's included.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Where a pool of `pool_size` workers runs: on the coordinator's
    /// thread, or spread over as many threads as the pool (or the process's
    /// workload, if larger) has [`MIN_WORKERS_PER_THREAD`] workers for, at
    /// most the limit. The coordinator's thread is one of them.
    pub fn placement(&self, pool_size: usize) -> Placement {
        let wanted = (pool_size.max(self.workload) / MIN_WORKERS_PER_THREAD).min(self.limit);
        if wanted <= 1 {
            return Placement::default();
        }
        let mut arbiters = self.arbiters.borrow_mut();
        while arbiters.len() < wanted - 1 {
            arbiters.push(Arbiter::new());
        }
        let first = self.next.get() % wanted;
        self.next.set(first + 1);
        // Thread 0 is the coordinator's; thread i > 0 is arbiter i - 1.
        let thread = |i: usize| (i > 0).then(|| arbiters[i - 1].handle());
        Placement { threads: (0..wanted).map(|i| thread((first + i) % wanted)).collect() }
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
    /// The threads in round-robin order; `None` is the coordinator's. Empty
    /// when the pool is not spread.
    threads: Vec<Option<ArbiterHandle>>,
}

impl Placement {
    /// The arbiter of worker `slot` (round robin), or `None` for the
    /// coordinator's own.
    pub fn arbiter(&self, slot: usize) -> Option<&ArbiterHandle> {
        let count = self.threads.len();
        (count > 0).then(|| self.threads[slot % count].as_ref()).flatten()
    }

    /// How many threads the workers are spread over, the coordinator's
    /// included (0: not spread, all on the coordinator's).
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pools_stay_on_the_coordinators_thread() {
        actix_rt::System::new().block_on(async {
            let threads = WorkerThreads::new(4, 0);
            assert_eq!(threads.placement(3).threads(), 0);
            assert_eq!(threads.placement(2 * MIN_WORKERS_PER_THREAD - 1).threads(), 0);
            assert!(threads.arbiters.borrow().is_empty(), "no thread started for small pools");
            let spread = threads.placement(2 * MIN_WORKERS_PER_THREAD);
            assert_eq!(spread.threads(), 2);
            let on_coordinator = (0..2).filter(|slot| spread.arbiter(*slot).is_none()).count();
            assert_eq!(on_coordinator, 1, "one slot in two runs next to the coordinator");
            assert_eq!(threads.arbiters.borrow().len(), 1, "the coordinator's thread is the first");
            assert_eq!(threads.placement(1000).threads(), 4);
            assert_eq!(threads.arbiters.borrow().len(), 3, "threads are shared by later pools");
            assert_eq!(WorkerThreads::new(1, 1000).placement(1000).threads(), 0);
        });
    }

    #[test]
    fn many_small_pools_share_the_threads_evenly() {
        actix_rt::System::new().block_on(async {
            let threads = WorkerThreads::new(2, 50 * 2);
            let mut first = Vec::new();
            for _ in 0..4 {
                let placement = threads.placement(1);
                assert_eq!(placement.threads(), 2, "small pools of a big workload are spread");
                let arbiter = placement.arbiter(0).cloned().unwrap_or_else(Arbiter::current);
                let (tx, rx) = tokio::sync::oneshot::channel();
                arbiter.spawn_fn(move || {
                    let _ = tx.send(std::thread::current().id());
                });
                first.push(rx.await.expect("the arbiter runs"));
            }
            assert_ne!(first[0], first[1], "successive pools start on successive threads");
            assert_eq!((first[0], first[1]), (first[2], first[3]));
        });
    }
}
