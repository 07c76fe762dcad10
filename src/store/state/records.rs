//! What the state database holds of each batch's files, as values (its
//! runs are [`crate::model::run::RunRecord`]s).

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

/// What earlier runs of a batch saved, by code.
pub type KnownFiles = HashMap<CountryCode, FileRecord>;

/// What earlier runs saved, shared with whoever keeps it up to date (a
/// fleet node's watch of the fleet's records) while jobs read it. Writers
/// insert or remove whole records only, so a lock poisoned by a panic
/// elsewhere still holds a consistent map.
pub type SharedKnownFiles = Arc<RwLock<KnownFiles>>;
