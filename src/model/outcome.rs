//! What became of one code, and the counts of a whole run.
//!
//! Every code of a run ends in exactly one [`Outcome`]: downloaded,
//! unchanged (a conditional request answered `304`), not found, or an error
//! whose [`DownloadError`] says why. [`StatusCounts`] adds them up for the
//! final report; the invariant `downloaded + unchanged + not_found + errors
//! == codes` holds whatever the server or the disk does.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::codes::CountryCode;

/// A body saved to disk, with what a later conditional request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFile {
    /// The response's status (2xx).
    pub status: u16,
    /// Where it was saved.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lower-case hex; computed only when run state is kept.
    pub sha256: Option<String>,
    /// The server's `ETag`, if it sent one.
    pub etag: Option<String>,
    /// The server's `Last-Modified`, if it sent one.
    pub last_modified: Option<String>,
    /// The URL its validators belong to, as run state records it: the
    /// request's URL with credentials masked, or for the built-in server,
    /// whose port changes every run, its label (`DEMO/br/br.gif`).
    pub origin: Option<String>,
}

impl SavedFile {
    /// A file at `path` of `bytes` bytes from a `200`, with no hash and no
    /// validators.
    pub fn new(path: impl Into<PathBuf>, bytes: u64) -> Self {
        Self { status: 200, path: path.into(), bytes, sha256: None, etag: None, last_modified: None, origin: None }
    }
}

/// The end of one code's download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response whose body was saved.
    Downloaded(SavedFile),
    /// A conditional request was answered `304 Not Modified`: the file
    /// already on disk (at this path) is current.
    Unchanged(PathBuf),
    /// The server answered 404.
    NotFound,
    /// Anything else: the code was not saved.
    Failed(DownloadError),
}

impl Outcome {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Downloaded(_) => "downloaded",
            Self::Unchanged(_) => "unchanged",
            Self::NotFound => "not_found",
            Self::Failed(e) => e.kind(),
        }
    }

    /// The file this outcome leaves on disk for its code, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Self::Downloaded(saved) => Some(&saved.path),
            Self::Unchanged(path) => Some(path),
            Self::NotFound | Self::Failed(_) => None,
        }
    }

    /// Body bytes received and saved (0 for anything but a download).
    pub fn bytes(&self) -> u64 {
        match self {
            Self::Downloaded(saved) => saved.bytes,
            _ => 0,
        }
    }

    /// The HTTP status, where a response was received.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Downloaded(saved) => Some(saved.status),
            Self::Unchanged(_) => Some(304),
            Self::NotFound => Some(404),
            Self::Failed(DownloadError::Http { status, .. }) => Some(*status),
            Self::Failed(_) => None,
        }
    }
}

/// Why a code was not saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// A response with a status other than 2xx and 404.
    #[error("HTTP {status} - {reason}")]
    Http {
        /// The status code received.
        status: u16,
        /// The reason phrase as received (the canonical one if none came).
        reason: String,
        /// How long the server asked to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
    },
    /// No usable response: refused, reset, DNS, TLS, timeout, truncated body.
    #[error("Connection error{}", detail_suffix(.detail))]
    Connection {
        /// What went wrong, in a few words, when known.
        detail: Option<String>,
    },
    /// The body is larger than the size cap (by `Content-Length`, or while
    /// streaming); nothing was saved.
    #[error("Response too large (over {limit} bytes)")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// The file could not be written.
    #[error("I/O error ({detail})")]
    Io {
        /// The operating system's message, with the path.
        detail: String,
    },
    /// The flag was downloaded but its `metadata.json` (needed to name the
    /// file by country) was not usable; nothing was saved.
    #[error("Metadata error ({detail})")]
    Metadata {
        /// What went wrong with the metadata.
        detail: String,
        /// Whether another attempt may cure it: a connection error or a
        /// status worth retrying, not a body that is not the metadata.
        transient: bool,
    },
    /// The worker handling the code failed (panicked) before answering.
    #[error("Internal error ({detail})")]
    Internal {
        /// What the coordinator observed.
        detail: String,
    },
}

impl DownloadError {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http_error",
            Self::Connection { .. } => "connection_error",
            Self::TooLarge { .. } => "too_large",
            Self::Io { .. } => "io_error",
            Self::Metadata { .. } => "metadata_error",
            Self::Internal { .. } => "internal_error",
        }
    }
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
}

/// One finished code: what was asked, where, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeOutcome {
    /// The country code.
    pub code: CountryCode,
    /// The URL requested (credentials masked).
    pub url: String,
    /// What happened (at the last attempt).
    pub outcome: Outcome,
    /// Requests made for this code (1 without retries).
    pub attempts: u32,
    /// Why it was tried again, when it was: the failure of the attempt
    /// before the last one that this process saw.
    pub retry_cause: Option<RetryCause>,
}

/// The failure that made a code be tried again, in a few words; small
/// enough to travel with the code's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// A response with this status.
    Http(u16),
    /// No answer in time.
    TimedOut,
    /// Any other failure to get a response.
    Connection,
    /// A body over the size cap.
    TooLarge,
    /// The file could not be written.
    Io,
    /// The country's metadata was not usable.
    Metadata,
    /// The worker failed.
    Internal,
}

impl RetryCause {
    /// The cause of a failed attempt; `None` for anything but a failure.
    pub fn of(outcome: &Outcome) -> Option<Self> {
        let Outcome::Failed(error) = outcome else { return None };
        Some(match error {
            DownloadError::Http { status, .. } => Self::Http(*status),
            DownloadError::Connection { detail } if detail.as_deref() == Some("timed out") => Self::TimedOut,
            DownloadError::Connection { .. } => Self::Connection,
            DownloadError::TooLarge { .. } => Self::TooLarge,
            DownloadError::Io { .. } => Self::Io,
            DownloadError::Metadata { .. } => Self::Metadata,
            DownloadError::Internal { .. } => Self::Internal,
        })
    }
}

/// `HTTP 503`, `a timeout`, `a connection error`…: what follows "retried
/// after".
impl std::fmt::Display for RetryCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(status) => write!(f, "HTTP {status}"),
            Self::TimedOut => f.write_str("a timeout"),
            Self::Connection => f.write_str("a connection error"),
            Self::TooLarge => f.write_str("a response too large"),
            Self::Io => f.write_str("an I/O error"),
            Self::Metadata => f.write_str("a metadata error"),
            Self::Internal => f.write_str("an internal error"),
        }
    }
}

/// The counts of a run, as the final report shows them, the records keep
/// them and the admin API and `--json` show them: the one counts type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusCounts {
    /// Codes saved.
    pub downloaded: usize,
    /// Codes whose file on disk was current (`304`).
    pub unchanged: usize,
    /// Codes the server did not have (404).
    pub not_found: usize,
    /// Codes that ended in any error.
    pub errors: usize,
}

impl StatusCounts {
    /// Counts one outcome.
    pub fn record(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Downloaded(_) => self.downloaded += 1,
            Outcome::Unchanged(_) => self.unchanged += 1,
            Outcome::NotFound => self.not_found += 1,
            Outcome::Failed(_) => self.errors += 1,
        }
    }

    /// Counts one outcome by its kind ([`Outcome::kind`]); any kind but
    /// `downloaded`, `unchanged` and `not_found` is an error, and
    /// `unfinished` is not counted.
    pub fn record_kind(&mut self, kind: &str) {
        match kind {
            "downloaded" => self.downloaded += 1,
            "unchanged" => self.unchanged += 1,
            "not_found" => self.not_found += 1,
            "unfinished" => {}
            _ => self.errors += 1,
        }
    }

    /// Number of codes finished.
    pub fn total(&self) -> usize {
        self.downloaded + self.unchanged + self.not_found + self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_match_the_spec() {
        let http = DownloadError::Http { status: 418, reason: "I'm a Teapot".into(), retry_after: None };
        assert_eq!(http.to_string(), "HTTP 418 - I'm a Teapot");
        assert_eq!(DownloadError::Connection { detail: None }.to_string(), "Connection error");
        let refused = DownloadError::Connection { detail: Some("connection refused".into()) };
        assert_eq!(refused.to_string(), "Connection error (connection refused)");
        let io = DownloadError::Io { detail: "disk full".into() };
        assert_eq!(io.to_string(), "I/O error (disk full)");
    }

    #[test]
    fn counts_add_up_every_kind() {
        let mut counts = StatusCounts::default();
        counts.record(&Outcome::Downloaded(SavedFile::new("BR.gif", 1)));
        counts.record(&Outcome::Unchanged("AR.gif".into()));
        counts.record(&Outcome::NotFound);
        counts.record(&Outcome::NotFound);
        counts.record(&Outcome::Failed(DownloadError::Connection { detail: None }));
        assert_eq!(counts, StatusCounts { downloaded: 1, unchanged: 1, not_found: 2, errors: 1 });
        assert_eq!(counts.total(), 5);
        let mut by_kind = StatusCounts::default();
        for kind in ["downloaded", "unchanged", "not_found", "not_found", "connection_error", "unfinished"] {
            by_kind.record_kind(kind);
        }
        assert_eq!(by_kind, counts);
    }
}
