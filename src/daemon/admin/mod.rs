//! The admin HTTP endpoint of `flagsd serve`: health, readiness, metrics,
//! batches, runs, and a way to start a run now.
//!
//! # Why a channel
//!
//! The daemon runs on a single-threaded actix system and keeps its state in
//! `Rc`s and `RefCell`s, which cannot cross threads; actix-web handlers run
//! on the server's own worker threads. So this module owns no daemon state
//! at all: [`AdminServer`] runs on its own thread with its own actix system,
//! and each request becomes an [`AdminRequest`] sent over a
//! [`tokio::sync::mpsc`] channel, carrying a [`tokio::sync::oneshot`] sender
//! for the answer. The daemon's loop receives the requests next to its other
//! events, answers from its own thread, and never shares memory with the
//! server. A handler waits [`ANSWER_TIMEOUT`] at most: a daemon that is
//! stuck, or gone, gives `503 Service Unavailable` rather than a hung
//! connection.
//!
//! # Authentication
//!
//! With a token ([`AdminOptions::token`]), every request except `/healthz`
//! and `/readyz` (meant for probes) needs `Authorization: Bearer <token>`;
//! the token is compared in constant time and is never logged, nor is the
//! `Authorization` header. Rejected requests are logged at warn level with
//! their method, path and peer address only.
//!
//! # Endpoints
//!
//! | Request | Answer |
//! |---|---|
//! | `GET /healthz` | `200 ok` once the daemon answers a ping |
//! | `GET /readyz` | `200 ready`, or `503` with the reason (with a token configured, only for requests that carry it) |
//! | `GET /metrics` | the Prometheus text format 0.0.4 |
//! | `GET /batches` | JSON, as the daemon gives it |
//! | `GET /runs?batch=NAME&limit=N` | JSON; `limit` from 1 to 1000, 20 by default |
//! | `POST /batches/{name}/run` | `202` (started), `409` (running), `404` (unknown), `500` (failed) |
//!
//! Errors are JSON objects `{"error": "…"}` (except `/readyz`, whose reason
//! is text); unknown paths get `404`, a wrong method on a known path `405`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use std::{fmt, io};

use actix_web::dev::{ServerHandle, Service as _, ServiceRequest};
use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::{Either, ready};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// How long a handler waits for the daemon's answer before giving `503`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs listed by `GET /runs` when the request gives no `limit`.
pub const DEFAULT_RUNS_LIMIT: usize = 20;

/// The largest `limit` `GET /runs` accepts.
pub const MAX_RUNS_LIMIT: usize = 1000;

/// The content type of `GET /metrics` (Prometheus text format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The realm named in `WWW-Authenticate` challenges.
const CHALLENGE: &str = r#"Bearer realm="flagsd""#;

/// Paths open without a token: the probes of a service manager or
/// orchestrator, which tell nothing about the batches.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// What the admin endpoint asks of the daemon. Each variant carries the
/// sender on which the daemon answers; a dropped sender counts as no answer.
#[derive(Debug)]
pub enum AdminRequest {
    /// `GET /healthz`: answer to show the daemon's loop is alive.
    Ping(oneshot::Sender<()>),
    /// `GET /readyz`: `Ok` when ready, `Err(reason)` otherwise (`503`).
    Ready(oneshot::Sender<Result<(), String>>),
    /// `GET /metrics`: the metrics in the Prometheus text format
    /// ([`crate::daemon::metrics::Metrics::render`]).
    Metrics(oneshot::Sender<String>),
    /// `GET /batches`: the batches, as JSON sent to the client unchanged.
    Batches(oneshot::Sender<serde_json::Value>),
    /// `GET /runs`: the latest `limit` runs, of one batch or of all; an
    /// `Err` becomes `500`.
    Runs {
        /// Only runs of this batch, if given (an empty `batch=` means all).
        batch: Option<String>,
        /// Runs wanted at most, from 1 to [`MAX_RUNS_LIMIT`].
        limit: usize,
        /// Where the JSON answer goes.
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// `POST /batches/{name}/run`: start a run of `batch` now.
    Trigger {
        /// The batch name from the path (percent-decoded).
        batch: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Trigger>,
    },
}

/// The daemon's answer to a [`AdminRequest::Trigger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A run started (`202`).
    Started {
        /// The new run's identifier.
        run_id: i64,
    },
    /// A run of the batch is already in progress (`409`).
    Running,
    /// No batch has that name (`404`).
    Unknown,
    /// The run could not start (`500`); the message says why.
    Failed(String),
}

/// Where the admin endpoint listens and whether it wants a token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminOptions {
    /// The address to listen on (port 0 for any free port).
    pub listen: SocketAddr,
    /// The bearer token required by every endpoint but `/healthz` and
    /// `/readyz`; `None` leaves them all open.
    pub token: Option<String>,
}

impl fmt::Debug for AdminOptions {
    /// Shows whether a token is set, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding the listening socket failed.
    #[error("cannot bind the admin endpoint to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The server thread could not be started or ended during start-up.
    #[error("cannot start the admin endpoint thread: {0}")]
    Thread(String),
}

/// What every handler shares: the way to the daemon, and the token.
struct State {
    daemon: mpsc::Sender<AdminRequest>,
    token: Option<String>,
    timeout: Duration,
}

/// Why a request got no answer from the daemon.
#[derive(Debug)]
enum NoAnswer {
    /// The channel is closed or the reply sender was dropped.
    Gone,
    /// No answer within the timeout.
    Timeout,
}

/// Sends the request made by `request` to the daemon and waits for its
/// answer, [`State::timeout`] at most (sending included: a full channel
/// counts against it too).
async fn ask<T>(state: &State, request: impl FnOnce(oneshot::Sender<T>) -> AdminRequest) -> Result<T, NoAnswer> {
    let (reply, answer) = oneshot::channel();
    let exchange = async {
        state.daemon.send(request(reply)).await.map_err(|_| NoAnswer::Gone)?;
        answer.await.map_err(|_| NoAnswer::Gone)
    };
    tokio::time::timeout(state.timeout, exchange).await.unwrap_or(Err(NoAnswer::Timeout))
}

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

fn text(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(body)
}

/// `503`, logged: the daemon did not answer `what`.
fn unanswered(what: &str, why: NoAnswer) -> HttpResponse {
    match why {
        NoAnswer::Gone => tracing::warn!(request = what, "the daemon is not taking admin requests"),
        NoAnswer::Timeout => tracing::warn!(request = what, "the daemon did not answer an admin request in time"),
    }
    json_error(StatusCode::SERVICE_UNAVAILABLE, "the daemon did not answer")
}

async fn healthz(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Ping).await {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(why) => unanswered("ping", why),
    }
}

/// `/readyz` is open to probes, but with a token configured only a request
/// that carries it learns why the daemon is not ready (paths, OS errors).
async fn readyz(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Ready).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n".into()),
        Ok(Err(reason)) => {
            let may_see = state.token.as_deref().is_none_or(|expected| {
                bearer_token(req.headers()).is_some_and(|given| tokens_match(given, expected.as_bytes()))
            });
            let body = if may_see { format!("{reason}\n") } else { "not ready\n".to_owned() };
            text(StatusCode::SERVICE_UNAVAILABLE, body)
        }
        Err(why) => unanswered("ready", why),
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Metrics).await {
        Ok(body) => HttpResponse::Ok().content_type(METRICS_CONTENT_TYPE).body(body),
        Err(why) => unanswered("metrics", why),
    }
}

async fn batches(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Batches).await {
        Ok(value) => HttpResponse::Ok().json(value),
        Err(why) => unanswered("batches", why),
    }
}

/// The query string of `GET /runs`, as received.
#[derive(Debug, serde::Deserialize)]
struct RunsQuery {
    batch: Option<String>,
    limit: Option<String>,
}

/// The batch filter and limit of a `GET /runs` query string, or the message
/// of a `400`.
fn runs_query(query: &str) -> Result<(Option<String>, usize), String> {
    let query = web::Query::<RunsQuery>::from_query(query).map_err(|e| format!("bad query string: {e}"))?;
    let RunsQuery { batch, limit } = query.into_inner();
    let limit = match limit {
        None => DEFAULT_RUNS_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_RUNS_LIMIT).contains(&n) => n,
            _ => return Err(format!("limit must be a whole number from 1 to {MAX_RUNS_LIMIT}")),
        },
    };
    Ok((batch.filter(|b| !b.is_empty()), limit))
}

async fn runs(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let (batch, limit) = match runs_query(req.query_string()) {
        Ok(query) => query,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    match ask(&state, |reply| AdminRequest::Runs { batch, limit, reply }).await {
        Ok(Ok(value)) => HttpResponse::Ok().json(value),
        Ok(Err(message)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &message),
        Err(why) => unanswered("runs", why),
    }
}

async fn trigger(name: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    let name = name.into_inner();
    let batch = name.clone();
    match ask(&state, |reply| AdminRequest::Trigger { batch, reply }).await {
        Ok(Trigger::Started { run_id }) => HttpResponse::Accepted().json(json!({ "run_id": run_id, "batch": name })),
        Ok(Trigger::Running) => json_error(StatusCode::CONFLICT, &format!("batch {name} is running")),
        Ok(Trigger::Unknown) => json_error(StatusCode::NOT_FOUND, &format!("no batch named {name}")),
        Ok(Trigger::Failed(message)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &message),
        Err(why) => unanswered("trigger", why),
    }
}

fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow)).json(json!({
        "error": format!("{} is not allowed on {}; use {allow}", req.method(), req.path())
    }))
}

async fn get_only(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "GET")
}

async fn post_only(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "POST")
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, &format!("no such endpoint: {}", req.path()))
}

/// Compares a token received with the expected one in constant time: the
/// time taken depends on the lengths only, never on where the first
/// differing byte is, so an attacker timing the answers cannot guess the
/// token byte by byte. Every byte pair is XORed and the results ORed
/// together, with no early exit; [`std::hint::black_box`] keeps the
/// optimiser from turning the loop back into one that stops at the first
/// difference. Different lengths are rejected at once: that reveals the
/// token's length, not its content, which is an accepted trade-off here.
fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let mut difference = 0u8;
    for (a, b) in given.iter().zip(expected) {
        difference = std::hint::black_box(difference | (a ^ b));
    }
    difference == 0
}

/// The credentials of an `Authorization: Bearer …` header (the scheme is
/// case-insensitive), if the request has one.
fn bearer_token(headers: &header::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, credentials) = value.split_at(space);
    scheme.eq_ignore_ascii_case(b"bearer").then(|| credentials.trim_ascii())
}

/// Checks the token of a request to a protected path: `Err` holds the
/// reason of the `401`.
fn authorize(req: &ServiceRequest, token: Option<&str>) -> Result<(), &'static str> {
    let Some(expected) = token else { return Ok(()) };
    if OPEN_PATHS.contains(&req.path()) {
        return Ok(());
    }
    match bearer_token(req.headers()) {
        None => Err("this endpoint needs an Authorization: Bearer token"),
        Some(given) if tokens_match(given, expected.as_bytes()) => Ok(()),
        Some(_) => Err("the bearer token is not valid"),
    }
}

fn unauthorized(req: &ServiceRequest, reason: &'static str) -> HttpResponse {
    // Method, path and peer only: never the token nor the header.
    let peer = req.peer_addr().map_or_else(|| "unknown".to_owned(), |addr| addr.to_string());
    tracing::warn!(method = %req.method(), path = %req.path(), %peer, reason, "admin request rejected");
    HttpResponse::Unauthorized().insert_header((header::WWW_AUTHENTICATE, CHALLENGE)).json(json!({ "error": reason }))
}

fn build(
    options: AdminOptions,
    daemon: mpsc::Sender<AdminRequest>,
    timeout: Duration,
) -> Result<(actix_web::dev::Server, SocketAddr), AdminError> {
    let bind = options.listen;
    let state = web::Data::new(State { daemon, token: options.token, timeout });
    let server = HttpServer::new(move || {
        let guard = state.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, service| match authorize(&req, guard.token.as_deref()) {
                Ok(()) => Either::Left(service.call(req)),
                Err(reason) => {
                    let response = unauthorized(&req, reason);
                    Either::Right(ready(Ok(req.into_response(response))))
                }
            })
            .service(web::resource("/healthz").route(web::get().to(healthz)).default_service(web::to(get_only)))
            .service(web::resource("/readyz").route(web::get().to(readyz)).default_service(web::to(get_only)))
            .service(web::resource("/metrics").route(web::get().to(metrics)).default_service(web::to(get_only)))
            .service(web::resource("/batches").route(web::get().to(batches)).default_service(web::to(get_only)))
            .service(web::resource("/runs").route(web::get().to(runs)).default_service(web::to(get_only)))
            .service(
                web::resource("/batches/{name}/run").route(web::post().to(trigger)).default_service(web::to(post_only)),
            )
            .default_service(web::to(not_found))
    })
    .workers(1)
    .backlog(64)
    .shutdown_timeout(1)
    .bind(bind)
    .map_err(|source| AdminError::Bind { addr: bind, source })?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    Ok((server.disable_signals().run(), addr))
}

/// The admin endpoint, running on its own thread; stopped when dropped.
pub struct AdminServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// Binds `options.listen` (port 0 for a free port) and serves on a new
    /// thread with its own actix system, forwarding every request to
    /// `daemon`. Returns once the socket is bound.
    pub fn spawn(options: AdminOptions, daemon: mpsc::Sender<AdminRequest>) -> Result<Self, AdminError> {
        Self::start(options, daemon, ANSWER_TIMEOUT)
    }

    /// [`AdminServer::spawn`] with a chosen answer timeout (tests lower it).
    fn start(options: AdminOptions, daemon: mpsc::Sender<AdminRequest>, timeout: Duration) -> Result<Self, AdminError> {
        let (handle, addr) = crate::sys::server_thread::spawn("flagsd-admin", move || build(options, daemon, timeout))
            .map_err(AdminError::Thread)??;
        Ok(Self { addr, handle })
    }

    /// The address the endpoint listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        // `stop` sends its command at once; its future only reports completion.
        drop(self.handle.stop(false));
    }
}

/// Whether `addr` is a loopback address (`127.0.0.0/8`, `::1`, or
/// `::ffff:127.x.y.z`), reachable from this machine only.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(v4) => v4.ip().is_loopback(),
        SocketAddr::V6(v6) => v6.ip().is_loopback() || v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Parses where to listen: `PORT` (on `127.0.0.1`), `IP:PORT` or
/// `[IPv6]:PORT`. The message of an error names the value.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let value = text.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<u16>()
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .map_err(|_| format!("'{text}' is not a port: ports go from 0 to 65535"));
    }
    value.parse().map_err(|_| format!("'{text}' is not a listen address: expected PORT, IP:PORT or [IPv6]:PORT"))
}

/// Reads a bearer token from `path`: the file's content without surrounding
/// whitespace. An empty file, or one that cannot be read, is an error whose
/// message names the path (and the operating system's error); no message
/// ever contains the token.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let content =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file '{}': {e}", path.display()))?;
    let token = content.trim();
    if token.is_empty() {
        return Err(format!("the token file '{}' is empty", path.display()));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::sync::mpsc as std_mpsc;
    use std::thread;
    use std::time::Instant;

    /// One HTTP answer, as the tiny client below reads it.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        /// Header names in lower case.
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }

        fn json(&self) -> serde_json::Value {
            assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
        }

        fn error(&self) -> String {
            match self.json().get("error") {
                Some(serde_json::Value::String(message)) => message.clone(),
                _ => panic!("no error message: {self:?}"),
            }
        }
    }

    /// Decodes a `Transfer-Encoding: chunked` body.
    fn dechunk(mut raw: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let end = raw.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
            let size_text = std::str::from_utf8(&raw[..end]).expect("ASCII chunk size");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("hex size");
            raw = &raw[end + 2..];
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&raw[..size]);
            raw = &raw[size + 2..];
        }
    }

    /// Sends one HTTP/1.1 request with `Connection: close` to a loopback
    /// address and reads the whole answer.
    fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        assert!(addr.ip().is_loopback(), "tests talk to 127.0.0.1 only");
        let mut stream = TcpStream::connect(addr).expect("connect to the admin endpoint");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        let mut request =
            format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("send the request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the answer");

        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of the headers");
        let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        if chunked {
            body = dechunk(&body);
        } else if let Some((_, length)) = headers.iter().find(|(n, _)| n == "content-length") {
            assert_eq!(length.parse::<usize>().ok(), Some(body.len()), "content length");
        }
        Reply { status, headers, body: String::from_utf8(body).expect("UTF-8 body") }
    }

    fn get(server: &AdminServer, target: &str) -> Reply {
        http(server.addr(), "GET", target, &[])
    }

    /// A daemon on a thread that answers at once with canned replies, and
    /// tells the test (on the returned receiver) what it was asked:
    /// - readiness: `ready`;
    /// - runs: echoes `batch` and `limit` back; batch `broken` fails;
    /// - trigger: `daily` starts run 7, `busy` is running, `bad` fails,
    ///   any other name is unknown.
    fn fake_daemon(ready: Result<(), String>) -> (mpsc::Sender<AdminRequest>, std_mpsc::Receiver<String>) {
        let (tx, mut rx) = mpsc::channel(8);
        let (log_tx, log) = std_mpsc::channel();
        thread::spawn(move || {
            while let Some(request) = rx.blocking_recv() {
                let _ = log_tx.send(match &request {
                    AdminRequest::Ping(_) => "ping".to_owned(),
                    AdminRequest::Ready(_) => "ready".to_owned(),
                    AdminRequest::Metrics(_) => "metrics".to_owned(),
                    AdminRequest::Batches(_) => "batches".to_owned(),
                    AdminRequest::Runs { batch, limit, .. } => format!("runs {batch:?} {limit}"),
                    AdminRequest::Trigger { batch, .. } => format!("trigger {batch}"),
                });
                match request {
                    AdminRequest::Ping(reply) => {
                        let _ = reply.send(());
                    }
                    AdminRequest::Ready(reply) => {
                        let _ = reply.send(ready.clone());
                    }
                    AdminRequest::Metrics(reply) => {
                        let _ = reply.send("# TYPE flagsd_up gauge\nflagsd_up 1\n".to_owned());
                    }
                    AdminRequest::Batches(reply) => {
                        let _ = reply.send(json!([{ "name": "daily", "every": "1h" }]));
                    }
                    AdminRequest::Runs { batch, limit, reply } => {
                        let answer = match batch.as_deref() {
                            Some("broken") => Err("database is locked".to_owned()),
                            _ => Ok(json!({ "batch": batch, "limit": limit, "runs": [] })),
                        };
                        let _ = reply.send(answer);
                    }
                    AdminRequest::Trigger { batch, reply } => {
                        let _ = reply.send(match batch.as_str() {
                            "daily" => Trigger::Started { run_id: 7 },
                            "busy" => Trigger::Running,
                            "bad" => Trigger::Failed("cannot create the output directory".to_owned()),
                            _ => Trigger::Unknown,
                        });
                    }
                }
            }
        });
        (tx, log)
    }

    /// A daemon that takes every request and never answers (it keeps the
    /// reply senders, so the handlers see no drop, only silence).
    fn silent_daemon() -> mpsc::Sender<AdminRequest> {
        let (tx, mut rx) = mpsc::channel(8);
        thread::spawn(move || {
            let mut held = Vec::new();
            while let Some(request) = rx.blocking_recv() {
                held.push(request);
            }
        });
        tx
    }

    fn local() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn serve(daemon: mpsc::Sender<AdminRequest>, token: Option<&str>) -> AdminServer {
        let options = AdminOptions { listen: local(), token: token.map(str::to_owned) };
        AdminServer::spawn(options, daemon).expect("the admin endpoint starts")
    }

    fn ready_server() -> (AdminServer, std_mpsc::Receiver<String>) {
        let (daemon, log) = fake_daemon(Ok(()));
        (serve(daemon, None), log)
    }

    #[test]
    fn healthz_and_readyz_answer_when_the_daemon_does() {
        let (server, log) = ready_server();
        assert_ne!(server.addr().port(), 0);
        let health = get(&server, "/healthz");
        assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
        assert!(health.header("content-type").is_some_and(|t| t.starts_with("text/plain")), "{health:?}");
        let ready = get(&server, "/readyz");
        assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
        assert_eq!(log.try_iter().collect::<Vec<_>>(), ["ping", "ready"]);
    }

    #[test]
    fn readyz_gives_the_reason_when_the_daemon_is_not_ready() {
        let (daemon, _log) = fake_daemon(Err("the configuration is reloading".into()));
        let server = serve(daemon, None);
        let ready = get(&server, "/readyz");
        assert_eq!(ready.status, 503);
        assert_eq!(ready.body, "the configuration is reloading\n");
        assert!(ready.header("content-type").is_some_and(|t| t.starts_with("text/plain")), "{ready:?}");
        assert_eq!(get(&server, "/healthz").status, 200);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let (server, _log) = ready_server();
        let metrics = get(&server, "/metrics");
        assert_eq!(metrics.status, 200);
        assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert_eq!(metrics.body, "# TYPE flagsd_up gauge\nflagsd_up 1\n");
    }

    #[test]
    fn batches_are_passed_on_as_json() {
        let (server, _log) = ready_server();
        let batches = get(&server, "/batches");
        assert_eq!(batches.status, 200);
        assert_eq!(batches.json(), json!([{ "name": "daily", "every": "1h" }]));
    }

    #[test]
    fn runs_forward_the_batch_and_the_limit() {
        let (server, log) = ready_server();
        let runs = get(&server, "/runs?batch=daily&limit=5");
        assert_eq!(runs.status, 200);
        assert_eq!(runs.json(), json!({ "batch": "daily", "limit": 5, "runs": [] }));
        let runs = get(&server, "/runs");
        assert_eq!(runs.json(), json!({ "batch": null, "limit": 20, "runs": [] }));
        let runs = get(&server, "/runs?batch=&limit=1000");
        assert_eq!(runs.json(), json!({ "batch": null, "limit": 1000, "runs": [] }));
        let runs = get(&server, "/runs?limit=1&batch=two%20words");
        assert_eq!(runs.json(), json!({ "batch": "two words", "limit": 1, "runs": [] }));
        assert_eq!(
            log.try_iter().collect::<Vec<_>>(),
            [r#"runs Some("daily") 5"#, "runs None 20", "runs None 1000", r#"runs Some("two words") 1"#]
        );
    }

    #[test]
    fn runs_limit_must_be_from_1_to_1000() {
        let (server, log) = ready_server();
        for limit in ["0", "1001", "-1", "ten", "", "2.5", "99999999999999999999999"] {
            let runs = get(&server, &format!("/runs?limit={limit}"));
            assert_eq!(runs.status, 400, "limit={limit}: {runs:?}");
            assert_eq!(runs.error(), "limit must be a whole number from 1 to 1000");
        }
        let twice = get(&server, "/runs?limit=1&limit=2");
        assert_eq!(twice.status, 400, "{twice:?}");
        assert!(!twice.error().is_empty());
        // None of these reached the daemon (it logs before answering).
        assert_eq!(log.try_iter().count(), 0);
    }

    #[test]
    fn a_runs_error_from_the_daemon_is_500() {
        let (server, _log) = ready_server();
        let runs = get(&server, "/runs?batch=broken");
        assert_eq!(runs.status, 500);
        assert_eq!(runs.error(), "database is locked");
    }

    #[test]
    fn triggers_map_to_202_409_404_and_500() {
        let (server, log) = ready_server();
        let post = |target: &str| http(server.addr(), "POST", target, &[]);
        let started = post("/batches/daily/run");
        assert_eq!(started.status, 202);
        assert_eq!(started.json(), json!({ "run_id": 7, "batch": "daily" }));
        let running = post("/batches/busy/run");
        assert_eq!(running.status, 409);
        assert_eq!(running.error(), "batch busy is running");
        let unknown = post("/batches/nope/run");
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.error(), "no batch named nope");
        let failed = post("/batches/bad/run");
        assert_eq!(failed.status, 500);
        assert_eq!(failed.error(), "cannot create the output directory");
        let spaced = post("/batches/my%20batch/run");
        assert_eq!(spaced.error(), "no batch named my batch");
        assert_eq!(
            log.try_iter().collect::<Vec<_>>(),
            ["trigger daily", "trigger busy", "trigger nope", "trigger bad", "trigger my batch"]
        );
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        let (server, log) = ready_server();
        for target in ["/", "/nope", "/healthz/", "/batches/daily", "/batches/daily/run/now"] {
            let reply = get(&server, target);
            assert_eq!(reply.status, 404, "{target}: {reply:?}");
            assert!(reply.error().contains(target), "{reply:?}");
        }
        for (method, target, allow) in [
            ("POST", "/healthz", "GET"),
            ("DELETE", "/metrics", "GET"),
            ("PUT", "/batches", "GET"),
            ("POST", "/runs", "GET"),
            ("GET", "/batches/daily/run", "POST"),
        ] {
            let reply = http(server.addr(), method, target, &[]);
            assert_eq!(reply.status, 405, "{method} {target}: {reply:?}");
            assert_eq!(reply.header("allow"), Some(allow));
            assert!(reply.error().contains(method));
        }
        assert_eq!(log.try_iter().count(), 0);
    }

    #[test]
    fn a_token_is_required_except_for_the_probes() {
        let (daemon, log) = fake_daemon(Ok(()));
        let server = serve(daemon, Some("s3cret-token"));
        let addr = server.addr();
        let challenge = Some(r#"Bearer realm="flagsd""#);

        for (method, target) in
            [("GET", "/metrics"), ("GET", "/batches"), ("GET", "/runs"), ("POST", "/batches/daily/run")]
        {
            let missing = http(addr, method, target, &[]);
            assert_eq!(missing.status, 401, "{target}: {missing:?}");
            assert_eq!(missing.header("www-authenticate"), challenge);
            assert!(!missing.error().contains("s3cret"));
            for wrong in
                ["Bearer s3cret-tokeN", "Bearer s3cret-token-", "Bearer ", "Basic s3cret-token", "s3cret-token"]
            {
                let reply = http(addr, method, target, &[("Authorization", wrong)]);
                assert_eq!(reply.status, 401, "{target} with {wrong:?}: {reply:?}");
                assert_eq!(reply.header("www-authenticate"), challenge);
                assert!(!reply.error().contains("s3cret"));
            }
        }
        // Nothing reached the daemon so far.
        assert_eq!(log.try_iter().count(), 0);

        let right = [("Authorization", "Bearer s3cret-token")];
        assert_eq!(http(addr, "GET", "/metrics", &right).status, 200);
        assert_eq!(http(addr, "GET", "/batches", &right).status, 200);
        assert_eq!(http(addr, "GET", "/runs?limit=3", &right).status, 200);
        assert_eq!(http(addr, "POST", "/batches/daily/run", &right).status, 202);
        assert_eq!(http(addr, "GET", "/metrics", &[("authorization", "bearer s3cret-token")]).status, 200);
        // Unknown paths need the token too: no map of the endpoint for strangers.
        assert_eq!(http(addr, "GET", "/nope", &[]).status, 401);
        assert_eq!(http(addr, "GET", "/nope", &right).status, 404);
        // The probes stay open.
        assert_eq!(http(addr, "GET", "/healthz", &[]).status, 200);
        assert_eq!(http(addr, "GET", "/readyz", &[]).status, 200);
        assert_eq!(http(addr, "GET", "/healthz", &[("Authorization", "Bearer wrong")]).status, 200);
    }

    #[test]
    fn a_silent_daemon_gets_503_within_the_timeout() {
        let timeout = Duration::from_millis(300);
        let options = AdminOptions { listen: local(), token: None };
        let server = AdminServer::start(options, silent_daemon(), timeout).expect("the admin endpoint starts");
        for (method, target) in
            [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/runs"), ("POST", "/batches/x/run")]
        {
            let started = Instant::now();
            let reply = http(server.addr(), method, target, &[]);
            let elapsed = started.elapsed();
            assert_eq!(reply.status, 503, "{target}: {reply:?}");
            assert_eq!(reply.error(), "the daemon did not answer");
            assert!(elapsed >= timeout, "{target} answered after {elapsed:?}, before the timeout");
            assert!(elapsed < timeout + Duration::from_secs(3), "{target} took {elapsed:?}");
        }
    }

    #[test]
    fn a_gone_daemon_gets_503_at_once() {
        let (daemon, receiver) = mpsc::channel(1);
        drop(receiver);
        let server = serve(daemon, None);
        let started = Instant::now();
        let health = get(&server, "/healthz");
        assert_eq!(health.status, 503);
        assert_eq!(health.error(), "the daemon did not answer");
        // Well under ANSWER_TIMEOUT: a closed channel is not waited on.
        assert!(started.elapsed() < ANSWER_TIMEOUT / 2, "{:?}", started.elapsed());
    }

    #[test]
    fn binding_a_taken_address_fails_naming_it() {
        let taken = std::net::TcpListener::bind(local()).expect("bind a port");
        let addr = taken.local_addr().expect("its address");
        let (daemon, _log) = fake_daemon(Ok(()));
        match AdminServer::spawn(AdminOptions { listen: addr, token: None }, daemon) {
            Err(error @ AdminError::Bind { .. }) => {
                assert!(
                    error.to_string().starts_with(&format!("cannot bind the admin endpoint to {addr}: ")),
                    "{error}"
                );
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(server) => panic!("bound {} twice", server.addr()),
        }
    }

    #[test]
    fn the_server_stops_when_dropped() {
        let (server, _log) = ready_server();
        let addr = server.addr();
        assert_eq!(http(addr, "GET", "/healthz", &[]).status, 200);
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "{addr} still accepts connections");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn options_never_show_the_token() {
        let options = AdminOptions { listen: local(), token: Some("s3cret-token".into()) };
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn tokens_are_compared_whole() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(tokens_match(b"", b""));
        assert!(!tokens_match(b"s3cret", b"s3creT"));
        assert!(!tokens_match(b"S3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cre", b"s3cret"));
        assert!(!tokens_match(b"s3cret!", b"s3cret"));
        assert!(!tokens_match(b"", b"s3cret"));
        // Every single-bit difference anywhere is caught.
        let expected = b"abcdefgh";
        for i in 0..expected.len() {
            for bit in 0..8 {
                let mut given = *expected;
                given[i] ^= 1 << bit;
                assert!(!tokens_match(&given, expected), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(parse_listen("9090"), Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))));
        assert_eq!(parse_listen("0"), Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
        assert_eq!(parse_listen("0.0.0.0:80"), Ok(SocketAddr::from(([0, 0, 0, 0], 80))));
        assert_eq!(parse_listen("[::1]:9090"), Ok("[::1]:9090".parse().expect("an address")));
        assert_eq!(parse_listen(" 10.0.0.1:1 "), Ok(SocketAddr::from(([10, 0, 0, 1], 1))));
        for bad in ["", "65536", "localhost:80", "::1:80", "1.2.3.4", "1.2.3.4:99999", "[::1]", "port"] {
            let error = parse_listen(bad).expect_err(bad);
            assert!(error.contains(&format!("'{bad}'")), "{error}");
        }
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for addr in ["127.0.0.1:1", "127.1.2.3:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert!(is_loopback(&addr.parse().expect("an address")), "{addr}");
        }
        for addr in ["0.0.0.0:1", "10.0.0.1:1", "[::]:1", "[::ffff:10.0.0.1]:1", "[2001:db8::1]:1"] {
            assert!(!is_loopback(&addr.parse().expect("an address")), "{addr}");
        }
    }

    #[test]
    fn token_files_are_read_trimmed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token \n").expect("write the token");
        assert_eq!(read_token_file(&path), Ok("s3cret-token".to_owned()));

        std::fs::write(&path, " \n\t\n").expect("write blanks");
        let empty = read_token_file(&path).expect_err("empty");
        assert!(empty.contains(&path.display().to_string()) && empty.contains("empty"), "{empty}");

        let missing = dir.path().join("missing");
        let error = read_token_file(&missing).expect_err("missing");
        assert!(error.contains(&missing.display().to_string()), "{error}");
        let os = io::Error::from(io::ErrorKind::NotFound).to_string();
        assert!(error.contains("No such file") || error.contains(&os), "{error}");

        std::fs::write(&path, b"s3cret\xff\n").expect("write bytes");
        let binary = read_token_file(&path).expect_err("not UTF-8");
        assert!(binary.contains(&path.display().to_string()) && !binary.contains("s3cret"), "{binary}");
    }
}
