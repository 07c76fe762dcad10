//! A node of the fleet: one lane per batch pulling that batch's codes, the
//! batch's schedule, a heartbeat, and the finisher that closes runs.
//!
//! - **Lanes.** Each batch has a coordinator with the batch's pool (its
//!   `max_req` caps its concurrent requests on this node) whose tasks come
//!   from the batch's shared queue ([`FleetSource`]): work flows to
//!   whichever node has idle workers.
//! - **Schedules.** Ticks are aligned to multiples of `every` since the UNIX
//!   epoch, so that nodes agree on them; the node that creates a tick's key
//!   in the ticks bucket starts the run, the others let it be. A batch whose
//!   last run is older than `every` when a node starts runs at once, for the
//!   current tick (claimed like any other, so only once).
//! - **Heartbeat.** Every [`BEAT_EVERY`] the node renews its key in the
//!   nodes bucket (which forgets a key after [`NODE_LEASE`](super::core::NODE_LEASE)); the live nodes
//!   share each server's request rate.
//! - **Finisher.** A run is finished by whichever node first sees every code
//!   accounted for: the runs this node published outcomes of are checked at
//!   once, and every batch's running run now and then, so the run of a dead
//!   node ends too.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix_rt::task::JoinHandle;
use async_nats::jetstream::consumer::{AckPolicy, pull};

use super::core::Fleet;
use super::messages::RunEntry;
use super::runs::StartError;
use super::source::{FleetSource, Settling, Touched};
use crate::config::{BatchConfig, Settings};
use crate::engine::{OutcomeSink, RunControls};
use crate::job::{JobContext, PreparedJob};

/// How often a node renews its heartbeat (and reads the fleet's gauges).
pub const BEAT_EVERY: Duration = Duration::from_secs(2);

/// How long the finisher gathers outcomes after the first one it hears of
/// before it checks their runs.
pub(super) const FINISH_COALESCE: Duration = Duration::from_millis(20);

/// How often the finisher checks every batch's running run.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(3);

/// How much longer than an attempt's deadline a node may hold a code
/// before the fleet hands it to another node.
const ACK_GRACE: Duration = Duration::from_secs(5);

/// How long a stopping node waits for its acknowledgements and outcomes to
/// reach NATS.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Makes the sink of a batch's outcomes.
pub type SinkFactory = Box<dyn Fn(&BatchConfig) -> Box<dyn OutcomeSink>>;

/// A scheduled batch and its schedule's task.
pub(super) type Schedule = (Rc<BatchConfig>, JoinHandle<()>);

/// What the daemon wants to hear of the node's work.
pub struct Hooks {
    /// The sink of a lane's outcomes (logs, metrics).
    pub sink: SinkFactory,
    /// This node started a run.
    pub run_started: Box<dyn Fn(&RunEntry)>,
    /// This node wrote a run's final record.
    pub run_ended: Box<dyn Fn(&RunEntry)>,
}

/// What a node measures of the fleet, for its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Nodes with a live heartbeat.
    pub live_nodes: u64,
    /// Codes queued and not yet handed out, by batch.
    pub queued: BTreeMap<String, u64>,
    /// Codes handed out and not yet settled, by batch (the whole fleet).
    pub in_flight: BTreeMap<String, u64>,
}

/// A batch's lane on this node.
pub(super) struct Lane {
    pub(super) batch: Rc<BatchConfig>,
    pub(super) source: FleetSource,
    pub(super) controls: RunControls,
    pub(super) run: JoinHandle<()>,
    pub(super) consumer: async_nats::jetstream::consumer::PullConsumer,
    pub(super) watcher: JoinHandle<()>,
    /// The job as prepared (its `DEMO` server, if any, lives as long).
    _prepared: Rc<PreparedJob>,
}

/// A node of the fleet; see the module documentation.
pub struct Node {
    pub(super) fleet: Fleet,
    pub(super) hooks: Hooks,
    pub(super) context: JobContext,
    pub(super) lanes: RefCell<BTreeMap<String, Lane>>,
    pub(super) schedules: RefCell<BTreeMap<String, Schedule>>,
    /// When each scheduled batch runs next.
    pub(super) next_runs: RefCell<BTreeMap<String, SystemTime>>,
    pub(super) loops: RefCell<Vec<JoinHandle<()>>>,
    pub(super) settling: Rc<Settling>,
    pub(super) touched: Rc<Touched>,
    pub(super) gauges: RefCell<Gauges>,
    pub(super) joined_at: SystemTime,
    pub(super) stopping: Cell<bool>,
}

impl Node {
    /// Starts the node's lanes, schedules, heartbeat and finisher for the
    /// batches of `settings`.
    pub fn start(fleet: Fleet, settings: &Settings, hooks: Hooks) -> Rc<Self> {
        let node = Rc::new(Self {
            fleet,
            hooks,
            context: JobContext::new(settings.threads, settings.workload()),
            lanes: RefCell::default(),
            schedules: RefCell::default(),
            next_runs: RefCell::default(),
            loops: RefCell::default(),
            settling: Rc::default(),
            touched: Rc::default(),
            gauges: RefCell::default(),
            joined_at: SystemTime::now(),
            stopping: Cell::new(false),
        });
        node.apply(settings);
        let beat = actix_rt::spawn(Rc::clone(&node).heartbeat());
        let finisher = actix_rt::spawn(Rc::clone(&node).finisher());
        node.loops.borrow_mut().extend([beat, finisher]);
        node
    }

    /// The fleet this node belongs to.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// What the node last measured of the fleet.
    pub fn gauges(&self) -> Gauges {
        self.gauges.borrow().clone()
    }

    /// When `batch` runs next, if it is scheduled.
    pub fn next_run(&self, batch: &str) -> Option<SystemTime> {
        self.next_runs.borrow().get(batch).copied()
    }

    /// Makes the lanes and schedules match `settings`: new and changed
    /// batches get a fresh lane and schedule, removed ones lose theirs
    /// (their lanes drain: codes in flight finish).
    pub fn apply(self: &Rc<Self>, settings: &Settings) {
        let wanted: BTreeMap<&str, &BatchConfig> = settings.batches.iter().map(|b| (b.name.as_str(), b)).collect();
        let stale: Vec<String> = self
            .lanes
            .borrow()
            .iter()
            .filter(|(name, lane)| wanted.get(name.as_str()).is_none_or(|b| **b != *lane.batch))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(lane) = self.lanes.borrow_mut().remove(&name) {
                tracing::info!(batch = %name, "lane closed");
                lane.controls.drain();
                lane.source.close();
                lane.watcher.abort();
                // The lane (its job, a `DEMO` server) lives until its codes in
                // flight are settled.
                actix_rt::spawn(async move {
                    let Lane { run, _prepared: prepared, .. } = lane;
                    let _ = run.await;
                    drop(prepared);
                });
            }
        }
        self.schedules.borrow_mut().retain(|name, (batch, task)| {
            let keep = wanted.get(name.as_str()).is_some_and(|b| **b == **batch && b.every.is_some());
            if !keep {
                task.abort();
                self.next_runs.borrow_mut().remove(name);
            }
            keep
        });
        for batch in &settings.batches {
            let batch = Rc::new(batch.clone());
            if !self.lanes.borrow().contains_key(&batch.name) {
                let me = Rc::clone(self);
                let lane_batch = Rc::clone(&batch);
                actix_rt::spawn(async move { me.open_lane(lane_batch).await });
            }
            if let Some(every) = batch.every.filter(|_| !self.schedules.borrow().contains_key(&batch.name)) {
                tracing::info!(batch = %batch.name, every = %humantime::format_duration(every), "batch scheduled in the fleet");
                let task = actix_rt::spawn(Rc::clone(self).schedule(Rc::clone(&batch), every));
                self.schedules.borrow_mut().insert(batch.name.clone(), (batch, task));
            }
        }
    }

    /// Opens `batch`'s lane: prepares the job, joins the batch's consumer,
    /// and starts pulling.
    async fn open_lane(self: Rc<Self>, batch: Rc<BatchConfig>) {
        let known = crate::store::state::SharedKnownFiles::default();
        let prepared = match PreparedJob::prepare(&batch.job, &self.context, Some(std::sync::Arc::clone(&known)).into())
        {
            Ok(prepared) => Rc::new(prepared),
            Err(e) => {
                tracing::error!(batch = %batch.name, error = %e, "this node cannot fetch the batch");
                return;
            }
        };
        let names = &self.fleet.names;
        let config = pull::Config {
            durable_name: Some(names.consumer(&batch.name)),
            filter_subject: names.batch_filter(&batch.name),
            ack_policy: AckPolicy::Explicit,
            ack_wait: prepared.deadline() + ACK_GRACE,
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        let consumer = loop {
            match self.fleet.work.create_consumer(config.clone()).await {
                Ok(consumer) => break consumer,
                Err(e) if !self.stopping.get() => {
                    tracing::warn!(batch = %batch.name, error = %e, "cannot join the batch's queue yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        };
        if self.stopping.get() || self.lanes.borrow().contains_key(&batch.name) {
            return;
        }
        let watcher = actix_rt::spawn(self.fleet.clone().watch_validators(batch.name.clone(), known));
        let source = FleetSource::new(
            self.fleet.clone(),
            &batch,
            consumer.clone(),
            Rc::clone(&self.settling),
            Rc::clone(&self.touched),
        );
        let run = prepared.start_from(Rc::new(source.clone()), (self.hooks.sink)(&batch));
        let controls = run.controls();
        let name = batch.name.clone();
        let task = actix_rt::spawn(async move {
            if let Err(e) = run.finish_or_interrupt(std::future::pending()).await {
                tracing::error!(batch = %name, error = %e, "a lane stopped");
            }
        });
        tracing::info!(batch = %batch.name, workers = prepared.pool_size, "lane open");
        let lane =
            Lane { batch: Rc::clone(&batch), source, controls, run: task, consumer, watcher, _prepared: prepared };
        self.lanes.borrow_mut().insert(batch.name.clone(), lane);
    }

    /// Starts a run of `batch` now (started by `trigger`).
    pub async fn start_run(&self, batch: &BatchConfig, trigger: &str, tick: Option<u64>) -> Result<i64, StartError> {
        let id = self.fleet.start_run(batch, trigger, tick).await?;
        if let Ok(Some((entry, _))) = self.fleet.run_entry(id).await {
            (self.hooks.run_started)(&entry);
        }
        Ok(id)
    }

    /// Leaves the fleet: stops scheduling and pulling, lets the codes in
    /// flight finish within `timeout` or hands them back, waits for their
    /// outcomes and acknowledgements to reach NATS, and removes this node's
    /// heartbeat.
    pub async fn stop(&self, timeout: Duration) {
        self.stopping.set(true);
        for (_, (_, task)) in std::mem::take(&mut *self.schedules.borrow_mut()) {
            task.abort();
        }
        for task in self.loops.borrow_mut().drain(..) {
            task.abort();
        }
        let lanes: HashMap<String, Lane> = std::mem::take(&mut *self.lanes.borrow_mut()).into_iter().collect();
        for lane in lanes.values() {
            // No new code: what was pulled and not started goes back at once.
            lane.controls.drain();
            lane.source.close();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for (name, mut lane) in lanes {
            if tokio::time::timeout_at(deadline, &mut lane.run).await.is_err() {
                tracing::warn!(batch = %name, "codes still in flight at the shutdown timeout; handing them back");
                lane.controls.interrupt();
                let _ = lane.run.await;
            }
            lane.watcher.abort();
        }
        if !self.settling.wait(SETTLE_LIMIT).await {
            tracing::warn!("some acknowledgements did not reach NATS; their codes come back after the ack wait");
        }
        if let Err(e) = self.fleet.nodes.delete(&self.fleet.node).await {
            tracing::debug!(error = %e, "cannot remove this node's heartbeat");
        }
        self.fleet.flush().await;
    }
}
