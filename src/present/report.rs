//! The text flags2 prints: the initial and final reports, the verbose line
//! of each code, and the progress bar.
//!
//! Reports go to stdout byte for byte as flags2 prints them (see SPEC.md);
//! the progress bar goes to stderr, and only when stderr is a terminal, as
//! does what flags2 does not print: why the errors happened.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::results::CodeResult;
use crate::engine::OutcomeSink;
use crate::model::causes::Causes;
use crate::model::codes::CountryCode;
use crate::model::outcome::{CodeOutcome, Outcome, StatusCounts};
use crate::model::text::terminal_safe;

/// The most characters of a URL or message from a server (or a fleet's
/// node) a verbose line shows.
const MAX_SHOWN: usize = 500;

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Writes report text to stdout. A closed stdout (`| head`) is not an
/// error worth stopping a download for: the text is dropped.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The lines printed before the downloads start.
pub fn initial_report(label: &str, url: &str, codes: &[CountryCode], connections: usize) -> String {
    let list = match codes {
        [first, .., last] if codes.len() > 10 => format!("from {first} to {last}"),
        _ => codes.iter().map(CountryCode::as_str).collect::<Vec<_>>().join(", "),
    };
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(text, "{label} site: {url}");
    if codes.is_empty() {
        // An explicitly empty list (`--codes-file`): nothing to search, nobody to use.
        text.push_str("Searching for 0 flags.\n0 concurrent connections will be used.\n");
        return text;
    }
    let _ = writeln!(text, "Searching for {} flag{}: {list}", codes.len(), plural(codes.len()));
    if connections == 1 {
        text.push_str("1 connection will be used.\n");
    } else {
        let _ = writeln!(text, "{connections} concurrent connections will be used.");
    }
    text
}

/// The lines printed after the downloads end.
pub fn final_report(counts: &StatusCounts, elapsed: Duration) -> String {
    let mut text = String::from("--------------------\n");
    let _ = writeln!(text, "{:3} flag{} downloaded.", counts.downloaded, plural(counts.downloaded));
    if counts.unchanged > 0 {
        let _ = writeln!(text, "{:3} unchanged.", counts.unchanged);
    }
    if counts.not_found > 0 {
        let _ = writeln!(text, "{:3} not found.", counts.not_found);
    }
    if counts.errors > 0 {
        let _ = writeln!(text, "{:3} error{}.", counts.errors, plural(counts.errors));
    }
    let _ = writeln!(text, "Elapsed time: {:.2}s", elapsed.as_secs_f64());
    text
}

/// What a report with errors says after it, on stderr: the causes of the
/// errors and where they were asked for (`20 errors: 20 connection refused
/// (http://localhost:8000/flags)`), and `hint` on a line of its own when
/// no request reached a server at all. `None` without errors.
pub fn causes_note(causes: &Causes, url: &str, hint: &str) -> Option<String> {
    let errors: usize = causes.all().iter().map(|c| c.count).sum();
    if errors == 0 {
        return None;
    }
    let mut note = format!("{errors} error{}: {causes} ({})", plural(errors), terminal_safe(url, MAX_SHOWN));
    if causes.unreachable() {
        let _ = write!(note, "\n{hint}");
    }
    Some(note)
}

/// The verbose line for one code (`BR OK`, `AR unchanged`,
/// `ZZ not found: URL`, `*** Error for XX: …`).
pub fn verbose_line(outcome: &CodeOutcome) -> String {
    result_line(&CodeResult::of(outcome))
}

/// The verbose line for one code's result (as a fleet reports it).
pub fn result_line(result: &CodeResult) -> String {
    let code = &result.code;
    // A code that took more than one attempt says how many, and why.
    let retried = match (result.attempts, &result.retry_cause) {
        (0 | 1, _) => String::new(),
        (n, Some(cause)) => format!(" (after {n} attempts; retried after {})", terminal_safe(cause, MAX_SHOWN)),
        (n, None) => format!(" (after {n} attempts)"),
    };
    match result.outcome.as_str() {
        "downloaded" => format!("{code} OK{retried}"),
        "unchanged" => format!("{code} unchanged{retried}"),
        "not_found" => format!("{code} not found: {}{retried}", terminal_safe(&result.url, MAX_SHOWN)),
        _ => {
            let message = terminal_safe(result.message.as_deref().unwrap_or(&result.outcome), MAX_SHOWN);
            if result.attempts > 1 {
                format!("*** Error for {code}: {message} (after {} attempts)", result.attempts)
            } else {
                format!("*** Error for {code}: {message}")
            }
        }
    }
}

/// Logs one outcome as a structured event at debug level: `fetch` already
/// shows errors in its verbose lines.
pub fn log_outcome(outcome: &CodeOutcome) {
    let status = outcome.outcome.http_status();
    match &outcome.outcome {
        Outcome::Failed(error) => tracing::debug!(
            cc = %outcome.code, url = %outcome.url, kind = outcome.outcome.kind(), status, %error, "download failed"
        ),
        _ => {
            tracing::debug!(cc = %outcome.code, url = %outcome.url, kind = outcome.outcome.kind(), status, "download finished")
        }
    }
}

/// Shows outcomes on the console: verbose lines on stdout, or a progress bar
/// on stderr when that is a terminal; nothing else in pipes and files.
pub struct ConsoleSink {
    verbose: bool,
    progress: Option<ProgressBar>,
}

impl ConsoleSink {
    /// A sink for `total` codes.
    pub fn new(verbose: bool, total: usize) -> Self {
        let progress = (!verbose && std::io::stderr().is_terminal()).then(|| progress_bar(total));
        Self { verbose, progress }
    }

    /// A sink that shows nothing, neither lines nor a progress bar (`-q`):
    /// outcomes are only logged.
    pub fn silent() -> Self {
        Self { verbose: false, progress: None }
    }
}

fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let template = "{wide_bar} {pos}/{len} [{elapsed_precise}<{eta_precise}, {rate}]";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} flags/s", state.per_sec());
        }));
    }
    bar
}

impl OutcomeSink for ConsoleSink {
    fn record(&mut self, outcome: &CodeOutcome) {
        log_outcome(outcome);
        if self.verbose {
            let mut line = verbose_line(outcome);
            line.push('\n');
            emit(&line);
        }
        if let Some(bar) = &self.progress {
            bar.inc(1);
            if bar.length() == Some(bar.position()) {
                bar.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codes::expand_argument;
    use crate::model::outcome::{DownloadError, RetryCause, SavedFile};

    fn codes(args: &[&str]) -> Vec<CountryCode> {
        args.iter().flat_map(|a| expand_argument(a).unwrap()).collect()
    }

    #[test]
    fn initial_report_lists_up_to_ten_codes() {
        let text = initial_report("LOCAL", "http://localhost:8000/flags", &codes(&["BR", "CN"]), 2);
        assert_eq!(
            text,
            "LOCAL site: http://localhost:8000/flags\nSearching for 2 flags: BR, CN\n2 concurrent connections will be used.\n"
        );
    }

    #[test]
    fn initial_report_gives_a_range_for_more_than_ten_and_singulars_for_one() {
        let text = initial_report("LOCAL", "u", &codes(&["B"]), 26);
        assert!(text.contains("Searching for 26 flags: from BA to BZ\n26 concurrent connections will be used.\n"));
        let none = initial_report("CUSTOM", "u", &[], 1);
        assert_eq!(none, "CUSTOM site: u\nSearching for 0 flags.\n0 concurrent connections will be used.\n");
        let one = initial_report("CUSTOM", "u", &codes(&["BR"]), 1);
        assert!(one.ends_with("Searching for 1 flag: BR\n1 connection will be used.\n"), "{one}");
    }

    #[test]
    fn final_report_aligns_counts_and_omits_zeros() {
        let counts = StatusCounts { downloaded: 17, not_found: 9, ..StatusCounts::default() };
        assert_eq!(
            final_report(&counts, Duration::from_millis(50)),
            "--------------------\n 17 flags downloaded.\n  9 not found.\nElapsed time: 0.05s\n"
        );
        let counts = StatusCounts { downloaded: 1, errors: 1, ..StatusCounts::default() };
        assert_eq!(
            final_report(&counts, Duration::from_secs(2)),
            "--------------------\n  1 flag downloaded.\n  1 error.\nElapsed time: 2.00s\n"
        );
        let counts = StatusCounts { unchanged: 193, not_found: 1, ..StatusCounts::default() };
        assert_eq!(
            final_report(&counts, Duration::from_secs(1)),
            "--------------------\n  0 flags downloaded.\n193 unchanged.\n  1 not found.\nElapsed time: 1.00s\n"
        );
    }

    fn failure(code: &str, outcome: &str, status: Option<u16>, message: &str) -> CodeResult {
        CodeResult {
            code: code.to_owned(),
            outcome: outcome.to_owned(),
            status,
            message: Some(message.to_owned()),
            attempts: 1,
            bytes: 0,
            file: None,
            url: format!("http://h/{code}"),
            node: None,
            retry_cause: None,
        }
    }

    #[test]
    fn the_causes_note_counts_the_errors_and_hints_only_when_nothing_answered() {
        let url = "http://localhost:8000/flags";
        let refused = |code| failure(code, "connection_error", None, "Connection error (connection refused)");
        let none: [CodeResult; 0] = [];
        assert_eq!(causes_note(&Causes::of(&none), url, "hint"), None);
        let all_refused = [refused("BR"), refused("CN")];
        assert_eq!(
            causes_note(&Causes::of(&all_refused), url, "is a server listening there?").as_deref(),
            Some("2 errors: 2 connection refused (http://localhost:8000/flags)\nis a server listening there?")
        );
        let mixed = [refused("BR"), failure("CN", "http_error", Some(503), "HTTP 503 Service Unavailable")];
        assert_eq!(
            causes_note(&Causes::of(&mixed), url, "hint").as_deref(),
            Some("2 errors: 1 HTTP 503, 1 connection refused (http://localhost:8000/flags)")
        );
        let one = [refused("BR")];
        assert!(causes_note(&Causes::of(&one), url, "").is_some_and(|n| n.starts_with("1 error: ")));
    }

    #[test]
    fn verbose_lines_match_the_spec() {
        let code = codes(&["BR"])[0];
        let line = |outcome| {
            verbose_line(&CodeOutcome {
                code,
                url: "http://h/flags/br/br.gif".into(),
                outcome,
                attempts: 1,
                retry_cause: None,
            })
        };
        assert_eq!(line(Outcome::Downloaded(SavedFile::new("BR.gif", 3))), "BR OK");
        assert_eq!(line(Outcome::Unchanged("BR.gif".into())), "BR unchanged");
        assert_eq!(line(Outcome::NotFound), "BR not found: http://h/flags/br/br.gif");
        let teapot = DownloadError::Http { status: 418, reason: "I'm a Teapot".into(), retry_after: None };
        assert_eq!(line(Outcome::Failed(teapot.clone())), "*** Error for BR: HTTP 418 - I'm a Teapot");
        let retried =
            CodeOutcome { code, url: String::new(), outcome: Outcome::Failed(teapot), attempts: 3, retry_cause: None };
        assert_eq!(verbose_line(&retried), "*** Error for BR: HTTP 418 - I'm a Teapot (after 3 attempts)");
        let saved = Outcome::Downloaded(SavedFile::new("BR.gif", 1));
        let recovered =
            CodeOutcome { outcome: saved, attempts: 4, retry_cause: Some(RetryCause::Http(503)), ..retried };
        assert_eq!(verbose_line(&recovered), "BR OK (after 4 attempts; retried after HTTP 503)");
        let timed_out = CodeOutcome {
            outcome: Outcome::NotFound,
            attempts: 2,
            retry_cause: Some(RetryCause::TimedOut),
            ..recovered.clone()
        };
        assert_eq!(verbose_line(&timed_out), "BR not found:  (after 2 attempts; retried after a timeout)");
        let elsewhere = CodeOutcome { retry_cause: None, ..recovered };
        assert_eq!(verbose_line(&elsewhere), "BR OK (after 4 attempts)");
    }

    #[test]
    fn verbose_lines_make_server_text_safe_for_a_terminal() {
        let mut result =
            CodeResult::unfinished(crate::model::codes::parse_code("BR").unwrap(), "http://h/x\x1b[2J".into());
        result.outcome = "not_found".into();
        assert_eq!(result_line(&result), "BR not found: http://h/x\\x1b[2J");
        result.outcome = "http_error".into();
        result.message = Some(format!("HTTP 500 - \r{}\u{202e}", "x".repeat(1000)));
        let line = result_line(&result);
        assert!(line.starts_with("*** Error for BR: HTTP 500 - \\x0dxxx") && line.contains('…'), "{line}");
        assert!(!line.contains('\r') && !line.contains('\u{202e}'), "{line}");
    }
}
