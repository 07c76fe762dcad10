//! A run as every command, ledger and answer sees it: its record (what
//! started it, where it stands, its counts) and, for a run's page, the
//! outcome of each code.
//!
//! One type for both kinds of run: a run of this process, recorded in the
//! state database, and a run of a fleet, recorded in NATS. Field names are a
//! stable interface (the admin API's `GET /runs`, `flagsd status`, the
//! fleet's run records): new fields may be added, none renamed.

use serde::{Deserialize, Serialize};

use crate::model::codes::CountryCode;
use crate::model::exit::ExitStatus;
use crate::model::outcome::{CodeOutcome, Outcome, StatusCounts};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Codes are queued or in flight.
    Running,
    /// Every code has an outcome.
    Finished,
    /// Stopped before every code had one: a signal, `flagsd cancel`, or
    /// the admin API's cancel.
    Cancelled,
    /// Ended by an error before or while it ran (its output directory, its
    /// server's set-up, the queue lost for good): `error` says which.
    Failed,
}

impl RunState {
    /// The state of a run that ended with `status` (what a record without
    /// a state, written by an older flagsd, is read as).
    pub fn of_status(status: Option<i32>) -> Self {
        match status {
            None => Self::Running,
            Some(0 | 1) => Self::Finished,
            Some(130 | 143) => Self::Cancelled,
            Some(_) => Self::Failed,
        }
    }

    /// The state's name, as the records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// One cause of a run's errors, in a few words, and how many codes it
/// failed (see `model::causes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The cause: `connection refused`, `HTTP 503`.
    pub cause: String,
    /// Codes that failed of it.
    pub count: usize,
}

/// The counts of `results`, by their outcome kinds (`unfinished` is not
/// counted).
pub fn tally(results: &[CodeResult]) -> StatusCounts {
    let mut counts = StatusCounts::default();
    for result in results {
        counts.record_kind(&result.outcome);
    }
    counts
}

/// One run, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (unique in its state database, or in its fleet).
    pub id: i64,
    /// The batch (`(fetch)` for `flagsd fetch --state`).
    pub batch: String,
    /// What started it: `schedule`, `admin`, `reload`, `run` or `fetch`.
    pub trigger: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC; `null` while running.
    pub ended_at: Option<String>,
    /// Where it stands (older records without one: derived from the exit
    /// status).
    #[serde(default = "running")]
    pub state: RunState,
    /// Counts: every code with an outcome, once; `null` until it ends.
    pub counts: Option<StatusCounts>,
    /// The run's exit status (0, 1, 2, 3, 130, 143); `null` until it ends.
    pub exit_status: Option<i32>,
    /// Why a failed run failed (`null` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The causes of its errors, most common first, 10 at
    /// most (`model::causes` counts them); empty until it ends, and for a run without errors.
    #[serde(default)]
    pub causes: Vec<Cause>,
    /// In a fleet, the node (or `flagsd run`) that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

fn running() -> RunState {
    RunState::Running
}

impl RunRecord {
    /// The record of a run of `batch` started now by `trigger`, at `started_at`.
    pub fn started(id: i64, batch: &str, trigger: &str, started_at: String) -> Self {
        Self {
            id,
            batch: batch.to_owned(),
            trigger: trigger.to_owned(),
            started_at,
            ended_at: None,
            state: RunState::Running,
            counts: None,
            exit_status: None,
            error: None,
            causes: Vec::new(),
            started_by: None,
        }
    }

    /// Whether the run is still going.
    pub fn is_running(&self) -> bool {
        self.state == RunState::Running
    }

    /// The run's exit status once it ended.
    pub fn status(&self) -> Option<ExitStatus> {
        self.exit_status.map(ExitStatus::from_code)
    }
}

/// One code's outcome in a run, as a run's page, `--json` and the fleet
/// record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeResult {
    /// The country code, upper case.
    pub code: String,
    /// `downloaded`, `unchanged`, `not_found`, `unfinished`, or an error
    /// kind (`http_error`, `connection_error`, `too_large`, `io_error`,
    /// `metadata_error`, `internal_error`).
    pub outcome: String,
    /// The HTTP status of the last response, if one came.
    pub status: Option<u16>,
    /// The error message (as in the verbose line), for errors only.
    pub message: Option<String>,
    /// Requests made for this code.
    pub attempts: u32,
    /// Body bytes received and saved.
    pub bytes: u64,
    /// The file on disk for this code (downloaded or unchanged), else `null`.
    pub file: Option<String>,
    /// The URL requested (credentials masked).
    pub url: String,
    /// The fleet node that fetched it (`null` outside a fleet).
    #[serde(default)]
    pub node: Option<String>,
    /// Why it was tried again (`HTTP 503`, `a timeout`…), when it was;
    /// `null` otherwise.
    #[serde(default)]
    pub retry_cause: Option<String>,
}

impl CodeResult {
    /// The result of a finished code.
    pub fn of(o: &CodeOutcome) -> Self {
        Self {
            code: o.code.to_string(),
            outcome: o.outcome.kind().to_owned(),
            status: o.outcome.http_status(),
            message: match &o.outcome {
                Outcome::Failed(error) => Some(error.to_string()),
                _ => None,
            },
            attempts: o.attempts,
            bytes: o.outcome.bytes(),
            file: o.outcome.file().map(|p| p.display().to_string()),
            url: o.url.clone(),
            node: None,
            retry_cause: o.retry_cause.map(|cause| cause.to_string()),
        }
    }

    /// A code that did not finish, to be fetched from `url`.
    pub fn unfinished(code: CountryCode, url: String) -> Self {
        Self {
            code: code.to_string(),
            outcome: "unfinished".to_owned(),
            status: None,
            message: None,
            attempts: 0,
            bytes: 0,
            file: None,
            url,
            node: None,
            retry_cause: None,
        }
    }

    /// Whether the code ended in an error.
    pub fn is_error(&self) -> bool {
        !matches!(self.outcome.as_str(), "downloaded" | "unchanged" | "not_found" | "unfinished")
    }
}

/// A run and what became of each of its codes that has an outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetails {
    /// The run.
    #[serde(flatten)]
    pub record: RunRecord,
    /// Each code with an outcome, once, in the order they were recorded.
    pub codes: Vec<CodeResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_state_reads_as_its_status_says() {
        let old =
            r#"{"id":7,"batch":"b","trigger":"run","started_at":"t","ended_at":null,"counts":null,"exit_status":null}"#;
        let record: RunRecord = serde_json::from_str(old).expect("an older record");
        assert_eq!((record.state, record.error, record.started_by), (RunState::Running, None, None));
        assert_eq!(RunState::of_status(Some(1)), RunState::Finished);
        assert_eq!(RunState::of_status(Some(143)), RunState::Cancelled);
        assert_eq!(RunState::of_status(Some(3)), RunState::Failed);
        let json = serde_json::to_value(RunRecord::started(1, "b", "admin", "t".into())).expect("JSON");
        assert_eq!(json["state"], "running");
        assert!(json.get("error").is_none(), "{json}");
    }
}
