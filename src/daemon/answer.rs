//! The daemon's answers to the admin endpoint's requests: one path for a
//! daemon alone and a node of a fleet, through its [`Runner`] and the run
//! ledger behind it; a reload through the same code as SIGHUP's. What needs the ledger is answered by a task of its
//! own, so the daemon's loop never waits.

use std::cell::RefCell;
use std::rc::Rc;

use super::Configuration;
use super::admin::requests::DaemonFacts;
use super::admin::{AdminRequest, Cancel, Trigger, Unavailable};
use super::metrics::Metrics;
use super::runner::{Refused, Runner};
use crate::config::{BatchConfig, Settings};
use crate::job::{Ledger, RunQuery};
use crate::model::time::rfc3339;
use crate::present::api::BatchView;

/// The ledger, or why there is none yet.
fn ledger(runner: &Rc<dyn Runner>) -> Result<Rc<dyn Ledger>, Unavailable> {
    runner.ledger().ok_or_else(|| Unavailable::NotReady(runner.ready().err().unwrap_or_default()))
}

/// Answers one request of the admin endpoint; a reload replaces the
/// configuration in `config`.
pub(super) fn answer(
    runner: &Rc<dyn Runner>,
    metrics: &Rc<RefCell<Metrics>>,
    config: &mut Configuration,
    request: AdminRequest,
) {
    let settings = &config.settings;
    // A reply that cannot be delivered means the HTTP request is gone.
    match request {
        AdminRequest::Ping(reply) => {
            let _ = reply.send(());
        }
        AdminRequest::Ready(reply) => {
            let _ = reply.send(runner.ready());
        }
        AdminRequest::Metrics(reply) => {
            let mut metrics = metrics.borrow_mut();
            runner.measure(&mut metrics);
            let _ = reply.send(metrics.render());
        }
        AdminRequest::Batches(reply) => {
            let (runner, batches) = (Rc::clone(runner), settings.batches.clone());
            actix_rt::spawn(async move {
                let _ = reply.send(batch_views(&runner, &batches).await);
            });
        }
        AdminRequest::About(reply) => {
            let _ = reply.send(DaemonFacts {
                loaded_at: rfc3339(config.loaded_at),
                batches: settings.batches.len(),
                fleet: settings.fleet.as_ref().map(|f| f.name.clone()),
                ready: runner.ready(),
            });
        }
        AdminRequest::Fleet(reply) => match runner.fleet_view() {
            None => {
                let _ = reply.send(Ok(None));
            }
            Some(view) => {
                actix_rt::spawn(async move {
                    let _ = reply.send(view.await.map(Some).map_err(Unavailable::NotReady));
                });
            }
        },
        AdminRequest::Runs { batch, limit, before, reply } => {
            let ledger = ledger(runner);
            actix_rt::spawn(async move {
                let runs = match ledger {
                    Ok(ledger) => {
                        let query = RunQuery { batch, limit, before };
                        ledger.recent(&query).await.map_err(|e| Unavailable::Failed(e.to_string()))
                    }
                    Err(why) => Err(why),
                };
                let _ = reply.send(runs);
            });
        }
        AdminRequest::Run { id, reply } => {
            let ledger = ledger(runner);
            actix_rt::spawn(async move {
                let run = match ledger {
                    Ok(ledger) => ledger.details(id).await.map_err(|e| Unavailable::Failed(e.to_string())),
                    Err(why) => Err(why),
                };
                let _ = reply.send(run);
            });
        }
        AdminRequest::Trigger { batch, reply } => {
            let Some(found) = find(settings, &batch) else {
                let _ = reply.send(Trigger::Unknown);
                return;
            };
            let started = Rc::clone(runner).start(found, "admin");
            actix_rt::spawn(async move {
                let answer = match started.await {
                    Ok(record) => {
                        tracing::info!(%batch, run = record.id, "run requested through the admin endpoint");
                        Trigger::Started { run_id: record.id }
                    }
                    Err(Refused::Running(_)) => Trigger::Running,
                    Err(Refused::Stopping) => Trigger::NotReady("the daemon is stopping".to_owned()),
                    Err(Refused::NotReady(why)) => Trigger::NotReady(why),
                    Err(Refused::Failed(why)) => Trigger::Failed(why),
                };
                let _ = reply.send(answer);
            });
        }
        AdminRequest::Cancel { batch, reply } => {
            if find(settings, &batch).is_none() {
                let _ = reply.send(Cancel::Unknown);
                return;
            }
            let cancelled = Rc::clone(runner).cancel(batch.clone());
            actix_rt::spawn(async move {
                let answer = match cancelled.await {
                    Ok(record) => {
                        tracing::info!(%batch, run = record.id, "run cancelled through the admin endpoint");
                        Cancel::Cancelled(Box::new(record))
                    }
                    Err(Refused::Running(_)) => Cancel::NotRunning,
                    Err(Refused::Stopping) => Cancel::NotReady("the daemon is stopping".to_owned()),
                    Err(Refused::NotReady(why)) => Cancel::NotReady(why),
                    Err(Refused::Failed(why)) => Cancel::Failed(why),
                };
                let _ = reply.send(answer);
            });
        }
        AdminRequest::Reload(reply) => {
            let _ = reply.send(config.reload(runner, metrics));
        }
    }
}

/// The batch of `settings` named `name`.
fn find(settings: &Settings, name: &str) -> Option<Rc<BatchConfig>> {
    settings.batches.iter().find(|b| b.name == name).map(|b| Rc::new(b.clone()))
}

/// `GET /batches`: every configured batch with its last run (from the
/// ledger), whether it runs, and when it runs next.
async fn batch_views(runner: &Rc<dyn Runner>, batches: &[BatchConfig]) -> Vec<BatchView> {
    let names: Vec<String> = batches.iter().map(|b| b.name.clone()).collect();
    let mut last = match runner.ledger() {
        Some(ledger) => ledger.last(&names).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the run history");
            Default::default()
        }),
        None => Default::default(),
    };
    batches
        .iter()
        .map(|b| {
            let last_run = last.remove(&b.name);
            let from_ledger = last_run.as_ref().map(|r| r.is_running());
            BatchView {
                running: runner.running(&b.name).or(from_ledger).or(Some(false)),
                next_run: runner.next_run(&b.name).map(rfc3339),
                progress: runner.progress(&b.name),
                ..BatchView::of(b, last_run)
            }
        })
        .collect()
}
