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
//! [`TestServer::spawn`] runs it on its own thread and actix system, for
//! in-process use; [`serve_forever`] runs it in the foreground.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use std::{fmt, io, thread};

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::dataset;
use crate::random::{Dice, mix};
use crate::signals::StopSignals;

/// Concurrent connections the server is meant to hold.
pub const TARGET_CONNECTIONS: u64 = 1000;

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
/// status, teapot (`error_rate`), flap; then, for files that exist, reset,
/// truncate, slow.
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

/// Requests received: how many, and (when recording) which and when.
#[derive(Debug, Default)]
pub struct Hits {
    count: AtomicU64,
    log: Mutex<Vec<(String, Instant)>>,
}

struct State {
    options: TestServerOptions,
    dice: Dice,
    hits: Arc<Hits>,
    /// Requests seen per flapping path.
    flaps: Mutex<HashMap<String, u32>>,
}

impl State {
    /// The file for a request path, if the path is one the server knows.
    fn lookup(&self, path: &str) -> Option<(Bytes, &'static str)> {
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
        let bytes = match &self.options.root {
            Some(root) => Bytes::from(std::fs::read(root.join(cc).join(name)).ok()?),
            None => Bytes::from_static(dataset::get(&format!("flags/{cc}/{name}"))?),
        };
        Some((bytes, content_type))
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
    let Some((body, content_type)) = state.lookup(req.path()) else {
        return HttpResponse::NotFound().finish();
    };
    let full = body.len() as u64;
    let mut ok = HttpResponse::Ok();
    ok.content_type(content_type);
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
    if let Some(limit) = crate::limits::raise_open_files_limit().filter(|l| *l < TARGET_CONNECTIONS + 64) {
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
    let state = web::Data::new(State { dice: Dice::new(options.seed), options, hits, flaps: Mutex::default() });
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
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_hits = Arc::clone(&hits);
        thread::Builder::new()
            .name("flagsd-testserver".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    match build(bind, options, thread_hits) {
                        Ok((server, addr)) => {
                            let _ = ready_tx.send(Ok((server.handle(), addr)));
                            if let Err(e) = server.await {
                                tracing::error!(error = %e, "test server stopped with an error");
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| TestServerError::Thread(e.to_string()))?;
        let (handle, addr) = ready_rx
            .recv()
            .map_err(|_| TestServerError::Thread("the server thread ended during start-up".into()))??;
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
        let state = State {
            options: TestServerOptions::default(),
            dice: Dice::new(0),
            hits: Arc::default(),
            flaps: Mutex::default(),
        };
        assert_eq!(state.lookup("/flags/br/br.gif").map(|(_, t)| t), Some("image/gif"));
        assert_eq!(state.lookup("/flags/br/metadata.json").map(|(_, t)| t), Some("application/json"));
        for path in ["/flags/zz/zz.gif", "/flags/br/ar.gif", "/flags/BR/BR.gif", "/flags/../br.gif", "/br/br.gif"] {
            assert!(state.lookup(path).is_none(), "{path}");
        }
    }
}
