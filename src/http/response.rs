//! Reading what a server answered: reason phrases, `Retry-After`, bodies
//! drained for connection reuse, and transport failures named in a few words.

use std::time::Duration;

use super::causes::{find_source, innermost_message};
use super::client::RequestError;
use crate::model::outcome::DownloadError;
use crate::model::text::capped;

/// How much of an unwanted body (404, errors) is read so that the
/// connection can go back to the pool; larger bodies close the connection.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Reads a small unwanted body to the end so the connection can be reused.
pub async fn drain(response: &mut reqwest::Response) {
    let mut read = 0;
    while read < DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
}

/// Longest reason phrase kept, in bytes: a real one is a few words, and a
/// server can send 400 KB of one.
pub const MAX_REASON: usize = 256;

/// The reason phrase as the server sent it (cut at [`MAX_REASON`] bytes);
/// the canonical one when the server sent the canonical one (hyper only
/// keeps non-canonical phrases).
pub fn reason_phrase(response: &reqwest::Response) -> String {
    match response.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => capped(&String::from_utf8_lossy(reason.as_bytes()), MAX_REASON).into_owned(),
        None => response.status().canonical_reason().unwrap_or("").to_owned(),
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

/// A `Retry-After` value as a wait from `now`: delay-seconds, or an HTTP
/// date (a past one is no wait); `None` for anything else.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classifies a transport failure. Timeouts first: a timed-out connect is
/// also a connect error, and "timed out" is the more useful detail.
pub fn connection_error(error: &reqwest::Error) -> DownloadError {
    DownloadError::Connection { detail: Some(transport_detail(error)) }
}

/// A failed request in words: through a proxy, the proxy's part is named.
pub fn request_error(error: RequestError) -> DownloadError {
    let detail = match error {
        RequestError::Transport(e) => transport_detail(&e),
        RequestError::Proxy(failure) => failure.describe(&transport_detail(&failure.error)),
        other => other.to_string(),
    };
    DownloadError::Connection { detail: Some(detail) }
}

fn transport_detail(error: &reqwest::Error) -> String {
    let detail = if error.is_timeout() {
        "timed out".to_owned()
    } else if let Some(io) = find_source::<std::io::Error>(error) {
        io_detail(io)
    } else {
        innermost_message(error)
    };
    if detail.contains("invalid peer certificate") {
        format!("{detail}; for a private CA, use --cacert or the server's ca_file")
    } else {
        detail
    }
}

/// A failure while reading a body: the response is cut short.
pub fn body_error(error: &reqwest::Error) -> DownloadError {
    match connection_error(error) {
        DownloadError::Connection { detail: Some(d) } if d != "timed out" => {
            DownloadError::Connection { detail: Some(format!("truncated body: {d}")) }
        }
        other => other,
    }
}

fn io_detail(error: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "connection refused".to_owned(),
        ConnectionReset => "connection reset".to_owned(),
        ConnectionAborted => "connection aborted".to_owned(),
        TimedOut => "timed out".to_owned(),
        UnexpectedEof => "connection closed early".to_owned(),
        _ => error.to_string(),
    }
}
