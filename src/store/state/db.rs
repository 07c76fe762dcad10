//! The state database's connection: open, check, migrate, read and write.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, params};

use super::error::{StateError, classify};
use super::records::{FileRecord, KnownFiles};
use super::schema::{MIGRATIONS, SCHEMA_VERSION};

use crate::model::causes::Causes;
use crate::model::outcome::{CodeOutcome, Outcome, StatusCounts};
use crate::model::run::{CodeResult, RunRecord, RunState};
use crate::model::time::{self, unix_seconds};
use crate::sys::files::check_writable;
use crate::sys::process::Stamp;

/// The database file inside the state directory.
pub const DB_FILE: &str = "flagsd.db";

/// Runs kept in the history of each batch: older ones are deleted as a run
/// ends (a run a minute keeps about a week).
pub const RUNS_KEPT: i64 = 10_000;

/// Runs of each batch whose per-code outcomes are kept (a run's page).
pub const OUTCOMES_KEPT: i64 = 50;

/// How long a writer waits for another one before the database counts as locked.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The state database, open and migrated.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    dir: PathBuf,
    path: PathBuf,
    /// This process, as the owner of the runs it begins (`None` where it
    /// cannot be told: no `/proc`).
    owner: Option<String>,
}

/// [`StateDb::check_writable`] for the database `path` in `dir`, without
/// the connection.
pub(super) fn probe_writable(dir: &Path, path: &Path) -> Result<(), StateError> {
    let not_writable = |path: &Path, source| StateError::NotWritable { path: path.to_owned(), source };
    tempfile::tempfile_in(dir).map_err(|e| not_writable(dir, e))?;
    check_writable(path).map_err(|e| not_writable(path, e))
}

/// A stored time (UNIX seconds) as RFC 3339 (milliseconds, UTC).
fn rfc3339(seconds: f64) -> String {
    time::rfc3339(time::from_unix_seconds(seconds))
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl StateDb {
    /// Opens (creating if needed) the database in `dir`, checks it and
    /// migrates it to [`SCHEMA_VERSION`].
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        Self::open_with_timeout(dir, BUSY_TIMEOUT)
    }

    /// Opens the database in `dir` read-only, for readers such as `flagsd
    /// status`: `None` when there is none. Nothing is created or migrated,
    /// so the schema must be this flagsd's.
    pub fn open_read_only(dir: &Path) -> Result<Option<Self>, StateError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| classify(&path, e))?;
        let db = Self { conn, dir: dir.to_owned(), path, owner: None };
        db.check_integrity()?;
        let found = db.version()?;
        if found != SCHEMA_VERSION {
            return Err(StateError::OtherVersion { path: db.path, found, supported: SCHEMA_VERSION });
        }
        Ok(Some(db))
    }

    fn version(&self) -> Result<i64, StateError> {
        self.conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(|e| self.error(e))
    }

    /// [`open`](Self::open) with another busy timeout (tests use a short one).
    pub fn open_with_timeout(dir: &Path, busy_timeout: Duration) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir { path: dir.to_owned(), source })?;
        let path = dir.join(DB_FILE);
        let fail = |e| classify(&path, e);
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(busy_timeout).map_err(fail)?;
        let owner = Stamp::current().ok().map(|stamp| stamp.to_string());
        let db = Self { conn, dir: dir.to_owned(), path, owner };
        db.check_integrity()?;
        db.conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| db.error(e))?;
        db.conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| db.error(e))?;
        db.migrate()?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, error: rusqlite::Error) -> StateError {
        classify(&self.path, error)
    }

    fn check_integrity(&self) -> Result<(), StateError> {
        let verdict: String =
            self.conn.query_row("PRAGMA quick_check(1)", [], |row| row.get(0)).map_err(|e| self.error(e))?;
        if verdict == "ok" { Ok(()) } else { Err(StateError::Corrupt { path: self.path.clone(), detail: verdict }) }
    }

    fn migrate(&self) -> Result<(), StateError> {
        if self.version()? == SCHEMA_VERSION {
            return Ok(());
        }
        let version = |conn: &Connection| conn.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0));
        // IMMEDIATE: two processes starting at once do not both migrate.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.error(e))?;
        let found = version(&tx).map_err(|e| self.error(e))?;
        if found > SCHEMA_VERSION {
            return Err(StateError::TooNew { path: self.path.clone(), found, supported: SCHEMA_VERSION });
        }
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
            tx.execute_batch(migration).map_err(|e| self.error(e))?;
            tracing::info!(path = %self.path.display(), from, to = from + 1, "state database migrated");
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))
    }

    /// Proves the state directory writable and the database free to write:
    /// what `/readyz` checks.
    ///
    /// Nothing here takes a lock: a probe must never wait for a run of
    /// another process that holds the database. Nor does it open the
    /// database file: closing it would drop this process's POSIX locks on
    /// it, SQLite's included, and let another client delete the live WAL.
    pub fn check_writable(&self) -> Result<(), StateError> {
        probe_writable(&self.dir, &self.path)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What earlier runs of `batch` left, by code.
    pub fn files(&self, batch: &str) -> Result<KnownFiles, StateError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT code, status, path, size, sha256, etag, last_modified, url FROM files WHERE batch = ?1",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([batch], |row| {
                let code: String = row.get(0)?;
                let path: Option<Vec<u8>> = row.get(2)?;
                let size: Option<i64> = row.get(3)?;
                let record = FileRecord {
                    status: row.get(1)?,
                    path: path.map(|bytes| PathBuf::from(OsString::from_vec(bytes))),
                    size: size.and_then(|s| u64::try_from(s).ok()),
                    sha256: row.get(4)?,
                    etag: row.get(5)?,
                    last_modified: row.get(6)?,
                    url: row.get(7)?,
                };
                Ok((code, record))
            })
            .map_err(|e| self.error(e))?;
        let mut files = HashMap::new();
        for row in rows {
            let (code, record) = row.map_err(|e| self.error(e))?;
            // A code that is not two letters cannot come from flagsd: skip it.
            if let Some(code) = crate::model::codes::parse_code(&code) {
                files.insert(code, record);
            }
        }
        Ok(files)
    }

    /// Records the start of a run of `batch`, by this process; returns its id.
    pub fn begin_run(&self, batch: &str, trigger: &str, started: SystemTime) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO runs (batch, trigger, started_at, owner) VALUES (?1, ?2, ?3, ?4)",
                params![batch, trigger, unix_seconds(started), self.owner],
            )
            .map_err(|e| self.error(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records the end of run `id` of `batch` as `end` says, with every
    /// finished code's outcome, in one transaction: the run's row, what
    /// each code left on disk, and the outcomes of the newest
    /// [`OUTCOMES_KEPT`] runs of the batch.
    pub fn finish_run(&mut self, id: i64, batch: &str, end: &RunEnd<'_>) -> Result<(), StateError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        let now = unix_seconds(SystemTime::now());
        let counts = end.counts;
        let tx = self.conn.transaction().map_err(fail)?;
        tx.execute(
            "UPDATE runs SET ended_at = ?2, downloaded = ?3, unchanged = ?4, not_found = ?5, errors = ?6,
                 exit_status = ?7, state = ?8, error = ?9, causes = ?10 WHERE id = ?1",
            params![
                id,
                now,
                count(counts.downloaded),
                count(counts.unchanged),
                count(counts.not_found),
                count(counts.errors),
                end.exit_status,
                end.state.as_str(),
                end.error,
                causes_json(end.outcomes)
            ],
        )
        .map_err(fail)?;
        // The history keeps the newest runs of each batch, and the outcomes
        // of fewer of them.
        for (table, keep) in [("outcomes", OUTCOMES_KEPT), ("runs", RUNS_KEPT)] {
            let column = if table == "runs" { "id" } else { "run_id" };
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE {column} IN (SELECT id FROM runs WHERE batch = ?1 AND id <=
                         (SELECT id FROM runs WHERE batch = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2))"
                ),
                params![batch, keep],
            )
            .map_err(fail)?;
        }
        record_files(&tx, batch, now, end.outcomes).map_err(fail)?;
        record_outcomes(&tx, id, end.outcomes).map_err(fail)?;
        tx.commit().map_err(fail)
    }

    /// The outcomes recorded for run `id`, in the order they came (none
    /// once the run is older than the [`OUTCOMES_KEPT`] newest of its
    /// batch).
    pub fn outcomes(&self, id: i64) -> Result<Vec<CodeResult>, StateError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT code, outcome, status, message, attempts, bytes, file, url, retry_cause FROM outcomes
                 WHERE run_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([id], |row| {
                Ok(CodeResult {
                    code: row.get(0)?,
                    outcome: row.get(1)?,
                    status: row.get(2)?,
                    message: row.get(3)?,
                    attempts: row.get(4)?,
                    bytes: row.get::<_, i64>(5).map(|b| u64::try_from(b).unwrap_or(0))?,
                    file: row.get(6)?,
                    url: row.get(7)?,
                    node: None,
                    retry_cause: row.get(8)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.error(e))
    }

    /// The newest `limit` runs, of `batch` only when given, with an id
    /// below `before` when given (the next page), newest first.
    pub fn runs(&self, batch: Option<&str>, limit: usize, before: Option<i64>) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "{RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR batch = ?1) AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?2"
        );
        self.query_runs(&sql, params![batch, limit, before])
    }

    /// The newest run of each batch, by batch name.
    pub fn last_runs(&self) -> Result<BTreeMap<String, RunRecord>, StateError> {
        let sql = format!("{RUN_COLUMNS} FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY batch)");
        Ok(self.query_runs(&sql, [])?.into_iter().map(|r| (r.batch.clone(), r)).collect())
    }

    fn query_runs(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<RunRecord>, StateError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(params, |row| {
                let ended_at: Option<f64> = row.get(4)?;
                let n = |v: i64| usize::try_from(v).unwrap_or(0);
                let counts = match (row.get(5)?, row.get(6)?, row.get(7)?, row.get(8)?) {
                    (Some(downloaded), Some(unchanged), Some(not_found), Some(errors)) => Some(StatusCounts {
                        downloaded: n(downloaded),
                        unchanged: n(unchanged),
                        not_found: n(not_found),
                        errors: n(errors),
                    }),
                    _ => None,
                };
                let exit_status: Option<i32> = row.get(9)?;
                let state: Option<String> = row.get(10)?;
                let mut state = match state.as_deref() {
                    Some("running") => RunState::Running,
                    Some("finished") => RunState::Finished,
                    Some("cancelled") => RunState::Cancelled,
                    Some("failed") => RunState::Failed,
                    _ => RunState::of_status(exit_status),
                };
                let mut error: Option<String> = row.get(11)?;
                let owner: Option<String> = row.get(12)?;
                let causes: Option<String> = row.get(13)?;
                // Written by this module: anything else reads as none.
                let causes = causes.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
                if state == RunState::Running
                    && let Some(gone) =
                        owner.as_deref().and_then(Stamp::parse).filter(|o| o.is_running() == Some(false))
                {
                    state = RunState::Failed;
                    error = Some(abandoned(gone.pid()));
                }
                Ok(RunRecord {
                    ended_at: ended_at.map(rfc3339),
                    state,
                    counts,
                    exit_status,
                    error,
                    causes,
                    ..RunRecord::started(
                        row.get(0)?,
                        &row.get::<_, String>(1)?,
                        &row.get::<_, String>(2)?,
                        rfc3339(row.get(3)?),
                    )
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.error(e))
    }

    /// Run `id`, if it exists.
    pub fn run(&self, id: i64) -> Result<Option<RunRecord>, StateError> {
        let sql = format!("{RUN_COLUMNS} FROM runs WHERE id = ?1");
        Ok(self.query_runs(&sql, [id])?.pop())
    }
}

const RUN_COLUMNS: &str = "SELECT id, batch, trigger, started_at, ended_at, downloaded, unchanged, not_found, errors,
     exit_status, state, error, owner, causes";

/// The causes of the errors among `outcomes`, as the `causes` column keeps
/// them (`NULL` when there is none).
fn causes_json(outcomes: &[CodeOutcome]) -> Option<String> {
    let causes = Causes::of(&outcomes.iter().map(CodeResult::of).collect::<Vec<_>>());
    if causes.is_empty() { None } else { serde_json::to_string(&causes.kept()).ok() }
}

/// Why a run whose process is gone failed.
fn abandoned(pid: u32) -> String {
    format!("flagsd (process {pid}) ended before the run did: it was killed, or the machine stopped")
}

/// How a run ended, as [`StateDb::finish_run`] records it.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    /// Finished, failed or cancelled.
    pub state: RunState,
    /// The counts of `outcomes`.
    pub counts: StatusCounts,
    /// The run's exit status.
    pub exit_status: i32,
    /// Why it failed, if it did.
    pub error: Option<&'a str>,
    /// Each code's outcome, once.
    pub outcomes: &'a [CodeOutcome],
}

/// Records what each of `outcomes` left on disk, for the next runs of `batch`.
fn record_files(
    tx: &rusqlite::Transaction<'_>,
    batch: &str,
    now: f64,
    outcomes: &[CodeOutcome],
) -> rusqlite::Result<()> {
    // A new file replaces everything known of the old one.
    let mut saved = tx.prepare_cached(
        "INSERT INTO files (batch, code, status, http_status, path, size, sha256, etag, last_modified,
             updated_at, url)
         VALUES (?1, ?2, 'downloaded', ?9, ?3, ?4, ?5, ?6, ?7, ?8, ?10)
         ON CONFLICT (batch, code) DO UPDATE SET status = 'downloaded', http_status = ?9,
             path = excluded.path, size = excluded.size, sha256 = excluded.sha256,
             etag = excluded.etag, last_modified = excluded.last_modified,
             updated_at = excluded.updated_at, url = excluded.url",
    )?;
    // Anything else leaves the file (if any) and what is known of it.
    let mut other = tx.prepare_cached(
        "INSERT INTO files (batch, code, status, http_status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (batch, code) DO UPDATE SET status = excluded.status,
             http_status = excluded.http_status, updated_at = excluded.updated_at",
    )?;
    for o in outcomes {
        let code = o.code.as_str();
        match &o.outcome {
            Outcome::Downloaded(file) => saved.execute(params![
                batch,
                code,
                file.path.as_os_str().as_bytes(),
                i64::try_from(file.bytes).unwrap_or(i64::MAX),
                file.sha256,
                file.etag,
                file.last_modified,
                now,
                file.status,
                file.origin
            ]),
            outcome => other.execute(params![batch, code, outcome.kind(), outcome.http_status(), now]),
        }?;
    }
    Ok(())
}

/// Records each of `outcomes` as run `id`'s, in order.
fn record_outcomes(tx: &rusqlite::Transaction<'_>, id: i64, outcomes: &[CodeOutcome]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO outcomes (run_id, seq, code, outcome, status, message, attempts, bytes, file, url,
             retry_cause)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for (seq, o) in outcomes.iter().enumerate() {
        let r = CodeResult::of(o);
        let bytes = i64::try_from(r.bytes).unwrap_or(i64::MAX);
        insert.execute(params![
            id,
            count(seq),
            r.code,
            r.outcome,
            r.status,
            r.message,
            r.attempts,
            bytes,
            r.file,
            r.url,
            r.retry_cause
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codes::CountryCode;
    use crate::model::outcome::{DownloadError, SavedFile};

    fn code(text: &str) -> CountryCode {
        crate::model::codes::parse_code(text).unwrap()
    }

    fn end(counts: StatusCounts, exit_status: i32, outcomes: &[CodeOutcome]) -> RunEnd<'_> {
        RunEnd { state: RunState::Finished, counts, exit_status, error: None, outcomes }
    }

    fn outcome(cc: &str, outcome: Outcome) -> CodeOutcome {
        CodeOutcome { code: code(cc), url: format!("http://h/{cc}"), outcome, attempts: 1, retry_cause: None }
    }

    #[test]
    fn a_new_database_is_created_at_the_current_version_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("deep/state");
        drop(StateDb::open(&state).unwrap());
        let db = StateDb::open(&state).unwrap();
        let version: i64 = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(db.path(), state.join(DB_FILE));
    }

    #[test]
    fn a_running_run_whose_process_is_gone_reads_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let mine = db.begin_run("pop", "run", SystemTime::now()).unwrap();
        let gone = db.begin_run("pop", "run", SystemTime::now()).unwrap();
        let unknown = db.begin_run("pop", "run", SystemTime::now()).unwrap();
        // This process in another boot: the machine stopped since.
        let me = db.owner.clone().expect("a stamp on Linux");
        let (_, rest) = me.split_once('/').unwrap();
        db.conn
            .execute("UPDATE runs SET owner = ?2 WHERE id = ?1", params![gone, format!("earlier-boot/{rest}")])
            .unwrap();
        // Written by a flagsd without stamps: nothing can be told.
        db.conn.execute("UPDATE runs SET owner = NULL WHERE id = ?1", [unknown]).unwrap();

        let mine = db.run(mine).unwrap().unwrap();
        assert_eq!((mine.state, mine.error), (RunState::Running, None));
        let gone = db.run(gone).unwrap().unwrap();
        assert_eq!(gone.state, RunState::Failed);
        let pid = std::process::id();
        assert_eq!(gone.error.as_deref(), Some(abandoned(pid).as_str()));
        assert!(abandoned(pid).contains(&format!("process {pid}")));
        assert_eq!(db.run(unknown).unwrap().unwrap().state, RunState::Running);
        // Readers see the same.
        let reader = StateDb::open_read_only(dir.path()).unwrap().unwrap();
        let states: Vec<RunState> = reader.runs(Some("pop"), 10, None).unwrap().iter().map(|r| r.state).collect();
        assert_eq!(states, [RunState::Running, RunState::Failed, RunState::Running]);
    }

    #[test]
    fn an_ended_run_keeps_the_causes_of_its_errors() {
        use crate::model::causes::Cause;
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        let refused = || Outcome::Failed(DownloadError::Connection { detail: Some("connection refused".into()) });
        let http = Outcome::Failed(DownloadError::Http { status: 503, reason: "x".into(), retry_after: None });
        let outcomes =
            [outcome("BR", refused()), outcome("AR", http), outcome("CL", refused()), outcome("ZZ", Outcome::NotFound)];
        let counts = StatusCounts { downloaded: 0, unchanged: 0, not_found: 1, errors: 3 };
        let failed = db.begin_run("pop", "run", SystemTime::now()).unwrap();
        db.finish_run(failed, "pop", &end(counts, 1, &outcomes)).unwrap();
        let fine = db.begin_run("pop", "run", SystemTime::now()).unwrap();
        db.finish_run(fine, "pop", &end(StatusCounts::default(), 0, &outcomes[3..])).unwrap();
        let cause = |cause: &str, count| Cause { cause: cause.into(), count };
        let failed = db.run(failed).unwrap().unwrap();
        assert_eq!(failed.causes, [cause("connection refused", 2), cause("HTTP 503", 1)]);
        assert!(db.run(fine).unwrap().unwrap().causes.is_empty());
    }

    #[test]
    fn the_history_keeps_the_newest_runs_of_each_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        let tx = db.conn.transaction().unwrap();
        for batch in ["pop", "other"] {
            for _ in 0..RUNS_KEPT {
                tx.execute("INSERT INTO runs (batch, trigger, started_at) VALUES (?1, 'run', 0)", [batch]).unwrap();
            }
        }
        tx.commit().unwrap();
        let id = db.begin_run("pop", "run", SystemTime::now()).unwrap();
        db.finish_run(id, "pop", &end(StatusCounts::default(), 0, &[])).unwrap();
        let runs = |batch: &str| -> (i64, i64) {
            let sql = "SELECT count(*), min(id) FROM runs WHERE batch = ?1";
            db.conn.query_row(sql, [batch], |row| Ok((row.get(0)?, row.get(1)?))).unwrap()
        };
        assert_eq!(runs("pop"), (RUNS_KEPT, 2), "the oldest run of pop is gone");
        assert_eq!(runs("other"), (RUNS_KEPT, RUNS_KEPT + 1), "another batch keeps its own");
    }

    #[test]
    fn runs_and_files_are_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        let id = db.begin_run("pop", "run", SystemTime::now()).unwrap();
        assert_eq!(db.run(id).unwrap().unwrap().ended_at, None);
        let saved = SavedFile {
            sha256: Some("ab".repeat(32)),
            etag: Some("\"e1\"".into()),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            ..SavedFile::new(dir.path().join("BR.gif"), 42)
        };
        let first = [
            outcome("BR", Outcome::Downloaded(saved)),
            outcome("ZZ", Outcome::NotFound),
            outcome("AR", Outcome::Failed(DownloadError::Connection { detail: None })),
        ];
        let counts = StatusCounts { downloaded: 1, not_found: 1, errors: 1, unchanged: 0 };
        db.finish_run(id, "pop", &end(counts, 1, &first)).unwrap();

        let files = db.files("pop").unwrap();
        assert_eq!(files.len(), 3);
        let br = &files[&code("BR")];
        assert_eq!((br.status.as_str(), br.size, br.etag.as_deref()), ("downloaded", Some(42), Some("\"e1\"")));
        assert_eq!(br.path.as_deref(), Some(dir.path().join("BR.gif").as_path()));
        assert_eq!(files[&code("AR")].status, "connection_error");
        assert!(db.files("other").unwrap().is_empty());

        // A later failure keeps what is known of the saved file.
        let id2 = db.begin_run("pop", "schedule", SystemTime::now()).unwrap();
        let second = [outcome(
            "BR",
            Outcome::Failed(DownloadError::Http {
                status: 503,
                reason: "Service Unavailable".into(),
                retry_after: None,
            }),
        )];
        db.finish_run(id2, "pop", &end(StatusCounts { errors: 1, ..Default::default() }, 1, &second)).unwrap();
        let br = &db.files("pop").unwrap()[&code("BR")];
        assert_eq!((br.status.as_str(), br.sha256.clone()), ("http_error", Some("ab".repeat(32))));

        let runs = db.runs(Some("pop"), 10, None).unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [id2, id]);
        assert_eq!(runs[1].counts, Some(StatusCounts { downloaded: 1, unchanged: 0, not_found: 1, errors: 1 }));
        assert_eq!(runs[1].state, RunState::Finished);
        let details = db.outcomes(id).unwrap();
        assert_eq!(details.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(), ["BR", "ZZ", "AR"], "in order");
        assert_eq!(details[2].message.as_deref(), Some("Connection error"));
        assert_eq!((details[0].bytes, details[0].outcome.as_str()), (42, "downloaded"));
        assert_eq!((runs[1].exit_status, runs[0].trigger.as_str()), (Some(1), "schedule"));
        assert_eq!(db.runs(None, 1, None).unwrap().len(), 1);
        assert_eq!(db.runs(Some("pop"), 10, Some(id2)).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
        assert_eq!(db.last_runs().unwrap()["pop"].id, id2);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_corrupt_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = b"this is not an SQLite database, and it is long enough to look like a header".repeat(20);
        std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
        let err = StateDb::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("is corrupt or not an SQLite database"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(DB_FILE)).unwrap(), garbage);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        db.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        let err = StateDb::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::TooNew { found: 99, .. }), "{err:?}");
    }

    #[test]
    fn an_old_schema_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        // Version 0: an empty SQLite database, as an interrupted first start leaves.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE unrelated (x); DROP TABLE unrelated;").unwrap();
        drop(conn);
        let db = StateDb::open(dir.path()).unwrap();
        assert!(db.runs(None, 1, None).unwrap().is_empty());
    }

    #[test]
    fn a_version_1_database_keeps_its_rows_through_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "INSERT INTO files (batch, code, status, path, size, sha256, etag, updated_at)
             VALUES ('pop', 'BR', 'downloaded', CAST('BR.gif' AS BLOB), 3, 'ab', '\"e\"', 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.version().unwrap(), SCHEMA_VERSION);
        let br = &db.files("pop").unwrap()[&code("BR")];
        assert_eq!((br.etag.as_deref(), br.url.as_deref()), (Some("\"e\""), None));
    }

    #[test]
    fn readers_open_read_only_and_refuse_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StateDb::open_read_only(dir.path()).unwrap().is_none());
        assert!(!dir.path().join(DB_FILE).exists(), "a reader creates nothing");
        let db = StateDb::open(dir.path()).unwrap();
        db.begin_run("pop", "run", SystemTime::now()).unwrap();
        let reader = StateDb::open_read_only(dir.path()).unwrap().unwrap();
        assert_eq!(reader.last_runs().unwrap()["pop"].trigger, "run");
        assert!(reader.begin_run("pop", "run", SystemTime::now()).is_err(), "read-only");
        db.conn.pragma_update(None, "user_version", 1).unwrap();
        let err = StateDb::open_read_only(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::OtherVersion { found: 1, .. }), "{err:?}");
    }

    #[test]
    fn a_held_write_lock_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let holder = Connection::open(dir.path().join(DB_FILE)).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        db.conn.busy_timeout(Duration::from_millis(50)).unwrap();
        let err = db.begin_run("pop", "run", SystemTime::now()).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains("is locked by another process"), "{err}");
    }

    #[test]
    fn writability_fails_when_the_directory_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let db = StateDb::open(&state).unwrap();
        db.check_writable().unwrap();
        std::fs::rename(&state, dir.path().join("moved")).unwrap();
        assert!(matches!(db.check_writable(), Err(StateError::NotWritable { .. })));
    }
}
