//! The built-in flag server: what `DEMO`, the tests and the benchmarks use.
//!
//! Serves `/flags/{cc}/{cc}.gif` and `/flags/{cc}/metadata.json` from the
//! embedded data set or from a directory laid out the same way (`--root`),
//! and 404 for anything else. Like the book's `slow_server.py` it can delay
//! answers, and behind explicit options it injects [`Faults`], each into a
//! given fraction of requests: `418 I'm a Teapot`, a fixed status, `503` with
//! `Retry-After`, flapping paths (fail first, then succeed), a hang, a body
//! cut off half way, a reset connection, a body trickled slowly. Faults are
//! drawn from a seeded generator, so a seed gives a reproducible mix.
//!
//! Every file comes with validators: a strong `ETag` (a hash of the content)
//! and `Last-Modified` (the file's modification time with `--root`, a fixed
//! date for the embedded set). Conditional `GET`s and `HEAD`s are answered
//! as RFC 9110 §13.2.2 says: `304 Not Modified` when `If-None-Match` lists
//! the current tag (or `*`), or, without `If-None-Match`, when the file has
//! not changed since `If-Modified-Since`. [`TestServer`] counts the bodies
//! and the `304`s it sent, so tests can check what a client transferred.
//!
//! [`TestServer::spawn`] runs it on its own thread and actix system, for
//! in-process use; [`serve_forever`] runs it in the foreground.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use std::{fmt, io};

use actix_web::body::SizedStream;
use actix_web::http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};

use crate::model::random::{Dice, mix};
use crate::sys::signals::StopSignals;
use crate::testserver::dataset;

/// Concurrent connections the server is meant to hold.
pub const TARGET_CONNECTIONS: u64 = 1000;

/// `Last-Modified` of the embedded data set, in seconds since the UNIX
/// epoch: 2024-01-01T00:00:00Z (`Mon, 01 Jan 2024 00:00:00 GMT`).
const EMBEDDED_MODIFIED_UNIX: u64 = 1_704_067_200;

/// The last second an HTTP date can show (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE_UNIX: u64 = 253_402_300_799;

/// A delay before each answer: fixed, or uniform between two bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayRange {
    min: Duration,
    max: Duration,
}

impl DelayRange {
    fn sample(&self, unit: f64) -> Duration {
        self.min + (self.max - self.min).mul_f64(unit)
    }
}

impl FromStr for DelayRange {
    type Err = String;

    /// Parses `MIN` or `MIN..MAX`, in seconds (`0.5`, `0.1..0.5`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let seconds = |part: &str| -> Result<Duration, String> {
            let value: f64 = part.trim().parse().map_err(|_| format!("'{part}' is not a number of seconds"))?;
            Duration::try_from_secs_f64(value).map_err(|_| format!("'{part}' must be a number of seconds >= 0"))
        };
        let (min, max) = match s.split_once("..") {
            Some((lo, hi)) => (seconds(lo)?, seconds(hi)?),
            None => (seconds(s)?, seconds(s)?),
        };
        if min > max {
            return Err(format!(
                "the minimum delay {}s is above the maximum {}s",
                min.as_secs_f64(),
                max.as_secs_f64()
            ));
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for DelayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.min.as_secs_f64())?;
        if self.max != self.min {
            write!(f, "..{}s", self.max.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Parses a fraction of requests from 0 to 1 (`0.25`).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("'{s}' must be a fraction from 0 to 1")),
    }
}

/// Faults injected into a fraction of requests each (0 = never, 1 = always).
///
/// Checked in this order, the first that applies wins: hang, unavailable,
/// status, teapot (`error_rate`), flap; then, for files that exist and
/// unless a conditional request gets `304 Not Modified`, reset, truncate,
/// slow.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Accept the request and never answer.
    pub hang_rate: f64,
    /// Answer `503 Service Unavailable` with `Retry-After: {retry_after}`.
    pub unavailable_rate: f64,
    /// Seconds in the `Retry-After` header of `unavailable` answers.
    pub retry_after: u64,
    /// Answer with the fixed `status`.
    pub status_rate: f64,
    /// The status of `status_rate` answers.
    pub status: u16,
    /// Answer `418 I'm a Teapot` (flags2's error server).
    pub error_rate: f64,
    /// Fraction of paths that flap: their first `flap_failures` requests get
    /// `503`, later ones succeed.
    pub flap_rate: f64,
    /// Failures of a flapping path before it succeeds.
    pub flap_failures: u32,
    /// Send the headers, then reset the connection (RST) before the body.
    pub reset_rate: f64,
    /// Send half of the body, then close the connection.
    pub truncate_rate: f64,
    /// Trickle the body in ten pieces, `slow_interval` apart.
    pub slow_rate: f64,
    /// Pause between the pieces of a slow body.
    pub slow_interval: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            hang_rate: 0.0,
            unavailable_rate: 0.0,
            retry_after: 1,
            status_rate: 0.0,
            status: 500,
            error_rate: 0.0,
            flap_rate: 0.0,
            flap_failures: 2,
            reset_rate: 0.0,
            truncate_rate: 0.0,
            slow_rate: 0.0,
            slow_interval: Duration::from_secs(1),
        }
    }
}

/// What the server serves and how it misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestServerOptions {
    /// Serve `{root}/{cc}/{cc}.gif` and `{root}/{cc}/metadata.json` instead
    /// of the embedded data set.
    pub root: Option<PathBuf>,
    /// Wait this long before each answer.
    pub delay: Option<DelayRange>,
    /// Faults to inject.
    pub faults: Faults,
    /// Seed of the fault generator.
    pub seed: u64,
    /// Server threads (0 means 1).
    pub workers: usize,
    /// Keep the path and time of every request (for tests).
    pub record: bool,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    /// Binding the listening socket failed.
    #[error("cannot bind the test server to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The `--root` directory is not a directory.
    #[error("test server root '{}' is not a readable directory", .0.display())]
    Root(PathBuf),
    /// The server thread could not be started or died during start-up.
    #[error("cannot start the test server thread: {0}")]
    Thread(String),
}

/// Requests received: how many, what they got, and (when recording) which
/// and when.
#[derive(Debug, Default)]
pub struct Hits {
    count: AtomicU64,
    /// `200` answers with a file body (faulty bodies included).
    bodies: AtomicU64,
    /// `304 Not Modified` answers.
    not_modified: AtomicU64,
    log: Mutex<Vec<(String, Instant)>>,
}

struct State {
    options: TestServerOptions,
    dice: Dice,
    hits: Arc<Hits>,
    /// Requests seen per flapping path.
    flaps: Mutex<HashMap<String, u32>>,
    /// Entity tags of the embedded files, by data set path, computed once.
    etags: Mutex<HashMap<String, String>>,
}

/// A file the server knows, with its validators.
struct Found {
    body: Bytes,
    content_type: &'static str,
    /// Strong entity tag, quotes included.
    etag: String,
    /// Modification time, to whole seconds.
    modified: SystemTime,
}

/// The strong entity tag of a body: the first 16 bytes of its SHA-256, in
/// hex and quotes.
fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", crate::http::download::hex(&digest[..16]))
}

/// `time` cut to whole seconds and clamped to what an HTTP date can show.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.min(LAST_HTTP_DATE_UNIX))
}

/// Whether `etag` (strong, quoted) matches `*` or a member of the
/// comma-separated entity-tag `list` by weak comparison (a `W/` prefix is
/// ignored). Malformed members match nothing.
fn etag_list_matches(list: &str, etag: &str) -> bool {
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        // An opaque tag may hold commas: find its closing quote first.
        if let Some(opaque) = tag.strip_prefix('"')
            && let Some(end) = opaque.find('"')
        {
            let tail = &opaque[end + 1..];
            let (junk, next) = tail.split_once(',').unwrap_or((tail, ""));
            if junk.trim().is_empty() && &tag[..end + 2] == etag {
                return true;
            }
            rest = next;
        } else {
            let (member, next) = rest.split_once(',').unwrap_or((rest, ""));
            if member.trim() == "*" {
                return true;
            }
            rest = next;
        }
    }
}

/// Whether a conditional request gets `304 Not Modified` (RFC 9110
/// §13.2.2) for a file with `etag` and `modified` (whole seconds):
/// `If-None-Match`, when present, alone decides; otherwise
/// `If-Modified-Since`, if it is an HTTP date not before `modified`.
/// Unparseable dates are ignored.
fn is_not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    modified: SystemTime,
) -> bool {
    match if_none_match {
        Some(list) => etag_list_matches(list, etag),
        None => if_modified_since
            .and_then(|date| httpdate::parse_http_date(date.trim()).ok())
            .is_some_and(|since| modified <= since),
    }
}

/// `If-None-Match` of a request, all its lines joined into one list.
fn if_none_match(req: &HttpRequest) -> Option<String> {
    let lines: Vec<_> = req.headers().get_all(IF_NONE_MATCH).map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
    (!lines.is_empty()).then(|| lines.join(", "))
}

/// `If-Modified-Since` of a request, if it has exactly one readable line.
fn if_modified_since(req: &HttpRequest) -> Option<&str> {
    let mut lines = req.headers().get_all(IF_MODIFIED_SINCE);
    match (lines.next(), lines.next()) {
        (Some(line), None) => line.to_str().ok(),
        _ => None,
    }
}

impl State {
    fn new(options: TestServerOptions, hits: Arc<Hits>) -> Self {
        Self { dice: Dice::new(options.seed), options, hits, flaps: Mutex::default(), etags: Mutex::default() }
    }

    /// The entity tag of an embedded file, computed on first use.
    fn embedded_etag(&self, name: &str, body: &[u8]) -> String {
        let mut etags = self.etags.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(etag) = etags.get(name) {
            return etag.clone();
        }
        let etag = etag_of(body);
        etags.insert(name.to_owned(), etag.clone());
        etag
    }

    /// The file for a request path, if the path is one the server knows.
    fn lookup(&self, path: &str) -> Option<Found> {
        let rest = path.strip_prefix("/flags/")?;
        let (cc, name) = rest.split_once('/')?;
        let valid_cc = cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_lowercase());
        let content_type = if name == "metadata.json" {
            "application/json"
        } else if name.strip_suffix(".gif") == Some(cc) {
            "image/gif"
        } else {
            return None;
        };
        if !valid_cc {
            return None;
        }
        match &self.options.root {
            Some(root) => {
                // Content and time from one open file: it may be rewritten
                // between requests, so its tag is computed every time.
                let mut file = std::fs::File::open(root.join(cc).join(name)).ok()?;
                let modified = file.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut file, &mut bytes).ok()?;
                let etag = etag_of(&bytes);
                Some(Found { body: Bytes::from(bytes), content_type, etag, modified: whole_seconds(modified) })
            }
            None => {
                let key = format!("flags/{cc}/{name}");
                let bytes = dataset::get(&key)?;
                let etag = self.embedded_etag(&key, bytes);
                let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(EMBEDDED_MODIFIED_UNIX);
                Some(Found { body: Bytes::from_static(bytes), content_type, etag, modified })
            }
        }
    }
}

impl State {
    fn roll(&self, rate: f64) -> bool {
        rate > 0.0 && self.dice.roll() < rate
    }

    /// Whether this request of a flapping path still fails.
    fn flaps(&self, path: &str) -> bool {
        let faults = &self.options.faults;
        if faults.flap_rate <= 0.0 {
            return false;
        }
        let hash = path.bytes().fold(self.options.seed, |h, b| mix(h ^ u64::from(b)));
        if (hash >> 11) as f64 / (1u64 << 53) as f64 >= faults.flap_rate {
            return false;
        }
        let mut seen = self.flaps.lock().unwrap_or_else(PoisonError::into_inner);
        let count = seen.entry(path.to_owned()).or_insert(0);
        *count += 1;
        *count <= faults.flap_failures
    }
}

fn with_reason(status: StatusCode, reason: &'static str) -> HttpResponse {
    let mut response = HttpResponse::new(status);
    response.head_mut().reason = Some(reason);
    response
}

fn unavailable(retry_after: u64) -> HttpResponse {
    HttpResponse::ServiceUnavailable().insert_header(("Retry-After", retry_after.to_string())).finish()
}

/// Redirect chains for tests: `/redirect/{n}/flags/…` answers `302` to
/// `/redirect/{n-1}/flags/…`, and `/redirect/0/flags/…` to `/flags/…`;
/// `/redirect/ftp/flags/…` redirects to an `ftp:` URL.
fn redirect(path: &str) -> Option<HttpResponse> {
    let rest = path.strip_prefix("/redirect/")?;
    let (hops, target) = rest.split_once('/')?;
    let location = match hops {
        "ftp" => format!("ftp://127.0.0.1/{target}"),
        "0" => format!("/{target}"),
        n => format!("/redirect/{}/{target}", n.parse::<u32>().ok()?.checked_sub(1)?),
    };
    Some(HttpResponse::Found().insert_header(("Location", location)).finish())
}

/// A body stream that yields `first`, pauses (so that it is flushed to the
/// client), then fails, which makes the server drop the connection.
fn cut_short(first: Bytes, why: &'static str) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> {
    let steps: [Option<Bytes>; 2] = [Some(first), None];
    futures_util::stream::iter(steps).then(move |step| async move {
        match step {
            Some(bytes) => Ok(bytes),
            None => {
                actix_rt::time::sleep(Duration::from_millis(20)).await;
                Err(io::Error::other(why))
            }
        }
    })
}

async fn answer(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    state.hits.count.fetch_add(1, Ordering::Relaxed);
    if state.options.record {
        let mut log = state.hits.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push((req.path().to_owned(), Instant::now()));
    }
    let options = &state.options;
    let faults = &options.faults;
    if let Some(delay) = options.delay {
        actix_rt::time::sleep(delay.sample(state.dice.roll())).await;
    }
    if state.roll(faults.hang_rate) {
        std::future::pending::<()>().await;
    }
    if state.roll(faults.unavailable_rate) {
        return unavailable(faults.retry_after);
    }
    if state.roll(faults.status_rate) {
        return HttpResponse::new(StatusCode::from_u16(faults.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    }
    if state.roll(faults.error_rate) {
        return with_reason(StatusCode::IM_A_TEAPOT, "I'm a Teapot");
    }
    if state.flaps(req.path()) {
        return unavailable(0);
    }
    if let Some(response) = redirect(req.path()) {
        return response;
    }
    let Some(Found { body, content_type, etag, modified }) = state.lookup(req.path()) else {
        return HttpResponse::NotFound().finish();
    };
    let last_modified = httpdate::fmt_http_date(modified);
    // Only GET and HEAD are answered 304 (RFC 9110 §13.1.1, §13.1.3).
    let conditional = matches!(*req.method(), Method::GET | Method::HEAD);
    if conditional && is_not_modified(if_none_match(&req).as_deref(), if_modified_since(&req), &etag, modified) {
        state.hits.not_modified.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::NotModified()
            .insert_header((ETAG, etag))
            .insert_header((LAST_MODIFIED, last_modified))
            .finish();
    }
    state.hits.bodies.fetch_add(1, Ordering::Relaxed);
    let full = body.len() as u64;
    let mut ok = HttpResponse::Ok();
    ok.content_type(content_type).insert_header((ETAG, etag)).insert_header((LAST_MODIFIED, last_modified));
    if state.roll(faults.reset_rate) {
        // The connection has SO_LINGER 0 (see `build`): dropping it on this
        // error sends RST, after the headers and a first byte went out.
        return ok.body(SizedStream::new(full, cut_short(body.slice(..1), "reset on purpose")));
    }
    if state.roll(faults.truncate_rate) {
        return ok.body(SizedStream::new(full, cut_short(body.slice(..body.len() / 2), "truncated on purpose")));
    }
    if state.roll(faults.slow_rate) {
        let interval = faults.slow_interval;
        let piece = body.len().div_ceil(10).max(1);
        let pieces = futures_util::stream::unfold(body, move |mut rest| async move {
            if rest.is_empty() {
                return None;
            }
            actix_rt::time::sleep(interval).await;
            let next = rest.split_to(piece.min(rest.len()));
            Some((Ok::<_, io::Error>(next), rest))
        });
        return ok.body(SizedStream::new(full, pieces));
    }
    ok.body(body)
}

fn check_root(options: &TestServerOptions) -> Result<(), TestServerError> {
    match &options.root {
        Some(root) if !Path::new(root).is_dir() => Err(TestServerError::Root(root.clone())),
        _ => Ok(()),
    }
}

/// Raises the soft open-files limit to the hard limit, as servers do, and
/// says so when it is still too low for [`TARGET_CONNECTIONS`].
pub fn raise_open_files_limit() {
    if let Some(limit) = crate::sys::limits::raise_open_files_limit().filter(|l| *l < TARGET_CONNECTIONS + 64) {
        tracing::warn!(
            limit,
            "the open-files limit is {limit}: fewer than {TARGET_CONNECTIONS} concurrent connections fit; \
             raise it (ulimit -n, or LimitNOFILE= under systemd)"
        );
    }
}

fn build(
    bind: SocketAddr,
    options: TestServerOptions,
    hits: Arc<Hits>,
) -> Result<(actix_web::dev::Server, SocketAddr), TestServerError> {
    check_root(&options)?;
    let workers = options.workers.max(1);
    let resets = options.faults.reset_rate > 0.0;
    let state = web::Data::new(State::new(options, hits));
    let server = HttpServer::new(move || App::new().app_data(state.clone()).default_service(web::to(answer)))
        .on_connect(move |conn, _| {
            // Only with reset faults: an aborted connection then ends in RST.
            if let Some(tcp) = conn.downcast_ref::<actix_rt::net::TcpStream>().filter(|_| resets) {
                let _ = tcp.set_zero_linger();
            }
        })
        .workers(workers)
        .backlog(4096)
        .bind(bind)
        .map_err(|source| TestServerError::Bind { addr: bind, source })?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    Ok((server.disable_signals().run(), addr))
}

/// The base URL of a server listening on `addr`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}/flags")
}

/// A test server running on its own thread; stopped when dropped.
pub struct TestServer {
    addr: SocketAddr,
    hits: Arc<Hits>,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Binds `bind` (port 0 for a free port) and serves on a new thread.
    pub fn spawn(bind: SocketAddr, options: TestServerOptions) -> Result<Self, TestServerError> {
        let hits = Arc::new(Hits::default());
        let thread_hits = Arc::clone(&hits);
        let (handle, addr) =
            crate::sys::server_thread::spawn("flagsd-testserver", move || build(bind, options, thread_hits))
                .map_err(TestServerError::Thread)??;
        Ok(Self { addr, hits, handle })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the flags: `http://{addr}/flags`.
    pub fn url(&self) -> String {
        base_url(self.addr)
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.count.load(Ordering::Relaxed)
    }

    /// `200` answers that carried a flag or metadata body so far, faulty
    /// ones (reset, truncated, slow) included; `0` after a run means nothing
    /// was transferred again.
    pub fn bodies(&self) -> u64 {
        self.hits.bodies.load(Ordering::Relaxed)
    }

    /// `304 Not Modified` answers to conditional requests so far.
    pub fn not_modified(&self) -> u64 {
        self.hits.not_modified.load(Ordering::Relaxed)
    }

    /// Every request's path and arrival time, in order (only with `record`).
    pub fn requests(&self) -> Vec<(String, Instant)> {
        self.hits.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// When each request for `path` arrived (only with `record`).
    pub fn requests_for(&self, path: &str) -> Vec<Instant> {
        self.requests().into_iter().filter(|(p, _)| p == path).map(|(_, t)| t).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // `stop` sends its command at once; its future only reports completion.
        drop(self.handle.stop(false));
    }
}

/// Serves in the foreground until SIGINT or SIGTERM, printing the URL first.
pub async fn serve_forever(bind: SocketAddr, options: TestServerOptions) -> Result<(), TestServerError> {
    raise_open_files_limit();
    let mut stops = StopSignals::install().map_err(|e| TestServerError::Thread(format!("signal handlers: {e}")))?;
    let (server, addr) = build(bind, options, Arc::default())?;
    println!("Serving flags at {}", base_url(addr));
    let handle = server.handle();
    let stop = async move {
        stops.recv().await;
        handle.stop(true).await;
    };
    let (result, ()) = tokio::join!(server, stop);
    result.map_err(|e| TestServerError::Thread(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_as_seconds_or_ranges() {
        let fixed: DelayRange = "0.5".parse().unwrap();
        assert_eq!(fixed.sample(0.7), Duration::from_millis(500));
        let range: DelayRange = "0.1..0.3".parse().unwrap();
        assert_eq!(range.sample(0.0), Duration::from_millis(100));
        assert_eq!(range.sample(0.5), Duration::from_millis(200));
        assert!("0.3..0.1".parse::<DelayRange>().is_err());
        assert!("-1".parse::<DelayRange>().is_err());
        assert!("soon".parse::<DelayRange>().is_err());
    }

    #[test]
    fn rates_are_fractions() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("x").is_err());
    }

    #[test]
    fn only_flag_paths_are_served() {
        let state = State::new(TestServerOptions::default(), Arc::default());
        assert_eq!(state.lookup("/flags/br/br.gif").map(|f| f.content_type), Some("image/gif"));
        assert_eq!(state.lookup("/flags/br/metadata.json").map(|f| f.content_type), Some("application/json"));
        for path in ["/flags/zz/zz.gif", "/flags/br/ar.gif", "/flags/BR/BR.gif", "/flags/../br.gif", "/br/br.gif"] {
            assert!(state.lookup(path).is_none(), "{path}");
        }
    }

    const TAG: &str = "\"0123456789abcdef0123456789abcdef\"";

    /// `Mon, 01 Jan 2024 00:00:00 GMT`, the embedded data set's date.
    fn embedded_date() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(EMBEDDED_MODIFIED_UNIX)
    }

    fn inm(list: &str) -> bool {
        is_not_modified(Some(list), None, TAG, embedded_date())
    }

    fn ims(date: &str) -> bool {
        is_not_modified(None, Some(date), TAG, embedded_date())
    }

    #[test]
    fn etags_are_the_first_half_of_the_sha256_in_hex() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(etag_of(b"abc"), "\"ba7816bf8f01cfea414140de5dae2223\"");
    }

    #[test]
    fn embedded_files_have_cached_tags_and_the_fixed_date() {
        let state = State::new(TestServerOptions::default(), Arc::default());
        let found = state.lookup("/flags/br/br.gif").unwrap();
        let expected = etag_of(dataset::get("flags/br/br.gif").unwrap());
        assert_eq!(found.etag, expected);
        assert_eq!(httpdate::fmt_http_date(found.modified), "Mon, 01 Jan 2024 00:00:00 GMT");
        let cached = state.etags.lock().unwrap().get("flags/br/br.gif").cloned();
        assert_eq!(cached, Some(expected.clone()));
        assert_eq!(state.lookup("/flags/br/br.gif").unwrap().etag, expected);
        assert_ne!(state.lookup("/flags/ar/ar.gif").unwrap().etag, expected);
    }

    #[test]
    fn if_none_match_matches_any_listed_tag_weakly() {
        assert!(inm(TAG));
        assert!(inm(&format!("W/{TAG}")));
        assert!(inm(&format!("\"other\", {TAG}")));
        assert!(inm(&format!("\"other\",W/{TAG} , \"more\"")));
        assert!(inm(&format!("\"a,b\",\t{TAG}")));
        assert!(inm("*"));
        assert!(inm(" * "));
        assert!(!inm("\"other\""));
        assert!(!inm("\"other\", W/\"more\""));
        assert!(!inm(""));
        // The tag without its quotes, in other case, or glued to junk.
        assert!(!inm("0123456789abcdef0123456789abcdef"));
        assert!(!inm(&TAG.to_uppercase()));
        assert!(!inm(&format!("{TAG}x")));
        assert!(!inm(&format!("w/{TAG}")));
    }

    #[test]
    fn a_non_matching_if_none_match_beats_if_modified_since() {
        let date = "Mon, 01 Jan 2024 00:00:00 GMT";
        assert!(ims(date));
        assert!(!is_not_modified(Some("\"other\""), Some(date), TAG, embedded_date()));
        assert!(is_not_modified(Some(TAG), Some("Thu, 01 Jan 1970 00:00:00 GMT"), TAG, embedded_date()));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        assert!(ims("Mon, 01 Jan 2024 00:00:00 GMT"), "equal");
        assert!(ims("Tue, 02 Jan 2024 00:00:00 GMT"), "later");
        assert!(ims("Monday, 01-Jan-24 00:00:00 GMT"), "RFC 850 form");
        assert!(ims("Mon Jan  1 00:00:00 2024"), "asctime form");
        assert!(!ims("Sun, 31 Dec 2023 23:59:59 GMT"), "a second earlier");
        let with_fraction = embedded_date() + Duration::from_millis(999);
        assert!(is_not_modified(None, Some("Mon, 01 Jan 2024 00:00:00 GMT"), TAG, whole_seconds(with_fraction)));
    }

    #[test]
    fn garbage_conditional_headers_are_ignored() {
        for date in ["", "yesterday", "Mon, 01 Jan 2024", "Mon, 32 Jan 2024 00:00:00 GMT", "\u{e9}t\u{e9}"] {
            assert!(!ims(date), "{date:?}");
        }
        for list in ["W/", "\"", "\"unterminated, *x", "W/*", ",,,", "\u{e9}"] {
            assert!(!inm(list), "{list:?}");
        }
        // A malformed member does not hide a good one after it.
        assert!(inm(&format!("junk, W/, {TAG}")));
    }

    #[test]
    fn times_are_cut_to_whole_seconds_an_http_date_can_show() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(whole_seconds(epoch + Duration::from_millis(1500)), epoch + Duration::from_secs(1));
        assert_eq!(whole_seconds(epoch - Duration::from_secs(5)), epoch);
        let far = whole_seconds(epoch + Duration::from_secs(u64::from(u32::MAX) * 1000));
        assert_eq!(httpdate::fmt_http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
