//! `flagsd serve` with `[fleet]`: this process is a node of a fleet.
//!
//! The node joins in the background, so the admin endpoint answers (and
//! `/readyz` says why the node is not ready) while NATS is unreachable;
//! `READY=1` goes to systemd only once the node has joined. SIGHUP reloads
//! the batches (a lane and schedule per batch); SIGTERM or SIGINT makes the
//! node leave: no new code is pulled, codes in flight finish within
//! `daemon.shutdown_timeout` or are handed back, and it exits 0.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix_rt::task::JoinHandle;
use sd_notify::NotifyState;
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::notify::notify;
use super::runner::{Local, Refused, Runner, run_ended, run_started};
use super::runs::LogSink;
use crate::config::{BatchConfig, FleetSettings, Settings};
use crate::fleet::{Fleet, Hooks, Node, Patience};
use crate::job::ledger::{LedgerError, Stop};
use crate::job::{FatalError, Ledger};
use crate::model::exit::ExitStatus;
use crate::model::run::RunRecord;
use crate::present::api::{FleetView, NodeView, Progress};
use crate::sys::signals::StopSignal;

/// The daemon as a node of a fleet; see the module documentation.
pub struct Member {
    settings: RefCell<Settings>,
    metrics: Rc<RefCell<Metrics>>,
    node: RefCell<Option<Rc<Node>>>,
    /// Why the node has not joined yet.
    waiting: RefCell<String>,
    join: RefCell<Option<JoinHandle<()>>>,
}

impl Member {
    /// Starts joining the fleet of `fleet` in the background, for the
    /// batches of `settings`; an error that ends the daemon (NATS options
    /// that cannot work) goes to `fatal`.
    pub fn start(
        settings: &Settings,
        fleet: FleetSettings,
        metrics: Rc<RefCell<Metrics>>,
        fatal: mpsc::Sender<FatalError>,
    ) -> Rc<Self> {
        let servers = fleet.display_servers();
        notify(&[NotifyState::Status(&format!("joining the fleet {} at {servers}", fleet.name))]);
        tracing::info!(fleet = %fleet.name, node = %fleet.node, nats = %servers, "joining the fleet");
        let member = Rc::new(Self {
            settings: RefCell::new(settings.clone()),
            metrics,
            node: RefCell::default(),
            waiting: RefCell::new("joining the fleet".to_owned()),
            join: RefCell::default(),
        });
        let me = Rc::clone(&member);
        let join = actix_rt::spawn(async move {
            let client_name = format!("flagsd-serve-{}", fleet.node);
            let joined = Fleet::join(&fleet, &client_name, Patience::Wait, |e| {
                *me.waiting.borrow_mut() = e.to_string();
            })
            .await;
            match joined {
                Ok(fleet) => me.joined(fleet),
                Err(e) => {
                    let _ = fatal.send(FatalError::Ledger(e)).await;
                }
            }
        });
        *member.join.borrow_mut() = Some(join);
        member
    }

    /// The node joined: its lanes open, and systemd hears it is ready.
    fn joined(&self, fleet: Fleet) {
        tracing::info!(fleet = %fleet.names.fleet(), node = %fleet.node, "joined the fleet");
        let node = Node::start(fleet, &self.settings.borrow(), self.hooks());
        *self.node.borrow_mut() = Some(node);
        notify(&[NotifyState::Ready, NotifyState::Status("serving in the fleet")]);
    }

    /// The hooks through which the node's work reaches the logs and metrics.
    fn hooks(&self) -> Hooks {
        let (sinks, started, ended) = (Rc::clone(&self.metrics), Rc::clone(&self.metrics), Rc::clone(&self.metrics));
        Hooks {
            sink: Box::new(move |batch: &BatchConfig| Box::new(LogSink::new(batch, Rc::clone(&sinks)))),
            run_started: Rc::new(move |record: &RunRecord| run_started(&mut started.borrow_mut(), record)),
            run_ended: Box::new(move |record: &RunRecord| run_ended(&mut ended.borrow_mut(), record, None)),
        }
    }

    /// The node, or why there is none yet.
    fn node(&self) -> Result<Rc<Node>, Refused> {
        self.node
            .borrow()
            .clone()
            .ok_or_else(|| Refused::NotReady(format!("not in the fleet yet: {}", self.waiting.borrow())))
    }
}

/// A refusal for a fleet error.
fn refused(e: LedgerError) -> Refused {
    match e {
        LedgerError::Running { .. } | LedgerError::TickRan { .. } => Refused::Running(true),
        e if e.is_transient() => Refused::NotReady(e.to_string()),
        e => Refused::Failed(e.to_string()),
    }
}

impl Runner for Member {
    fn ledger(&self) -> Option<Rc<dyn Ledger>> {
        self.node.borrow().as_ref().map(|node| Rc::new(node.fleet().clone()) as Rc<dyn Ledger>)
    }

    fn ready(&self) -> Result<(), String> {
        match self.node() {
            Err(Refused::NotReady(why)) => Err(why),
            Err(_) => Err("not in the fleet".to_owned()),
            Ok(node) => match node.problem() {
                Some(problem) => Err(format!("cannot take work: {problem}")),
                None => Ok(()),
            },
        }
    }

    fn apply(self: Rc<Self>, settings: &Settings) {
        *self.settings.borrow_mut() = settings.clone();
        if let Some(node) = self.node.borrow().as_ref() {
            node.apply(settings);
        }
    }

    fn start(
        self: Rc<Self>,
        batch: Rc<BatchConfig>,
        trigger: &'static str,
    ) -> Local<'static, Result<RunRecord, Refused>> {
        Box::pin(async move {
            let node = self.node()?;
            node.start_run(&batch, trigger).await.map_err(refused)
        })
    }

    fn cancel(self: Rc<Self>, batch: String) -> Local<'static, Result<RunRecord, Refused>> {
        Box::pin(async move {
            let node = self.node()?;
            let fleet = node.fleet();
            let Some((run, _)) = fleet.last_run(&batch).await.map_err(refused)? else {
                return Err(Refused::Running(false));
            };
            if !run.record.is_running() {
                return Err(Refused::Running(false));
            }
            match fleet.stop_run(&run.key(), Stop::Cancelled(ExitStatus::Interrupted)).await.map_err(refused)? {
                Some(record) => {
                    run_ended(&mut self.metrics.borrow_mut(), &record, None);
                    Ok(record)
                }
                None => Err(Refused::Running(false)),
            }
        })
    }

    fn running(&self, _batch: &str) -> Option<bool> {
        // The fleet's records know; this node alone does not.
        None
    }

    fn next_run(&self, batch: &str) -> Option<SystemTime> {
        self.node.borrow().as_ref().and_then(|node| node.next_run(batch))
    }

    fn fleet_view(&self) -> Option<Local<'static, Result<FleetView, String>>> {
        let node = self.node.borrow().as_ref().map(Rc::clone);
        let waiting = self.waiting.borrow().clone();
        Some(Box::pin(async move {
            let node = node.ok_or(waiting)?;
            let fleet = node.fleet();
            let nodes = fleet.live_nodes().await.map_err(|e| e.to_string())?;
            let gauges = node.gauges();
            Ok(FleetView {
                name: fleet.names.fleet().to_owned(),
                node: fleet.node.clone(),
                nodes: nodes
                    .into_iter()
                    .map(|n| NodeView {
                        node: n.node,
                        joined_at: n.joined_at,
                        heartbeat_at: n.heartbeat_at,
                        in_flight: n.in_flight,
                    })
                    .collect(),
                queued: gauges.queued,
                in_flight: gauges.in_flight,
            })
        }))
    }

    /// From the fleet's gauges: the codes neither queued nor in flight are
    /// done (the node's last look at the fleet, a second old at most).
    fn progress(&self, batch: &str) -> Option<Progress> {
        let node = self.node.borrow().as_ref().map(Rc::clone)?;
        let gauges = node.gauges();
        if !gauges.running.get(batch).copied().unwrap_or(false) {
            return None;
        }
        let total = self.settings.borrow().batches.iter().find(|b| b.name == batch)?.job.codes.len() as u64;
        let left = gauges.queued.get(batch).copied().unwrap_or(0) + gauges.in_flight.get(batch).copied().unwrap_or(0);
        let done = usize::try_from(total.saturating_sub(left)).unwrap_or(usize::MAX);
        let started = gauges.started.get(batch)?;
        Some(Progress::of(done, total as usize, started.elapsed().unwrap_or_default()))
    }

    fn measure(&self, metrics: &mut Metrics) {
        if let Some(node) = self.node.borrow().as_ref() {
            let gauges = node.gauges();
            let fleet = node.fleet();
            metrics.fleet(fleet.names.fleet(), gauges.live_nodes, &gauges.queued, &gauges.in_flight);
            metrics.fleet_running(&gauges.running);
            metrics.fleet_dropped(&fleet.dropped.counts());
        }
    }

    fn stopping(&self, _signal: StopSignal) {}

    fn stop(self: Rc<Self>, timeout: Duration) -> Local<'static, ()> {
        Box::pin(async move {
            if let Some(join) = self.join.borrow_mut().take() {
                join.abort();
            }
            let node = self.node.borrow_mut().take();
            if let Some(node) = node {
                tracing::info!(timeout = %humantime::format_duration(timeout), "leaving the fleet");
                node.stop(timeout).await;
            }
        })
    }
}
