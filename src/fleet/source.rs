//! A batch's shared work queue as the engine's [`WorkSource`]: a node's
//! lane takes work items (parcels of a few codes of one run) from the
//! batch's durable JetStream consumer, which every node shares, through one
//! long-lived pull subscription.
//!
//! Nothing that comes off the queue is trusted ([`super::messages`]): the
//! run is the subject's, and must be the batch's running run (or an ended
//! one: its codes are dropped), every code must be one of the run's, the
//! payload is size-capped. A message that fails is terminated and counted,
//! and blocks nothing.
//!
//! Settling maps onto JetStream per work item: each code's final outcome is
//! recorded (the first of its code wins: [`Fleet::record_outcomes`]), and
//! once every code of the item is recorded or given back, the message is
//! acknowledged. A code given back (not started when the lane closed, or
//! handed to another node) is queued again in a work item of its own
//! before the message is acknowledged; when every code of an item is given
//! back, the message is handed back as it is. A retry waits on this node,
//! as in a run on one host; the attempts a code made on other nodes are the
//! message's delivery count, which the server keeps, plus those its item
//! says were made before it was queued. While the lane holds a work item,
//! it tells the server every third of the ack wait that it is still at it,
//! so the ack wait can be short and a dead node's codes come back soon,
//! however long a download takes.
//!
//! A code that fails here with an error of this node's own (its disk full,
//! read-only or gone) is handed back for another node rather than ended
//! (when another node is live), with the codes not started yet, and the
//! lane stops prefetching and takes one code every few seconds, the node
//! not ready, until a write to its output directory succeeds again; once
//! the code's attempts are spent (or when no other node is live) it ends
//! with the error, as it would on one host.
//!
//! The queue itself is looked after too: a consumer or stream that
//! disappears (NATS lost its state) is created again, the lane's problem
//! shown in the node's health meanwhile.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, Stream as Pulled};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::core::{Fleet, nats_error};
use super::health::Health;
use super::messages::{DropReason, FleetRun, Load, MAX_BATCH, parcel_size, read_work};
use super::names::parse_run_token;
use crate::config::BatchConfig;
use crate::engine::{Supply, Task, Waiting, WorkSource, due_or_changed};
use crate::job::ledger::{FleetFailure, RunKey};
use crate::model::codes::{CodeSet, CountryCode};
use crate::model::outcome::{CodeOutcome, DownloadError, Outcome};
use crate::model::run::CodeResult;
use crate::store::state::{FileRecord, KnownFiles};

/// How long to wait before trying the queue again after NATS failed.
const BACKOFF: Duration = Duration::from_secs(1);

/// How long one pull request of the subscription stays open on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// How long a lane trusts what it read of a run before reading it again.
const RUN_FRESH: Duration = Duration::from_secs(2);

/// Tries at recording outcomes before handing their codes back.
const RECORD_TRIES: u32 = 3;

/// How long settled outcomes wait for others to share their message.
const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// How many more times than its attempts a code is handed back for an error
/// of a node's own (its disk), before it ends with that error.
const HANDBACKS: u32 = 3;

/// How often a lane whose output directory failed tries a write.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How much a lane whose output directory failed writes to see whether it
/// works again: the size of a large flag.
const PROBE_BYTES: usize = 64 * 1024;

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

/// The runs this node settled a work item of, for the finisher to check at
/// once: adding one wakes it.
#[derive(Debug)]
pub struct Touched {
    runs: RefCell<HashSet<RunKey>>,
    wake: watch::Sender<()>,
}

impl Default for Touched {
    fn default() -> Self {
        Self { runs: RefCell::default(), wake: watch::Sender::new(()) }
    }
}

impl Touched {
    /// A work item of run `run` was settled here: wakes the finisher.
    pub fn add(&self, run: RunKey) {
        self.runs.borrow_mut().insert(run);
        self.wake.send_replace(());
    }

    /// Run `run` is to be checked again later, without waking anyone.
    pub fn defer(&self, run: RunKey) {
        self.runs.borrow_mut().insert(run);
    }

    /// The runs to check, leaving none.
    pub fn take(&self) -> HashSet<RunKey> {
        std::mem::take(&mut *self.runs.borrow_mut())
    }

    /// A receiver that sees every later [`add`](Self::add).
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.wake.subscribe()
    }
}

/// Outcomes of one run settled here and not published yet, and the work
/// items (by ticket) their codes came in.
struct Pending {
    run: Rc<RunView>,
    results: Vec<CodeResult>,
    tickets: Vec<u64>,
    validators: Vec<(CountryCode, FileRecord)>,
}

impl Pending {
    fn new(run: Rc<RunView>) -> Self {
        Self { run, results: Vec::new(), tickets: Vec::new(), validators: Vec::new() }
    }

    fn add(&mut self, result: CodeResult, ticket: u64, validators: Option<(CountryCode, FileRecord)>) {
        self.results.push(result);
        self.tickets.push(ticket);
        self.validators.extend(validators);
    }
}

/// What a lane knows of a run it got codes of.
#[derive(Debug)]
struct RunView {
    key: RunKey,
    token: String,
    codes: CodeSet,
    running: bool,
    read_at: Instant,
}

/// A work item this node holds, its run, and where its codes are.
struct Held {
    message: Message,
    run: Rc<RunView>,
    /// How many codes it has.
    size: usize,
    /// Its codes neither recorded nor given back yet.
    open: usize,
    /// Its codes given back, each with the attempts made at it.
    returned: Vec<(CountryCode, u32)>,
}

/// What the node shares with each of its lanes.
#[derive(Clone)]
pub struct Shared {
    /// Settling tasks, waited for at the end.
    pub settling: Rc<Settling>,
    /// Runs to check for completion.
    pub touched: Rc<Touched>,
    /// The node's health.
    pub health: Rc<Health>,
    /// The live nodes of the fleet other than this one, as the heartbeats
    /// count them (0 only once two counts in a row found none; 1 until
    /// then: others may be).
    pub others: Rc<Cell<u32>>,
}

struct Inner {
    fleet: Fleet,
    batch: Rc<BatchConfig>,
    /// What the fleet knows of the batch's files (kept by the lane's watch).
    known: std::sync::Arc<std::sync::RwLock<KnownFiles>>,
    consumer_config: pull::Config,
    runs: RefCell<HashMap<String, Rc<RunView>>>,
    /// Tasks pulled and not handed out yet.
    buffer: RefCell<VecDeque<Task>>,
    /// Outcomes settled and not published yet, by run.
    outbox: RefCell<HashMap<String, Pending>>,
    /// A flush of the outbox is on its way.
    flush_due: Cell<bool>,
    /// Tasks handed to the engine and not settled by it yet.
    started: Cell<usize>,
    /// Work items pulled and not settled, by ticket (each task carries its
    /// item's ticket).
    held: RefCell<HashMap<u64, Held>>,
    /// Tasks waiting for their retry time.
    waiting: RefCell<Waiting>,
    next_ticket: Cell<u64>,
    /// How many tasks the coordinator asked for and did not get.
    demand: Cell<usize>,
    /// Wakes the pump (more demand, or the lane closed).
    pump: watch::Sender<()>,
    /// Makes the pump subscribe again (the consumer was found missing).
    reset: watch::Sender<()>,
    /// Signals a change of the buffer (a wait subscribes when it is made).
    changed: watch::Sender<()>,
    closed: Cell<bool>,
    /// The output directory failed: one code at a time until a write works.
    degraded: Cell<bool>,
    /// Attempts a code gets (the batch's retries, plus one).
    attempts: u32,
    shared: Shared,
}

/// The shared queue of one batch, as one node sees it.
#[derive(Clone)]
pub struct FleetSource {
    inner: Rc<Inner>,
}

impl FleetSource {
    /// The queue of `batch`, taken through its durable consumer (created
    /// with the fleet's ack wait if missing); `known` is what the fleet
    /// knows of the batch's files. Starts the pump and the signs of life.
    pub fn open(
        fleet: Fleet,
        batch: Rc<BatchConfig>,
        known: std::sync::Arc<std::sync::RwLock<KnownFiles>>,
        shared: Shared,
    ) -> (Self, Vec<actix_rt::task::JoinHandle<()>>) {
        let names = &fleet.names;
        let consumer_config = pull::Config {
            durable_name: Some(names.consumer(&batch.name)),
            filter_subject: names.batch_filter(&batch.name),
            ack_policy: AckPolicy::Explicit,
            ack_wait: fleet.ack_wait(),
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        let inner = Rc::new(Inner {
            attempts: batch.job.retry.retries.saturating_add(1),
            fleet,
            batch,
            known,
            consumer_config,
            runs: RefCell::default(),
            buffer: RefCell::default(),
            outbox: RefCell::default(),
            flush_due: Cell::new(false),
            started: Cell::new(0),
            held: RefCell::default(),
            waiting: RefCell::default(),
            next_ticket: Cell::new(0),
            demand: Cell::new(0),
            pump: watch::Sender::new(()),
            reset: watch::Sender::new(()),
            changed: watch::Sender::new(()),
            closed: Cell::new(false),
            degraded: Cell::new(false),
            shared,
        });
        let tasks =
            vec![actix_rt::spawn(Rc::clone(&inner).pump_loop()), actix_rt::spawn(Rc::clone(&inner).signs_of_life())];
        (Self { inner }, tasks)
    }

    /// Whether this node holds a work item of run `key`: the run is not
    /// complete, and its finisher hears of it when the item is settled.
    pub fn holds(&self, key: &RunKey) -> bool {
        self.inner.held.borrow().values().any(|h| h.run.key == *key)
    }

    /// How much of the batch's work this node holds.
    pub fn load(&self) -> Load {
        let held = self.inner.held.borrow();
        let holding = held.values().map(|h| h.size as u64).sum();
        Load { holding, open: held.values().map(|h| h.open as u64).sum() }
    }

    /// The batch's consumer is gone (NATS lost its state): the lane
    /// subscribes again, creating what is missing.
    pub fn reset(&self) {
        self.inner.reset.send_replace(());
    }

    /// Stops pulling and hands back what was pulled and not started (and
    /// what the subscription still had). Codes in flight are settled as
    /// usual.
    pub fn close(&self) {
        let inner = &self.inner;
        inner.closed.set(true);
        inner.give_back_unstarted();
        inner.flush();
        inner.pump.send_replace(());
        inner.changed.send_replace(());
    }
}

impl Inner {
    fn part(&self) -> String {
        format!("batch {}", self.batch.name)
    }

    /// Takes messages off the subscription while the coordinator wants
    /// them, (re)creating the consumer and the subscription as needed.
    async fn pump_loop(self: Rc<Self>) {
        let mut wake = self.pump.subscribe();
        let mut reset = self.reset.subscribe();
        let mut pulled: Option<Pulled> = None;
        while !self.closed.get() {
            if reset.has_changed().unwrap_or(false) {
                reset.mark_unchanged();
                pulled = None;
            }
            if self.demand.get() <= self.buffer.borrow().len() {
                let _ = wake.changed().await;
                continue;
            }
            if self.degraded.get() {
                // No prefetching for a node whose disk fails: what it held
                // goes back, and it tries one code now and then.
                if let Some(messages) = pulled.take() {
                    self.hand_back_unread(messages).await;
                }
                self.try_one().await;
                continue;
            }
            let messages = match &mut pulled {
                Some(messages) => messages,
                None => match self.subscribe().await {
                    Some(messages) => pulled.insert(messages),
                    None => {
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                next = messages.next() => match next {
                    Some(Ok(message)) => {
                        self.shared.health.clear(&self.part());
                        self.accept(message).await;
                    }
                    Some(Err(e)) => {
                        let e = nats_error(format!("cannot take the codes of batch {}", self.batch.name), e);
                        tracing::warn!(batch = %self.batch.name, error = %e, "pulling codes from the fleet failed");
                        if let crate::job::LedgerError::Fleet { kind: FleetFailure::Missing, .. } = e {
                            self.shared.health.set(&self.part(), e.to_string());
                            pulled = None;
                        }
                        tokio::time::sleep(BACKOFF).await;
                    }
                    None => pulled = None,
                },
                _ = wake.changed() => {}
                _ = reset.changed() => pulled = None,
            }
        }
        if let Some(messages) = pulled {
            self.hand_back_unread(messages).await;
        }
    }

    /// Takes one code, if one is queued, after a pause: what a lane whose
    /// output directory failed does, one code at a time.
    async fn try_one(&self) {
        tokio::time::sleep(PROBE_EVERY).await;
        if !self.degraded.get() || self.closed.get() || !self.held.borrow().is_empty() {
            return;
        }
        let Ok(consumer) = self.consumer().await else { return };
        let fetched = consumer.fetch().max_messages(1).expires(PROBE_EVERY).messages().await;
        if let Ok(mut messages) = fetched
            && let Some(Ok(message)) = messages.next().await
        {
            self.accept(message).await;
        }
    }

    /// The batch's consumer and a subscription to it, or `None` (the reason
    /// in the node's health) when NATS cannot give them now; creates what
    /// is missing.
    async fn subscribe(&self) -> Option<Pulled> {
        let consumer = match self.consumer().await {
            Ok(consumer) => consumer,
            Err(e) => {
                self.shared.health.set(&self.part(), e.to_string());
                if e.is_transient()
                    && let Err(heal) = self.fleet.heal().await
                {
                    tracing::debug!(error = %heal, "cannot create the fleet's streams yet");
                }
                return None;
            }
        };
        // Work items enough for every worker, as the batch's runs parcel them.
        let parcel = parcel_size(self.batch.job.codes.len());
        let batch = self.batch.job.pool_size.div_ceil(parcel).clamp(1, 1000);
        match consumer.stream().max_messages_per_batch(batch).expires(PULL_EXPIRES).messages().await {
            Ok(messages) => {
                self.shared.health.clear(&self.part());
                Some(messages)
            }
            Err(e) => {
                let e = nats_error(format!("cannot take the codes of batch {}", self.batch.name), e);
                self.shared.health.set(&self.part(), e.to_string());
                None
            }
        }
    }

    /// The batch's consumer, created (or its ack wait set) as the
    /// configuration says: every node runs the same one, so a difference
    /// means a node with another configuration, which is said.
    async fn consumer(&self) -> Result<PullConsumer, crate::job::LedgerError> {
        let name = self.fleet.names.consumer(&self.batch.name);
        let what = || format!("cannot join the queue of batch {}", self.batch.name);
        let existing = self.fleet.work.get_consumer::<pull::Config>(&name).await;
        if let Ok(mut consumer) = existing {
            let theirs = consumer.info().await.map(|info| info.config.clone()).map_err(|e| nats_error(what(), e))?;
            let ours = &self.consumer_config;
            if theirs.ack_wait == ours.ack_wait && theirs.filter_subject == ours.filter_subject {
                return Ok(consumer);
            }
            if theirs.ack_wait != ours.ack_wait {
                tracing::warn!(
                    batch = %self.batch.name, theirs_ms = theirs.ack_wait.as_millis() as u64,
                    ours_ms = ours.ack_wait.as_millis() as u64,
                    "the queue's ack wait is not this node's fleet.ack_wait: every node must run the same configuration"
                );
            }
            // Another filter: an older flagsd's consumer (one code per
            // message), updated in place.
        }
        self.fleet.work.create_consumer(self.consumer_config.clone()).await.map_err(|e| nats_error(what(), e))
    }

    /// Hands back what the subscription delivered and nobody read.
    async fn hand_back_unread(&self, mut messages: Pulled) {
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(50), messages.next()).await {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
    }

    /// What this lane knows of run `token` (read again when stale), `None`
    /// when this fleet has no such run; an error when NATS cannot say.
    async fn run_view(
        &self,
        token: &str,
        id: i64,
        nonce: &str,
    ) -> Result<Option<Rc<RunView>>, crate::job::LedgerError> {
        if let Some(view) = self.runs.borrow().get(token).filter(|v| v.read_at.elapsed() < RUN_FRESH) {
            return Ok(Some(Rc::clone(view)));
        }
        let (run, running) = match self.fleet.last_run(&self.batch.name).await? {
            Some((last, _)) if last.token() == token => {
                let running = last.record.is_running();
                (Some(last), running)
            }
            // Not the batch's newest run: it ended, or it is not this fleet's.
            _ => {
                let copy = self.fleet.run_record(id).await?;
                (copy.filter(|r| r.nonce == nonce && r.record.batch == self.batch.name), false)
            }
        };
        let view = run.map(|run: FleetRun| {
            Rc::new(RunView {
                key: run.key(),
                token: token.to_owned(),
                codes: run.codes,
                running,
                read_at: Instant::now(),
            })
        });
        let mut runs = self.runs.borrow_mut();
        if let Some(view) = view.as_ref().filter(|v| v.running && !runs.contains_key(token)) {
            // A new run: its output directory is made again, as a run on
            // one host makes it (someone may have removed it meanwhile).
            if let Err(e) = std::fs::create_dir_all(&self.batch.job.output) {
                tracing::warn!(batch = %self.batch.name, run = view.key.id, error = %e, "cannot create the output directory");
            }
        }
        if runs.len() > 64 {
            runs.retain(|_, v| v.running);
        }
        if let Some(view) = &view {
            runs.insert(token.to_owned(), Rc::clone(view));
        }
        Ok(view)
    }

    /// Takes a delivered message as a task, or drops it (terminated, and
    /// counted) when it is not a code of this batch's running run.
    async fn accept(&self, message: Message) {
        let subject = message.subject.to_string();
        let drop = |reason: DropReason, why: &str, message: Message| {
            self.fleet.dropped.count(reason, &subject, why);
            self.shared.settling.spawn(async move {
                let _ = message.ack_with(AckKind::Term).await;
            });
        };
        if self.closed.get() {
            self.shared.settling.spawn(async move {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            });
            return;
        }
        let Some((token, size)) = self.fleet.names.parse_work_subject(&self.batch.name, &subject) else {
            return drop(DropReason::Foreign, "not a subject of this batch's runs", message);
        };
        let Some((id, nonce)) = parse_run_token(token) else {
            return drop(DropReason::Malformed, "not a run's subject", message);
        };
        let view = match self.run_view(token, id, nonce).await {
            Ok(Some(view)) => view,
            Ok(None) => return drop(DropReason::Foreign, "a run this fleet does not have", message),
            Err(e) => {
                tracing::warn!(batch = %self.batch.name, error = %e, "cannot read a run; its code waits");
                self.shared.settling.spawn(async move {
                    let _ = message.ack_with(AckKind::Nak(Some(BACKOFF))).await;
                });
                return;
            }
        };
        if !view.running {
            return drop(DropReason::Ended, "a code of a run that has ended", message);
        }
        let parcel = match read_work(&message.payload, &view.codes, size) {
            Ok(parcel) => parcel,
            Err((reason, why)) => return drop(reason, why, message),
        };
        let delivered = message.info().map_or(1, |info| info.delivered.max(1));
        let attempts = u32::try_from(delivered - 1).unwrap_or(u32::MAX).saturating_add(parcel.attempts);
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        let size = parcel.codes.len();
        self.held.borrow_mut().insert(ticket, Held { message, run: view, size, open: size, returned: Vec::new() });
        self.buffer.borrow_mut().extend(parcel.codes.into_iter().map(|code| Task {
            code,
            attempts,
            ticket,
            retry_cause: None,
        }));
        self.changed.send_replace(());
    }

    /// The engine settled a task it had: one fewer in flight, and the
    /// engine may take another (a lane whose disk fails takes one at a time).
    fn settled_by_engine(&self) {
        self.started.set(self.started.get().saturating_sub(1));
        self.changed.send_replace(());
    }

    /// Gives back every task not started (pulled, or waiting for a retry),
    /// for another node to take.
    fn give_back_unstarted(&self) {
        let mut tasks: Vec<Task> = self.buffer.borrow_mut().drain(..).collect();
        tasks.extend(self.waiting.borrow_mut().take_all());
        for task in tasks {
            self.give_back(&task);
        }
    }

    /// `task` goes back to the fleet: its work item is settled without it.
    fn give_back(&self, task: &Task) {
        if let Some(held) = self.held.borrow_mut().get_mut(&task.ticket) {
            held.returned.push((task.code, task.attempts));
        }
        self.close_code(task.ticket);
    }

    /// One more code of work item `ticket` is recorded or given back: once
    /// none is left, the item is acknowledged (after its codes given back
    /// are queued again), or handed back whole when every code was given
    /// back.
    fn close_code(&self, ticket: u64) {
        let done = {
            let mut held = self.held.borrow_mut();
            let Some(item) = held.get_mut(&ticket) else { return };
            item.open = item.open.saturating_sub(1);
            if item.open > 0 {
                return;
            }
            held.remove(&ticket)
        };
        self.changed.send_replace(());
        let Some(Held { message, run, size, returned, .. }) = done else { return };
        let (fleet, batch, touched) = (self.fleet.clone(), self.batch.name.clone(), Rc::clone(&self.shared.touched));
        self.shared.settling.spawn(async move {
            let settled = if returned.is_empty() {
                // Confirmed before the finisher looks: a run none of whose
                // codes is queued any more has all its outcomes stored.
                message.double_ack().await
            } else if returned.len() == size {
                message.ack_with(AckKind::Nak(None)).await
            } else {
                match fleet.queue_again(&batch, &run.token, &returned).await {
                    Ok(()) => message.double_ack().await,
                    Err(e) => {
                        tracing::warn!(%batch, codes = returned.len(), error = %e, "cannot queue codes again; handing back their work item");
                        message.ack_with(AckKind::Nak(None)).await
                    }
                }
            };
            match settled {
                // The run may be complete: its finisher looks.
                Ok(()) => touched.add(run.key.clone()),
                Err(e) => tracing::warn!(%batch, error = %e, "cannot acknowledge a work item"),
            }
        });
    }

    /// Work item `ticket` goes back to the fleet whole, at once (its
    /// outcomes could not be stored): the codes of it still here are dropped.
    fn abandon(&self, ticket: u64) {
        let Some(held) = self.held.borrow_mut().remove(&ticket) else { return };
        self.changed.send_replace(());
        let batch = self.batch.name.clone();
        self.shared.settling.spawn(async move {
            if let Err(e) = held.message.ack_with(AckKind::Nak(None)).await {
                tracing::warn!(%batch, error = %e, "cannot hand back a work item");
            }
        });
    }

    /// How often a code in progress says so: every third of the ack wait.
    fn progress_every(&self) -> Duration {
        (self.fleet.ack_wait() / 3).max(Duration::from_millis(300))
    }

    /// Tells the server, every third of the ack wait, that the work items
    /// this lane holds are still being worked on.
    async fn signs_of_life(self: Rc<Self>) {
        let every = self.progress_every();
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        while !self.closed.get() || !self.held.borrow().is_empty() {
            ticks.tick().await;
            let held: Vec<Message> = self.held.borrow().values().map(|h| h.message.clone()).collect();
            for message in held {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(batch = %self.batch.name, error = %e, "cannot say a code is in progress");
                }
            }
        }
    }

    /// The output directory failed: one code at a time, the node not
    /// ready, until a write to it succeeds again.
    fn degrade(self: &Rc<Self>, error: &str) {
        self.shared.health.set(&format!("disk {}", self.batch.name), error);
        // What this node has not started goes to the others at once.
        self.give_back_unstarted();
        if self.degraded.replace(true) {
            return;
        }
        let me = Rc::clone(self);
        actix_rt::spawn(async move {
            while me.degraded.get() && !me.closed.get() {
                tokio::time::sleep(PROBE_EVERY).await;
                let dir = me.batch.job.output.clone();
                // A write of some size: a full file system still takes an empty file.
                let writable = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir).and_then(|()| tempfile::tempfile_in(&dir)).and_then(|mut file| {
                        std::io::Write::write_all(&mut file, &[0; PROBE_BYTES]).and_then(|()| file.sync_data())
                    })
                });
                if let Ok(Ok(())) = writable.await {
                    me.recovered();
                }
            }
        });
    }

    /// A write to the output directory succeeded.
    fn recovered(&self) {
        if self.degraded.replace(false) {
            self.shared.health.clear(&format!("disk {}", self.batch.name));
            self.changed.send_replace(());
        }
    }

    /// Publishes every pending batch of outcomes, in the background; then
    /// counts their codes settled in their work items (a work item of which
    /// an outcome could not be stored is handed back whole instead). The
    /// lane keeps saying the items are in progress meanwhile, however slow
    /// NATS is.
    fn flush(self: &Rc<Self>) {
        self.flush_due.set(false);
        let batches: Vec<Pending> = self.outbox.borrow_mut().drain().map(|(_, pending)| pending).collect();
        for pending in batches {
            let me = Rc::clone(self);
            self.shared.settling.spawn(async move {
                let Pending { run, results, tickets, validators } = pending;
                let (fleet, batch) = (&me.fleet, &me.batch.name);
                for (code, record) in validators {
                    fleet.save_validators(batch, code, &record).await;
                }
                let mut recorded = fleet.record_outcomes(&run.token, &results).await;
                for _ in 1..RECORD_TRIES {
                    if recorded.is_ok() {
                        break;
                    }
                    tokio::time::sleep(BACKOFF).await;
                    recorded = fleet.record_outcomes(&run.token, &results).await;
                }
                match recorded {
                    Ok(()) => {
                        for ticket in tickets {
                            me.close_code(ticket);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%batch, codes = results.len(), error = %e, "outcomes not recorded; handing the codes back");
                        for ticket in tickets {
                            me.abandon(ticket);
                        }
                    }
                }
            });
        }
    }

    /// What to share of a saved file, unless the fleet has it already.
    fn validators(&self, outcome: &CodeOutcome) -> Option<FileRecord> {
        let Outcome::Downloaded(saved) = &outcome.outcome else { return None };
        let record = FileRecord {
            status: "downloaded".to_owned(),
            path: Some(saved.path.clone()),
            size: Some(saved.bytes),
            sha256: saved.sha256.clone(),
            etag: saved.etag.clone(),
            last_modified: saved.last_modified.clone(),
            url: saved.origin.clone(),
        };
        let known = self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (known.get(&outcome.code) != Some(&record)).then_some(record)
    }
}

impl WorkSource for FleetSource {
    fn take(&self, mut max: usize) -> Supply {
        let inner = &self.inner;
        if inner.closed.get() {
            return Supply::Finished;
        }
        let mut buffer = inner.buffer.borrow_mut();
        buffer.extend(inner.waiting.borrow_mut().take_due());
        // Tasks of a work item handed back whole are another node's now.
        let held = inner.held.borrow();
        buffer.retain(|task| held.contains_key(&task.ticket));
        if inner.degraded.get() {
            // One code at a time until a write works again.
            max = if inner.started.get() == 0 { max.min(1) } else { 0 };
        }
        drop(held);
        let n = max.min(buffer.len());
        if n > 0 {
            inner.demand.set(inner.demand.get().saturating_sub(n));
            inner.started.set(inner.started.get() + n);
            return Supply::Tasks(buffer.drain(..n).collect());
        }
        let changed = inner.changed.subscribe();
        if inner.demand.get() != max {
            inner.demand.set(max);
            inner.pump.send_replace(());
        }
        Supply::Later(Box::pin(due_or_changed(inner.waiting.borrow().next_due(), changed)))
    }

    fn done(&self, task: Task, outcome: &CodeOutcome) {
        let inner = &self.inner;
        inner.settled_by_engine();
        let Some(run) = inner.held.borrow().get(&task.ticket).map(|held| Rc::clone(&held.run)) else { return };
        if matches!(outcome.outcome, Outcome::Downloaded(_)) {
            inner.recovered();
        }
        let mut result = CodeResult::of(outcome);
        result.node = Some(inner.fleet.node.clone());
        let validators = inner.validators(outcome).map(|record| (task.code, record));
        let full = {
            let mut outbox = inner.outbox.borrow_mut();
            let pending = outbox.entry(run.token.clone()).or_insert_with(|| Pending::new(Rc::clone(&run)));
            pending.add(result, task.ticket, validators);
            pending.results.len() >= MAX_BATCH
        };
        // Flush at once when the batch is full or nothing else is in
        // flight here; else soon, with what settles meanwhile.
        if full || inner.started.get() == 0 {
            inner.flush();
        } else if !inner.flush_due.replace(true) {
            // Counted with the settling tasks, so a stopping node waits for it.
            let me = Rc::clone(inner);
            inner.shared.settling.spawn(async move {
                tokio::time::sleep(FLUSH_AFTER).await;
                me.flush();
            });
        }
    }

    fn retry(&self, task: Task, delay: Duration) {
        let inner = &self.inner;
        inner.settled_by_engine();
        inner.waiting.borrow_mut().push(task, delay);
    }

    fn release(&self, task: Task) {
        self.inner.settled_by_engine();
        self.inner.give_back(&task);
    }

    fn remaining(&self) -> usize {
        self.inner.buffer.borrow().len() + self.inner.waiting.borrow().len()
    }

    fn hand_back(&self, task: Task, outcome: &Outcome) -> Result<(), Task> {
        let Outcome::Failed(DownloadError::Io { detail }) = outcome else { return Err(task) };
        // Alone in the fleet, there is nobody to hand it to: it ends here,
        // as on one host.
        if self.inner.shared.others.get() == 0 || task.attempts >= self.inner.attempts.saturating_add(HANDBACKS) {
            return Err(task);
        }
        self.inner.degrade(detail);
        tracing::warn!(batch = %self.inner.batch.name, cc = %task.code, error = %detail, "a local disk error; handing the code to another node");
        self.inner.settled_by_engine();
        self.inner.give_back(&task);
        Ok(())
    }
}
