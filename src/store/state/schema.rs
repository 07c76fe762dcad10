//! The schema of the state database, one migration a version.

/// The schema, one entry a version: entry `i` takes version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        batch       TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        started_at  REAL NOT NULL,
        ended_at    REAL,
        downloaded  INTEGER,
        unchanged   INTEGER,
        not_found   INTEGER,
        errors      INTEGER,
        exit_status INTEGER
    );
    CREATE INDEX runs_by_batch ON runs (batch, id);
    CREATE TABLE files (
        batch         TEXT NOT NULL,
        code          TEXT NOT NULL,
        status        TEXT NOT NULL,
        http_status   INTEGER,
        path          BLOB,
        size          INTEGER,
        sha256        TEXT,
        etag          TEXT,
        last_modified TEXT,
        updated_at    REAL NOT NULL,
        PRIMARY KEY (batch, code)
    ) WITHOUT ROWID;
",
    "
    -- The URL a file was saved from: validators are sent to that URL only.
    ALTER TABLE files ADD COLUMN url TEXT;
",
    "
    -- Where a run stands (NULL in older rows: read from exit_status), and
    -- why a failed run failed.
    ALTER TABLE runs ADD COLUMN state TEXT;
    ALTER TABLE runs ADD COLUMN error TEXT;
    -- Each code's outcome in the newest runs of each batch (a run's page).
    CREATE TABLE outcomes (
        run_id   INTEGER NOT NULL,
        seq      INTEGER NOT NULL,
        code     TEXT NOT NULL,
        outcome  TEXT NOT NULL,
        status   INTEGER,
        message  TEXT,
        attempts INTEGER NOT NULL,
        bytes    INTEGER NOT NULL,
        file     TEXT,
        url      TEXT NOT NULL,
        PRIMARY KEY (run_id, code)
    ) WITHOUT ROWID;
",
    "
    -- The process that runs a run (sys::process::Stamp): a running run whose
    -- process is gone reads as failed.
    ALTER TABLE runs ADD COLUMN owner TEXT;
    -- The causes of an ended run's errors, most common first: a JSON array
    -- of objects with a cause and a count.
    ALTER TABLE runs ADD COLUMN causes TEXT;
    -- Why a code was tried again, when it was.
    ALTER TABLE outcomes ADD COLUMN retry_cause TEXT;
",
];

/// The schema version this flagsd writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
