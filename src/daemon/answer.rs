//! The daemon's answers to the admin endpoint's requests, from its own
//! state, on its own thread.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::admin::{AdminRequest, Trigger};
use super::runs::{NotStarted, Shared};
use crate::config::{BatchConfig, Settings};
use crate::model::time::rfc3339;
use crate::present::api::BatchView;

/// Answers one request of the admin endpoint from the daemon's state. What
/// needs the database is answered by a task of its own, once the
/// database's thread has answered.
pub fn answer(shared: &Rc<Shared>, settings: &Settings, request: AdminRequest) {
    // A reply that cannot be delivered means the HTTP request is gone.
    match request {
        AdminRequest::Ping(reply) => {
            let _ = reply.send(());
        }
        AdminRequest::Ready(reply) => {
            let _ = reply.send(shared.state.check_writable().map_err(|e| e.to_string()));
        }
        AdminRequest::Metrics(reply) => {
            let _ = reply.send(shared.metrics.borrow().render());
        }
        AdminRequest::Batches(reply) => {
            let (shared, batches) = (Rc::clone(shared), settings.batches.clone());
            actix_rt::spawn(async move {
                let _ = reply.send(batch_views(&shared, &batches).await);
            });
        }
        AdminRequest::Runs { batch, limit, reply } => {
            let state = shared.state.clone();
            actix_rt::spawn(async move {
                let runs = state.call(move |db| db.runs(batch.as_deref(), limit)).await;
                let _ = reply.send(runs.map_err(|e| e.to_string()));
            });
        }
        AdminRequest::Trigger { batch, reply } => {
            let started = match settings.batches.iter().find(|b| b.name == batch) {
                None => Err(Trigger::Unknown),
                Some(config) => shared.try_start(&Rc::new(config.clone()), "admin").map_err(refused),
            };
            actix_rt::spawn(async move {
                let answer = match started {
                    Err(answer) => answer,
                    Ok(run_id) => match run_id.await {
                        Ok(Ok(run_id)) => {
                            tracing::info!(batch = %batch, run = run_id, "run requested through the admin endpoint");
                            Trigger::Started { run_id }
                        }
                        Ok(Err(why)) => refused(why),
                        Err(_) => Trigger::Failed("the run ended before it was recorded".to_owned()),
                    },
                };
                let _ = reply.send(answer);
            });
        }
    }
}

/// The answer to a trigger that did not start a run.
fn refused(why: NotStarted) -> Trigger {
    match why {
        NotStarted::Running => Trigger::Running,
        NotStarted::Failed(message) => Trigger::Failed(message),
        NotStarted::Stopping => Trigger::Failed("the daemon is stopping".to_owned()),
    }
}

/// `GET /batches`: every configured batch with its live facts.
async fn batch_views(shared: &Shared, batches: &[BatchConfig]) -> Vec<BatchView> {
    let mut last = shared.state.call(|db| db.last_runs()).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the run history");
        BTreeMap::new()
    });
    let next_runs = shared.next_runs.borrow();
    batches
        .iter()
        .map(|b| BatchView {
            running: Some(shared.is_running(&b.name)),
            next_run: next_runs.get(&b.name).map(|t| rfc3339(*t)),
            ..BatchView::of(b, last.remove(&b.name))
        })
        .collect()
}
