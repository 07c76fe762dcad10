//! A run's own list of codes as a [`WorkSource`]: codes handed out in
//! order, and a failed code queued again once its retry delay has passed
//! (no worker waits for it meanwhile). The tasks waiting for their retry
//! time are a [`Waiting`], which a fleet's queue keeps too.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::seams::{Supply, Task, WorkSource};
use crate::model::codes::CountryCode;
use crate::model::outcome::CodeOutcome;

/// Tasks waiting for their retry time, each with that time.
#[derive(Debug, Default)]
pub struct Waiting {
    tasks: Vec<(Instant, Task)>,
}

impl Waiting {
    /// `task` waits `delay` from now.
    pub fn push(&mut self, task: Task, delay: Duration) {
        self.tasks.push((Instant::now() + delay, task));
    }

    /// The tasks whose time has come, taken out (in the order they came).
    pub fn take_due(&mut self) -> Vec<Task> {
        let now = Instant::now();
        // The common case on every take: nothing due, nothing allocated.
        if !self.tasks.iter().any(|(at, _)| *at <= now) {
            return Vec::new();
        }
        let (due, later) = self.tasks.drain(..).partition(|(at, _)| *at <= now);
        self.tasks = later;
        due.into_iter().map(|(_, task)| task).collect()
    }

    /// Every task, due or not, taken out.
    pub fn take_all(&mut self) -> Vec<Task> {
        self.tasks.drain(..).map(|(_, task)| task).collect()
    }

    /// When the next task is due, if one waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.tasks.iter().map(|(at, _)| *at).min()
    }

    /// How many tasks wait.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task waits.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// Completes at `due` (if given) or at the next change `changed` sees,
/// whichever comes first: what a source's [`Supply::Later`] waits for.
pub async fn due_or_changed(due: Option<Instant>, mut changed: watch::Receiver<()>) {
    match due {
        Some(due) => {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                // An error means the source is gone: nothing to wait for.
                _ = changed.changed() => {}
            }
        }
        None => {
            let _ = changed.changed().await;
        }
    }
}

/// The codes of one run, with the ones waiting for a retry.
#[derive(Debug)]
pub struct LocalQueue {
    ready: RefCell<VecDeque<Task>>,
    /// Tasks waiting for their retry time.
    waiting: RefCell<Waiting>,
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
}

impl WorkSource for LocalQueue {
    fn take(&self, max: usize) -> Supply {
        let mut ready = self.ready.borrow_mut();
        ready.extend(self.waiting.borrow_mut().take_due());
        if !ready.is_empty() {
            let n = max.min(ready.len());
            return Supply::Tasks(ready.drain(..n).collect());
        }
        let Some(next) = self.waiting.borrow().next_due() else {
            return Supply::Finished;
        };
        Supply::Later(Box::pin(due_or_changed(Some(next), self.changed.subscribe())))
    }

    fn done(&self, _task: Task, _outcome: &CodeOutcome) {}

    fn retry(&self, task: Task, delay: Duration) {
        self.waiting.borrow_mut().push(task, delay);
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
