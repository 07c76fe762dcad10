//! What one batch of `flagsd run` leaves to print, whether it ran here, in
//! the fleet or (for `flagsd trigger --wait`) in the daemon: one path from a
//! run's results to its report and its `--json` result.

use std::time::{Duration, SystemTime};

use crate::config::{BatchConfig, ServerTarget};
use crate::http::connections::Opened;
use crate::http::url::{flag_url, redact_credentials};
use crate::job::FatalError;
use crate::model::causes::Causes;
use crate::model::exit::ExitStatus;
use crate::model::outcome::StatusCounts;
use crate::model::run::{CodeResult, RunRecord, RunState};
use crate::model::text::terminal_safe;
use crate::present::report::{causes_note, final_report, initial_report, result_line};
use crate::present::results::{JobFacts, JobResult, job_result_of};

/// The most characters of a base URL read back from a run's codes that a
/// report shows.
const MAX_URL: usize = 500;

/// What a batch run leaves to print: its report (stdout), what a verbose
/// batch says of its connections and any fatal error (stderr), its exit
/// status, and its result for `--json`.
pub struct BatchReport {
    /// The report text.
    pub report: String,
    /// What is said after the report, on stderr: why its errors happened
    /// and, for a verbose batch (as `fetch -v` says it), the connections it
    /// opened.
    pub notes: Vec<String>,
    /// The fatal error, said on stderr.
    pub error: Option<String>,
    /// The batch's exit status.
    pub status: ExitStatus,
    /// The batch's `--json` result.
    pub result: JobResult,
}

/// The base URL a batch's report shows (credentials masked; none for `DEMO`,
/// whose port is only known once it runs).
pub fn display_url(batch: &BatchConfig) -> String {
    match &batch.job.server.target {
        ServerTarget::Url(url) => redact_credentials(url),
        ServerTarget::Demo => String::new(),
    }
}

/// What a run of a batch left, however it ran.
pub struct Ran {
    /// The base URL it fetched from (credentials masked).
    pub url: String,
    /// Workers in its pool (per node, in a fleet).
    pub pool: usize,
    /// Its counts.
    pub counts: StatusCounts,
    /// Each finished code's result, in the order they finished (empty when
    /// neither verbose lines nor `--json` need them).
    pub codes: Vec<CodeResult>,
    /// It was stopped (a signal, a cancel) before every code finished.
    pub interrupted: bool,
    /// Its exit status.
    pub status: ExitStatus,
    /// When it started, and how long it took.
    pub timing: (SystemTime, Duration),
    /// The connections it opened, when known (not in a fleet).
    pub opened: Option<Opened>,
    /// Its id in the ledger.
    pub run_id: Option<i64>,
}

impl Ran {
    /// What run `record` of `batch` left, read back from where it ran (the
    /// fleet's records, the daemon's answers) with the results of its codes
    /// in `codes` (empty when not needed): its counts, status and times
    /// from the record, `submitted_at` standing in for a start it lacks; a
    /// `DEMO` batch's URL from its codes' when they are there.
    pub fn of_record(
        batch: &BatchConfig,
        record: &RunRecord,
        codes: Vec<CodeResult>,
        submitted_at: SystemTime,
    ) -> Self {
        let counts = record.counts.unwrap_or_default();
        let url = match display_url(batch) {
            url if url.is_empty() => base_of(&codes).unwrap_or_default(),
            url => url,
        };
        Self {
            url,
            pool: batch.job.pool_size,
            counts,
            codes,
            interrupted: record.state == RunState::Cancelled,
            status: record.status().unwrap_or_else(|| ExitStatus::of_counts(&counts)),
            timing: (humantime::parse_rfc3339(&record.started_at).unwrap_or(submitted_at), elapsed(record)),
            opened: None,
            run_id: Some(record.id),
        }
    }
}

/// The base URL that `codes` were fetched from, read back from the first
/// flag URL among them (`{base}/{cc}/{cc}.gif`): a `DEMO` server's port is
/// known only to the process that ran it. Made safe for a terminal.
fn base_of(codes: &[CodeResult]) -> Option<String> {
    codes.iter().find_map(|result| {
        let cc = result.code.to_ascii_lowercase();
        let base = result.url.strip_suffix(&format!("/{cc}/{cc}.gif"))?;
        Some(terminal_safe(base, MAX_URL))
    })
}

/// How long a run took, from its record.
fn elapsed(record: &RunRecord) -> Duration {
    let time = |text: &str| humantime::parse_rfc3339(text).ok();
    match (time(&record.started_at), record.ended_at.as_deref().and_then(time)) {
        (Some(start), Some(end)) => end.duration_since(start).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

impl BatchReport {
    /// The report of `batch` that ran as `ran`.
    pub fn of(batch: &BatchConfig, ran: Ran) -> Self {
        let job = &batch.job;
        let mut text = format!("== batch {} ==\n", batch.name);
        text.push_str(&initial_report(&job.server.label, &ran.url, &job.codes, ran.pool));
        if batch.verbose {
            for result in &ran.codes {
                text.push_str(&result_line(result));
                text.push('\n');
            }
        }
        text.push_str(&final_report(&ran.counts, ran.timing.1));
        let facts = JobFacts {
            server: &job.server.label,
            url: &ran.url,
            connections: ran.pool,
            opened: ran.opened,
            codes: &job.codes,
            url_of: &|code| flag_url(&ran.url, code),
            started: ran.timing.0,
            elapsed: ran.timing.1,
        };
        let hint = "is a server listening there? server = \"DEMO\" uses the built-in one";
        let causes = causes_note(&Causes::of(&ran.codes), &ran.url, hint);
        let result = job_result_of(&facts, ran.codes, ran.interrupted, ran.status, ran.run_id);
        let opened = ran.opened.filter(|_| batch.verbose).map(|opened| format!("{}.", opened.describe()));
        let notes = causes.into_iter().chain(opened).collect();
        Self { report: text, notes, error: None, status: ran.status, result }
    }

    /// The report of `batch` that `error` stopped before or while it ran
    /// (as run `run_id`, when it got one), with `report` as far as it got.
    pub fn failed(
        batch: &BatchConfig,
        report: String,
        error: &FatalError,
        run_id: Option<i64>,
        at: SystemTime,
    ) -> Self {
        let result = JobResult {
            run_id,
            ..JobResult::failed(
                &batch.job.server.label,
                &display_url(batch),
                at,
                error.to_string(),
                error.exit_status(),
            )
        };
        Self {
            report,
            notes: Vec::new(),
            error: Some(format!("*** Error in batch {}: {error}", batch.name)),
            status: error.exit_status(),
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codes::parse_code;

    fn result(code: &str, url: &str) -> CodeResult {
        CodeResult::unfinished(parse_code(code).expect("a code"), url.to_owned())
    }

    #[test]
    fn the_base_url_is_read_back_from_a_flag_url() {
        let flag = result("BR", "http://127.0.0.1:41237/flags/br/br.gif");
        assert_eq!(base_of(&[flag]).as_deref(), Some("http://127.0.0.1:41237/flags"));
        let other = result("AR", "http://127.0.0.1:41237/flags/br/br.gif");
        let escaped = result("ZZ", "http://h/\u{1b}[2J/zz/zz.gif");
        assert_eq!(base_of(std::slice::from_ref(&other)), None, "not the flag of its own code");
        assert_eq!(base_of(&[other, escaped]).as_deref(), Some("http://h/\\x1b[2J"));
        assert_eq!(base_of(&[]), None);
    }
}
