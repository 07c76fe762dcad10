//! A node of the fleet: one lane per batch pulling that batch's codes, the
//! batch's schedule, a heartbeat, and the finisher that ends runs.
//!
//! - **Lanes.** Each batch has a coordinator with the batch's pool (its
//!   `max_req` caps its concurrent requests on this node) whose tasks come
//!   from the batch's shared queue ([`FleetSource`]): work flows to
//!   whichever node has idle workers.
//! - **Schedules.** See [`schedule`](super::schedule): each tick runs once.
//! - **Heartbeat.** Every [`BEAT_EVERY`] a node that can take work renews
//!   its key in the nodes bucket (which forgets a key after
//!   [`NODE_LEASE`](super::core::NODE_LEASE)); the live nodes share each
//!   server's request rate. A node that cannot take work ([`Health`]: its
//!   queue gone, its disk failing, NATS away) removes its key instead, so
//!   it is not shown live.
//! - **Finisher.** A run is finished by whichever node first sees every code
//!   accounted for: a run this node settled a work item of is checked at
//!   once, unless the node still holds another of its items (it is not
//!   complete, and that item touches it again), and every batch's running
//!   run every [`SWEEP_EVERY`], so the run
//!   of a dead node ends too; a running run of which nothing is queued any
//!   more and codes are missing (the queue was lost, its starter died while
//!   queueing) gets those codes queued again.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use actix_rt::task::JoinHandle;
use futures_util::StreamExt as _;

use super::claims::FleetClaims;
use super::core::{Fleet, FleetError, nats_error};
use super::health::Health;
use super::messages::{Load, NodeBeat};
use super::schedule::Scheduling;
use super::source::{FleetSource, Settling, Shared, Touched};
use crate::config::{BatchConfig, Settings};
use crate::engine::{OutcomeSink, RunControls};
use crate::job::ledger::{FleetFailure, LedgerError, RunKey, RunStart};
use crate::job::prepare::Saving;
use crate::job::{JobContext, PreparedJob};
use crate::model::run::RunRecord;
use crate::model::time::rfc3339;
use crate::store::claims::NameClaims;

/// How often a node renews its heartbeat (and reads the fleet's gauges).
pub const BEAT_EVERY: Duration = Duration::from_secs(2);

/// How often the finisher checks every batch's running run.
const SWEEP_EVERY: Duration = Duration::from_secs(3);

/// Sweeps in a row that find a running run with nothing queued and codes
/// missing before those codes are queued again.
const STALLED_SWEEPS: u32 = 2;

/// How long a stopping node waits for its acknowledgements and outcomes to
/// reach NATS.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Makes the sink of a batch's outcomes.
pub type SinkFactory = Box<dyn Fn(&BatchConfig) -> Box<dyn OutcomeSink>>;

/// What the daemon wants to hear of the node's work.
pub struct Hooks {
    /// The sink of a lane's outcomes (logs, metrics).
    pub sink: SinkFactory,
    /// This node started a run.
    pub run_started: Rc<dyn Fn(&RunRecord)>,
    /// This node ended a run.
    pub run_ended: Box<dyn Fn(&RunRecord)>,
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
    /// Whether each batch has a run in progress in the fleet.
    pub running: BTreeMap<String, bool>,
    /// When each batch's run in progress started.
    pub started: BTreeMap<String, SystemTime>,
}

/// A scheduled batch and its schedule's task.
type Schedule = (Rc<BatchConfig>, JoinHandle<()>);

/// A batch's lane on this node.
struct Lane {
    batch: Rc<BatchConfig>,
    source: FleetSource,
    controls: RunControls,
    run: JoinHandle<()>,
    /// The pump, the signs of life, the watch of the validators.
    tasks: Vec<JoinHandle<()>>,
    /// The job as prepared (its `DEMO` server, if any, lives as long).
    prepared: Rc<PreparedJob>,
}

/// A node of the fleet; see the module documentation.
pub struct Node {
    fleet: Fleet,
    hooks: Hooks,
    context: JobContext,
    lanes: RefCell<BTreeMap<String, Lane>>,
    /// Each scheduled batch and its schedule's task.
    schedules: RefCell<BTreeMap<String, Schedule>>,
    scheduling: Rc<Scheduling>,
    loops: RefCell<Vec<JoinHandle<()>>>,
    shared: Shared,
    gauges: RefCell<Gauges>,
    /// Sweeps in a row that found each running run stalled.
    stalled: RefCell<HashMap<RunKey, u32>>,
    joined_at: SystemTime,
}

impl Node {
    /// Starts the node's lanes, schedules, heartbeat and finisher for the
    /// batches of `settings`.
    pub fn start(fleet: Fleet, settings: &Settings, hooks: Hooks) -> Rc<Self> {
        let scheduling = Rc::new(Scheduling {
            fleet: fleet.clone(),
            next_runs: Rc::default(),
            started: Rc::clone(&hooks.run_started),
        });
        let node = Rc::new(Self {
            fleet,
            hooks,
            context: JobContext::new(settings.threads, settings.workload()),
            lanes: RefCell::default(),
            schedules: RefCell::default(),
            scheduling,
            loops: RefCell::default(),
            shared: Shared {
                settling: Rc::<Settling>::default(),
                touched: Rc::<Touched>::default(),
                health: Rc::<Health>::default(),
                others: Rc::new(std::cell::Cell::new(1)),
            },
            gauges: RefCell::default(),
            stalled: RefCell::default(),
            joined_at: SystemTime::now(),
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
        self.scheduling.next_runs.borrow().get(batch).copied()
    }

    /// Why this node cannot take work now, or `None` when it can.
    pub fn problem(&self) -> Option<String> {
        if !self.fleet.connected() {
            return Some(format!("not connected to NATS at {}", self.fleet.servers));
        }
        self.shared.health.problem()
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
                self.close_lane(lane);
            }
        }
        self.schedules.borrow_mut().retain(|name, (batch, task)| {
            let keep = wanted.get(name.as_str()).is_some_and(|b| **b == **batch && b.every.is_some());
            if !keep {
                task.abort();
                self.scheduling.next_runs.borrow_mut().remove(name);
            }
            keep
        });
        for batch in &settings.batches {
            let batch = Rc::new(batch.clone());
            if !self.lanes.borrow().contains_key(&batch.name) {
                self.open_lane(Rc::clone(&batch));
            }
            if let Some(every) = batch.every.filter(|_| !self.schedules.borrow().contains_key(&batch.name)) {
                tracing::info!(batch = %batch.name, every = %humantime::format_duration(every), "batch scheduled in the fleet");
                let task = actix_rt::spawn(Rc::clone(&self.scheduling).keep(Rc::clone(&batch), every));
                self.schedules.borrow_mut().insert(batch.name.clone(), (batch, task));
            }
        }
    }

    /// Opens `batch`'s lane: prepares the job and starts taking its codes.
    fn open_lane(self: &Rc<Self>, batch: Rc<BatchConfig>) {
        let known = Arc::new(RwLock::new(Default::default()));
        let claims: Arc<dyn NameClaims> = Arc::new(FleetClaims::new(self.fleet.clone(), &batch.name));
        let saving = Saving { known: Some(Arc::clone(&known)), claims: Some(claims) };
        let prepared = match PreparedJob::prepare(&batch.job, &self.context, saving) {
            Ok(prepared) => Rc::new(prepared),
            Err(e) => {
                self.shared.health.set(&format!("batch {}", batch.name), format!("cannot fetch it: {e}"));
                return;
            }
        };
        let watch =
            self.fleet.clone().watch_validators(batch.name.clone(), batch.job.codes.clone(), Arc::clone(&known));
        let (source, mut tasks) = FleetSource::open(self.fleet.clone(), Rc::clone(&batch), known, self.shared.clone());
        tasks.push(actix_rt::spawn(watch));
        let run = prepared.start_from(Rc::new(source.clone()), (self.hooks.sink)(&batch));
        let controls = run.controls();
        let name = batch.name.clone();
        let task = actix_rt::spawn(async move {
            if let Err(e) = run.finish_or_interrupt(std::future::pending()).await {
                tracing::error!(batch = %name, error = %e, "a lane stopped");
            }
        });
        tracing::info!(batch = %batch.name, workers = prepared.pool_size, "lane open");
        let lane = Lane { batch: Rc::clone(&batch), source, controls, run: task, tasks, prepared };
        self.lanes.borrow_mut().insert(batch.name.clone(), lane);
    }

    /// Closes `lane`: no new code; what it pulled goes back; its job lives
    /// until the codes in flight are settled.
    fn close_lane(&self, lane: Lane) {
        lane.controls.drain();
        lane.source.close();
        self.shared.health.forget(&format!("batch {}", lane.batch.name));
        self.shared.health.forget(&format!("disk {}", lane.batch.name));
        actix_rt::spawn(async move {
            let Lane { run, tasks, prepared, .. } = lane;
            let _ = run.await;
            for task in tasks {
                task.abort();
            }
            drop(prepared);
        });
    }

    /// Starts a run of `batch` now (started by `trigger`).
    pub async fn start_run(&self, batch: &BatchConfig, trigger: &str) -> Result<RunRecord, LedgerError> {
        let run = self.fleet.start_run(RunStart::of(batch, trigger)).await?;
        (self.hooks.run_started)(&run.record);
        Ok(run.record)
    }

    /// Renews the heartbeat while the node can take work (removes it while
    /// it cannot), shares the rates among the live nodes and reads the
    /// fleet's gauges, every [`BEAT_EVERY`].
    async fn heartbeat(self: Rc<Self>) {
        let mut ticks = tokio::time::interval(BEAT_EVERY);
        if let Ok(Some(_)) = self.fleet.nodes.get(&self.fleet.node).await {
            tracing::warn!(
                node = %self.fleet.node,
                "a live node of the fleet has this node's name (or this node restarted within seconds): \
                 node names must be unique"
            );
        }
        let mut beating = false;
        let mut alone_once = false;
        loop {
            ticks.tick().await;
            match self.fleet.missing().await {
                Ok(missing) if !missing.is_empty() => {
                    tracing::warn!(missing = %missing.join(", "), "streams or buckets of the fleet are gone; creating them again");
                    if let Err(e) = self.fleet.heal().await {
                        tracing::warn!(error = %e, "cannot create the fleet's streams and buckets yet");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot list the fleet's streams"),
            }
            let renewed = match self.problem() {
                None => self.beat().await.map_err(|e| e.to_string()),
                Some(_) if beating => {
                    self.fleet.nodes.delete(&self.fleet.node).await.map(|()| false).map_err(|e| e.to_string())
                }
                Some(_) => Ok(false),
            };
            match renewed {
                Ok(now) => beating = now,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew this node's heartbeat");
                    if let Err(e) = self.fleet.heal().await {
                        tracing::debug!(error = %e, "cannot create the fleet's buckets yet");
                    }
                    continue;
                }
            }
            let mut loads: BTreeMap<String, Load> = BTreeMap::new();
            match self.fleet.live_nodes().await {
                Ok(nodes) => {
                    for (batch, load) in nodes.iter().flat_map(|n| &n.load) {
                        let sum = loads.entry(batch.clone()).or_default();
                        sum.holding += load.holding;
                        sum.open += load.open;
                    }
                    let live = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
                    self.context.limiters.share_among(live.max(1));
                    // Alone only when two counts in a row say so: a node
                    // that just joined may not have beaten yet.
                    let others = u32::try_from(nodes.iter().filter(|n| n.node != self.fleet.node).count());
                    let others = others.unwrap_or(u32::MAX);
                    if others > 0 || alone_once {
                        self.shared.others.set(others);
                    }
                    alone_once = others == 0;
                    self.gauges.borrow_mut().live_nodes = u64::from(live);
                }
                Err(e) => tracing::warn!(error = %e, "cannot count the live nodes"),
            }
            let batches: Vec<String> = self.lanes.borrow().keys().cloned().collect();
            for name in batches {
                match self.fleet.work.consumer_info(self.fleet.names.consumer(&name)).await {
                    Ok(_) => {
                        // Codes in the queue, less those the live nodes hold;
                        // in flight: those they hold and have not settled.
                        let codes = self.fleet.codes_in_queue(&self.fleet.names.batch_filter(&name)).await;
                        let load = loads.get(&name).copied().unwrap_or_default();
                        let mut gauges = self.gauges.borrow_mut();
                        match codes {
                            Ok(codes) => gauges.queued.insert(name.clone(), codes.saturating_sub(load.holding)),
                            Err(e) => {
                                tracing::debug!(batch = %name, error = %e, "cannot count the queued codes");
                                gauges.queued.remove(&name)
                            }
                        };
                        gauges.in_flight.insert(name.clone(), load.open);
                    }
                    Err(e) => {
                        let e = nats_error(format!("the queue of batch {name} is gone"), e);
                        if let LedgerError::Fleet { kind: FleetFailure::Missing, .. } = e {
                            // NATS lost the consumer: the lane makes it again.
                            self.shared.health.set(&format!("batch {name}"), e.to_string());
                            if let Some(lane) = self.lanes.borrow().get(&name) {
                                lane.source.reset();
                            }
                        }
                    }
                }
                if let Ok(last) = self.fleet.last_run(&name).await {
                    let running = last.filter(|(run, _)| run.record.is_running());
                    let mut gauges = self.gauges.borrow_mut();
                    gauges.running.insert(name.clone(), running.is_some());
                    let started = running.and_then(|(run, _)| humantime::parse_rfc3339(&run.record.started_at).ok());
                    match started {
                        Some(at) => gauges.started.insert(name, at),
                        None => gauges.started.remove(&name),
                    };
                }
            }
        }
    }

    /// Writes this node's heartbeat.
    async fn beat(&self) -> Result<bool, async_nats::jetstream::kv::PutError> {
        let load: BTreeMap<String, Load> =
            self.lanes.borrow().iter().map(|(name, lane)| (name.clone(), lane.source.load())).collect();
        let beat = NodeBeat {
            node: self.fleet.node.clone(),
            joined_at: rfc3339(self.joined_at),
            heartbeat_at: rfc3339(SystemTime::now()),
            in_flight: load.values().map(|l| l.open).sum(),
            load,
        };
        let value = serde_json::to_vec(&beat).unwrap_or_default();
        self.fleet.nodes.put(&self.fleet.node, value.into()).await.map(|_| true)
    }

    /// Finishes the runs whose codes are all accounted for: those this node
    /// settled its last held work item of, as soon as it did, and every
    /// batch's running run every [`SWEEP_EVERY`] (whoever worked on it).
    async fn finisher(self: Rc<Self>) {
        let mut wake = self.shared.touched.subscribe();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = wake.changed() => {}
                _ = sweep.tick() => self.sweep().await,
            }
            for key in self.shared.touched.take() {
                // Not complete while this node holds some of it: its items
                // touch the run again when they are settled.
                if self.lanes.borrow().get(&key.batch).is_some_and(|lane| lane.source.holds(&key)) {
                    continue;
                }
                match self.fleet.finish_if_complete(&key).await {
                    Ok(Some(record)) => {
                        self.stalled.borrow_mut().remove(&key);
                        (self.hooks.run_ended)(&record);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(run = key.id, error = %e, "cannot finish a run yet");
                        self.shared.touched.defer(key);
                    }
                }
            }
        }
    }

    /// Looks at each batch's running run: to be checked for completion, and
    /// its lost codes queued again when it has stalled.
    async fn sweep(&self) {
        let batches: Vec<String> = self.lanes.borrow().keys().cloned().collect();
        for batch in batches {
            let Ok(Some((run, _))) = self.fleet.last_run(&batch).await else { continue };
            if !run.record.is_running() {
                continue;
            }
            let key = run.key();
            self.shared.touched.defer(key.clone());
            let queued = match self.fleet.queued(&batch, &run).await {
                Ok(queued) => queued,
                Err(e) => {
                    tracing::debug!(%batch, error = %e, "cannot count the queued codes");
                    continue;
                }
            };
            let stalled = {
                let mut stalled = self.stalled.borrow_mut();
                stalled.retain(|k, _| k.batch != batch || *k == key);
                let sweeps = stalled.entry(key.clone()).or_insert(0);
                *sweeps = if queued == 0 { *sweeps + 1 } else { 0 };
                *sweeps >= STALLED_SWEEPS
            };
            if stalled {
                match self.fleet.requeue_missing(&batch, &run).await {
                    Ok(_) => {
                        self.stalled.borrow_mut().remove(&key);
                    }
                    Err(e) => tracing::warn!(%batch, run = run.record.id, error = %e, "cannot queue lost codes again"),
                }
            }
        }
    }

    /// Leaves the fleet: stops scheduling and pulling, lets the codes in
    /// flight finish within `timeout` or hands them back, waits for their
    /// outcomes and acknowledgements to reach NATS, and removes this node's
    /// heartbeat.
    pub async fn stop(&self, timeout: Duration) {
        for (_, (_, task)) in std::mem::take(&mut *self.schedules.borrow_mut()) {
            task.abort();
        }
        for task in self.loops.borrow_mut().drain(..) {
            task.abort();
        }
        let lanes: Vec<(String, Lane)> = std::mem::take(&mut *self.lanes.borrow_mut()).into_iter().collect();
        for (_, lane) in &lanes {
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
            for task in lane.tasks {
                task.abort();
            }
        }
        if !self.shared.settling.wait(SETTLE_LIMIT).await {
            tracing::warn!("some acknowledgements did not reach NATS; their codes come back after the ack wait");
        }
        if let Err(e) = self.fleet.nodes.delete(&self.fleet.node).await {
            tracing::debug!(error = %e, "cannot remove this node's heartbeat");
        }
        self.fleet.flush().await;
    }
}

impl Fleet {
    /// The live nodes' heartbeats.
    pub async fn live_nodes(&self) -> Result<Vec<NodeBeat>, FleetError> {
        let what = || "cannot read the live nodes".to_owned();
        let mut keys = self.nodes.keys().await.map_err(|e| nats_error(what(), e))?;
        let mut beats = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| nats_error(what(), e))?;
            if let Some(value) = self.nodes.get(&key).await.map_err(|e| nats_error(what(), e))?
                && let Ok(beat) = serde_json::from_slice::<NodeBeat>(&value)
            {
                beats.push(beat);
            }
        }
        Ok(beats)
    }
}
