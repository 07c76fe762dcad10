//! The daemon's answers to the admin endpoint's requests, from its own
//! state, on its own thread.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::admin::{AdminRequest, Trigger};
use super::runs::{NotStarted, Shared};
use crate::config::Settings;
use crate::model::time::rfc3339;
use crate::present::api::BatchView;

/// Answers one request of the admin endpoint from the daemon's state.
pub fn answer(shared: &Rc<Shared>, settings: &Settings, request: AdminRequest) {
    // A reply that cannot be delivered means the HTTP request is gone.
    match request {
        AdminRequest::Ping(reply) => {
            let _ = reply.send(());
        }
        AdminRequest::Ready(reply) => {
            let _ = reply.send(shared.state.borrow().check_writable().map_err(|e| e.to_string()));
        }
        AdminRequest::Metrics(reply) => {
            let _ = reply.send(shared.metrics.borrow().render());
        }
        AdminRequest::Batches(reply) => {
            let _ = reply.send(batch_views(shared, settings));
        }
        AdminRequest::Runs { batch, limit, reply } => {
            let _ = reply.send(shared.state.borrow().runs(batch.as_deref(), limit).map_err(|e| e.to_string()));
        }
        AdminRequest::Trigger { batch, reply } => {
            let answer = match settings.batches.iter().find(|b| b.name == batch) {
                None => Trigger::Unknown,
                Some(config) => match shared.try_start(&Rc::new(config.clone()), "admin") {
                    Ok(run_id) => {
                        tracing::info!(batch = %batch, run = run_id, "run requested through the admin endpoint");
                        Trigger::Started { run_id }
                    }
                    Err(NotStarted::Running) => Trigger::Running,
                    Err(NotStarted::Failed(message)) => Trigger::Failed(message),
                    Err(NotStarted::Stopping) => Trigger::Failed("the daemon is stopping".to_owned()),
                },
            };
            let _ = reply.send(answer);
        }
    }
}

/// `GET /batches`: every configured batch with its live facts.
fn batch_views(shared: &Shared, settings: &Settings) -> Vec<BatchView> {
    let mut last = shared.state.borrow().last_runs().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the run history");
        BTreeMap::new()
    });
    let next_runs = shared.next_runs.borrow();
    settings
        .batches
        .iter()
        .map(|b| BatchView {
            running: Some(shared.is_running(&b.name)),
            next_run: next_runs.get(&b.name).map(|t| rfc3339(*t)),
            ..BatchView::of(b, last.remove(&b.name))
        })
        .collect()
}
