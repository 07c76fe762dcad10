//! The built-in flag server: what `DEMO`, the tests and the benchmarks use.
//!
//! Serves `/flags/{cc}/{cc}.gif` and `/flags/{cc}/metadata.json` from the
//! embedded data set or from a directory laid out the same way (`--root`),
//! and 404 for anything else. Like the book's `slow_server.py` it can delay
//! answers, and behind explicit options it injects [`Faults`](super::options::Faults), each into a
//! given fraction of requests: `418 I'm a Teapot`, a fixed status, `503` with
//! `Retry-After`, flapping paths (fail first, then succeed), a hang, a body
//! cut off half way, a reset connection, a body trickled slowly. Faults are
//! drawn per request from the seed, the path and its attempt, so a seed
//! fails the same codes at any concurrency.
//!
//! Every file comes with validators: a strong `ETag` (a hash of the content)
//! and `Last-Modified` (the file's modification time with `--root`, a fixed
//! date for the embedded set). Conditional `GET`s and `HEAD`s are answered
//! as RFC 9110 §13.2.2 says: `304 Not Modified` when `If-None-Match` lists
//! the current tag (or `*`), or, without `If-None-Match`, when the file has
//! not changed since `If-Modified-Since`; `If-Match` and
//! `If-Unmodified-Since` that fail get `412`. One byte range is served as
//! `206` (`Accept-Ranges: bytes`, `If-Range` honoured), so clients can
//! resume. Like a real server it answers `405` (with `Allow`) to methods
//! other than `GET` and `HEAD`, and `400` to an HTTP/1.1 request without
//! `Host`. [`TestServer`] counts the bodies and the `304`s it sent, so
//! tests can check what a client transferred.
//!
//! [`TestServer::spawn`] runs it on its own thread and actix system, for
//! in-process use; [`serve_forever`] runs it in the foreground.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::body::SizedStream;
use actix_web::http::header::{
    ACCEPT_RANGES, ALLOW, CONTENT_RANGE, ETAG, HOST, IF_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

use super::conditional::{
    if_modified_since, if_none_match, if_range_allows, is_not_modified, precondition_failed, single,
};
use super::faults::{FaultDice, cut_short, redirect, unavailable, with_reason};
use super::files::{Files, Found};
use super::options::TestServerOptions;
use super::ranges::{Range, range_of};
use crate::sys::server_thread::ServerError;
use crate::sys::signals::StopSignals;

/// Concurrent connections the server is meant to hold.
pub const TARGET_CONNECTIONS: u64 = 1000;

/// What the server is called in errors.
const WHAT: &str = "test server";

/// Seconds that SIGINT or SIGTERM leaves requests in flight to finish
/// before the server stops: long enough for an ordinary answer, short
/// enough that a hanging or delayed one does not hold it (actix waits 30 s
/// by default, so Ctrl-C with one `--hang-rate` request open took 30 s).
const SHUTDOWN_GRACE_SECS: u64 = 1;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    /// It could not bind or start its thread.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The `--root` directory is not a directory.
    #[error("test server root '{}' is not a readable directory", .0.display())]
    Root(PathBuf),
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
    files: Files,
    dice: FaultDice,
    hits: Arc<Hits>,
}

impl State {
    fn new(options: TestServerOptions, hits: Arc<Hits>) -> Self {
        let files = Files::new(options.root.clone());
        let dice = FaultDice::new(options.faults.clone(), options.seed);
        Self { options, files, dice, hits }
    }
}

async fn answer(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    state.hits.count.fetch_add(1, Ordering::Relaxed);
    if state.options.record {
        let mut log = state.hits.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push((req.path().to_owned(), Instant::now()));
    }
    if req.version() == Version::HTTP_11 && !req.headers().contains_key(HOST) {
        return HttpResponse::BadRequest().content_type("text/plain").body("an HTTP/1.1 request needs a Host header\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return HttpResponse::MethodNotAllowed().insert_header((ALLOW, "GET, HEAD")).finish();
    }
    let options = &state.options;
    let faults = &options.faults;
    let dice = state.dice.for_request(req.path());
    if let Some(delay) = options.delay {
        actix_rt::time::sleep(delay.sample(dice.unit())).await;
    }
    if dice.roll(faults.hang_rate) {
        std::future::pending::<()>().await;
    }
    if dice.roll(faults.unavailable_rate) {
        return unavailable(faults.retry_after);
    }
    if dice.roll(faults.status_rate) {
        return HttpResponse::new(StatusCode::from_u16(faults.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    }
    if dice.roll(faults.error_rate) {
        return with_reason(StatusCode::IM_A_TEAPOT, "I'm a Teapot");
    }
    if dice.flaps(faults) {
        return unavailable(0);
    }
    if let Some(response) = redirect(req.path()) {
        return response;
    }
    let Some(Found { body, content_type, etag, modified }) = state.files.lookup(req.path()) else {
        return HttpResponse::NotFound().finish();
    };
    let last_modified = httpdate::fmt_http_date(modified);
    if precondition_failed(single(&req, IF_MATCH), single(&req, IF_UNMODIFIED_SINCE), &etag, modified) {
        return HttpResponse::PreconditionFailed().insert_header((ETAG, etag)).finish();
    }
    if is_not_modified(if_none_match(&req).as_deref(), if_modified_since(&req), &etag, modified) {
        state.hits.not_modified.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::NotModified()
            .insert_header((ETAG, etag))
            .insert_header((LAST_MODIFIED, last_modified))
            .finish();
    }
    state.hits.bodies.fetch_add(1, Ordering::Relaxed);
    let full = body.len() as u64;
    let range = if if_range_allows(single(&req, IF_RANGE), &etag, modified) {
        range_of(single(&req, RANGE), full)
    } else {
        Range::Whole
    };
    let mut ok = match range {
        Range::Whole => HttpResponse::Ok(),
        Range::Part { .. } => HttpResponse::PartialContent(),
        Range::Unsatisfiable => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((CONTENT_RANGE, format!("bytes */{full}")))
                .finish();
        }
    };
    ok.content_type(content_type)
        .insert_header((ETAG, etag))
        .insert_header((LAST_MODIFIED, last_modified))
        .insert_header((ACCEPT_RANGES, "bytes"));
    if let Range::Part { first, last } = range {
        ok.insert_header((CONTENT_RANGE, format!("bytes {first}-{last}/{full}")));
        // Both ends are within the body: `range_of` keeps them below `full`.
        return ok.body(body.slice(first as usize..=last as usize));
    }
    if dice.roll(faults.reset_rate) {
        // The connection has SO_LINGER 0 (see `build`): dropping it on this
        // error sends RST, after the headers and a first byte went out.
        return ok.body(SizedStream::new(full, cut_short(body.slice(..1), "reset on purpose")));
    }
    if dice.roll(faults.truncate_rate) {
        return ok.body(SizedStream::new(full, cut_short(body.slice(..body.len() / 2), "truncated on purpose")));
    }
    if dice.roll(faults.slow_rate) {
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
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .backlog(4096)
        // HTTP/1.1, and HTTP/2 with prior knowledge (h2c) on the same port.
        .bind_auto_h2c(bind)
        .map_err(|source| ServerError::Bind { what: WHAT, addr: bind, source })?;
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
                .map_err(|detail| ServerError::Thread { what: WHAT, detail })??;
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
    let mut stops = StopSignals::install()
        .map_err(|e| ServerError::Thread { what: WHAT, detail: format!("signal handlers: {e}") })?;
    let (server, addr) = build(bind, options, Arc::default())?;
    println!("Serving flags at {}", base_url(addr));
    let handle = server.handle();
    let stop = async move {
        stops.recv().await;
        handle.stop(true).await;
    };
    let (result, ()) = tokio::join!(server, stop);
    result.map_err(|e| TestServerError::Server(ServerError::Thread { what: WHAT, detail: e.to_string() }))
}
