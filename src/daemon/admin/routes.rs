//! The admin endpoint's routes: each request is asked of the daemon over
//! the channel and its answer turned into HTTP.
//!
//! | Request | Answer |
//! |---|---|
//! | `GET /healthz` | `200 ok` once the daemon answers a ping |
//! | `GET /readyz` | `200 ready`, or `503` with the reason (with a token configured, only for requests that carry it) |
//! | `GET /metrics` | the Prometheus text format 0.0.4 |
//! | `GET /batches` | JSON: the batches ([`BatchView`](crate::present::api::BatchView)) |
//! | `GET /batches/{name}` | JSON: one batch's view; `404` for a name not configured |
//! | `GET /runs?batch=NAME&limit=N&before=ID` | JSON: the runs, newest first; `limit` from 1 to 1000, 20 by default; `before` pages |
//! | `GET /runs/{id}` | JSON: the run and each code's outcome ([`RunDetails`](crate::model::run::RunDetails)), `404` if unknown |
//! | `POST /batches/{name}/run` | `202` (started), `409` (running), `404` (unknown), `503` (not now), `500` (failed) |
//! | `POST /batches/{name}/cancel` | `200` with the cancelled run, `409` (none running), `404` (unknown), `503`, `500` |
//! | `POST /reload` | the file read again as SIGHUP reads it: `200` with its batches ([`Reloaded`](crate::present::api::Reloaded)), or `422` with its problems (the previous configuration stays) |
//! | `GET /nonce` | JSON: a nonce for one signed request ([`NonceAnswer`]); `404` without a token |
//!
//! Errors are JSON objects `{"error": "…"}` (except `/readyz`, whose reason
//! is text); unknown paths get `404`, a wrong method on a known path `405`.
//! A handler waits for the daemon's answer at most the endpoint's timeout: a
//! daemon that is stuck, or gone, gives `503 Service Unavailable` rather
//! than a hung connection.
//!
//! The answer to a signed request ([`auth`]) is signed in turn, in an
//! `Authentication-Info: mac="…"` header
//! ([`response_mac`](crate::present::api::response_mac)): the client learns
//! that a holder of the token answered this very request.

use std::time::Instant;

use actix_web::body::{BoxBody, to_bytes};
use actix_web::dev::{Service as _, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpMessage as _, HttpRequest, HttpResponse, web};
use futures_util::future::LocalBoxFuture;

use super::auth::{self, Access};
use super::connections::Held;
use super::console;
use super::exchange::{State, ask, json_error, text, unanswered};
use super::guard::{self, Forbidden};
use super::requests::{AdminRequest, Cancel, DEFAULT_RUNS_LIMIT, MAX_RUNS_LIMIT, Reload, Trigger, Unavailable};
use super::throttle::{Kind, Throttle};
use crate::daemon::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::present::api::{
    ApiError, Mac, NONCE_LIFETIME, NONCE_PATH, NonceAnswer, RELOAD_PATH, Started, authentication_info, response_mac,
};

/// The header that carries the signature of an answer to a signed request.
const AUTHENTICATION_INFO: HeaderName = HeaderName::from_static("authentication-info");

async fn healthz(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Ping).await {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(why) => unanswered(&state, "ping", why),
    }
}

/// `/readyz` is open to probes, but with a token configured only a request
/// that carries it learns why the daemon is not ready (paths, OS errors).
async fn readyz(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Ready).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n".into()),
        Ok(Err(reason)) => {
            let body = if auth::carries(req.headers(), state.token()) {
                format!("{reason}\n")
            } else {
                "not ready\n".to_owned()
            };
            text(StatusCode::SERVICE_UNAVAILABLE, body)
        }
        Err(why) => unanswered(&state, "ready", why),
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Metrics).await {
        Ok(body) => HttpResponse::Ok().content_type(METRICS_CONTENT_TYPE).body(body),
        Err(why) => unanswered(&state, "metrics", why),
    }
}

async fn batches(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Batches).await {
        Ok(views) => HttpResponse::Ok().json(views),
        Err(why) => unanswered(&state, "batches", why),
    }
}

/// `GET /batches/{name}`: one batch's view, as in `GET /batches`.
async fn batch(name: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    let name = name.into_inner();
    match ask(&state, AdminRequest::Batches).await {
        Ok(views) => match views.into_iter().find(|view| view.name == name) {
            Some(view) => HttpResponse::Ok().json(view),
            None => json_error(StatusCode::NOT_FOUND, &format!("no batch named {name}")),
        },
        Err(why) => unanswered(&state, "batches", why),
    }
}

/// The query string of `GET /runs`, as received.
#[derive(Debug, serde::Deserialize)]
struct RunsQuery {
    batch: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// What `GET /runs` asks for.
#[derive(Debug, PartialEq, Eq)]
struct RunsWanted {
    batch: Option<String>,
    limit: usize,
    before: Option<i64>,
}

/// The batch filter, limit and page of a `GET /runs` query string, or the
/// message of a `400`.
fn runs_query(query: &str) -> Result<RunsWanted, String> {
    let query = web::Query::<RunsQuery>::from_query(query).map_err(|e| format!("bad query string: {e}"))?;
    let RunsQuery { batch, limit, before } = query.into_inner();
    let limit = match limit {
        None => DEFAULT_RUNS_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_RUNS_LIMIT).contains(&n) => n,
            _ => return Err(format!("limit must be a whole number from 1 to {MAX_RUNS_LIMIT}")),
        },
    };
    let before = match before.filter(|b| !b.is_empty()) {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(id) if id > 0 => Some(id),
            _ => return Err("before must be a run id (a whole number from 1)".to_owned()),
        },
    };
    Ok(RunsWanted { batch: batch.filter(|b| !b.is_empty()), limit, before })
}

/// The answer to a request about runs the daemon could not serve.
fn unavailable(why: Unavailable) -> HttpResponse {
    match why {
        Unavailable::NotReady(message) => json_error(StatusCode::SERVICE_UNAVAILABLE, &message),
        Unavailable::Failed(message) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

async fn runs(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let RunsWanted { batch, limit, before } = match runs_query(req.query_string()) {
        Ok(query) => query,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    match ask(&state, |reply| AdminRequest::Runs { batch, limit, before, reply }).await {
        Ok(Ok(runs)) => HttpResponse::Ok().json(runs),
        Ok(Err(why)) => unavailable(why),
        Err(why) => unanswered(&state, "runs", why),
    }
}

async fn run(id: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return json_error(StatusCode::NOT_FOUND, &format!("no run {id}: a run id is a whole number from 1"));
    };
    match ask(&state, |reply| AdminRequest::Run { id, reply }).await {
        Ok(Ok(Some(details))) => HttpResponse::Ok().json(details),
        Ok(Ok(None)) => json_error(StatusCode::NOT_FOUND, &format!("no run {id}")),
        Ok(Err(why)) => unavailable(why),
        Err(why) => unanswered(&state, "run", why),
    }
}

async fn trigger(name: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    let name = name.into_inner();
    let batch = name.clone();
    match ask(&state, |reply| AdminRequest::Trigger { batch, reply }).await {
        Ok(Trigger::Started { run_id }) => HttpResponse::Accepted().json(Started { run_id, batch: name }),
        Ok(Trigger::Running) => json_error(StatusCode::CONFLICT, &format!("batch {name} is running")),
        Ok(Trigger::Unknown) => json_error(StatusCode::NOT_FOUND, &format!("no batch named {name}")),
        Ok(Trigger::NotReady(message)) => json_error(StatusCode::SERVICE_UNAVAILABLE, &message),
        Ok(Trigger::Failed(message)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &message),
        Err(why) => unanswered(&state, "trigger", why),
    }
}

async fn cancel(name: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    let name = name.into_inner();
    let batch = name.clone();
    match ask(&state, |reply| AdminRequest::Cancel { batch, reply }).await {
        Ok(Cancel::Cancelled(record)) => HttpResponse::Ok().json(record),
        Ok(Cancel::NotRunning) => json_error(StatusCode::CONFLICT, &format!("batch {name} has no run in progress")),
        Ok(Cancel::Unknown) => json_error(StatusCode::NOT_FOUND, &format!("no batch named {name}")),
        Ok(Cancel::NotReady(message)) => json_error(StatusCode::SERVICE_UNAVAILABLE, &message),
        Ok(Cancel::Failed(message)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &message),
        Err(why) => unanswered(&state, "cancel", why),
    }
}

/// `POST /reload`: the daemon reads its file again, as on SIGHUP, and says
/// what came of it.
async fn reload(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Reload).await {
        Ok(Reload::Reloaded(reloaded)) => HttpResponse::Ok().json(reloaded),
        Ok(Reload::Refused { config, problems }) => {
            let message = format!("{config} was not reloaded; the previous configuration stays in force");
            HttpResponse::UnprocessableEntity().json(ApiError::with_problems(message, problems))
        }
        Err(why) => unanswered(&state, "reload", why),
    }
}

/// `GET /nonce`: a nonce for one signed request; `404` without a token
/// (nothing needs signing then).
async fn nonce(state: web::Data<State>) -> HttpResponse {
    let Some(credentials) = &state.credentials else {
        return json_error(StatusCode::NOT_FOUND, "no token is configured: requests need no signature");
    };
    let answer =
        NonceAnswer { nonce: credentials.nonces().issue(Instant::now()), expires_in: NONCE_LIFETIME.as_secs() };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(answer)
}

fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> HttpResponse {
    let message = format!("{} is not allowed on {}; use {allow}", req.method(), req.path());
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow)).json(ApiError::new(message))
}

async fn get_only(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "GET")
}

async fn post_only(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "POST")
}

async fn session_methods(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "GET, POST, DELETE")
}

/// [`console::SECURITY_HEADERS`] on every answer.
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    console::SECURITY_HEADERS
        .iter()
        .fold(actix_web::middleware::DefaultHeaders::new(), |headers, pair| headers.add(*pair))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, &format!("no such endpoint: {}", req.path()))
}

/// `response` with its signature for the request signed `request`: the
/// body is read whole (answers are small, and made here, not streamed).
async fn sign(token: &str, request: &Mac, response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let (req, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let response = match to_bytes(body).await {
        Ok(body) => {
            let mac = authentication_info(&response_mac(token, request, head.status().as_u16(), &body));
            let mut response = head.set_body(BoxBody::new(body));
            if let Ok(value) = HeaderValue::from_str(&mac) {
                response.headers_mut().insert(AUTHENTICATION_INFO, value);
            }
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "an admin answer could not be read to sign it");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the answer could not be signed")
        }
    };
    ServiceResponse::new(req, response)
}

/// Logs a refused request (rate-limited) as `what`: its method, path, peer
/// and `reason`, never its credentials.
fn log_refused(throttle: &Throttle, req: &ServiceRequest, reason: &dyn std::fmt::Display, what: &str) {
    let peer = req.peer_addr().map_or_else(|| "unknown".to_owned(), |addr| addr.to_string());
    let (method, path) = (req.method(), req.path());
    if throttle.allow(Kind::Unauthorized, Instant::now(), || format!("{method} {path} from {peer}: {reason}")) {
        tracing::warn!(kind = %Kind::Unauthorized.name(), %method, %path, %peer, %reason, "{what}");
    }
}

/// Logs a request refused for its credentials.
fn rejected(throttle: &Throttle, req: &ServiceRequest, refusal: auth::Refusal) {
    log_refused(throttle, req, &refusal, "admin request rejected");
}

/// Logs a request refused before its credentials were looked at, and
/// gives its `403`.
fn forbidden(throttle: &Throttle, req: &ServiceRequest, forbidden: &Forbidden) -> HttpResponse {
    log_refused(throttle, req, forbidden, "admin request forbidden");
    json_error(StatusCode::FORBIDDEN, &forbidden.to_string())
}

/// The endpoint's application: the credentials checked around every route,
/// and the answers to signed requests signed.
pub fn app(
    state: web::Data<State>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let guard = state.clone();
    App::new()
        .app_data(state)
        .wrap_fn(move |req, service| -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>> {
            // Inside a request, the connection is not idle: it is not closed
            // to make room for another.
            let busy = req.conn_data::<Held>().map(Held::busy);
            let now = Instant::now();
            if let Err(refusal) = guard::screen(req.method(), req.headers(), &guard.hosts) {
                let answer = forbidden(&guard.throttle, &req, &refusal);
                return Box::pin(std::future::ready(Ok(req.into_response(answer))));
            }
            // A signed-in browser: its cookie lets it in, and it changes
            // nothing without its session's CSRF token.
            let access = match guard.sessions.of(req.headers(), now) {
                Some(session) if !guard::is_safe(req.method()) && !session.csrf_matches(req.headers()) => {
                    let answer = forbidden(&guard.throttle, &req, &Forbidden::Csrf);
                    return Box::pin(std::future::ready(Ok(req.into_response(answer))));
                }
                Some(session) => {
                    req.extensions_mut().insert(session);
                    Ok(Access::Open)
                }
                None => auth::authorize(&req, guard.credentials.as_ref(), now),
            };
            match access {
                Ok(Access::Signed(mac)) => {
                    let (call, state) = (service.call(req), guard.clone());
                    Box::pin(async move {
                        // An error of the service itself (the routes answer
                        // theirs) goes out unsigned: the client then trusts
                        // it no more than an impostor's.
                        let response = call.await?;
                        let response = match state.token() {
                            Some(token) => sign(token, &mac, response).await,
                            None => response,
                        };
                        drop(busy);
                        Ok(response)
                    })
                }
                Ok(Access::Open | Access::Bearer) => {
                    let call = service.call(req);
                    Box::pin(async move {
                        let response = call.await;
                        drop(busy);
                        response
                    })
                }
                Err(refusal) => {
                    rejected(&guard.throttle, &req, refusal);
                    Box::pin(std::future::ready(Ok(req.into_response(auth::refused(refusal)))))
                }
            }
        })
        .wrap(security_headers())
        .service(web::resource("/").route(web::get().to(console::page)).default_service(web::to(get_only)))
        .service(web::resource("/console.js").route(web::get().to(console::script)).default_service(web::to(get_only)))
        .service(web::resource("/console.css").route(web::get().to(console::style)).default_service(web::to(get_only)))
        .service(
            web::resource("/session")
                .route(web::get().to(console::session_status))
                .route(web::post().to(console::sign_in))
                .route(web::delete().to(console::sign_out))
                .default_service(web::to(session_methods)),
        )
        .service(web::resource("/about").route(web::get().to(console::about)).default_service(web::to(get_only)))
        .service(web::resource("/fleet").route(web::get().to(console::fleet)).default_service(web::to(get_only)))
        .service(web::resource("/events").route(web::get().to(console::events)).default_service(web::to(get_only)))
        .service(web::resource("/healthz").route(web::get().to(healthz)).default_service(web::to(get_only)))
        .service(web::resource("/readyz").route(web::get().to(readyz)).default_service(web::to(get_only)))
        .service(web::resource("/metrics").route(web::get().to(metrics)).default_service(web::to(get_only)))
        .service(web::resource("/batches").route(web::get().to(batches)).default_service(web::to(get_only)))
        .service(web::resource("/batches/{name}").route(web::get().to(batch)).default_service(web::to(get_only)))
        .service(web::resource("/runs").route(web::get().to(runs)).default_service(web::to(get_only)))
        .service(web::resource("/runs/{id}").route(web::get().to(run)).default_service(web::to(get_only)))
        .service(web::resource(NONCE_PATH).route(web::get().to(nonce)).default_service(web::to(get_only)))
        .service(
            web::resource("/batches/{name}/run").route(web::post().to(trigger)).default_service(web::to(post_only)),
        )
        .service(
            web::resource("/batches/{name}/cancel").route(web::post().to(cancel)).default_service(web::to(post_only)),
        )
        .service(web::resource(RELOAD_PATH).route(web::post().to(reload)).default_service(web::to(post_only)))
        .default_service(web::to(not_found))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc as std_mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use tokio::sync::mpsc;

    use actix_web::test::{TestRequest, call_service, init_service, read_body};
    use serde_json::{Value, json};

    use super::*;
    use crate::daemon::admin::Unavailable;
    use crate::daemon::admin::auth::Credentials;
    use crate::daemon::admin::nonce::Nonces;
    use crate::present::api::{BatchView, SignedAuthorization, request_mac, valid_nonce};

    /// An answer, read whole.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        content_type: Option<String>,
        allow: Option<String>,
        challenge: Option<String>,
        info: Option<String>,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            assert_eq!(self.content_type.as_deref(), Some("application/json"), "{self:?}");
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
        }

        fn error(&self) -> String {
            match self.json().get("error") {
                Some(Value::String(message)) => message.clone(),
                _ => panic!("no error message: {self:?}"),
            }
        }
    }

    /// The secret of the nonces of the tests' endpoints.
    const SECRET: [u8; 32] = [5; 32];

    /// The instant the tests' nonces count from.
    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// Sends each request to the application in-process, in order.
    fn exchange(
        daemon: mpsc::Sender<AdminRequest>,
        token: Option<&str>,
        timeout: Duration,
        requests: Vec<TestRequest>,
    ) -> Vec<Reply> {
        let credentials = token.map(|token| Credentials::new(token.to_owned(), Nonces::new(SECRET, epoch())));
        let state = web::Data::new(State {
            daemon,
            credentials,
            timeout,
            throttle: Arc::default(),
            sessions: Default::default(),
            hosts: Vec::new(),
            config: "flagsd.toml".to_owned(),
            streams: Arc::new(tokio::sync::Semaphore::new(console::STREAMS)),
        });
        actix_rt::System::new().block_on(async move {
            let app = init_service(app(state)).await;
            let mut replies = Vec::new();
            for request in requests {
                let response = call_service(&app, request.to_request()).await;
                let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (content_type, allow) = (header(header::CONTENT_TYPE), header(header::ALLOW));
                let (challenge, info) = (header(header::WWW_AUTHENTICATE), header(AUTHENTICATION_INFO));
                let status = response.status().as_u16();
                let body = String::from_utf8(read_body(response).await.to_vec()).expect("UTF-8 body");
                replies.push(Reply { status, content_type, allow, challenge, info, body });
            }
            replies
        })
    }

    fn one(daemon: mpsc::Sender<AdminRequest>, token: Option<&str>, request: TestRequest) -> Reply {
        exchange(daemon, token, Duration::from_secs(5), vec![request]).remove(0)
    }

    fn get(target: &str) -> TestRequest {
        TestRequest::get().uri(target)
    }

    fn post(target: &str) -> TestRequest {
        TestRequest::post().uri(target)
    }

    fn view(name: &str) -> BatchView {
        BatchView { every: Some("1h".to_owned()), ..BatchView::sample(name) }
    }

    /// A daemon on a thread that answers at once with canned replies, and
    /// tells the test (on the returned receiver) what it was asked:
    /// - readiness: `ready`;
    /// - runs: none, but batch `broken` fails;
    /// - trigger: `daily` starts run 7, `busy` is running, `bad` fails,
    ///   any other name is unknown;
    /// - reload: the first loads batches `daily` and `adhoc`, the next ones
    ///   find a problem.
    fn fake_daemon(ready: Result<(), String>) -> (mpsc::Sender<AdminRequest>, std_mpsc::Receiver<String>) {
        let (tx, mut rx) = mpsc::channel(8);
        let (log_tx, log) = std_mpsc::channel();
        thread::spawn(move || {
            let mut reloads = 0;
            while let Some(request) = rx.blocking_recv() {
                let _ = log_tx.send(match &request {
                    AdminRequest::Ping(_) => "ping".to_owned(),
                    AdminRequest::Ready(_) => "ready".to_owned(),
                    AdminRequest::Metrics(_) => "metrics".to_owned(),
                    AdminRequest::Batches(_) => "batches".to_owned(),
                    AdminRequest::About(_) => "about".to_owned(),
                    AdminRequest::Fleet(_) => "fleet".to_owned(),
                    AdminRequest::Runs { batch, limit, before, .. } => format!("runs {batch:?} {limit} {before:?}"),
                    AdminRequest::Run { id, .. } => format!("run {id}"),
                    AdminRequest::Trigger { batch, .. } => format!("trigger {batch}"),
                    AdminRequest::Cancel { batch, .. } => format!("cancel {batch}"),
                    AdminRequest::Reload(_) => "reload".to_owned(),
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
                        let _ = reply.send(vec![view("daily")]);
                    }
                    AdminRequest::About(reply) => {
                        let _ = reply.send(crate::daemon::admin::requests::DaemonFacts {
                            loaded_at: "2026-12-07T06:00:00.000Z".to_owned(),
                            batches: 1,
                            fleet: None,
                            ready: ready.clone(),
                        });
                    }
                    AdminRequest::Fleet(reply) => {
                        let _ = reply.send(Ok(None));
                    }
                    AdminRequest::Runs { batch, reply, .. } => {
                        let answer = match batch.as_deref() {
                            Some("broken") => Err(Unavailable::Failed("database is locked".to_owned())),
                            Some("joining") => Err(Unavailable::NotReady("not in the fleet yet".to_owned())),
                            _ => Ok(Vec::new()),
                        };
                        let _ = reply.send(answer);
                    }
                    AdminRequest::Run { id, reply } => {
                        let answer = match id {
                            7 => Ok(Some(crate::model::run::RunDetails {
                                record: crate::model::run::RunRecord::started(7, "daily", "admin", "t".to_owned()),
                                codes: Vec::new(),
                            })),
                            _ => Ok(None),
                        };
                        let _ = reply.send(answer);
                    }
                    AdminRequest::Cancel { batch, reply } => {
                        let _ = reply.send(match batch.as_str() {
                            "daily" => Cancel::Cancelled(Box::new(crate::model::run::RunRecord::started(
                                7,
                                "daily",
                                "admin",
                                "t".into(),
                            ))),
                            "idle" => Cancel::NotRunning,
                            _ => Cancel::Unknown,
                        });
                    }
                    AdminRequest::Trigger { batch, reply } => {
                        let _ = reply.send(match batch.as_str() {
                            "daily" => Trigger::Started { run_id: 7 },
                            "busy" => Trigger::Running,
                            "bad" => Trigger::Failed("cannot create the output directory".to_owned()),
                            _ => Trigger::Unknown,
                        });
                    }
                    AdminRequest::Reload(reply) => {
                        reloads += 1;
                        let config = "flagsd.toml".to_owned();
                        let _ = reply.send(if reloads == 1 {
                            let batches = vec!["daily".to_owned(), "adhoc".to_owned()];
                            Reload::Reloaded(crate::present::api::Reloaded { config, batches, warnings: Vec::new() })
                        } else {
                            let problems = vec!["flagsd.toml: batch[1].max_req: must be >= 1".to_owned()];
                            Reload::Refused { config, problems }
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

    #[test]
    fn healthz_and_readyz_answer_when_the_daemon_does() {
        let (daemon, log) = fake_daemon(Ok(()));
        let replies = exchange(daemon, None, Duration::from_secs(5), vec![get("/healthz"), get("/readyz")]);
        assert_eq!((replies[0].status, replies[0].body.as_str()), (200, "ok\n"));
        assert!(replies[0].content_type.as_deref().is_some_and(|t| t.starts_with("text/plain")), "{replies:?}");
        assert_eq!((replies[1].status, replies[1].body.as_str()), (200, "ready\n"));
        assert_eq!(log.try_iter().collect::<Vec<_>>(), ["ping", "ready"]);
    }

    #[test]
    fn readyz_gives_the_reason_when_the_daemon_is_not_ready() {
        let (daemon, _log) = fake_daemon(Err("the configuration is reloading".into()));
        let replies = exchange(daemon, None, Duration::from_secs(5), vec![get("/readyz"), get("/healthz")]);
        assert_eq!(replies[0].status, 503);
        assert_eq!(replies[0].body, "the configuration is reloading\n");
        assert!(replies[0].content_type.as_deref().is_some_and(|t| t.starts_with("text/plain")));
        assert_eq!(replies[1].status, 200);
    }

    #[test]
    fn readyz_hides_the_reason_from_requests_without_the_token() {
        let (daemon, _log) = fake_daemon(Err("state '/x' is not writable".into()));
        let with_token = get("/readyz").insert_header((header::AUTHORIZATION, "Bearer s3cret"));
        let replies = exchange(daemon, Some("s3cret"), Duration::from_secs(5), vec![get("/readyz"), with_token]);
        assert_eq!((replies[0].status, replies[0].body.as_str()), (503, "not ready\n"));
        assert_eq!((replies[1].status, replies[1].body.as_str()), (503, "state '/x' is not writable\n"));
    }

    /// A request of `method` to `target` signed with `token` for `nonce`.
    fn signed(token: &str, nonce: &str, method: &str, target: &str) -> TestRequest {
        let mac = request_mac(token, nonce, method, target, b"");
        let value = SignedAuthorization { nonce: nonce.to_owned(), mac }.header_value();
        let request = if method == "GET" { get(target) } else { post(target) };
        request.insert_header((header::AUTHORIZATION, value))
    }

    #[test]
    fn nonces_are_open_and_signed_requests_get_signed_answers() {
        let (daemon, log) = fake_daemon(Ok(()));
        // Nonces as the endpoint issues them (same secret, same epoch).
        let twin = Nonces::new(SECRET, epoch());
        let (first, second) = (twin.issue(Instant::now()), twin.issue(Instant::now()));
        let requests = vec![
            get("/nonce"),
            post("/nonce"),
            signed("s3cret", &first, "GET", "/batches"),
            signed("s3cret", &first, "GET", "/batches"),
            signed("s3cret", &second, "POST", "/batches/idle/cancel"),
            signed("s3cret", &twin.issue(Instant::now()), "GET", "/nope"),
        ];
        let replies = exchange(daemon, Some("s3cret"), Duration::from_secs(5), requests);
        assert_eq!(replies[0].status, 200, "open without the token: {:?}", replies[0]);
        let nonce = replies[0].json();
        assert!(nonce["nonce"].as_str().is_some_and(valid_nonce), "{nonce}");
        assert_eq!(nonce["expires_in"], 30);
        assert_eq!(replies[1].status, 405);
        // Signed, and answered with a signature over this very answer.
        for (reply, nonce, method, target) in
            [(&replies[2], &first, "GET", "/batches"), (&replies[4], &second, "POST", "/batches/idle/cancel")]
        {
            let mac = request_mac("s3cret", nonce, method, target, b"");
            let expected = response_mac("s3cret", &mac, reply.status, reply.body.as_bytes());
            assert_eq!(reply.info, Some(authentication_info(&expected)), "{reply:?}");
        }
        assert_eq!(replies[2].status, 200);
        assert_eq!((replies[3].status, replies[3].error()), (401, "the nonce was used already".to_owned()));
        assert_eq!(replies[3].info, None, "a refusal is not signed");
        assert_eq!(replies[4].status, 409, "errors of a signed request are signed too");
        assert_eq!(replies[5].status, 404);
        assert!(replies[5].info.is_some());
        assert_eq!(log.try_iter().collect::<Vec<_>>(), ["batches", "cancel idle"]);
        // Without a token there are no nonces.
        assert_eq!(one(fake_daemon(Ok(())).0, None, get("/nonce")).status, 404);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let (daemon, _log) = fake_daemon(Ok(()));
        let metrics = one(daemon, None, get("/metrics"));
        assert_eq!(metrics.status, 200);
        assert_eq!(metrics.content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert_eq!(metrics.body, "# TYPE flagsd_up gauge\nflagsd_up 1\n");
    }

    #[test]
    fn batches_are_served_as_json() {
        let (daemon, _log) = fake_daemon(Ok(()));
        let batches = one(daemon, None, get("/batches"));
        assert_eq!(batches.status, 200);
        let value = batches.json();
        assert_eq!(value[0]["name"], "daily");
        assert_eq!(value[0]["naming"], "code");
        assert_eq!(value[0]["every"], "1h");
        let back: Vec<BatchView> = serde_json::from_str(&batches.body).expect("the typed API reads it back");
        assert_eq!(back, vec![view("daily")]);
    }

    #[test]
    fn one_batch_has_a_page_of_its_own() {
        let (daemon, _log) = fake_daemon(Ok(()));
        let replies = exchange(daemon, None, Duration::from_secs(5), vec![get("/batches/daily"), get("/batches/nope")]);
        assert_eq!(replies[0].status, 200, "{:?}", replies[0]);
        let back: BatchView = serde_json::from_str(&replies[0].body).expect("the typed API reads it back");
        assert_eq!(back, view("daily"));
        assert_eq!(replies[1].status, 404, "{:?}", replies[1]);
        assert_eq!(replies[1].error(), "no batch named nope");
    }

    #[test]
    fn runs_forward_the_batch_and_the_limit() {
        let (daemon, log) = fake_daemon(Ok(()));
        let targets = [
            "/runs?batch=daily&limit=5",
            "/runs",
            "/runs?batch=&limit=1000&before=",
            "/runs?limit=1&batch=two%20words&before=42",
        ];
        let replies = exchange(daemon, None, Duration::from_secs(5), targets.iter().map(|t| get(t)).collect());
        for reply in &replies {
            assert_eq!((reply.status, reply.json()), (200, json!([])));
        }
        assert_eq!(
            log.try_iter().collect::<Vec<_>>(),
            [
                r#"runs Some("daily") 5 None"#,
                "runs None 20 None",
                "runs None 1000 None",
                r#"runs Some("two words") 1 Some(42)"#
            ]
        );
        for bad in ["0", "-3", "x"] {
            let reply = one(fake_daemon(Ok(())).0, None, get(&format!("/runs?before={bad}")));
            assert_eq!(
                (reply.status, reply.error()),
                (400, "before must be a run id (a whole number from 1)".to_owned())
            );
        }
    }

    #[test]
    fn a_run_has_a_page_of_its_own() {
        let (daemon, log) = fake_daemon(Ok(()));
        let replies =
            exchange(daemon, None, Duration::from_secs(5), vec![get("/runs/7"), get("/runs/8"), get("/runs/x")]);
        assert_eq!(replies[0].status, 200, "{:?}", replies[0]);
        assert_eq!((replies[0].json()["id"].clone(), replies[0].json()["codes"].clone()), (json!(7), json!([])));
        assert_eq!((replies[1].status, replies[1].error()), (404, "no run 8".to_owned()));
        assert_eq!(replies[2].status, 404);
        assert_eq!(log.try_iter().collect::<Vec<_>>(), ["run 7", "run 8"]);
    }

    #[test]
    fn cancels_map_to_200_409_and_404() {
        let (daemon, log) = fake_daemon(Ok(()));
        let targets = ["/batches/daily/cancel", "/batches/idle/cancel", "/batches/nope/cancel"];
        let replies = exchange(daemon, None, Duration::from_secs(5), targets.iter().map(|t| post(t)).collect());
        assert_eq!((replies[0].status, replies[0].json()["id"].clone()), (200, json!(7)));
        assert_eq!((replies[1].status, replies[1].error()), (409, "batch idle has no run in progress".to_owned()));
        assert_eq!((replies[2].status, replies[2].error()), (404, "no batch named nope".to_owned()));
        assert_eq!(log.try_iter().collect::<Vec<_>>(), ["cancel daily", "cancel idle", "cancel nope"]);
        let wrong = one(fake_daemon(Ok(())).0, None, get("/batches/daily/cancel"));
        assert_eq!((wrong.status, wrong.allow.as_deref()), (405, Some("POST")));
    }

    #[test]
    fn runs_limit_must_be_from_1_to_1000() {
        let (daemon, log) = fake_daemon(Ok(()));
        let limits = ["0", "1001", "-1", "ten", "", "2.5", "99999999999999999999999"];
        let requests = limits.iter().map(|l| get(&format!("/runs?limit={l}"))).collect();
        for (limit, runs) in limits.iter().zip(exchange(daemon.clone(), None, Duration::from_secs(5), requests)) {
            assert_eq!(runs.status, 400, "limit={limit}: {runs:?}");
            assert_eq!(runs.error(), "limit must be a whole number from 1 to 1000");
        }
        let twice = one(daemon, None, get("/runs?limit=1&limit=2"));
        assert_eq!(twice.status, 400, "{twice:?}");
        assert!(!twice.error().is_empty());
        // None of these reached the daemon (it logs before answering).
        assert_eq!(log.try_iter().count(), 0);
    }

    #[test]
    fn a_runs_error_from_the_daemon_is_500_and_not_yet_503() {
        let (daemon, _log) = fake_daemon(Ok(()));
        let runs = one(daemon.clone(), None, get("/runs?batch=broken"));
        assert_eq!(runs.status, 500);
        assert_eq!(runs.error(), "database is locked");
        let runs = one(daemon, None, get("/runs?batch=joining"));
        assert_eq!((runs.status, runs.error()), (503, "not in the fleet yet".to_owned()));
    }

    #[test]
    fn triggers_map_to_202_409_404_and_500() {
        let (daemon, log) = fake_daemon(Ok(()));
        let targets = ["/batches/daily/run", "/batches/busy/run", "/batches/nope/run", "/batches/bad/run"];
        let mut requests: Vec<TestRequest> = targets.iter().map(|t| post(t)).collect();
        requests.push(post("/batches/my%20batch/run"));
        let replies = exchange(daemon, None, Duration::from_secs(5), requests);
        assert_eq!(replies[0].status, 202);
        assert_eq!(replies[0].json(), json!({ "run_id": 7, "batch": "daily" }));
        assert_eq!((replies[1].status, replies[1].error()), (409, "batch busy is running".to_owned()));
        assert_eq!((replies[2].status, replies[2].error()), (404, "no batch named nope".to_owned()));
        assert_eq!((replies[3].status, replies[3].error()), (500, "cannot create the output directory".to_owned()));
        assert_eq!(replies[4].error(), "no batch named my batch");
        assert_eq!(
            log.try_iter().collect::<Vec<_>>(),
            ["trigger daily", "trigger busy", "trigger nope", "trigger bad", "trigger my batch"]
        );
    }

    #[test]
    fn reloads_map_to_200_with_the_batches_and_422_with_the_problems() {
        let (daemon, log) = fake_daemon(Ok(()));
        let replies = exchange(daemon, None, Duration::from_secs(5), vec![post("/reload"), post("/reload")]);
        assert_eq!(replies[0].status, 200, "{:?}", replies[0]);
        assert_eq!(
            replies[0].json(),
            json!({ "config": "flagsd.toml", "batches": ["daily", "adhoc"], "warnings": [] })
        );
        assert_eq!(replies[1].status, 422, "{:?}", replies[1]);
        assert_eq!(
            replies[1].json(),
            json!({
                "error": "flagsd.toml was not reloaded; the previous configuration stays in force",
                "problems": ["flagsd.toml: batch[1].max_req: must be >= 1"],
            })
        );
        assert_eq!(log.try_iter().collect::<Vec<_>>(), ["reload", "reload"]);
        let wrong = one(fake_daemon(Ok(())).0, None, get("/reload"));
        assert_eq!((wrong.status, wrong.allow.as_deref()), (405, Some("POST")));
        // Errors without problems say none.
        let unknown = one(fake_daemon(Ok(())).0, None, post("/batches/nope/run"));
        assert!(unknown.json().get("problems").is_none(), "{unknown:?}");
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        let (daemon, log) = fake_daemon(Ok(()));
        let unknown = ["/index.html", "/nope", "/healthz/", "/batches/daily/", "/batches/daily/run/now"];
        for (target, reply) in
            unknown.iter().zip(exchange(daemon.clone(), None, Duration::from_secs(5), unknown.map(get).into()))
        {
            assert_eq!(reply.status, 404, "{target}: {reply:?}");
            assert!(reply.error().contains(target), "{reply:?}");
        }
        let wrong = [
            (TestRequest::post(), "/healthz", "GET"),
            (TestRequest::delete(), "/metrics", "GET"),
            (TestRequest::put(), "/batches", "GET"),
            (TestRequest::post(), "/runs", "GET"),
            (TestRequest::get(), "/batches/daily/run", "POST"),
        ];
        let allowed: Vec<&str> = wrong.iter().map(|(_, _, allow)| *allow).collect();
        let requests = wrong.into_iter().map(|(request, target, _)| request.uri(target)).collect();
        for (allow, reply) in allowed.iter().zip(exchange(daemon, None, Duration::from_secs(5), requests)) {
            assert_eq!(reply.status, 405, "{reply:?}");
            assert_eq!(reply.allow.as_deref(), Some(*allow));
            assert!(reply.error().contains("is not allowed on"));
        }
        assert_eq!(log.try_iter().count(), 0);
    }

    #[test]
    fn a_token_is_required_except_for_the_probes() {
        let (daemon, log) = fake_daemon(Ok(()));
        let challenge = Some(r#"Bearer realm="flagsd""#);
        let protected = [
            ("GET", "/metrics"),
            ("GET", "/batches"),
            ("GET", "/runs"),
            ("POST", "/batches/daily/run"),
            ("POST", "/reload"),
        ];
        let request = |method: &str, target: &str, auth: Option<&str>| {
            let request = if method == "GET" { get(target) } else { post(target) };
            match auth {
                Some(value) => request.insert_header((header::AUTHORIZATION, value.to_owned())),
                None => request,
            }
        };
        let wrong = ["Bearer s3cret-tokeN", "Bearer s3cret-token-", "Bearer ", "Basic s3cret-token", "s3cret-token"];
        let mut requests = Vec::new();
        for (method, target) in protected {
            requests.push(request(method, target, None));
            requests.extend(wrong.iter().map(|w| request(method, target, Some(w))));
        }
        for reply in exchange(daemon.clone(), Some("s3cret-token"), Duration::from_secs(5), requests) {
            assert_eq!(reply.status, 401, "{reply:?}");
            assert_eq!(reply.challenge.as_deref(), challenge);
            assert!(!reply.error().contains("s3cret"));
        }
        // Nothing reached the daemon so far.
        assert_eq!(log.try_iter().count(), 0);

        let right = Some("Bearer s3cret-token");
        let requests = vec![
            request("GET", "/metrics", right),
            request("GET", "/batches", right),
            request("GET", "/runs?limit=3", right),
            request("POST", "/batches/daily/run", right),
            request("GET", "/metrics", Some("bearer s3cret-token")),
            // Unknown paths need the token too: no map of the endpoint for strangers.
            request("GET", "/nope", None),
            request("GET", "/nope", right),
            // The probes stay open.
            request("GET", "/healthz", None),
            request("GET", "/readyz", None),
            request("GET", "/healthz", Some("Bearer wrong")),
        ];
        let statuses: Vec<u16> =
            exchange(daemon, Some("s3cret-token"), Duration::from_secs(5), requests).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200, 200, 202, 200, 401, 404, 200, 200, 200]);
    }

    #[test]
    fn a_silent_daemon_gets_503_within_the_timeout() {
        let timeout = Duration::from_millis(300);
        for request in [get("/healthz"), get("/readyz"), get("/metrics"), get("/runs"), post("/batches/x/run")] {
            let started = Instant::now();
            let reply = exchange(silent_daemon(), None, timeout, vec![request]).remove(0);
            let elapsed = started.elapsed();
            assert_eq!(reply.status, 503, "{reply:?}");
            assert_eq!(reply.error(), "the daemon did not answer");
            assert!(elapsed >= timeout, "answered after {elapsed:?}, before the timeout");
            assert!(elapsed < timeout + Duration::from_secs(3), "took {elapsed:?}");
        }
    }

    #[test]
    fn a_gone_daemon_gets_503_at_once() {
        let (daemon, receiver) = mpsc::channel(1);
        drop(receiver);
        let started = Instant::now();
        let health = exchange(daemon, None, Duration::from_secs(5), vec![get("/healthz")]).remove(0);
        assert_eq!(health.status, 503);
        assert_eq!(health.error(), "the daemon did not answer");
        // Well under the timeout: a closed channel is not waited on.
        assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    }
}
