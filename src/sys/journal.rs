//! Native journal logging: each event sent to journald with its priority
//! and its fields as journal fields.
//!
//! Under systemd, lines on stderr reach the journal at priority 6 whatever
//! their level, so `journalctl -p warning` finds nothing. This layer speaks
//! journald's native protocol instead (one datagram an event on
//! `/run/systemd/journal/socket`, `KEY=value` lines): `PRIORITY` from the
//! level (error 3, warn 4, info 6, debug and trace 7), `MESSAGE` the
//! event's text followed by its fields (`run finished batch=world run=7 …`,
//! as on stderr), and every field again as `FLAGSD_{NAME}` (`FLAGSD_BATCH`,
//! `FLAGSD_CC`, `FLAGSD_RUN`), so that `journalctl -u flagsd
//! FLAGSD_BATCH=world` selects one batch's events.
//!
//! Written here rather than with `tracing-journald`, which puts only the
//! event's message in `MESSAGE`: an operator reading `journalctl -u flagsd`
//! would see `run finished` without its counts.

use std::fmt::{self, Write as _};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where journald listens for native entries.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The prefix of the journal fields made from an event's fields.
pub const FIELD_PREFIX: &str = "FLAGSD_";

/// Largest `MESSAGE` sent; longer ones are cut.
const MAX_MESSAGE: usize = 16 * 1024;

/// Makes a logged value safe to show on a terminal (see [`super::logging`]).
pub type Escape = fn(&str) -> String;

/// Sends each event to journald; see the module documentation.
#[derive(Debug)]
pub struct JournalLayer {
    socket: UnixDatagram,
    path: PathBuf,
    identifier: String,
    escape: Escape,
}

impl JournalLayer {
    /// A layer sending to journald's socket; fails if nothing listens there.
    /// Every value goes through `escape` (see [`super::logging`]).
    pub fn connect(identifier: &str, escape: Escape) -> io::Result<Self> {
        Self::at(Path::new(JOURNAL_SOCKET), identifier, escape)
    }

    /// A layer sending to the socket at `path` (tests use their own).
    pub fn at(path: &Path, identifier: &str, escape: Escape) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        // An empty datagram is discarded by journald: it only proves that
        // something listens.
        socket.send_to(&[], path)?;
        Ok(Self { socket, path: path.to_owned(), identifier: identifier.to_owned(), escape })
    }
}

/// Whether stderr is the stream systemd connected to the journal
/// (`JOURNAL_STREAM` names its device and inode): only then are events
/// sent natively, so that `2>file` under systemd still writes the file.
pub fn stderr_is_the_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else { return false };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else { return false };
    dev.parse() == Ok(stderr.dev()) && ino.parse() == Ok(stderr.ino())
}

/// journald's priority of a level.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// An event's message and fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push((field.name(), format!("{value:?}")));
        }
    }
}

/// Appends the journal field `name` with `value` in the native protocol's
/// form: `NAME=value\n`, or, for a value with a line break, `NAME\n`, its
/// length as 64-bit little-endian, the value and `\n`.
fn put(buffer: &mut Vec<u8>, name: &str, value: &str) {
    buffer.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        buffer.push(b'\n');
        buffer.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buffer.push(b'=');
    }
    buffer.extend_from_slice(value.as_bytes());
    buffer.push(b'\n');
}

/// `FLAGSD_` and the field's name in upper case, other characters than
/// letters, digits and `_` as `_`.
fn field_name(name: &str) -> String {
    let upper: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("{FIELD_PREFIX}{upper}")
}

/// The datagram of one event.
fn entry(identifier: &str, level: &Level, fields: &Fields) -> Vec<u8> {
    let mut message = fields.message.clone();
    for (name, value) in &fields.fields {
        // Writing to a String cannot fail.
        let _ = write!(message, " {name}={value}");
    }
    if message.len() > MAX_MESSAGE {
        let cut = (0..=MAX_MESSAGE).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
        message.truncate(cut);
    }
    let mut buffer = Vec::with_capacity(message.len() + 128);
    put(&mut buffer, "PRIORITY", &priority(level).to_string());
    put(&mut buffer, "SYSLOG_IDENTIFIER", identifier);
    put(&mut buffer, "MESSAGE", &message);
    for (name, value) in &fields.fields {
        put(&mut buffer, &field_name(name), value);
    }
    buffer
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        fields.message = (self.escape)(&fields.message);
        for (_, value) in &mut fields.fields {
            *value = (self.escape)(value);
        }
        let datagram = entry(&self.identifier, event.metadata().level(), &fields);
        // Nowhere to report a failure to log: the entry is dropped.
        let _ = self.socket.send_to(&datagram, &self.path);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn events_reach_the_socket_with_priority_message_and_fields() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("journal.socket");
        let journald = UnixDatagram::bind(&path).expect("a fake journald");
        let layer = JournalLayer::at(&path, "flagsd", str::to_owned).expect("it connects");
        let mut probe = [0u8; 16];
        assert_eq!(journald.recv(&mut probe).expect("the probe"), 0);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(batch = "world", run = 7, "previous run still in progress");
            tracing::error!(detail = "two\nlines", "disk full");
        });
        let mut datagram = vec![0u8; 65536];
        let n = journald.recv(&mut datagram).expect("the warning");
        let text = String::from_utf8_lossy(&datagram[..n]).into_owned();
        assert!(text.starts_with("PRIORITY=4\nSYSLOG_IDENTIFIER=flagsd\n"), "{text}");
        assert!(text.contains("\nMESSAGE=previous run still in progress batch=world run=7\n"), "{text}");
        assert!(text.contains("\nFLAGSD_BATCH=world\nFLAGSD_RUN=7\n"), "{text}");
        let n = journald.recv(&mut datagram).expect("the error");
        let bytes = &datagram[..n];
        assert!(bytes.starts_with(b"PRIORITY=3\n"));
        let mut expected = b"FLAGSD_DETAIL\n".to_vec();
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(b"two\nlines\n");
        assert!(bytes.ends_with(&expected), "{}", String::from_utf8_lossy(bytes));
    }

    #[test]
    fn nothing_listening_is_an_error_and_levels_map_to_priorities() {
        let dir = tempfile::tempdir().expect("a directory");
        assert!(JournalLayer::at(&dir.path().join("none"), "flagsd", str::to_owned).is_err());
        let levels = [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE];
        assert_eq!(levels.map(|l| priority(&l)), [3, 4, 6, 7, 7]);
        assert_eq!(field_name("cc"), "FLAGSD_CC");
        assert_eq!(field_name("exit-status"), "FLAGSD_EXIT_STATUS");
    }
}
