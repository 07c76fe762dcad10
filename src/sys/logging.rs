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
//!
//! An event's fields may hold what a server or a fleet's node sent (a
//! proxy's status line, a URL, an error). In the human format and in the
//! journal, which people read on a terminal, every value goes through the
//! `escape` function given to [`init`] (the binary gives
//! `model::text::terminal_safe`: `sys` imports nothing of the crate), so a
//! logged escape sequence, carriage return or bidi override shows as
//! `\x1b`, `\x0d`, `\u{202e}` instead of acting on the terminal. JSON
//! escapes control characters itself and is read by programs.

use std::fmt;
use std::io::IsTerminal as _;

use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::journal::{self, Escape};

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

/// Installs the global subscriber; `escape` makes each value of the human
/// format and the journal safe for a terminal.
pub fn init(filter: Option<&str>, default: &str, format: LogFormat, escape: Escape) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(filter.unwrap_or(default))
        .map_err(|e| LoggingError(format!("--log-level / FLAGSD_LOG: {e}")))?;
    if format == LogFormat::Human
        && journal::stderr_is_the_journal()
        && let Ok(journal) = journal::JournalLayer::connect("flagsd", escape)
    {
        let subscriber = tracing_subscriber::registry().with(filter).with(journal);
        return subscriber.try_init().map_err(|e| LoggingError(format!("cannot set up logging: {e}")));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // The message as it is, every other field as `name=value`, each escaped.
    let fields = debug_fn(move |writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
        let text = escape(&format!("{value:?}"));
        if field.name() == "message" { writer.write_str(&text) } else { write!(writer, "{field}={text}") }
    })
    .delimited(" ");
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human if under_journal => builder.fmt_fields(fields).with_ansi(false).without_time().try_init(),
        LogFormat::Human => builder.fmt_fields(fields).with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    installed.map_err(|e| LoggingError(format!("cannot set up logging: {e}")))
}
