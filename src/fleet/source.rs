//! A batch's shared work queue as the engine's [`WorkSource`]: a node's
//! coordinator pulls as many codes as it has idle workers from the batch's
//! durable JetStream consumer, which every node shares.
//!
//! Settling a task maps onto JetStream: a final outcome is published (with
//! the de-duplication id `{run}/{code}`, after the code's validators) and
//! then the message is acknowledged; a retry is a negative acknowledgement
//! with the backoff delay, so that any node may take the next attempt, and
//! the attempt count is the message's delivery count, which the server
//! keeps across nodes; a released task is handed back at once. A message
//! whose node dies comes back after the consumer's ack wait.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::core::Fleet;
use super::messages::WorkItem;
use crate::config::BatchConfig;
use crate::engine::{Supply, Task, WorkSource};
use crate::model::codes::parse_code;
use crate::model::outcome::{CodeOutcome, Outcome};
use crate::present::results::CodeResult;
use crate::store::state::FileRecord;

/// How long one pull request waits on the server for messages.
const PULL_WAIT: Duration = Duration::from_secs(5);

/// How long to wait before pulling again after NATS failed.
const PULL_BACKOFF: Duration = Duration::from_secs(1);

/// Tries at publishing an outcome before handing the code back.
const PUBLISH_TRIES: u32 = 3;

/// Background tasks (acknowledgements, publishes) still running, so that a
/// stopping node can wait for them.
#[derive(Debug)]
pub struct Settling {
    count: watch::Sender<usize>,
}

impl Default for Settling {
    fn default() -> Self {
        Self { count: watch::Sender::new(0) }
    }
}

impl Settling {
    /// Runs `task` on the current arbiter, counted until it ends.
    pub fn spawn(self: &Rc<Self>, task: impl Future<Output = ()> + 'static) {
        self.count.send_modify(|n| *n += 1);
        let me = Rc::clone(self);
        actix_rt::spawn(async move {
            task.await;
            me.count.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// Waits until no task runs, `limit` at most; whether they all ended.
    pub async fn wait(&self, limit: Duration) -> bool {
        let mut count = self.count.subscribe();
        tokio::time::timeout(limit, count.wait_for(|n| *n == 0)).await.is_ok_and(|r| r.is_ok())
    }
}

/// The runs this node published an outcome of, for the finisher to check
/// at once: adding one wakes it.
#[derive(Debug)]
pub struct Touched {
    runs: RefCell<BTreeSet<i64>>,
    wake: watch::Sender<()>,
}

impl Default for Touched {
    fn default() -> Self {
        Self { runs: RefCell::default(), wake: watch::Sender::new(()) }
    }
}

impl Touched {
    /// Run `run` got an outcome: wakes the finisher.
    pub fn add(&self, run: i64) {
        self.runs.borrow_mut().insert(run);
        self.wake.send_replace(());
    }

    /// Run `run` is to be checked again later, without waking anyone.
    pub fn defer(&self, run: i64) {
        self.runs.borrow_mut().insert(run);
    }

    /// The runs to check, leaving none.
    pub fn take(&self) -> BTreeSet<i64> {
        std::mem::take(&mut *self.runs.borrow_mut())
    }

    /// A receiver that sees every later [`add`](Self::add).
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.wake.subscribe()
    }
}

/// A message this node holds, and the run it belongs to.
struct Held {
    message: Message,
    run: i64,
}

struct Inner {
    fleet: Fleet,
    batch: String,
    /// The batch's output directory, created again for each new run (as a
    /// run on one host does).
    output: PathBuf,
    /// The newest run this node has seen a code of.
    newest_run: Cell<i64>,
    consumer: PullConsumer,
    /// Tasks pulled and not handed out yet.
    buffer: RefCell<VecDeque<Task>>,
    /// Messages of tasks pulled and not settled, by ticket.
    held: RefCell<HashMap<u64, Held>>,
    next_ticket: Cell<u64>,
    /// Messages asked for by pull requests still open.
    outstanding: Cell<usize>,
    /// Signals a change of the buffer (a wait subscribes when it is made).
    changed: watch::Sender<()>,
    closed: Cell<bool>,
    settling: Rc<Settling>,
    /// Runs with a new outcome, to check for completion.
    touched: Rc<Touched>,
}

/// The shared queue of one batch, as one node sees it.
#[derive(Clone)]
pub struct FleetSource {
    inner: Rc<Inner>,
}

impl FleetSource {
    /// The queue of `batch` through its durable `consumer`; settling runs
    /// under `settling`, and runs that got an outcome are added to `touched`.
    pub fn new(
        fleet: Fleet,
        batch: &BatchConfig,
        consumer: PullConsumer,
        settling: Rc<Settling>,
        touched: Rc<Touched>,
    ) -> Self {
        let inner = Inner {
            fleet,
            batch: batch.name.clone(),
            output: batch.job.output.clone(),
            newest_run: Cell::new(0),
            consumer,
            buffer: RefCell::default(),
            held: RefCell::default(),
            next_ticket: Cell::new(0),
            outstanding: Cell::new(0),
            changed: watch::Sender::new(()),
            closed: Cell::new(false),
            settling,
            touched,
        };
        Self { inner: Rc::new(inner) }
    }

    /// Codes of this batch held by this node (pulled and not settled).
    pub fn held(&self) -> usize {
        self.inner.held.borrow().len()
    }

    /// Stops pulling and hands back what was pulled and not started (and
    /// whatever a pull request still open delivers later). Codes in flight
    /// are settled as usual.
    pub fn close(&self) {
        let inner = &self.inner;
        inner.closed.set(true);
        let tasks: Vec<Task> = inner.buffer.borrow_mut().drain(..).collect();
        for task in tasks {
            inner.settle(task, |message| async move { message.ack_with(AckKind::Nak(None)).await });
        }
        inner.changed.send_replace(());
    }
}

impl Inner {
    /// Asks the server for `want` more messages and buffers them as they
    /// come (a pull request stays open up to [`PULL_WAIT`]).
    async fn pull(self: Rc<Self>, want: usize) {
        let mut received = 0;
        match self.consumer.batch().max_messages(want).expires(PULL_WAIT).messages().await {
            Ok(mut messages) => {
                while let Some(item) = messages.next().await {
                    match item {
                        Ok(message) => {
                            received += 1;
                            self.outstanding.set(self.outstanding.get().saturating_sub(1));
                            self.accept(message);
                        }
                        Err(e) => {
                            tracing::warn!(batch = %self.batch, error = %e, "pulling codes from the fleet failed");
                            tokio::time::sleep(PULL_BACKOFF).await;
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(batch = %self.batch, error = %e, "cannot pull codes from the fleet");
                tokio::time::sleep(PULL_BACKOFF).await;
            }
        }
        self.outstanding.set(self.outstanding.get().saturating_sub(want - received.min(want)));
        self.changed.send_replace(());
    }

    /// Takes a delivered message as a task (or throws away one that is not
    /// a work item of this batch).
    fn accept(&self, message: Message) {
        if self.closed.get() {
            self.settling.spawn(async move {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            });
            return;
        }
        let item: Option<WorkItem> = serde_json::from_slice(&message.payload).ok();
        let Some((item, code)) = item.and_then(|item| parse_code(&item.code).map(|code| (item, code))) else {
            tracing::warn!(batch = %self.batch, subject = %message.subject, "not a work item; dropping it");
            self.settling.spawn(async move {
                let _ = message.ack_with(AckKind::Term).await;
            });
            return;
        };
        if item.run > self.newest_run.get() {
            self.newest_run.set(item.run);
            if let Err(e) = std::fs::create_dir_all(&self.output) {
                tracing::warn!(batch = %self.batch, path = %self.output.display(), error = %e, "cannot create the output directory");
            }
        }
        let delivered = message.info().map_or(1, |info| info.delivered.max(1));
        let attempts = u32::try_from(delivered - 1).unwrap_or(u32::MAX);
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        self.held.borrow_mut().insert(ticket, Held { message, run: item.run });
        self.buffer.borrow_mut().push_back(Task { code, attempts, ticket });
        self.changed.send_replace(());
    }

    /// Settles `task`'s message with `act`, in the background.
    fn settle<F, Fut>(&self, task: Task, act: F)
    where
        F: FnOnce(Message) -> Fut + 'static,
        Fut: Future<Output = Result<(), async_nats::Error>>,
    {
        let Some(held) = self.held.borrow_mut().remove(&task.ticket) else { return };
        let batch = self.batch.clone();
        self.settling.spawn(async move {
            if let Err(e) = act(held.message).await {
                tracing::warn!(%batch, cc = %task.code, error = %e, "cannot acknowledge a code");
            }
        });
    }
}

impl WorkSource for FleetSource {
    fn take(&self, max: usize) -> Supply {
        let inner = &self.inner;
        if inner.closed.get() {
            return Supply::Finished;
        }
        let mut buffer = inner.buffer.borrow_mut();
        if !buffer.is_empty() {
            let n = max.min(buffer.len());
            return Supply::Tasks(buffer.drain(..n).collect());
        }
        let mut changed = inner.changed.subscribe();
        let want = max.saturating_sub(inner.outstanding.get());
        if want > 0 {
            inner.outstanding.set(inner.outstanding.get() + want);
            actix_rt::spawn(Rc::clone(inner).pull(want));
        }
        Supply::Later(Box::pin(async move {
            let _ = changed.changed().await;
        }))
    }

    fn done(&self, task: Task, outcome: &CodeOutcome) {
        let inner = &self.inner;
        let Some(held) = inner.held.borrow_mut().remove(&task.ticket) else { return };
        let fleet = inner.fleet.clone();
        let mut result = CodeResult::of(outcome);
        result.node = Some(fleet.node.clone());
        let validators = match &outcome.outcome {
            Outcome::Downloaded(saved) => Some(FileRecord {
                status: "downloaded".to_owned(),
                path: Some(saved.path.clone()),
                size: Some(saved.bytes),
                sha256: saved.sha256.clone(),
                etag: saved.etag.clone(),
                last_modified: saved.last_modified.clone(),
                url: saved.origin.clone(),
            }),
            _ => None,
        };
        let (batch, touched) = (inner.batch.clone(), Rc::clone(&inner.touched));
        inner.settling.spawn(async move {
            if let Some(record) = validators {
                fleet.save_validators(&batch, task.code, &record).await;
            }
            let mut published = fleet.publish_outcome(held.run, result.clone()).await;
            for _ in 1..PUBLISH_TRIES {
                if published.is_ok() {
                    break;
                }
                tokio::time::sleep(PULL_BACKOFF).await;
                published = fleet.publish_outcome(held.run, result.clone()).await;
            }
            let acked = match published {
                Ok(()) => {
                    touched.add(held.run);
                    held.message.ack().await
                }
                Err(e) => {
                    tracing::warn!(%batch, cc = %task.code, error = %e, "outcome not published; handing the code back");
                    held.message.ack_with(AckKind::Nak(None)).await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(%batch, cc = %task.code, error = %e, "cannot acknowledge a code");
            }
        });
    }

    fn retry(&self, task: Task, delay: Duration) {
        self.inner.settle(task, move |message| async move { message.ack_with(AckKind::Nak(Some(delay))).await });
    }

    fn release(&self, task: Task) {
        self.inner.settle(task, |message| async move { message.ack_with(AckKind::Nak(None)).await });
    }

    fn remaining(&self) -> usize {
        self.inner.buffer.borrow().len()
    }
}
