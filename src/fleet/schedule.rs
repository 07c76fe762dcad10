//! Schedules in a fleet: ticks aligned to multiples of `every` since the
//! UNIX epoch, so that every node agrees on them, and claimed in the ticks
//! bucket, so that each runs once in the fleet.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::CreateErrorKind;

use super::names::tick_key;
use super::node::Node;
use super::runs::StartError;
use crate::config::BatchConfig;

/// Milliseconds since the UNIX epoch.
fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The tick (UNIX milliseconds) of the period of length `every` that holds
/// `now`, and the one after it.
pub fn ticks_around(now: SystemTime, every: Duration) -> (u64, u64) {
    let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
    let current = unix_millis(now) / every * every;
    (current, current.saturating_add(every))
}

impl Node {
    /// Claims `batch`'s tick `tick` and, if this node got it, starts the run.
    pub(super) async fn claim(&self, batch: &BatchConfig, tick: u64) {
        match self.fleet.ticks.create(tick_key(&batch.name, tick), self.fleet.node.clone().into()).await {
            Ok(_) => match self.start_run(batch, "schedule", Some(tick)).await {
                Ok(_) => {}
                Err(StartError::Running { run, .. }) => {
                    tracing::warn!(batch = %batch.name, run, "previous run still in progress; skipping this tick");
                }
                Err(e) => tracing::error!(batch = %batch.name, error = %e, "scheduled run not started"),
            },
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                tracing::debug!(batch = %batch.name, tick, "tick claimed by another node");
            }
            Err(e) => tracing::warn!(batch = %batch.name, tick, error = %e, "cannot claim a tick; it is skipped"),
        }
    }

    /// Runs `batch` at every tick of `every`, and at once if its last run
    /// is older than `every`.
    pub(super) async fn schedule(self: Rc<Self>, batch: Rc<BatchConfig>, every: Duration) {
        let overdue = match self.fleet.last_run(&batch.name).await {
            Ok(Some((last, _))) => humantime::parse_rfc3339(&last.started_at)
                .ok()
                .and_then(|started| started.elapsed().ok())
                .is_none_or(|age| age >= every),
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(batch = %batch.name, error = %e, "cannot read the batch's last run; waiting for the next tick");
                false
            }
        };
        if overdue {
            self.claim(&batch, ticks_around(SystemTime::now(), every).0).await;
        }
        loop {
            let (_, next) = ticks_around(SystemTime::now(), every);
            let at = UNIX_EPOCH + Duration::from_millis(next);
            self.next_runs.borrow_mut().insert(batch.name.clone(), at);
            tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await;
            self.claim(&batch, next).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_aligned_to_multiples_of_every() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(ticks_around(at(125_000), Duration::from_secs(60)), (120_000, 180_000));
        assert_eq!(ticks_around(at(120_000), Duration::from_secs(60)), (120_000, 180_000));
        assert_eq!(ticks_around(at(1_500), Duration::from_millis(1_500)), (1_500, 3_000));
        // Nodes that wake at different moments of a period agree on its tick.
        assert_eq!(
            ticks_around(at(3_601_000), Duration::from_secs(3600)).0,
            ticks_around(at(7_199_999), Duration::from_secs(3600)).0
        );
    }
}
