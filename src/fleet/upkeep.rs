//! A node's upkeep: its heartbeat (which also shares the rates among the
//! live nodes and reads the fleet's gauges) and the finisher that closes
//! runs whose codes are all accounted for.

use std::rc::Rc;
use std::time::SystemTime;

use futures_util::StreamExt as _;

use super::core::{Fleet, FleetError};
use super::messages::{NodeBeat, RunState};
use super::node::{BEAT_EVERY, FINISH_COALESCE, Node, SWEEP_EVERY};
use crate::model::time::rfc3339;

impl Node {
    /// Renews the heartbeat, shares the rates among the live nodes and reads
    /// the fleet's gauges, every [`BEAT_EVERY`].
    pub(super) async fn heartbeat(self: Rc<Self>) {
        let mut ticks = tokio::time::interval(BEAT_EVERY);
        if let Ok(Some(_)) = self.fleet.nodes.get(&self.fleet.node).await {
            tracing::warn!(
                node = %self.fleet.node,
                "a live node of the fleet has this node's name (or this node restarted within seconds): \
                 node names must be unique"
            );
        }
        loop {
            ticks.tick().await;
            let in_flight = self.lanes.borrow().values().map(|l| l.source.held() as u64).sum();
            let beat = NodeBeat {
                node: self.fleet.node.clone(),
                joined_at: rfc3339(self.joined_at),
                heartbeat_at: rfc3339(SystemTime::now()),
                in_flight,
            };
            let value = serde_json::to_vec(&beat).unwrap_or_default();
            if let Err(e) = self.fleet.nodes.put(&self.fleet.node, value.into()).await {
                tracing::warn!(error = %e, "cannot renew this node's heartbeat");
                continue;
            }
            match self.fleet.live_nodes().await {
                Ok(nodes) => {
                    let live = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
                    self.context.limiters.share_among(live);
                    self.gauges.borrow_mut().live_nodes = u64::from(live);
                }
                Err(e) => tracing::warn!(error = %e, "cannot count the live nodes"),
            }
            let consumers: Vec<_> = self.lanes.borrow().iter().map(|(n, l)| (n.clone(), l.consumer.clone())).collect();
            for (name, mut consumer) in consumers {
                if let Ok(info) = consumer.info().await {
                    let mut gauges = self.gauges.borrow_mut();
                    gauges.queued.insert(name.clone(), info.num_pending);
                    gauges.in_flight.insert(name, info.num_ack_pending as u64);
                }
            }
        }
    }

    /// Finishes the runs whose codes are all accounted for: those this node
    /// published an outcome of, as soon as it did, and every batch's running
    /// run every [`SWEEP_EVERY`] (whoever worked on it).
    pub(super) async fn finisher(self: Rc<Self>) {
        let mut wake = self.touched.subscribe();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                // Outcomes come in bursts: check once a burst, not once an outcome.
                _ = wake.changed() => tokio::time::sleep(FINISH_COALESCE).await,
                _ = sweep.tick() => {
                    let batches: Vec<String> = self.lanes.borrow().keys().cloned().collect();
                    for batch in batches {
                        if let Ok(Some((entry, _))) = self.fleet.last_run(&batch).await
                            && entry.state == RunState::Running
                        {
                            self.touched.defer(entry.id);
                        }
                    }
                }
            }
            for id in self.touched.take() {
                match self.fleet.finish_if_complete(id).await {
                    Ok(Some(entry)) => (self.hooks.run_ended)(&entry),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(run = id, error = %e, "cannot finish a run yet");
                        self.touched.defer(id);
                    }
                }
            }
        }
    }
}

impl Fleet {
    /// The live nodes' heartbeats.
    pub async fn live_nodes(&self) -> Result<Vec<NodeBeat>, FleetError> {
        let what = || "cannot read the live nodes".to_owned();
        let mut keys = self.nodes.keys().await.map_err(|e| FleetError::new(what(), e))?;
        let mut beats = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| FleetError::new(what(), e))?;
            if let Some(value) = self.nodes.get(&key).await.map_err(|e| FleetError::new(what(), e))?
                && let Ok(beat) = serde_json::from_slice::<NodeBeat>(&value)
            {
                beats.push(beat);
            }
        }
        Ok(beats)
    }
}
