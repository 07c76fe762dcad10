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
use std::time::SystemTime;

use sd_notify::NotifyState;

use super::Daemon;
use super::admin::{AdminRequest, Trigger};
use super::metrics::Metrics;
use super::notify::{notify, start_watchdog};
use super::runs::LogSink;
use crate::config::{BatchConfig, FleetSettings, Settings};
use crate::fleet::messages::{RunEntry, RunState};
use crate::fleet::runs::StartError;
use crate::fleet::{Fleet, Hooks, Node, Patience};
use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::model::time::rfc3339;
use crate::present::api::BatchView;

/// What the daemon knows of its node.
#[derive(Default)]
struct Membership {
    node: Option<Rc<Node>>,
    /// Why the node has not joined yet.
    waiting: String,
}

/// Logs a run this node started.
fn run_started(metrics: &Rc<RefCell<Metrics>>, entry: &RunEntry) {
    metrics.borrow_mut().run_started(&entry.batch);
    tracing::info!(batch = %entry.batch, run = entry.id, codes = entry.codes.len(), trigger = %entry.trigger, "run started");
}

/// Logs a run this node finished, and says so in `STATUS=`.
fn run_ended(metrics: &Rc<RefCell<Metrics>>, entry: &RunEntry) {
    let status = entry.exit_status.unwrap_or(ExitStatus::Fatal.code());
    metrics.borrow_mut().run_finished(&entry.batch, SystemTime::now(), status);
    let c =
        entry.counts.unwrap_or(crate::present::api::RunCounts { downloaded: 0, unchanged: 0, not_found: 0, errors: 0 });
    tracing::info!(
        batch = %entry.batch, run = entry.id, downloaded = c.downloaded, unchanged = c.unchanged,
        not_found = c.not_found, errors = c.errors, exit_status = status, "run finished"
    );
    let text = format!(
        "last run: {}: {} downloaded, {} unchanged, {} not found, {} errors",
        entry.batch, c.downloaded, c.unchanged, c.not_found, c.errors
    );
    notify(&[NotifyState::Status(&text)]);
}

/// The hooks through which the node's work reaches the logs and metrics.
fn hooks(metrics: &Rc<RefCell<Metrics>>) -> Hooks {
    let (sinks, started, ended) = (Rc::clone(metrics), Rc::clone(metrics), Rc::clone(metrics));
    Hooks {
        sink: Box::new(move |batch: &BatchConfig| Box::new(LogSink::new(batch, Rc::clone(&sinks)))),
        run_started: Box::new(move |entry: &RunEntry| run_started(&started, entry)),
        run_ended: Box::new(move |entry: &RunEntry| run_ended(&ended, entry)),
    }
}

/// Runs the daemon as a node of the fleet of `fleet` until SIGTERM or SIGINT.
pub async fn serve(mut daemon: Daemon, mut settings: Settings, fleet: FleetSettings) -> Result<ExitStatus, FatalError> {
    let metrics: Rc<RefCell<Metrics>> = Rc::default();
    let membership = Rc::new(RefCell::new(Membership { node: None, waiting: "joining the fleet".to_owned() }));
    let servers = fleet.servers.join(", ");
    start_watchdog();
    notify(&[NotifyState::Status(&format!("joining the fleet {} at {servers}", fleet.name))]);
    tracing::info!(fleet = %fleet.name, node = %fleet.node, nats = %servers, "joining the fleet");
    let (joined_tx, mut joined) = tokio::sync::oneshot::channel();
    let join = {
        let membership = Rc::clone(&membership);
        let client_name = format!("flagsd-serve-{}", fleet.node);
        actix_rt::spawn(async move {
            let result = Fleet::join(&fleet, &client_name, Patience::Wait, |e| {
                membership.borrow_mut().waiting = e.to_string();
            })
            .await;
            let _ = joined_tx.send(result);
        })
    };
    let mut waiting_to_join = true;
    loop {
        tokio::select! {
            result = &mut joined, if waiting_to_join => {
                waiting_to_join = false;
                let fleet = result.map_err(|_| FatalError::Fleet("the join task ended".to_owned()))?
                    .map_err(|e| FatalError::Fleet(e.to_string()))?;
                tracing::info!(fleet = %fleet.names.fleet(), node = %fleet.node, "joined the fleet");
                let node = Node::start(fleet, &settings, hooks(&metrics));
                membership.borrow_mut().node = Some(node);
                notify(&[NotifyState::Ready, NotifyState::Status("serving in the fleet")]);
            }
            _ = daemon.hangups.recv() => {
                notify(&[NotifyState::Reloading]);
                if let Some(new) = daemon.reload() {
                    if let Some(node) = &membership.borrow().node {
                        node.apply(&new);
                    }
                    settings = new;
                }
                notify(&[NotifyState::Ready]);
            }
            Some(request) = daemon.admin_requests.recv() => answer(&membership, &metrics, &settings, request),
            signal = daemon.stops.recv() => {
                tracing::info!(?signal, "stop requested");
                break;
            }
        }
    }
    notify(&[NotifyState::Stopping]);
    join.abort();
    let node = membership.borrow_mut().node.take();
    if let Some(node) = node {
        tracing::info!(timeout = %humantime::format_duration(settings.shutdown_timeout), "leaving the fleet");
        node.stop(settings.shutdown_timeout).await;
    }
    tracing::info!("stopped");
    Ok(ExitStatus::Success)
}

/// Answers one request of the admin endpoint; what needs NATS is answered
/// by a task of its own, so the loop never waits.
fn answer(
    membership: &Rc<RefCell<Membership>>,
    metrics: &Rc<RefCell<Metrics>>,
    settings: &Settings,
    request: AdminRequest,
) {
    let node = membership.borrow().node.clone();
    // A reply that cannot be delivered means the HTTP request is gone.
    match request {
        AdminRequest::Ping(reply) => {
            let _ = reply.send(());
        }
        AdminRequest::Ready(reply) => {
            let ready = match &node {
                Some(_) => Ok(()),
                None => Err(format!("not in the fleet yet: {}", membership.borrow().waiting)),
            };
            let _ = reply.send(ready);
        }
        AdminRequest::Metrics(reply) => {
            if let Some(node) = &node {
                let gauges = node.gauges();
                let fleet = node.fleet().names.fleet().to_owned();
                metrics.borrow_mut().fleet(&fleet, gauges.live_nodes, &gauges.queued, &gauges.in_flight);
            }
            let _ = reply.send(metrics.borrow().render());
        }
        AdminRequest::Batches(reply) => {
            let batches = settings.batches.clone();
            actix_rt::spawn(async move {
                let _ = reply.send(batch_views(node.as_deref(), &batches).await);
            });
        }
        AdminRequest::Runs { batch, limit, reply } => {
            actix_rt::spawn(async move {
                let runs = match &node {
                    Some(node) => node.fleet().recent_runs(batch.as_deref(), limit).await.map_err(|e| e.to_string()),
                    None => Err("not in the fleet yet".to_owned()),
                };
                let _ = reply.send(runs.map(|runs| runs.iter().map(RunEntry::record).collect()));
            });
        }
        AdminRequest::Trigger { batch, reply } => {
            let config = settings.batches.iter().find(|b| b.name == batch).cloned();
            actix_rt::spawn(async move {
                let answer = match (config, node) {
                    (None, _) => Trigger::Unknown,
                    (Some(_), None) => Trigger::Failed("not in the fleet yet".to_owned()),
                    (Some(config), Some(node)) => match node.start_run(&config, "admin", None).await {
                        Ok(run_id) => Trigger::Started { run_id },
                        Err(StartError::Running { .. }) => Trigger::Running,
                        Err(e) => Trigger::Failed(e.to_string()),
                    },
                };
                let _ = reply.send(answer);
            });
        }
    }
}

/// Every batch with the fleet's facts: its last run, whether it runs, when
/// it runs next.
async fn batch_views(node: Option<&Node>, batches: &[BatchConfig]) -> Vec<BatchView> {
    let mut views = Vec::new();
    for batch in batches {
        let mut view = BatchView::of(batch, None);
        if let Some(node) = node {
            match node.fleet().last_run(&batch.name).await {
                Ok(last) => {
                    let last = last.map(|(entry, _)| entry);
                    view.running = Some(last.as_ref().is_some_and(|e| e.state == RunState::Running));
                    view.last_run = last.as_ref().map(RunEntry::record);
                }
                Err(e) => tracing::warn!(batch = %batch.name, error = %e, "cannot read the batch's last run"),
            }
            view.next_run = node.next_run(&batch.name).map(rfc3339);
        }
        views.push(view);
    }
    views
}
