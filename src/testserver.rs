//! The built-in flag server: what `DEMO`, the tests and the benchmarks use.
//!
//! Serves `/flags/{cc}/{cc}.gif` and `/flags/{cc}/metadata.json` from the
//! embedded data set or from a directory laid out the same way (`--root`),
//! and 404 for anything else. Like the book's `slow_server.py` it can delay
//! answers and fail a fraction of requests: `418 I'm a Teapot`, or a body cut
//! off half way (the connection closes before `Content-Length` bytes). Faults
//! are drawn from a seeded generator, so a seed gives a reproducible mix.
//!
//! [`TestServer::spawn`] runs it on its own thread and actix system, for
//! in-process use; [`serve_forever`] runs it in the foreground.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use std::{fmt, io, thread};

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;

use crate::dataset;

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
            let value: f64 = part
                .trim()
                .parse()
                .map_err(|_| format!("'{part}' is not a number of seconds"))?;
            Duration::try_from_secs_f64(value)
                .map_err(|_| format!("'{part}' must be a number of seconds >= 0"))
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

/// What the server serves and how it misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub struct TestServerOptions {
    /// Serve `{root}/{cc}/{cc}.gif` and `{root}/{cc}/metadata.json` instead
    /// of the embedded data set.
    pub root: Option<PathBuf>,
    /// Wait this long before each answer.
    pub delay: Option<DelayRange>,
    /// Fraction of requests answered `418 I'm a Teapot`.
    pub error_rate: f64,
    /// Fraction of flag requests whose body is cut off half way.
    pub truncate_rate: f64,
    /// Seed of the fault generator.
    pub seed: u64,
    /// Server threads.
    pub workers: usize,
}

impl Default for TestServerOptions {
    fn default() -> Self {
        Self {
            root: None,
            delay: None,
            error_rate: 0.0,
            truncate_rate: 0.0,
            seed: 0,
            workers: 1,
        }
    }
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

/// A fast, lock-free pseudo-random stream (SplitMix64) shared by all threads.
struct FaultDice(AtomicU64);

impl FaultDice {
    /// A uniform number in `[0, 1)`.
    fn roll(&self) -> f64 {
        let mut z = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct State {
    options: TestServerOptions,
    dice: FaultDice,
    hits: Arc<AtomicU64>,
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

async fn answer(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    state.hits.fetch_add(1, Ordering::Relaxed);
    let options = &state.options;
    if let Some(delay) = options.delay {
        actix_rt::time::sleep(delay.sample(state.dice.roll())).await;
    }
    if options.error_rate > 0.0 && state.dice.roll() < options.error_rate {
        let mut response = HttpResponse::new(StatusCode::IM_A_TEAPOT);
        response.head_mut().reason = Some("I'm a Teapot");
        return response;
    }
    let Some((body, content_type)) = state.lookup(req.path()) else {
        return HttpResponse::NotFound().finish();
    };
    if options.truncate_rate > 0.0 && state.dice.roll() < options.truncate_rate {
        let full = body.len() as u64;
        let half = body.slice(..body.len() / 2);
        let parts = [Ok(half), Err(io::Error::other("truncated on purpose"))];
        return HttpResponse::Ok()
            .content_type(content_type)
            .body(SizedStream::new(full, futures_util::stream::iter(parts)));
    }
    HttpResponse::Ok().content_type(content_type).body(body)
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
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < TARGET_CONNECTIONS + 64 => tracing::warn!(
            limit,
            "the open-files limit is {limit}: fewer than {TARGET_CONNECTIONS} concurrent connections fit; \
             raise it (ulimit -n, or LimitNOFILE= under systemd)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}

fn build(
    bind: SocketAddr,
    options: TestServerOptions,
    hits: Arc<AtomicU64>,
) -> Result<(actix_web::dev::Server, SocketAddr), TestServerError> {
    check_root(&options)?;
    let workers = options.workers.max(1);
    let state = web::Data::new(State {
        dice: FaultDice(AtomicU64::new(options.seed)),
        options,
        hits,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .default_service(web::to(answer))
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
    hits: Arc<AtomicU64>,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Binds `bind` (port 0 for a free port) and serves on a new thread.
    pub fn spawn(bind: SocketAddr, options: TestServerOptions) -> Result<Self, TestServerError> {
        let hits = Arc::new(AtomicU64::new(0));
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
        let (handle, addr) = ready_rx.recv().map_err(|_| {
            TestServerError::Thread("the server thread ended during start-up".into())
        })??;
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
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // `stop` sends its command at once; its future only reports completion.
        drop(self.handle.stop(false));
    }
}

/// Serves in the foreground until SIGINT or SIGTERM, printing the URL first.
pub async fn serve_forever(
    bind: SocketAddr,
    options: TestServerOptions,
) -> Result<(), TestServerError> {
    raise_open_files_limit();
    let (server, addr) = build(bind, options, Arc::new(AtomicU64::new(0)))?;
    println!("Serving flags at {}", base_url(addr));
    let handle = server.handle();
    let stop = async move {
        crate::signals::terminated().await;
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
    fn dice_are_uniform_enough_and_seeded() {
        let dice = FaultDice(AtomicU64::new(7));
        let rolls: Vec<f64> = (0..10_000).map(|_| dice.roll()).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let below = rolls.iter().filter(|r| **r < 0.25).count();
        assert!((2_200..2_800).contains(&below), "{below}");
        let again = FaultDice(AtomicU64::new(7));
        assert_eq!(again.roll(), rolls[0]);
    }

    #[test]
    fn only_flag_paths_are_served() {
        let state = State {
            options: TestServerOptions::default(),
            dice: FaultDice(AtomicU64::new(0)),
            hits: Arc::default(),
        };
        assert_eq!(
            state.lookup("/flags/br/br.gif").map(|(_, t)| t),
            Some("image/gif")
        );
        assert_eq!(
            state.lookup("/flags/br/metadata.json").map(|(_, t)| t),
            Some("application/json")
        );
        for path in [
            "/flags/zz/zz.gif",
            "/flags/br/ar.gif",
            "/flags/BR/BR.gif",
            "/flags/../br.gif",
            "/br/br.gif",
        ] {
            assert!(state.lookup(path).is_none(), "{path}");
        }
    }
}
