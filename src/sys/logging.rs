//! Diagnostics through tracing-subscriber: on stderr, or straight to the
//! journal.
//!
//! stdout carries reports and nothing else. The level comes from
//! `--log-level` or `FLAGSD_LOG` (EnvFilter syntax); each command has its
//! own default (`warn` for `fetch` and `run`, so a normal run prints no
//! diagnostics; `info` for `serve`). Human format by default: colours only
//! on a terminal. When stderr is systemd's journal stream (`JOURNAL_STREAM`
//! names it), events go to journald natively, each with its priority and its
//! fields ([`super::journal`]); with `JOURNAL_STREAM` set otherwise, lines
//! have neither colours nor timestamps, since the journal adds its own.
//! `--log-format json` writes one JSON object per line for log shippers.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::journal;

/// Format of the diagnostics on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (no colours or timestamps under the journal).
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging could not be set up: a filter that does not parse (a usage
/// error), or a second subscriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoggingError(pub String);

/// Installs the global subscriber.
pub fn init(filter: Option<&str>, default: &str, format: LogFormat) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(filter.unwrap_or(default))
        .map_err(|e| LoggingError(format!("--log-level / FLAGSD_LOG: {e}")))?;
    if format == LogFormat::Human
        && journal::stderr_is_the_journal()
        && let Ok(journal) = journal::JournalLayer::connect("flagsd")
    {
        let subscriber = tracing_subscriber::registry().with(filter).with(journal);
        return subscriber.try_init().map_err(|e| LoggingError(format!("cannot set up logging: {e}")));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human if under_journal => builder.with_ansi(false).without_time().try_init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    installed.map_err(|e| LoggingError(format!("cannot set up logging: {e}")))
}
