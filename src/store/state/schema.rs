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
];

/// The schema version this flagsd writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
