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
//!
//! An entry is one datagram, and a datagram larger than the socket's send
//! buffer (about 208 KiB by default) is refused whole: an event quoting a
//! 300 KB reason phrase vanished. So every value is cut ([`MAX_FIELD`]
//! bytes, `MESSAGE` [`MAX_MESSAGE`]), fields stop being added past
//! [`MAX_ENTRY`] (their text stays in `MESSAGE`), and an entry the socket
//! still refuses as too large is sent again as its priority, identifier and
//! the start of its message: an event is cut, never dropped.
//!
//! `FLAGSD_JOURNAL_SOCKET` names another socket than journald's, for tests
//! and for a journal listening elsewhere.

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

/// Largest `MESSAGE` sent, in bytes; a longer one is cut.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// Largest value of any other field sent, in bytes; a longer one is cut.
pub const MAX_FIELD: usize = 4 * 1024;

/// Largest entry built, in bytes: fields that would make it larger are
/// left out (`MESSAGE` holds them too).
pub const MAX_ENTRY: usize = 96 * 1024;

/// What is sent of `MESSAGE` when even a capped entry is refused.
const FALLBACK_MESSAGE: usize = 1024;

/// Marks a value that was cut.
const CUT: &str = "…[cut]";

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
    /// A layer sending to journald's socket (or `FLAGSD_JOURNAL_SOCKET`'s);
    /// fails if nothing listens there. Every value goes through `escape`
    /// (see [`super::logging`]).
    pub fn connect(identifier: &str, escape: Escape) -> io::Result<Self> {
        let path =
            std::env::var_os("FLAGSD_JOURNAL_SOCKET").map_or_else(|| PathBuf::from(JOURNAL_SOCKET), PathBuf::from);
        Self::at(&path, identifier, escape)
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

/// `text` cut to at most `max` bytes (at a character boundary, the cut
/// marked).
fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let keep = max.saturating_sub(CUT.len());
    let end = (0..=keep).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}{CUT}", &text[..end]).into()
}

/// The datagram of one event, within [`MAX_ENTRY`] bytes.
fn entry(identifier: &str, level: &Level, fields: &Fields) -> Vec<u8> {
    let mut message = cut(&fields.message, MAX_MESSAGE).into_owned();
    for (name, value) in &fields.fields {
        if message.len() > MAX_MESSAGE {
            break;
        }
        // Writing to a String cannot fail.
        let _ = write!(message, " {name}={}", cut(value, MAX_FIELD));
    }
    let message = cut(&message, MAX_MESSAGE);
    let mut buffer = Vec::with_capacity(message.len() + 256);
    put(&mut buffer, "PRIORITY", &priority(level).to_string());
    put(&mut buffer, "SYSLOG_IDENTIFIER", &cut(identifier, MAX_FIELD));
    put(&mut buffer, "MESSAGE", &message);
    for (name, value) in &fields.fields {
        let (name, value) = (field_name(&cut(name, 64)), cut(value, MAX_FIELD));
        if buffer.len() + name.len() + value.len() + 10 > MAX_ENTRY {
            break;
        }
        put(&mut buffer, &name, &value);
    }
    buffer
}

/// The smallest entry of an event: what is sent when its whole entry is
/// refused.
fn fallback_entry(identifier: &str, level: &Level, fields: &Fields) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(FALLBACK_MESSAGE + 128);
    put(&mut buffer, "PRIORITY", &priority(level).to_string());
    put(&mut buffer, "SYSLOG_IDENTIFIER", &cut(identifier, 64));
    put(&mut buffer, "MESSAGE", &cut(&fields.message, FALLBACK_MESSAGE));
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
        let level = event.metadata().level();
        let sent = self.socket.send_to(&entry(&self.identifier, level, &fields), &self.path);
        if sent.is_err_and(|e| matches!(e.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS))) {
            // Nowhere to report a failure to log: the smallest entry is
            // the last try.
            let _ = self.socket.send_to(&fallback_entry(&self.identifier, level, &fields), &self.path);
        }
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

    /// A fake journald at a socket in `dir`, and a layer sending to it
    /// (its probe already read).
    fn fake_journald(dir: &Path) -> (UnixDatagram, JournalLayer) {
        let path = dir.join("journal.socket");
        let journald = UnixDatagram::bind(&path).expect("a fake journald");
        let layer = JournalLayer::at(&path, "flagsd", str::to_owned).expect("it connects");
        assert_eq!(journald.recv(&mut [0u8; 16]).expect("the probe"), 0);
        journald.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("a timeout");
        (journald, layer)
    }

    #[test]
    fn values_of_any_size_are_cut_and_the_event_still_arrives() {
        let dir = tempfile::tempdir().expect("a directory");
        let (journald, layer) = fake_journald(dir.path());
        let reason = "é".repeat(150_000);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(reason = %reason, other = %"x".repeat(300_000), "{}", "m".repeat(200_000));
        });
        let mut datagram = vec![0u8; 1 << 20];
        let n = journald.recv(&mut datagram).expect("the event, cut");
        assert!(n <= MAX_ENTRY, "{n} bytes");
        let text = String::from_utf8(datagram[..n].to_vec()).expect("cut at character boundaries");
        let field = |name: &str| {
            let start = text.find(&format!("\n{name}=")).map(|i| i + name.len() + 2).expect(name);
            text[start..].split('\n').next().unwrap_or_default().to_owned()
        };
        assert!(field("MESSAGE").len() <= MAX_MESSAGE && field("MESSAGE").ends_with(CUT), "{}", field("MESSAGE").len());
        assert!(field("FLAGSD_REASON").len() <= MAX_FIELD && field("FLAGSD_REASON").starts_with("ééé"));
        assert!(field("FLAGSD_OTHER").len() <= MAX_FIELD && field("FLAGSD_OTHER").ends_with(CUT));
    }

    #[test]
    fn an_entry_the_socket_refuses_is_sent_again_smaller() {
        use std::os::fd::AsRawFd as _;
        let dir = tempfile::tempdir().expect("a directory");
        let (journald, layer) = fake_journald(dir.path());
        // A send buffer far smaller than an entry of 16 KiB.
        let size: libc::c_int = 4096;
        // SAFETY: the socket is open, and the option's value is a live c_int
        // of the size given.
        let set = unsafe {
            libc::setsockopt(
                layer.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "{}", io::Error::last_os_error());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(detail = %"d".repeat(20_000), "{}", "m".repeat(20_000));
        });
        let mut datagram = vec![0u8; 1 << 16];
        let n = journald.recv(&mut datagram).expect("the event, smaller");
        let text = String::from_utf8_lossy(&datagram[..n]).into_owned();
        assert!(text.starts_with("PRIORITY=3\nSYSLOG_IDENTIFIER=flagsd\nMESSAGE=mmm"), "{}", &text[..60]);
        assert!(n <= FALLBACK_MESSAGE + 64 && text.ends_with(&format!("{CUT}\n")), "{n} bytes");
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
