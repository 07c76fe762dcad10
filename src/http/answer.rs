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
use super::url::{flag_url, is_flag_url, redact_credentials, url_under};
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

/// A 2xx answer whose announced length is within the size cap; its body is
/// pulled with [`FlagBody::chunk`].
#[derive(Debug)]
pub struct FlagBody {
    /// The status (2xx).
    pub status: u16,
    /// The server's `ETag`, if it sent one no longer than
    /// [`MAX_VALIDATOR`].
    pub etag: Option<String>,
    /// The server's `Last-Modified`, if it sent one no longer than
    /// [`MAX_VALIDATOR`].
    pub last_modified: Option<String>,
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
        let text = base.as_str();
        let display_base: Arc<str> = redact_credentials(text.strip_suffix('/').unwrap_or(text)).into();
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
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let (status, max_size) = (status.as_u16(), self.max_size);
        Ok(FlagAnswer::Body(FlagBody { status, etag, last_modified, response, max_size, received: 0 }))
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
