//! Why the state database cannot be used.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// The state database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory cannot be created.
    #[error("cannot create the state directory '{}': {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an SQLite database, or is damaged.
    #[error(
        "state database '{}' is corrupt or not an SQLite database ({detail}); \
         move it aside to start with an empty history",
        path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// Another process held the database longer than [`BUSY_TIMEOUT`](super::BUSY_TIMEOUT).
    #[error("state database '{}' is locked by another process ({detail})", path.display())]
    Locked {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The schema is newer than this flagsd.
    #[error(
        "state database '{}' has schema version {found}, newer than this flagsd's {supported}: \
         it was written by a newer flagsd",
        path.display()
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this flagsd knows.
        supported: i64,
    },
    /// A reader found another schema version than its own (it migrates nothing).
    #[error(
        "state database '{}' has schema version {found}; this flagsd reads version {supported} \
         (a `flagsd run` or `serve` of this version migrates it)",
        path.display()
    )]
    OtherVersion {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The version this flagsd reads.
        supported: i64,
    },
    /// Any other failure (permissions, a full disk, ...).
    #[error("state database '{}': {source}", path.display())]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The state directory or the database file is not writable.
    #[error("state '{}' is not writable: {source}", path.display())]
    NotWritable {
        /// The directory or the file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The database's thread cannot be started.
    #[error("state database '{}': cannot start its thread: {source}", path.display())]
    Thread {
        /// The database file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The database's thread is gone (it panicked).
    #[error("state database '{}': its thread is gone", path.display())]
    Gone {
        /// The database file.
        path: PathBuf,
    },
}

/// Names what went wrong: corruption and locks get their own messages.
pub(super) fn classify(path: &Path, error: rusqlite::Error) -> StateError {
    let path = path.to_owned();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StateError::Corrupt { path, detail: error.to_string() }
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StateError::Locked { path, detail: error.to_string() }
        }
        _ => StateError::Sql { path, source: error },
    }
}
