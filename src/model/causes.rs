//! Why a run's codes failed, summed up: each error's cause in a few words
//! (`connection refused`, `HTTP 503`, `timed out`), counted, most common
//! first. The reports, the daemon's log line of a run with errors, `flagsd
//! status BATCH` and the admin API all show the same summary.

use std::collections::BTreeMap;
use std::fmt;

pub use super::run::Cause;
use super::run::CodeResult;

/// Causes shown by name before the rest are summed up as "other".
const SHOWN: usize = 4;

/// Causes a run's record keeps.
pub const CAUSES_KEPT: usize = 10;

/// The longest cause name kept (a server's text can be any length).
const NAME_MAX: usize = 60;

/// The causes of a run's errors, most common first (ties by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Causes {
    causes: Vec<Cause>,
    /// Whether every error was a failure to reach the server at all.
    unreachable: bool,
}

impl Causes {
    /// The causes of the errors among `results` (other outcomes are left
    /// out).
    pub fn of<'a>(results: impl IntoIterator<Item = &'a CodeResult>) -> Self {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut unreachable = true;
        for result in results {
            if let Some(cause) = cause_of(result) {
                unreachable &= result.outcome == "connection_error" && is_unreachable(&cause);
                *counts.entry(cause).or_default() += 1;
            }
        }
        let mut causes: Vec<Cause> = counts.into_iter().map(|(cause, count)| Cause { cause, count }).collect();
        causes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.cause.cmp(&b.cause)));
        let unreachable = unreachable && !causes.is_empty();
        Self { causes, unreachable }
    }

    /// Whether there was no error.
    pub fn is_empty(&self) -> bool {
        self.causes.is_empty()
    }

    /// Every cause, most common first.
    pub fn all(&self) -> &[Cause] {
        &self.causes
    }

    /// The [`CAUSES_KEPT`] most common causes, as a run's record keeps them.
    pub fn kept(&self) -> Vec<Cause> {
        self.causes.iter().take(CAUSES_KEPT).cloned().collect()
    }

    /// The causes a run's record kept (whether all errors failed to
    /// connect is not kept, and reads as no).
    pub fn from_kept(causes: &[Cause]) -> Self {
        Self { causes: causes.to_vec(), unreachable: false }
    }

    /// Whether every error was a failure to reach the server (refused, no
    /// such host, no route): the sign that nothing listens there.
    pub fn unreachable(&self) -> bool {
        self.unreachable
    }
}

/// `12 connection refused, 3 HTTP 503, and 2 other`: the most common
/// causes by name, the rest summed up.
impl fmt::Display for Causes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cause) in self.causes.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", cause.count, cause.cause)?;
        }
        let others: usize = self.causes.iter().skip(SHOWN).map(|c| c.count).sum();
        if others > 0 {
            write!(f, ", and {others} other")?;
        }
        Ok(())
    }
}

/// The cause of `result` in a few words, `None` when it is no error.
pub fn cause_of(result: &CodeResult) -> Option<String> {
    let detail = || result.message.as_deref().and_then(detail_of).map(first_clause);
    let cause = match result.outcome.as_str() {
        "downloaded" | "unchanged" | "not_found" => return None,
        "http_error" => match result.status {
            Some(status) => format!("HTTP {status}"),
            None => "HTTP error".to_owned(),
        },
        "connection_error" => detail().unwrap_or_else(|| "connection error".to_owned()),
        "too_large" => "too large".to_owned(),
        "io_error" => "I/O error".to_owned(),
        "metadata_error" => "metadata error".to_owned(),
        "internal_error" => "internal error".to_owned(),
        "unfinished" => "unfinished".to_owned(),
        other => other.replace('_', " "),
    };
    Some(cap(cause))
}

/// The detail in parentheses of a message such as `Connection error
/// (connection refused)`.
fn detail_of(message: &str) -> Option<&str> {
    let open = message.find('(')?;
    let inner = message[open + 1..].strip_suffix(')')?;
    Some(inner).filter(|d| !d.trim().is_empty())
}

/// The first clause of a detail: `dns error: failed to lookup …` is a `dns
/// error`; a proxy's `proxy 127.0.0.1:3128 refused the tunnel; …` keeps
/// its first part.
fn first_clause(detail: &str) -> String {
    detail.split([':', ';']).next().unwrap_or(detail).trim().to_owned()
}

/// Whether a connection error's cause means nothing answered at that
/// address.
fn is_unreachable(cause: &str) -> bool {
    ["connection refused", "dns error", "no route", "network is unreachable", "host is unreachable"]
        .iter()
        .any(|sign| cause.starts_with(sign))
}

/// `text` cut to [`NAME_MAX`] characters.
fn cap(text: String) -> String {
    match text.char_indices().nth(NAME_MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: &str, status: Option<u16>, message: Option<&str>) -> CodeResult {
        CodeResult {
            code: "BR".into(),
            outcome: outcome.into(),
            status,
            message: message.map(str::to_owned),
            attempts: 1,
            bytes: 0,
            file: None,
            url: "http://h/BR".into(),
            node: None,
            retry_cause: None,
        }
    }

    #[test]
    fn each_error_is_named_in_a_few_words() {
        let cases = [
            (result("http_error", Some(503), Some("HTTP 503 - Service Unavailable")), "HTTP 503"),
            (result("connection_error", None, Some("Connection error (connection refused)")), "connection refused"),
            (result("connection_error", None, Some("Connection error (timed out)")), "timed out"),
            (
                result("connection_error", None, Some("Connection error (dns error: failed to lookup address)")),
                "dns error",
            ),
            (
                result("connection_error", None, Some("Connection error (truncated body: connection reset)")),
                "truncated body",
            ),
            (result("connection_error", None, Some("Connection error")), "connection error"),
            (result("too_large", None, Some("Response too large (over 10 bytes)")), "too large"),
            (result("io_error", None, Some("I/O error (out/BR.gif: No space left on device)")), "I/O error"),
            (result("metadata_error", None, Some("Metadata error (not JSON)")), "metadata error"),
            (result("unfinished", None, None), "unfinished"),
        ];
        for (result, cause) in cases {
            assert_eq!(cause_of(&result).as_deref(), Some(cause), "{result:?}");
        }
        for fine in ["downloaded", "unchanged", "not_found"] {
            assert_eq!(cause_of(&result(fine, Some(200), None)), None);
        }
    }

    #[test]
    fn causes_are_counted_most_common_first_and_the_tail_summed_up() {
        let mut results = vec![result("downloaded", Some(200), None)];
        results.extend((0..3).map(|_| result("http_error", Some(503), Some("HTTP 503 - x"))));
        results
            .extend((0..12).map(|_| result("connection_error", None, Some("Connection error (connection refused)"))));
        for status in [500, 502, 504, 418] {
            results.push(result("http_error", Some(status), Some("HTTP")));
        }
        let causes = Causes::of(&results);
        assert_eq!(causes.all()[0], Cause { cause: "connection refused".into(), count: 12 });
        assert_eq!(causes.all()[1], Cause { cause: "HTTP 503".into(), count: 3 });
        // Ties by name: HTTP 418, HTTP 500 shown; HTTP 502 and 504 summed up.
        assert_eq!(causes.to_string(), "12 connection refused, 3 HTTP 503, 1 HTTP 418, 1 HTTP 500, and 2 other");
        assert!(!causes.unreachable());
        assert!(Causes::of(&results[..1]).is_empty());
        assert_eq!(Causes::of(&results[..1]).to_string(), "");
    }

    #[test]
    fn unreachable_only_when_every_error_failed_to_connect() {
        let refused = result("connection_error", None, Some("Connection error (connection refused)"));
        let dns = result("connection_error", None, Some("Connection error (dns error: no such host)"));
        let timeout = result("connection_error", None, Some("Connection error (timed out)"));
        let fine = result("not_found", Some(404), None);
        assert!(Causes::of([&refused, &dns, &fine]).unreachable());
        assert!(!Causes::of([&refused, &timeout]).unreachable());
        assert!(!Causes::of([&fine]).unreachable());
    }

    #[test]
    fn a_long_server_text_is_cut() {
        let long = format!("Connection error ({})", "x".repeat(500));
        let cause = cause_of(&result("connection_error", None, Some(&long))).unwrap();
        assert_eq!(cause.chars().count(), NAME_MAX + 1);
        assert!(cause.ends_with('…'));
    }
}
