//! A run's own list of codes as a [`WorkSource`]: codes handed out in
//! order, and a failed code queued again once its retry delay has passed
//! (no worker waits for it meanwhile).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::seams::{Supply, Task, WorkSource};
use crate::model::codes::CountryCode;
use crate::model::outcome::CodeOutcome;

/// The codes of one run, with the ones waiting for a retry.
#[derive(Debug)]
pub struct LocalQueue {
    ready: RefCell<VecDeque<Task>>,
    /// Tasks waiting for their retry time, and that time.
    waiting: RefCell<Vec<(Instant, Task)>>,
    /// Wakes a wait for the next retry time when a retry is added (each
    /// wait subscribes when it is made, so no change is missed).
    changed: watch::Sender<()>,
}

impl LocalQueue {
    /// A queue of `codes`, in order, none attempted yet.
    pub fn new(codes: impl IntoIterator<Item = CountryCode>) -> Self {
        let ready = codes
            .into_iter()
            .zip(0..)
            .map(|(code, ticket)| Task { code, attempts: 0, ticket, retry_cause: None })
            .collect();
        Self { ready: RefCell::new(ready), waiting: RefCell::default(), changed: watch::Sender::new(()) }
    }

    /// Moves the tasks whose retry time has come to the ready queue.
    fn promote_due(&self, now: Instant) {
        let mut waiting = self.waiting.borrow_mut();
        let mut ready = self.ready.borrow_mut();
        waiting.retain(|(due, task)| {
            let is_due = *due <= now;
            if is_due {
                ready.push_back(*task);
            }
            !is_due
        });
    }
}

impl WorkSource for LocalQueue {
    fn take(&self, max: usize) -> Supply {
        self.promote_due(Instant::now());
        let mut ready = self.ready.borrow_mut();
        if !ready.is_empty() {
            let n = max.min(ready.len());
            return Supply::Tasks(ready.drain(..n).collect());
        }
        let Some(next) = self.waiting.borrow().iter().map(|(due, _)| *due).min() else {
            return Supply::Finished;
        };
        let mut changed = self.changed.subscribe();
        Supply::Later(Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                // An error means the queue is gone: nothing to wait for.
                _ = changed.changed() => {}
            }
        }))
    }

    fn done(&self, _task: Task, _outcome: &CodeOutcome) {}

    fn retry(&self, task: Task, delay: Duration) {
        self.waiting.borrow_mut().push((Instant::now() + delay, task));
        self.changed.send_replace(());
    }

    fn release(&self, _task: Task) {}

    fn remaining(&self) -> usize {
        self.ready.borrow().len() + self.waiting.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codes::expand_argument;

    fn tasks(supply: Supply) -> Vec<String> {
        match supply {
            Supply::Tasks(tasks) => tasks.iter().map(|t| format!("{}:{}", t.code, t.attempts)).collect(),
            Supply::Later(_) => vec!["later".to_owned()],
            Supply::Finished => vec!["finished".to_owned()],
        }
    }

    #[test]
    fn codes_come_out_in_order_then_retries_when_due() {
        actix_rt::System::new().block_on(async {
            let queue = LocalQueue::new(expand_argument("b").unwrap().into_iter().take(3));
            assert_eq!(queue.remaining(), 3);
            assert_eq!(tasks(queue.take(2)), ["BA:0", "BB:0"]);
            assert_eq!(tasks(queue.take(2)), ["BC:0"]);
            assert_eq!(tasks(queue.take(2)), ["finished"]);
            let failed =
                Task { code: CountryCode::new(b'B', b'A').unwrap(), attempts: 1, ticket: 0, retry_cause: None };
            queue.retry(failed, Duration::from_millis(30));
            assert_eq!(queue.remaining(), 1);
            let Supply::Later(wait) = queue.take(2) else { panic!("a retry is waiting") };
            let started = Instant::now();
            wait.await;
            assert!(started.elapsed() >= Duration::from_millis(25), "{:?}", started.elapsed());
            assert_eq!(tasks(queue.take(2)), ["BA:1"]);
            assert_eq!(tasks(queue.take(2)), ["finished"]);
        });
    }

    #[test]
    fn an_earlier_retry_wakes_a_wait_for_a_later_one() {
        actix_rt::System::new().block_on(async {
            let queue = LocalQueue::new([]);
            let code = CountryCode::new(b'A', b'R').unwrap();
            queue.retry(Task { code, attempts: 1, ticket: 0, retry_cause: None }, Duration::from_secs(60));
            let Supply::Later(wait) = queue.take(1) else { panic!("a retry is waiting") };
            queue.retry(Task { code, attempts: 1, ticket: 1, retry_cause: None }, Duration::ZERO);
            tokio::time::timeout(Duration::from_secs(5), wait).await.expect("woken before the later retry");
            assert_eq!(tasks(queue.take(1)), ["AR:1"]);
        });
    }
}
