//! One flag asked for, one checked answer: the HTTP side of a worker.
//!
//! [`FlagSource`] asks `GET {base}/{cc}/{cc}.gif`, conditionally when given
//! an earlier answer's validators, and says what came back: not modified,
//! not found, or a 2xx body whose validators and size are checked and whose
//! chunks are pulled under the size cap ([`FlagBody`]). Anything else is a
//! [`DownloadError`]. It also reads a code's country name from its
//! `metadata.json`.
//!
//! It knows nothing of files: where a body goes, which name it gets and
//! which earlier file still stands are the store's (`store::save`), and the
//! job composes both behind the engine's `Fetch` seam. An answer is a value
//! the caller pulls from, so the body still streams, chunk by chunk, from
//! the connection to the file.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap, HeaderName, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};

use super::client::Clients;
use super::rate::RateLimiter;
use super::response::{body_error, connection_error, drain, reason_phrase, request_error, retry_after};
use super::url::{flag_url, is_flag_url, shown, url_under};
use crate::engine::retry::retryable_status;
use crate::model::codes::CountryCode;
use crate::model::outcome::DownloadError;

/// Longest `ETag` or `Last-Modified` kept: a longer one is dropped, as if the
/// server had sent none, so that a server cannot grow the state database
/// (and every later request) at will.
pub const MAX_VALIDATOR: usize = 1024;

/// Largest `metadata.json` read when naming files by country.
const METADATA_LIMIT: usize = 64 * 1024;

/// A request made conditional on an earlier answer: that answer's
/// validators, and what the caller holds of it (`earlier`), given back if
/// the server says it is still current. A `304` to a request without one is
/// an error, as any other unexpected status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditional<T> {
    /// Sent as `If-None-Match`.
    pub etag: Option<String>,
    /// Sent as `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// What the validators stand for.
    pub earlier: T,
}

/// What the server answered for a flag.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "an answer is matched as soon as it is returned; boxing the body would cost an allocation per flag"
)]
pub enum FlagAnswer<T> {
    /// `304 Not Modified` to a conditional request: the earlier answer
    /// (what the request's [`Conditional`] held) is current.
    NotModified(T),
    /// `404 Not Found`.
    NotFound,
    /// A 2xx answer, its body still to be read.
    Body(FlagBody),
}

/// What a 2xx answer says of its body: its status and validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagHead {
    /// The status (2xx).
    pub status: u16,
    /// The server's `ETag`, if it sent one no longer than
    /// [`MAX_VALIDATOR`].
    pub etag: Option<String>,
    /// The server's `Last-Modified`, if it sent one no longer than
    /// [`MAX_VALIDATOR`].
    pub last_modified: Option<String>,
}

/// A 2xx answer whose announced length is within the size cap; its body is
/// pulled with [`FlagBody::chunk`].
#[derive(Debug)]
pub struct FlagBody {
    /// The status and validators.
    pub head: FlagHead,
    response: reqwest::Response,
    /// Largest body accepted, in bytes.
    max_size: u64,
    /// Bytes pulled so far.
    received: u64,
}

impl FlagBody {
    /// The next chunk of the body, or `None` at its end. A body that grows
    /// past the size cap is [`DownloadError::TooLarge`]; one cut short is
    /// a connection error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, DownloadError> {
        let chunk = self.response.chunk().await.map_err(|e| body_error(&e))?;
        if let Some(chunk) = &chunk {
            self.received += chunk.len() as u64;
            if self.received > self.max_size {
                return Err(DownloadError::TooLarge { limit: self.max_size });
            }
        }
        Ok(chunk)
    }
}

/// Asks a server for flags and their country names.
pub struct FlagSource {
    clients: Arc<Clients>,
    /// The base URL, parsed once: each request's URL is built from it.
    base: reqwest::Url,
    /// `base` with credentials masked, computed once for all reports.
    display_base: Arc<str>,
    /// The base of the URLs validators are recorded under (see
    /// [`FlagSource::recorded_as`]).
    record_base: Arc<str>,
    /// Largest body accepted, in bytes.
    max_size: u64,
    /// `Some` when the server has a request rate limit.
    limiter: Option<Arc<RateLimiter>>,
}

impl FlagSource {
    /// A source of flags under `base` (an http(s) URL, as
    /// [`Clients::prepare_for`] gives; one trailing slash is ignored),
    /// asked through `clients` (shared with other jobs).
    pub fn new(clients: Arc<Clients>, base: reqwest::Url) -> Self {
        let text = shown(&base);
        let display_base: Arc<str> = text.strip_suffix('/').unwrap_or(&text).into();
        Self { clients, base, record_base: Arc::clone(&display_base), display_base, max_size: u64::MAX, limiter: None }
    }

    /// Refuses bodies larger than `bytes`.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Spaces this source's requests through `limiter` (shared per server).
    pub fn rate_limited(mut self, limiter: Option<Arc<RateLimiter>>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Records validators under `label` instead of the base URL (so
    /// `DEMO/br/br.gif`): for a server whose address changes from run to
    /// run, like the built-in one, whose files are the same every time.
    pub fn recorded_as(mut self, label: &str) -> Self {
        self.record_base = label.into();
        self
    }

    /// The URL of `code` as reports show it (credentials masked).
    pub fn display_url(&self, code: CountryCode) -> String {
        flag_url(&self.display_base, code)
    }

    /// The URL `code`'s validators are recorded under.
    pub fn record_url(&self, code: CountryCode) -> String {
        flag_url(&self.record_base, code)
    }

    /// Whether `url` is [`record_url`](Self::record_url)`(code)`, found
    /// without building it.
    pub fn is_record_url(&self, code: CountryCode, url: &str) -> bool {
        is_flag_url(url, &self.record_base, code)
    }

    /// Asks for `code`'s flag, conditionally on `conditional` when given,
    /// through the client of `lane` (see [`Clients::get`]).
    pub async fn flag<T>(
        &self,
        code: CountryCode,
        conditional: Option<Conditional<T>>,
        lane: usize,
    ) -> Result<FlagAnswer<T>, DownloadError> {
        let mut headers = HeaderMap::new();
        let earlier = conditional.map(|Conditional { etag, last_modified, earlier }| {
            insert_validator(&mut headers, IF_NONE_MATCH, etag);
            insert_validator(&mut headers, IF_MODIFIED_SINCE, last_modified);
            earlier
        });
        let url = url_under(&self.base, code, &format!("{}.gif", code.lower()));
        let mut response = self.get(url, &headers, lane).await?;
        let status = response.status();
        if let (StatusCode::NOT_MODIFIED, Some(earlier)) = (status, earlier) {
            drain(&mut response).await;
            return Ok(FlagAnswer::NotModified(earlier));
        }
        if status == StatusCode::NOT_FOUND {
            drain(&mut response).await;
            return Ok(FlagAnswer::NotFound);
        }
        if !status.is_success() {
            let reason = reason_phrase(&response);
            let retry_after = retry_after(&response);
            drain(&mut response).await;
            return Err(DownloadError::Http { status: status.as_u16(), reason, retry_after });
        }
        if response.content_length().is_some_and(|len| len > self.max_size) {
            return Err(DownloadError::TooLarge { limit: self.max_size });
        }
        let header = |name| {
            let value = response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
            value.filter(|v| v.len() <= MAX_VALIDATOR).map(str::to_owned)
        };
        let head = FlagHead { status: status.as_u16(), etag: header(ETAG), last_modified: header(LAST_MODIFIED) };
        Ok(FlagAnswer::Body(FlagBody { head, response, max_size: self.max_size, received: 0 }))
    }

    /// The `country` field of `{base}/{cc}/metadata.json`.
    pub async fn country_name(&self, code: CountryCode, lane: usize) -> Result<String, DownloadError> {
        let url = url_under(&self.base, code, "metadata.json");
        let fail = |detail: String, transient: bool| DownloadError::Metadata { detail, transient };
        let transport = |e: reqwest::Error| fail(connection_error(&e).to_string(), true);
        let mut response = self.get(url, &HeaderMap::new(), lane).await.map_err(|e| {
            let transient = matches!(e, DownloadError::Connection { .. });
            fail(e.to_string(), transient)
        })?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let detail = format!("HTTP {status} - {}", reason_phrase(&response));
            drain(&mut response).await;
            return Err(fail(detail, retryable_status(status)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            body.extend_from_slice(&chunk);
            if body.len() > METADATA_LIMIT {
                return Err(fail(format!("larger than {METADATA_LIMIT} bytes"), false));
            }
        }
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}"), false))?;
        match json.get("country").and_then(serde_json::Value::as_str) {
            Some(country) => Ok(country.to_owned()),
            None => Err(fail("no \"country\" string".to_owned(), false)),
        }
    }

    /// Sends a GET with `headers` (following redirects), after waiting for
    /// the rate limiter's slot.
    async fn get(
        &self,
        url: reqwest::Url,
        headers: &HeaderMap,
        lane: usize,
    ) -> Result<reqwest::Response, DownloadError> {
        if let Some(limiter) = &self.limiter {
            limiter.wait().await;
        }
        self.clients.get(url, headers, lane).await.map_err(request_error)
    }
}

/// Adds the validator `value` as the header `name`, unless it is not
/// visible ASCII (then the request is as if it had none).
fn insert_validator(headers: &mut HeaderMap, name: HeaderName, value: Option<String>) {
    if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;
    use crate::http::client::{ClientCache, ClientOptions, Timeouts, Transport};
    use crate::model::codes::parse_code;

    const TIMEOUTS: Timeouts =
        Timeouts { connect: Duration::from_secs(5), read: Duration::from_secs(10), total: Duration::from_secs(30) };

    /// A source of the flags under `url`, refusing bodies over `max_size`.
    fn source(url: &str, max_size: u64) -> FlagSource {
        let transport = Transport::default();
        let options = ClientOptions { timeouts: TIMEOUTS, no_proxy: true, transport, count_connections: false };
        let clients = ClientCache::default().get(options);
        let base = clients.prepare_for(url).unwrap();
        FlagSource::new(clients, base).max_size(max_size)
    }

    /// An answer with `head` (status line and headers) and `body`, its
    /// length announced.
    fn answer(head: &str, body: &[u8]) -> Vec<u8> {
        let mut answer = format!("HTTP/1.1 {head}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(body);
        answer
    }

    /// Reads one request's head from `stream`.
    async fn request_head(stream: &mut TcpStream) -> Option<String> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            stream.read_exact(&mut byte).await.ok()?;
            head.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&head).to_lowercase())
    }

    /// A server under `/flags` that gives `answers`, in order, one a
    /// request, on any connection; its base URL, and the heads of the
    /// requests it received (in lower case).
    async fn canned(answers: Vec<Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let url = format!("http://{}/flags", listener.local_addr().unwrap());
        let (heads, seen) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(answers.into_iter())));
        let kept = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (heads, answers) = (Arc::clone(&heads), Arc::clone(&seen));
                tokio::spawn(async move {
                    while let Some(head) = request_head(&mut stream).await {
                        heads.lock().unwrap().push(head);
                        let Some(answer) = answers.lock().unwrap().next() else { return };
                        stream.write_all(&answer).await.unwrap();
                    }
                });
            }
        });
        (url, kept)
    }

    /// The whole body of `answer`, which must be a body.
    async fn read_all(answer: FlagAnswer<&str>) -> Result<Vec<u8>, DownloadError> {
        let FlagAnswer::Body(mut body) = answer else { panic!("no body: {answer:?}") };
        let mut bytes = Vec::new();
        while let Some(chunk) = body.chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_status_is_its_answer_and_a_current_flag_gives_back_what_its_conditional_held() {
        let date = "Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT";
        let (url, heads) = canned(vec![
            answer(&format!("200 OK\r\nETag: \"e1\"\r\n{date}"), b"GIF89a"),
            answer("304 Not Modified", b""),
            answer("404 Not Found", b"no such flag"),
            answer("304 Not Modified", b""),
            answer("503 Busy\r\nRetry-After: 7", b""),
            answer("200 OK", br#"{"country": "Brazil"}"#),
        ])
        .await;
        let (source, br) = (source(&url, u64::MAX), parse_code("BR").unwrap());
        let FlagAnswer::Body(body) = source.flag::<&str>(br, None, 0).await.unwrap() else { panic!("no body") };
        let FlagHead { status, etag, last_modified } = body.head.clone();
        assert_eq!((status, etag.as_deref()), (200, Some("\"e1\"")));
        assert_eq!(read_all(FlagAnswer::Body(body)).await.unwrap(), b"GIF89a");
        let conditional = Conditional { etag, last_modified, earlier: "held" };
        assert!(matches!(source.flag(br, Some(conditional), 0).await, Ok(FlagAnswer::NotModified("held"))));
        let asked = heads.lock().unwrap()[1].clone();
        assert!(asked.starts_with("get /flags/br/br.gif "), "{asked}");
        assert!(
            asked.contains("if-none-match: \"e1\"\r\n") && asked.contains("if-modified-since: tue, 01 dec"),
            "{asked}"
        );
        assert!(matches!(source.flag::<&str>(br, None, 0).await, Ok(FlagAnswer::NotFound)));
        let unasked = source.flag::<&str>(br, None, 0).await.unwrap_err();
        assert_eq!(unasked.to_string(), "HTTP 304 - Not Modified", "a 304 to an unconditional request");
        let busy = source.flag::<&str>(br, None, 0).await.unwrap_err();
        let retry_after = Some(Duration::from_secs(7));
        assert_eq!(busy, DownloadError::Http { status: 503, reason: "Busy".to_owned(), retry_after });
        assert_eq!(source.country_name(br, 0).await.unwrap(), "Brazil");
        assert!(heads.lock().unwrap()[5].starts_with("get /flags/br/metadata.json "));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn validators_longer_than_the_cap_are_dropped() {
        let long = "x".repeat(MAX_VALIDATOR - 2);
        let (url, _) = canned(vec![
            answer(&format!("200 OK\r\nETag: \"{long}\""), b"GIF89a"),
            answer(&format!("200 OK\r\nETag: \"{long}x\""), b"GIF89a"),
        ])
        .await;
        let (source, br) = (source(&url, u64::MAX), parse_code("BR").unwrap());
        for kept in [true, false] {
            let FlagAnswer::Body(body) = source.flag::<&str>(br, None, 0).await.unwrap() else { panic!("no body") };
            assert_eq!(body.head.etag.map(|etag| etag.len()), kept.then_some(MAX_VALIDATOR));
        }
    }

    /// An answer of `pieces` chunks of 800 bytes, no length announced.
    fn chunked(pieces: usize) -> Vec<u8> {
        let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..pieces {
            answer.extend_from_slice(b"320\r\n");
            answer.extend_from_slice(&[b'x'; 800]);
            answer.extend_from_slice(b"\r\n");
        }
        answer.extend_from_slice(b"0\r\n\r\n");
        answer
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_size_cap_holds_whether_announced_or_streamed() {
        let (url, _) = canned(vec![answer("200 OK", &[b'x'; 1025]), chunked(1), chunked(2)]).await;
        let (source, br) = (source(&url, 1024), parse_code("BR").unwrap());
        let too_large = DownloadError::TooLarge { limit: 1024 };
        assert_eq!(source.flag::<&str>(br, None, 0).await.unwrap_err(), too_large, "announced");
        let within = source.flag(br, None, 0).await.unwrap();
        assert_eq!(read_all(within).await.unwrap().len(), 800);
        let beyond = source.flag(br, None, 0).await.unwrap();
        assert_eq!(read_all(beyond).await.unwrap_err(), too_large, "1600 bytes streamed");
    }
}
