//! The state database: what each batch saved, and the history of its runs.
//!
//! One SQLite file, `{state_dir}/flagsd.db` (rusqlite with SQLite bundled, so
//! the build needs nothing but a C compiler). Three tables:
//!
//! - `runs`: one row a run (batch, what started it, start and end, state,
//!   counts, exit status, error), inserted when the run starts and
//!   completed when it ends;
//! - `files`: per batch and code, the last outcome and, for the file last
//!   saved, its path, size, SHA-256, `ETag` and `Last-Modified`: what the
//!   next run needs for a conditional request;
//! - `outcomes`: each code's outcome in the newest [`OUTCOMES_KEPT`] runs
//!   of each batch (a run's page in the admin API).
//!
//! The schema version is SQLite's `user_version`; [`StateDb::open`] applies
//! the missing [`MIGRATIONS`] in one transaction and refuses a database newer
//! than it knows. A file that is not an SQLite database, or fails SQLite's
//! quick check, is reported as corrupt and left untouched: flagsd never
//! deletes or recreates a state database by itself. The journal is in WAL
//! mode, so `flagsd status` can read while the daemon writes, and a writer
//! waits up to [`BUSY_TIMEOUT`] for another before reporting the database as
//! locked.
//!
//! The connection lives on a thread of its own ([`StateHandle`]), so that
//! a lock held by another process never blocks the daemon's event loop.
//!
//! Outcomes are written when a run ends (interrupted runs included), in one
//! transaction: a process killed mid-run loses that run's records. That is
//! safe: a file it replaced no longer matches its record, so the next run
//! asks for it unconditionally.

mod db;
mod error;
mod handle;
mod records;
mod schema;

pub use db::{BUSY_TIMEOUT, DB_FILE, OUTCOMES_KEPT, RunEnd, StateDb};
pub use error::StateError;
pub use handle::StateHandle;
pub use records::{FileRecord, KnownFiles, SharedKnownFiles};
pub use schema::SCHEMA_VERSION;
