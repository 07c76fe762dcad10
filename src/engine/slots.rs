//! The tasks a pool's workers are on, by the workers' slots in the pool.
//!
//! Each slot holds at most one task, with the number of the dispatch that
//! handed it out: an answer settles the task only if it carries that number,
//! so an answer that comes after the task was settled otherwise (by the
//! backstop, or released by an interrupt) is recognised as stale.

use std::time::{Duration, Instant};

use actix::Addr;

use super::seams::Task;
use super::worker::{Ticket, Worker};

/// A task handed to a worker.
pub struct InFlight {
    /// The task.
    pub task: Task,
    /// The worker on it.
    pub worker: Addr<Worker>,
    /// When it was handed out.
    pub started: Instant,
    number: u64,
}

/// The tasks in flight of one pool.
#[derive(Default)]
pub struct Slots {
    busy: Vec<Option<InFlight>>,
    count: usize,
    dispatched: u64,
}

impl Slots {
    /// Room for a pool of `size` workers, none busy.
    pub fn new(size: usize) -> Self {
        Self { busy: (0..size).map(|_| None).collect(), count: 0, dispatched: 0 }
    }

    /// Records that `worker`, in `slot`, now works on `task` (a slot past
    /// the pool's size is added); the ticket its answer must carry.
    pub fn start(&mut self, slot: usize, task: Task, worker: Addr<Worker>) -> Ticket {
        let number = self.dispatched;
        self.dispatched += 1;
        if slot >= self.busy.len() {
            self.busy.resize_with(slot + 1, || None);
        }
        let cell = &mut self.busy[slot];
        self.count += usize::from(cell.is_none());
        *cell = Some(InFlight { task, worker, started: Instant::now(), number });
        Ticket { slot, number }
    }

    /// The task `ticket` was for, taken out; `None` for a stale ticket.
    pub fn finish(&mut self, ticket: Ticket) -> Option<InFlight> {
        let cell = self.busy.get_mut(ticket.slot)?;
        if cell.as_ref()?.number != ticket.number {
            return None;
        }
        self.count -= 1;
        cell.take()
    }

    /// The tasks whose workers have had them for `limit` or longer, taken
    /// out, with their slots.
    pub fn overdue(&mut self, limit: Duration) -> Vec<(usize, InFlight)> {
        let mut overdue = Vec::new();
        for (slot, cell) in self.busy.iter_mut().enumerate() {
            if cell.as_ref().is_some_and(|flight| flight.started.elapsed() >= limit)
                && let Some(flight) = cell.take()
            {
                overdue.push((slot, flight));
            }
        }
        self.count -= overdue.len();
        overdue
    }

    /// Every task in flight, taken out.
    pub fn drain(&mut self) -> Vec<Task> {
        self.count = 0;
        self.busy.iter_mut().filter_map(Option::take).map(|flight| flight.task).collect()
    }

    /// Whether no task is in flight.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{Fetch, OutcomeFuture};
    use crate::model::codes::CountryCode;

    /// Never answers: the workers of these tests are never sent anything.
    struct Silent;

    impl Fetch for Silent {
        fn display_url(&self, _code: CountryCode) -> String {
            String::new()
        }

        fn fetch(self: Arc<Self>, _code: CountryCode, _lane: usize) -> OutcomeFuture {
            Box::pin(std::future::pending())
        }
    }

    fn task(ticket: u64) -> Task {
        Task { code: CountryCode::new(b'B', b'R').expect("a code"), attempts: 0, ticket, retry_cause: None }
    }

    #[test]
    fn an_answer_settles_its_task_once_and_a_stale_one_nothing() {
        actix_rt::System::new().block_on(async {
            let worker = actix::Actor::start(Worker::new(Arc::new(Silent), Duration::from_secs(1)));
            let mut slots = Slots::new(2);
            let first = slots.start(0, task(1), worker.clone());
            assert!(!slots.is_empty());
            assert_eq!(slots.finish(first).map(|f| f.task.ticket), Some(1));
            assert!(slots.finish(first).is_none(), "settled once");
            assert!(slots.is_empty());
            let second = slots.start(0, task(2), worker.clone());
            assert!(slots.finish(first).is_none(), "an older dispatch of the slot is stale");
            assert!(slots.finish(Ticket { slot: 7, number: second.number }).is_none(), "no such slot");
            let far = slots.start(5, task(4), worker.clone());
            assert_eq!(slots.finish(far).map(|f| f.task.ticket), Some(4), "a slot past the size is added");
            slots.start(1, task(3), worker);
            assert!(slots.overdue(Duration::from_secs(60)).is_empty());
            let overdue: Vec<u64> = slots.overdue(Duration::ZERO).iter().map(|(_, f)| f.task.ticket).collect();
            assert_eq!(overdue, [2, 3]);
            assert!(slots.is_empty() && slots.finish(second).is_none(), "the backstop settled it");
        });
    }
}
