//! What the state database holds, as values: what each batch saved, and the
//! history of its runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::model::codes::CountryCode;

/// What is known of a code's file from earlier runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The last outcome's kind (`downloaded`, `unchanged`, `not_found`, ...).
    pub status: String,
    /// Where the file was last saved.
    pub path: Option<PathBuf>,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// Its SHA-256, lower-case hex.
    pub sha256: Option<String>,
    /// The server's `ETag` for it.
    pub etag: Option<String>,
    /// The server's `Last-Modified` for it.
    pub last_modified: Option<String>,
    /// The URL it was saved from (credentials masked).
    pub url: Option<String>,
}

/// One run, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id.
    pub id: i64,
    /// The batch (`(fetch)` for `flagsd fetch --state`).
    pub batch: String,
    /// What started it: `schedule`, `admin`, `reload`, `run` or `fetch`.
    pub trigger: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC; `null` while running (or if the process died).
    pub ended_at: Option<String>,
    /// Counts; `null` until the run ends.
    pub counts: Option<RunCounts>,
    /// The run's exit status (0, 1, 3, 130, 143); `null` until it ends.
    pub exit_status: Option<i32>,
}

/// The counts of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Codes saved.
    pub downloaded: i64,
    /// Codes whose file was current.
    pub unchanged: i64,
    /// Codes the server did not have.
    pub not_found: i64,
    /// Codes that ended in an error.
    pub errors: i64,
}

/// What earlier runs of a batch saved, by code.
pub type KnownFiles = HashMap<CountryCode, FileRecord>;

/// What earlier runs saved, shared with whoever keeps it up to date (a
/// fleet node's watch of the fleet's records) while jobs read it. Writers
/// insert or remove whole records only, so a lock poisoned by a panic
/// elsewhere still holds a consistent map.
pub type SharedKnownFiles = Arc<RwLock<KnownFiles>>;
