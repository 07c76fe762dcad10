//! Schedules in a fleet: ticks aligned to multiples of `every` since the
//! UNIX epoch, so that every node agrees on them; each tick runs at most
//! once in the fleet and, if any node is up during its period, at least
//! once.
//!
//! - **At most once.** A scheduled start names its tick, and the fleet
//!   refuses a start for a tick the batch's newest run already ran for (a
//!   compare-and-set on that record: see `runs`). A claim in the ticks
//!   bucket (create-if-absent) decides which node tries first, so the
//!   nodes do not all start at once.
//! - **At least once.** A claim or a start that fails because NATS is away
//!   is tried again until the tick's period ends; a node that sees another
//!   node's claim and, a while later, no run for the tick, starts it itself
//!   (the claimer died, or its start failed).
//! - **Clocks.** A run that started "in the future" (a node whose clock is
//!   ahead) counts as recent, never as overdue. Claims are kept at least two
//!   periods: each claim removes the one two periods older.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::CreateErrorKind;

use super::core::Fleet;
use super::messages::TickClaim;
use super::names::tick_key;
use super::runs::json;
use crate::config::BatchConfig;
use crate::job::ledger::{LedgerError, RunStart};
use crate::model::run::RunRecord;
use crate::model::time::rfc3339;

/// How long a node waits for another node's claimed tick to start before
/// it starts the run itself.
const CLAIM_PATIENCE: Duration = Duration::from_secs(10);

/// How long to wait before trying a tick again after NATS failed.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the UNIX epoch.
fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `every` in milliseconds, at least 1.
fn period(every: Duration) -> u64 {
    u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The tick (UNIX milliseconds) of the period of length `every` that holds
/// `now`, and the one after it.
pub fn ticks_around(now: SystemTime, every: Duration) -> (u64, u64) {
    let every = period(every);
    let current = unix_millis(now) / every * every;
    (current, current.saturating_add(every))
}

/// Whether a batch whose newest run is `last` (started at `started`, for
/// tick `tick` when scheduled) still has to run for the period that holds
/// `now`: it never ran, or its newest run is for an earlier period. A start
/// time in the future is a clock ahead of ours: this period's.
pub fn overdue(last: Option<(SystemTime, Option<u64>)>, every: Duration, now: SystemTime) -> bool {
    let Some((started, tick)) = last else { return true };
    let (current, _) = ticks_around(now, every);
    tick.unwrap_or_else(|| unix_millis(started)) < current
}

/// What a schedule needs of its node.
pub struct Scheduling {
    /// The fleet.
    pub fleet: Fleet,
    /// When each scheduled batch runs next.
    pub next_runs: Rc<RefCell<BTreeMap<String, SystemTime>>>,
    /// Told of each run this node started.
    pub started: Rc<dyn Fn(&RunRecord)>,
}

impl Scheduling {
    /// Runs `batch` at every tick of `every`, and at once if it is
    /// overdue, until the task is dropped.
    pub async fn keep(self: Rc<Self>, batch: Rc<BatchConfig>, every: Duration) {
        let due_now = loop {
            match self.fleet.last_run(&batch.name).await {
                Ok(last) => {
                    let last = last.map(|(run, _)| {
                        let started = humantime::parse_rfc3339(&run.record.started_at).unwrap_or(UNIX_EPOCH);
                        (started, run.tick)
                    });
                    break overdue(last, every, SystemTime::now());
                }
                Err(e) => {
                    tracing::warn!(batch = %batch.name, error = %e, "cannot read the batch's last run yet");
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        };
        if due_now {
            self.tick(&batch, every, ticks_around(SystemTime::now(), every).0).await;
        }
        loop {
            let (_, next) = ticks_around(SystemTime::now(), every);
            let at = UNIX_EPOCH + Duration::from_millis(next);
            self.next_runs.borrow_mut().insert(batch.name.clone(), at);
            tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await;
            self.tick(&batch, every, next).await;
        }
    }

    /// Sees that `batch`'s tick `tick` runs: claims it and starts its run,
    /// or lets the claimer start it (and starts it if the claimer does
    /// not), trying again while NATS fails, until the period ends.
    async fn tick(&self, batch: &BatchConfig, every: Duration, tick: u64) {
        let end = UNIX_EPOCH + Duration::from_millis(tick.saturating_add(period(every)));
        let mut claimed_by_other = false;
        while SystemTime::now() < end {
            if !claimed_by_other {
                match self.claim(batch, every, tick).await {
                    Ok(true) => {}
                    Ok(false) => {
                        claimed_by_other = true;
                        tokio::time::sleep(
                            CLAIM_PATIENCE.min(end.duration_since(SystemTime::now()).unwrap_or_default()),
                        )
                        .await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(batch = %batch.name, tick, error = %e, "cannot claim a tick yet; trying again");
                        tokio::time::sleep(RETRY_EVERY).await;
                        continue;
                    }
                }
            }
            let start = RunStart { tick: Some(tick), ..RunStart::of(batch, "schedule") };
            match self.fleet.start_run(start).await {
                Ok(run) => {
                    if claimed_by_other {
                        tracing::warn!(batch = %batch.name, tick, "the node that claimed the tick did not start it; started here");
                    }
                    (self.started)(&run.record);
                    return;
                }
                Err(LedgerError::TickRan { .. }) => return,
                Err(LedgerError::Running { run, .. }) => {
                    tracing::warn!(batch = %batch.name, run, "previous run still in progress; skipping this tick");
                    return;
                }
                Err(e) => {
                    tracing::warn!(batch = %batch.name, tick, error = %e, "scheduled run not started yet; trying again");
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
        tracing::error!(batch = %batch.name, tick, "the tick's period ended before its run could start");
    }

    /// Claims `batch`'s tick `tick`: `true` when this node got it, `false`
    /// when another node has it. The claim two periods older is removed.
    async fn claim(&self, batch: &BatchConfig, every: Duration, tick: u64) -> Result<bool, LedgerError> {
        let claim = TickClaim { node: self.fleet.node.clone(), claimed_at: rfc3339(SystemTime::now()) };
        match self.fleet.ticks.create(tick_key(&batch.name, tick), json(&claim)).await {
            Ok(_) => {
                let old = tick.saturating_sub(2 * period(every));
                if let Err(e) = self.fleet.ticks.purge(tick_key(&batch.name, old)).await {
                    tracing::debug!(batch = %batch.name, error = %e, "cannot remove an old tick claim");
                }
                Ok(true)
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                tracing::debug!(batch = %batch.name, tick, "tick claimed by another node");
                Ok(false)
            }
            Err(e) => Err(super::core::nats_error(format!("cannot claim tick {tick} of batch {}", batch.name), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn ticks_are_aligned_to_multiples_of_every() {
        assert_eq!(ticks_around(at(125_000), Duration::from_secs(60)), (120_000, 180_000));
        assert_eq!(ticks_around(at(120_000), Duration::from_secs(60)), (120_000, 180_000));
        assert_eq!(ticks_around(at(1_500), Duration::from_millis(1_500)), (1_500, 3_000));
        // Nodes that wake at different moments of a period agree on its tick.
        assert_eq!(
            ticks_around(at(3_601_000), Duration::from_secs(3600)).0,
            ticks_around(at(7_199_999), Duration::from_secs(3600)).0
        );
    }

    #[test]
    fn a_batch_is_overdue_until_it_ran_for_the_current_period() {
        let day = Duration::from_secs(24 * 3600);
        let tick = 10 * 86_400_000;
        let now = at(tick + 60_000); // one minute past a tick
        assert!(overdue(None, day, now), "never ran");
        assert!(overdue(Some((at(tick - 86_400_000), Some(tick - 86_400_000))), day, now), "yesterday's tick");
        // A run a minute before the tick was for the previous period: a node
        // up in this one runs this one's.
        assert!(overdue(Some((at(tick - 60_000), None)), day, now));
        // This period's tick ran (its claim started it a little late, or a
        // little early on a clock ahead of ours).
        assert!(!overdue(Some((at(tick + 30_000), Some(tick))), day, now));
        assert!(!overdue(Some((at(tick - 2_000), Some(tick))), day, now));
        // A run started by hand since the tick covers the period.
        assert!(!overdue(Some((at(tick + 10_000), None)), day, now));
        // A start in the future (a clock ahead) is this period's, not overdue.
        assert!(!overdue(Some((at(tick + 2 * 86_400_000), None)), day, now));
    }
}
