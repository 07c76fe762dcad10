//! What the nodes of a fleet write to NATS, as JSON: the work items, the
//! outcomes, the run records and the nodes' heartbeats. Every node reads
//! what any node wrote, so these are a stable interface within a fleet.

use serde::{Deserialize, Serialize};

use crate::present::api::{RunCounts, RunRecord};
use crate::present::results::CodeResult;

/// One code of one run, queued on the work stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The run.
    pub run: i64,
    /// The batch (its name in the configuration every node runs).
    pub batch: String,
    /// The country code.
    pub code: String,
}

/// One code's final outcome in one run, published with the
/// de-duplication id `{run}/{code}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeMessage {
    /// The run.
    pub run: i64,
    /// What became of the code, and the node that fetched it.
    #[serde(flatten)]
    pub result: CodeResult,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Codes are queued or in flight.
    Running,
    /// Every code has an outcome.
    Finished,
    /// Stopped before every code had one (`flagsd run` interrupted).
    Cancelled,
}

/// A run as the fleet records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEntry {
    /// The run id, unique in the fleet.
    pub id: i64,
    /// The batch.
    pub batch: String,
    /// What started it: `schedule`, `admin`, `run`.
    pub trigger: String,
    /// The node (or `flagsd run`) that started it.
    pub started_by: String,
    /// The scheduled tick (UNIX milliseconds) it runs for, if scheduled.
    pub tick: Option<u64>,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// The codes asked for, in order.
    pub codes: Vec<String>,
    /// Where it stands.
    pub state: RunState,
    /// End, RFC 3339 UTC, once it ended.
    pub ended_at: Option<String>,
    /// Counts, once it ended.
    pub counts: Option<RunCounts>,
    /// Exit status, once it ended (0 or 1; 130 or 143 when cancelled).
    pub exit_status: Option<i32>,
}

impl RunEntry {
    /// The run as the run history shows it.
    pub fn record(&self) -> RunRecord {
        RunRecord {
            id: self.id,
            batch: self.batch.clone(),
            trigger: self.trigger.clone(),
            started_at: self.started_at.clone(),
            ended_at: self.ended_at.clone(),
            counts: self.counts,
            exit_status: self.exit_status,
        }
    }
}

/// A node's heartbeat, renewed every few seconds; a node whose heartbeat
/// has expired is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBeat {
    /// The node's name.
    pub node: String,
    /// When it joined, RFC 3339 UTC.
    pub joined_at: String,
    /// When it last said it was alive, RFC 3339 UTC.
    pub heartbeat_at: String,
    /// Codes it is fetching right now.
    pub in_flight: u64,
}
