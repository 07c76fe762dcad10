//! One request, one outcome: the HTTP side of a worker.
//!
//! [`HttpFetcher`] asks `GET {base}/{cc}/{cc}.gif` and turns whatever happens
//! into an [`Outcome`]. Bodies are streamed into a temporary file in the
//! output directory and renamed over `{CC}.gif` only once complete, so a
//! target file is never half written: a failed or abandoned download drops
//! its temporary file, which deletes it (see [`OutputDir`]).
//!
//! With run state ([`HttpFetcher::with_state`]) a code whose file from an
//! earlier run is still on disk, unaltered (same size and SHA-256), is asked
//! for conditionally (`If-None-Match`, `If-Modified-Since`); a `304` answer is
//! the outcome [`Outcome::Unchanged`] and nothing is written. A file that is
//! missing, moved or altered is asked for unconditionally.
//!
//! [`HttpFetcher`] implements the engine's [`Fetch`] seam: workers hold a
//! `dyn Fetch` and know nothing of HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use sha2::{Digest as _, Sha256};

use super::client::Clients;
use super::rate::RateLimiter;
use super::response::{body_error, connection_error, drain, reason_phrase, request_error, retry_after};
use super::url::{flag_url, redact_credentials, url_under};
use crate::engine::retry::retryable_status;
use crate::engine::{Fetch, OutcomeFuture};
use crate::model::codes::CountryCode;
use crate::model::digest::{hex, sha256_hex};
use crate::model::outcome::{DownloadError, Outcome, SavedFile};
use crate::store::body::BodyWriter;
use crate::store::claims::{LocalClaims, NameClaims, claim_file_name};
use crate::store::output::OutputDir;
use crate::store::state::{KnownFiles, SharedKnownFiles};
use crate::sys::files::read_exact_regular;

/// The files earlier runs saved, for reading. Writers only insert whole
/// records, so a panic elsewhere cannot leave the map torn: a poisoned lock
/// is still read.
fn read(known: &SharedKnownFiles) -> std::sync::RwLockReadGuard<'_, KnownFiles> {
    known.read().unwrap_or_else(PoisonError::into_inner)
}

/// Longest `ETag` or `Last-Modified` kept: a longer one is dropped, as if the
/// server had sent none, so that a server cannot grow the state database
/// (and every later request) at will.
pub const MAX_VALIDATOR: usize = 1024;

/// Largest `metadata.json` read when naming files by country.
const METADATA_LIMIT: usize = 64 * 1024;

/// Downloads flags over HTTP into an output directory.
pub struct HttpFetcher {
    clients: Arc<Clients>,
    /// The base URL, parsed once: each request's URL is built from it.
    base: reqwest::Url,
    /// `base` with credentials masked, computed once for all reports.
    display_base: Arc<str>,
    /// The base of the URLs validators are recorded under (see
    /// [`HttpFetcher::recorded_as`]).
    record_base: Arc<str>,
    output: Arc<OutputDir>,
    /// Largest body saved, in bytes.
    max_size: u64,
    /// `Some` when files are named by country (`naming = "country"`).
    country_names: Option<Arc<dyn NameClaims>>,
    /// `Some` when the server has a request rate limit.
    limiter: Option<Arc<RateLimiter>>,
    /// `Some` when run state is kept: what earlier runs saved, by code.
    known: Option<SharedKnownFiles>,
}

impl HttpFetcher {
    /// A fetcher for `base` (an http(s) URL, as
    /// [`Clients::prepare_for`] gives; one trailing slash is ignored) saving
    /// into `output` as `{CC}.gif`, through `clients` (shared with other
    /// jobs).
    pub fn new(clients: Arc<Clients>, base: reqwest::Url, output: Arc<OutputDir>) -> Self {
        let text = base.as_str();
        let display_base: Arc<str> = redact_credentials(text.strip_suffix('/').unwrap_or(text)).into();
        Self {
            clients,
            base,
            record_base: Arc::clone(&display_base),
            display_base,
            output,
            max_size: u64::MAX,
            country_names: None,
            limiter: None,
            known: None,
        }
    }

    /// Keeps run state: files saved by earlier runs (`known`, which may be
    /// kept up to date by others meanwhile) are asked for conditionally, and
    /// every saved file's SHA-256 is computed.
    pub fn with_state(mut self, known: SharedKnownFiles) -> Self {
        self.known = Some(known);
        self
    }

    /// Records validators under `label` instead of the base URL (so
    /// `DEMO/br/br.gif`): for a server whose address changes from run to
    /// run, like the built-in one, whose files are the same every time.
    pub fn recorded_as(mut self, label: &str) -> Self {
        self.record_base = label.into();
        self
    }

    /// The URL `code`'s validators are recorded under.
    fn record_url(&self, code: CountryCode) -> String {
        flag_url(&self.record_base, code)
    }

    /// The file an earlier run saved for `code` and the conditional headers
    /// for it, if that file is still in this output directory, unaltered.
    ///
    /// The validators belong to the URL they came from, and the file must be
    /// where this run's naming puts it: a `{CC}.gif` when naming by code, a
    /// country name otherwise (after a change of server or of naming, the
    /// first run asks unconditionally). Only a regular file of the recorded
    /// size is read, on a blocking thread, so that a FIFO, a device or a
    /// huge file put in its place cannot stall or bloat the event loop.
    async fn conditional(&self, code: CountryCode) -> Option<(PathBuf, HeaderMap)> {
        let known = read(self.known.as_ref()?).get(&code)?.clone();
        let path = known.path.clone()?;
        let by_code = path == self.output.target_path(code);
        let named_as_this_run_names = by_code == self.country_names.is_none();
        let size = known.size.filter(|size| *size <= self.max_size)?;
        if !named_as_this_run_names
            || path.parent() != Some(self.output.path())
            || known.url.as_deref() != Some(self.record_url(code).as_str())
            || (known.etag.is_none() && known.last_modified.is_none())
        {
            return None;
        }
        let hashed = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_exact_regular(&path, size).ok().flatten().map(|b| sha256_hex(&b)))
        };
        let unaltered = hashed.await.ok().flatten();
        if unaltered.is_none() || unaltered != known.sha256 {
            return None;
        }
        let mut headers = HeaderMap::new();
        if let Some(etag) = known.etag.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(date) = known.last_modified.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(IF_MODIFIED_SINCE, date);
        }
        Some((path, headers))
    }

    /// Refuses bodies larger than `bytes`.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Spaces this fetcher's requests through `limiter` (shared per server).
    pub fn rate_limited(mut self, limiter: Option<Arc<RateLimiter>>) -> Self {
        self.limiter = limiter;
        self
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

    /// Names files by the `country` of the server's `{cc}/metadata.json`.
    ///
    /// With run state, the names of the files earlier runs saved stay
    /// reserved for their codes, so that a code whose flag is unchanged
    /// keeps its file even when another code now claims the same name.
    /// Call it after [`with_state`](Self::with_state).
    pub fn naming_by_country(mut self) -> Self {
        let known = self.known.as_ref().map(|known| read(known).clone()).unwrap_or_default();
        self.country_names = Some(Arc::new(LocalClaims::seeded(self.output.path(), &known)));
        self
    }

    async fn download(&self, code: CountryCode, lane: usize) -> Result<Outcome, DownloadError> {
        let conditional = self.conditional(code).await;
        let headers = conditional.as_ref().map(|(_, headers)| headers.clone()).unwrap_or_default();
        let url = url_under(&self.base, code, &format!("{}.gif", code.lower()));
        let mut response = self.get(url, &headers, lane).await?;
        let status = response.status();
        if let (StatusCode::NOT_MODIFIED, Some((path, _))) = (status, conditional) {
            drain(&mut response).await;
            return Ok(Outcome::Unchanged(path));
        }
        if status == StatusCode::NOT_FOUND {
            drain(&mut response).await;
            return Ok(Outcome::NotFound);
        }
        if !status.is_success() {
            let reason = reason_phrase(&response);
            let retry_after = retry_after(&response);
            drain(&mut response).await;
            return Err(DownloadError::Http { status: status.as_u16(), reason, retry_after });
        }
        let too_large = DownloadError::TooLarge { limit: self.max_size };
        if response.content_length().is_some_and(|len| len > self.max_size) {
            return Err(too_large);
        }

        let mut target = self.output.target_path(code);
        let io_error =
            |path: &Path, e: std::io::Error| DownloadError::Io { detail: format!("{}: {e}", path.display()) };
        let header = |name| {
            let value = response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
            value.filter(|v| v.len() <= MAX_VALIDATOR).map(str::to_owned)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let file = self.output.temp_file(code).map_err(|e| io_error(&target, e))?;
        let mut file = BodyWriter::new(file);
        let mut hasher = self.known.is_some().then(Sha256::new);
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| body_error(&e))? {
            bytes += chunk.len() as u64;
            if bytes > self.max_size {
                return Err(too_large);
            }
            if let Some(hasher) = &mut hasher {
                hasher.update(&chunk);
            }
            file.push(chunk).map_err(|e| io_error(&target, e))?;
        }
        let file = file.finish().map_err(|e| io_error(&target, e))?;
        if let Some(names) = &self.country_names {
            let country = self.country_name(code, lane).await?;
            let name = claim_file_name(&**names, code, &country)
                .await
                .map_err(|e| DownloadError::Io { detail: e.detail() })?;
            target = self.output.path().join(name);
        }
        file.persist(&target).map_err(|e| io_error(&target, e.error))?;
        if let Some(names) = &self.country_names {
            self.retire_old_name(code, &target, &**names).await;
        }
        let sha256 = hasher.map(|h| hex(&h.finalize()));
        let (status, origin) = (status.as_u16(), Some(self.record_url(code)));
        Ok(Outcome::Downloaded(SavedFile {
            status,
            sha256,
            etag,
            last_modified,
            origin,
            ..SavedFile::new(target, bytes)
        }))
    }

    /// After `code` was saved under a new country name (`target`), removes
    /// the file an earlier run saved for it under another name, so that a
    /// server that renames its countries cannot grow the directory without
    /// bound. Only a file that is still exactly what was saved (a regular
    /// file of the recorded size and SHA-256) is removed: one changed by
    /// someone else is left alone, and keeps its name reserved.
    async fn retire_old_name(&self, code: CountryCode, target: &Path, names: &dyn NameClaims) {
        let Some(known) = self.known.as_ref().and_then(|known| read(known).get(&code).cloned()) else { return };
        let (Some(old), Some(size), Some(sha256)) = (known.path, known.size, known.sha256) else { return };
        if old == target || old.parent() != Some(self.output.path()) {
            return;
        }
        let removed = tokio::task::spawn_blocking(move || {
            let unaltered = read_exact_regular(&old, size).ok().flatten().is_some_and(|b| sha256_hex(&b) == sha256);
            (unaltered && std::fs::remove_file(&old).is_ok()).then_some(old)
        });
        if let Ok(Some(old)) = removed.await
            && let Some(name) = old.file_name().and_then(|n| n.to_str())
            && let Err(e) = names.release(code, name).await
        {
            tracing::warn!(cc = %code, name, error = %e, "cannot release the claim on a retired file name");
        }
    }

    /// The `country` field of `{base}/{cc}/metadata.json`.
    async fn country_name(&self, code: CountryCode, lane: usize) -> Result<String, DownloadError> {
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
}

impl Fetch for HttpFetcher {
    fn display_url(&self, code: CountryCode) -> String {
        flag_url(&self.display_base, code)
    }

    fn fetch(self: Arc<Self>, code: CountryCode, lane: usize) -> OutcomeFuture {
        Box::pin(async move {
            // The connection this worker's last response used goes back to
            // the pool from a task of its own: let it run first, or hyper
            // opens a new connection while that one is on its way back.
            tokio::task::yield_now().await;
            match self.download(code, lane).await {
                Ok(outcome) => outcome,
                Err(error) => Outcome::Failed(error),
            }
        })
    }
}
