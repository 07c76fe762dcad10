//! Machine-readable results: the `--json` document of `fetch` and `run`, and
//! the `--failed` list.
//!
//! The document's field names are a stable interface, described by the JSON
//! Schema in `docs/result.schema.json` (the tests validate real output
//! against it). `schema_version` changes only when a field changes meaning
//! or disappears; new fields may be added without changing it.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::engine::RunSummary;
use crate::http::connections::Opened;
use crate::model::codes::CountryCode;
use crate::model::exit::ExitStatus;
use crate::model::outcome::{Outcome, StatusCounts};
pub use crate::model::run::CodeResult;
use crate::model::time;

/// The version of the document's layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The counts of one job: every code with an outcome, and those without.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Codes with an outcome, by outcome.
    #[serde(flatten)]
    pub finished: StatusCounts,
    /// Codes that did not finish (the run was interrupted).
    pub unfinished: usize,
}

/// The result of one job: a `fetch`, or one batch of `run`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobResult {
    /// The server label (`DEMO`, `LOCAL`, `CUSTOM`, ...).
    pub server: String,
    /// The base URL (credentials masked).
    pub url: String,
    /// Workers in the pool.
    pub connections: usize,
    /// The connections actually opened, by protocol; `null` when unknown
    /// (a fleet's nodes open their own, or the job did not start).
    pub connections_opened: Option<Opened>,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
    /// The run was stopped by a signal before every code finished.
    pub interrupted: bool,
    /// The job's exit status (see the README).
    pub exit_status: i32,
    /// The run's id in the state database, when state is kept.
    pub run_id: Option<i64>,
    /// A fatal error that stopped the job (or, for `fetch`, that came after
    /// it: writing the state or the `--failed` list), else `null`.
    pub error: Option<String>,
    /// Outcome counts.
    pub counts: Counts,
    /// One entry per code asked for, sorted by code.
    pub codes: Vec<CodeResult>,
}

impl JobResult {
    /// A job that did not start: no codes, only the error.
    pub fn failed(server: &str, url: &str, started: SystemTime, error: String, status: ExitStatus) -> Self {
        Self {
            server: server.to_owned(),
            url: url.to_owned(),
            connections: 0,
            connections_opened: None,
            started_at: time::rfc3339(started),
            elapsed_seconds: 0.0,
            interrupted: false,
            exit_status: status.code(),
            run_id: None,
            error: Some(error),
            counts: Counts::default(),
            codes: Vec::new(),
        }
    }
}

/// What a finished job is described from.
pub struct JobFacts<'a> {
    /// The server label.
    pub server: &'a str,
    /// The base URL shown (credentials masked).
    pub url: &'a str,
    /// Workers in the pool.
    pub connections: usize,
    /// The connections opened, if known.
    pub opened: Option<Opened>,
    /// Every code asked for.
    pub codes: &'a [CountryCode],
    /// The URL of a code, for codes that did not finish.
    pub url_of: &'a dyn Fn(CountryCode) -> String,
    /// When the job started.
    pub started: SystemTime,
    /// How long it took.
    pub elapsed: Duration,
}

/// Describes a finished (or interrupted) job.
pub fn job_result(facts: &JobFacts<'_>, summary: &RunSummary, status: ExitStatus, run_id: Option<i64>) -> JobResult {
    let finished = summary.outcomes.iter().map(CodeResult::of).collect();
    job_result_of(facts, finished, summary.interrupted, status, run_id)
}

/// Describes a job from the results of its finished codes; every other
/// code of `facts.codes` is `unfinished`.
pub fn job_result_of(
    facts: &JobFacts<'_>,
    mut codes: Vec<CodeResult>,
    interrupted: bool,
    status: ExitStatus,
    run_id: Option<i64>,
) -> JobResult {
    let mut counts = StatusCounts::default();
    for code in &codes {
        counts.record_kind(&code.outcome);
    }
    let finished: HashSet<&str> = codes.iter().map(|c| c.code.as_str()).collect();
    let mut unfinished: Vec<CountryCode> =
        facts.codes.iter().copied().filter(|c| !finished.contains(c.as_str())).collect();
    unfinished.sort();
    unfinished.dedup();
    codes.extend(unfinished.iter().map(|&code| CodeResult::unfinished(code, (facts.url_of)(code))));
    codes.sort_by(|a, b| a.code.cmp(&b.code));
    JobResult {
        server: facts.server.to_owned(),
        url: facts.url.to_owned(),
        connections: facts.connections,
        connections_opened: facts.opened,
        started_at: time::rfc3339(facts.started),
        elapsed_seconds: facts.elapsed.as_secs_f64(),
        interrupted,
        exit_status: status.code(),
        run_id,
        error: None,
        counts: Counts { finished: counts, unfinished: unfinished.len() },
        codes,
    }
}

/// The codes of `codes` with no outcome in `summary`, sorted.
pub fn unfinished_codes(codes: &[CountryCode], summary: &RunSummary) -> Vec<CountryCode> {
    let finished: HashSet<CountryCode> = summary.outcomes.iter().map(|o| o.code).collect();
    let mut left: Vec<CountryCode> = codes.iter().copied().filter(|c| !finished.contains(c)).collect();
    left.sort();
    left.dedup();
    left
}

/// The codes to try again: those that ended in an error and those that did
/// not finish, sorted.
pub fn failed_codes(codes: &[CountryCode], summary: &RunSummary) -> Vec<CountryCode> {
    let mut failed: Vec<CountryCode> =
        summary.outcomes.iter().filter(|o| matches!(o.outcome, Outcome::Failed(_))).map(|o| o.code).collect();
    failed.extend(unfinished_codes(codes, summary));
    failed.sort();
    failed.dedup();
    failed
}

/// The `fetch --json` document.
#[derive(Debug, Serialize)]
pub struct FetchDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `"fetch"`.
    pub command: &'static str,
    /// The job.
    #[serde(flatten)]
    pub result: JobResult,
}

/// One batch in the `run --json` document.
#[derive(Debug, Serialize)]
pub struct BatchResult {
    /// The batch name.
    pub name: String,
    /// The batch's job.
    #[serde(flatten)]
    pub result: JobResult,
}

/// The `run --json` document.
#[derive(Debug, Serialize)]
pub struct RunDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `"run"`.
    pub command: &'static str,
    /// The worst exit status of the batches: the process's exit status.
    pub exit_status: i32,
    /// The batches, in configuration order.
    pub batches: Vec<BatchResult>,
}

/// `document` as pretty-printed JSON with a final newline.
pub fn to_json(document: &impl Serialize) -> String {
    // Serializing these plain structs cannot fail: every map key is a string.
    let mut text = serde_json::to_string_pretty(document).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes `codes`, one a line, to `path`.
///
/// A regular file (or none) is replaced atomically: a temporary file beside
/// it, then a rename, so a reader never sees half a list. Anything else
/// (`/dev/stdout`, a FIFO, a device, a symbolic link) is written as a
/// stream, as a shell's `>` would, and never replaced by a regular file.
pub fn write_code_list(path: &Path, codes: &[CountryCode]) -> std::io::Result<()> {
    let text: String = codes.iter().map(|code| format!("{code}\n")).collect();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return std::fs::OpenOptions::new().write(true).truncate(true).open(path)?.write_all(text.as_bytes());
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The temporary file's error would name its random path: check the
    // directory first, for a message about the directory the user gave.
    std::fs::read_dir(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(".flagsd-failed.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    file.write_all(text.as_bytes())?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
