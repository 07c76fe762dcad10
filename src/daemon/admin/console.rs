//! The operator console: one page on the admin endpoint (`GET /`), its
//! script and style sheet, signing in and out (`/session`), and what the
//! page reads besides the API: `GET /about`, `GET /fleet` and the live
//! updates of `GET /events`.
//!
//! The page, `console/index.html`, `console.js` and `console.css`, is
//! embedded in the binary: no build step, no external resource, and a
//! Content-Security-Policy without inline scripts
//! ([`SECURITY_HEADERS`], on every answer of the endpoint). The script puts
//! everything it shows into the page as text, never as HTML.
//!
//! `GET /events` is a stream of Server-Sent Events: the endpoint looks at
//! the daemon's batches once every [`EVERY`] for each open stream (at most
//! [`STREAMS`], which are never closed to make room for other connections;
//! more get `503` and the page polls instead) and sends what
//! changed: `batches` (every batch's view), `run-started`,
//! `run-progress`, `run-finished` (the batch's view), and in a fleet
//! `nodes` (as `GET /fleet`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

use super::auth::tokens_match;
use super::connections::{Busy, Held};
use super::exchange::{State, ask, json_error, unanswered};
use super::requests::{AdminRequest, Unavailable};
use super::session::{self, SignedIn};
use super::throttle::Kind;
use crate::present::api::{About, BatchView};

/// The page.
const PAGE: &str = include_str!("console/index.html");

/// The page's script.
const SCRIPT: &str = include_str!("console/console.js");

/// The page's style sheet.
const STYLE: &str = include_str!("console/console.css");

/// The headers every answer of the endpoint carries: the page may load
/// only what the endpoint itself serves, run no inline script, and be
/// framed by no one.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// How often an event stream looks at the daemon's batches.
pub const EVERY: Duration = Duration::from_secs(1);

/// How many looks between two looks at the fleet's nodes.
const NODES_EVERY: u32 = 5;

/// Looks without news after which a stream sends a comment, so that
/// proxies and the browser know it is alive.
const KEEP_ALIVE_AFTER: u32 = 15;

/// Event streams open at once, at most: each holds a connection of the
/// few the endpoint keeps ([`super::HELD`]).
pub const STREAMS: usize = 4;

/// The longest sign-in request body.
const SIGN_IN_MAX: usize = 4096;

/// `GET /`: the page.
pub async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /console.js`.
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console.css`.
pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok().content_type(content_type).insert_header((header::CACHE_CONTROL, "no-cache")).body(body)
}

/// What `/session` answers.
#[derive(Debug, Serialize)]
struct SessionAnswer {
    /// Whether the request is signed in.
    signed_in: bool,
    /// Whether signing in needs the token.
    token_required: bool,
    /// The session's CSRF token, when signed in.
    csrf: Option<String>,
}

/// `POST /session`'s body.
#[derive(Debug, Deserialize)]
struct SignIn {
    /// The endpoint's token (anything, when none is configured).
    #[serde(default)]
    token: String,
}

fn no_store(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// `GET /session`: whether the request is signed in, and its CSRF token.
pub async fn session_status(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let signed_in = req.extensions().get::<SignedIn>().cloned();
    no_store(HttpResponse::Ok().json(SessionAnswer {
        signed_in: signed_in.is_some(),
        token_required: state.credentials.is_some(),
        csrf: signed_in.map(|s| s.csrf),
    }))
}

/// `POST /session` with `{"token": "…"}`: signs in, for a cookie and a
/// CSRF token. Without a token configured, any body signs in.
pub async fn sign_in(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    if body.len() > SIGN_IN_MAX {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "a sign-in is {\"token\": \"…\"} and nothing more");
    }
    let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "a sign-in is a JSON object: {\"token\": \"…\"}");
    };
    if let Some(expected) = state.token()
        && !tokens_match(token.trim().as_bytes(), expected.as_bytes())
    {
        let peer = req.peer_addr().map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        if state.throttle.allow(Kind::Unauthorized, Instant::now(), || format!("sign-in from {peer}: wrong token")) {
            tracing::warn!(kind = %Kind::Unauthorized.name(), %peer, "console sign-in refused: the token is not valid");
        }
        return json_error(StatusCode::UNAUTHORIZED, "the token is not valid");
    }
    let Some(opened) = state.sessions.open(Instant::now()) else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness for a session id");
    };
    let secure = req.connection_info().scheme() == "https";
    no_store(
        HttpResponse::Ok().insert_header((header::SET_COOKIE, session::set_cookie(&opened.id, secure))).json(
            SessionAnswer { signed_in: true, token_required: state.credentials.is_some(), csrf: Some(opened.csrf) },
        ),
    )
}

/// `DELETE /session`: signs out (the CSRF token is checked before).
pub async fn sign_out(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let Some(signed_in) = req.extensions().get::<SignedIn>().cloned() else {
        return json_error(StatusCode::UNAUTHORIZED, "not signed in");
    };
    state.sessions.end(&signed_in);
    no_store(HttpResponse::Ok().insert_header((header::SET_COOKIE, session::clear_cookie())).json(SessionAnswer {
        signed_in: false,
        token_required: state.credentials.is_some(),
        csrf: None,
    }))
}

/// `GET /about`: which flagsd, which file, since when, ready or not.
pub async fn about(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::About).await {
        Ok(facts) => HttpResponse::Ok().json(About {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config: state.config.clone(),
            loaded_at: facts.loaded_at,
            batches: facts.batches,
            fleet: facts.fleet,
            ready: facts.ready.is_ok(),
            reason: facts.ready.err(),
            token_required: state.credentials.is_some(),
        }),
        Err(why) => unanswered(&state, "about", why),
    }
}

/// `GET /fleet`: the fleet's nodes and queues; `404` alone.
pub async fn fleet(state: web::Data<State>) -> HttpResponse {
    match ask(&state, AdminRequest::Fleet).await {
        Ok(Ok(Some(view))) => HttpResponse::Ok().json(view),
        Ok(Ok(None)) => json_error(StatusCode::NOT_FOUND, "this daemon is not a node of a fleet"),
        Ok(Err(Unavailable::NotReady(why) | Unavailable::Failed(why))) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, &why)
        }
        Err(why) => unanswered(&state, "fleet", why),
    }
}

/// `GET /events`: Server-Sent Events of what changes. The connection
/// counts as inside a request while the stream lasts, so it is not closed
/// to make room for another.
pub async fn events(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "too many event streams are open: poll /batches");
    };
    let busy = req.conn_data::<Held>().map(Held::busy);
    let watch = Watch { state, _held: (permit, busy), last: None, last_nodes: None, looks: 0, quiet: 0 };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        let chunk = watch.next().await?;
        Some((Ok::<Bytes, Infallible>(chunk), watch))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream)
}

/// One event stream: what it last sent.
struct Watch {
    state: web::Data<State>,
    /// The stream's place among the [`STREAMS`], and its connection kept
    /// busy.
    _held: (OwnedSemaphorePermit, Option<Busy>),
    last: Option<Vec<BatchView>>,
    last_nodes: Option<String>,
    looks: u32,
    quiet: u32,
}

impl Watch {
    /// The next events to send; `None` ends the stream (the daemon is
    /// gone).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.looks > 0 {
                tokio::time::sleep(EVERY).await;
            }
            let views = ask(&self.state, AdminRequest::Batches).await.ok()?;
            let mut out = if self.looks == 0 { "retry: 3000\n\n".to_owned() } else { String::new() };
            changes(self.last.as_deref(), &views, &mut out);
            if self.looks.is_multiple_of(NODES_EVERY)
                && let Ok(Ok(Some(fleet))) = ask(&self.state, AdminRequest::Fleet).await
                && let Ok(json) = serde_json::to_string(&fleet)
                && self.last_nodes.as_deref() != Some(json.as_str())
            {
                out.push_str(&event("nodes", &json));
                self.last_nodes = Some(json);
            }
            self.last = Some(views);
            self.looks = self.looks.wrapping_add(1);
            if !out.is_empty() {
                self.quiet = 0;
                return Some(Bytes::from(out));
            }
            self.quiet += 1;
            if self.quiet >= KEEP_ALIVE_AFTER {
                self.quiet = 0;
                return Some(Bytes::from_static(b": alive\n\n"));
            }
        }
    }
}

/// One event: its name and its data (JSON, on one line).
fn event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The events that tell a page which saw `before` (nothing yet: `None`)
/// that it is now `after`, appended to `out`.
fn changes(before: Option<&[BatchView]>, after: &[BatchView], out: &mut String) {
    if before == Some(after) {
        return;
    }
    for view in after {
        let was = before.and_then(|views| views.iter().find(|v| v.name == view.name));
        let Some(was) = was else { continue };
        // A short run can start and end between two looks: its record
        // tells.
        let (was_last, last) = (was.last_run.as_ref(), view.last_run.as_ref());
        let new_run = last.map(|r| r.id) != was_last.map(|r| r.id);
        let ended = last.is_some_and(|r| !r.is_running()) && (new_run || was_last.is_some_and(|r| r.is_running()));
        let (running, was_running) = (view.running == Some(true), was.running == Some(true));
        let mut names = Vec::new();
        if running && (!was_running || new_run) {
            names.push("run-started");
        } else if running && was.progress != view.progress {
            names.push("run-progress");
        }
        if ended || (was_running && !running) {
            names.push("run-finished");
        }
        if let Ok(json) = serde_json::to_string(view) {
            for name in names {
                out.push_str(&event(name, &json));
            }
        }
    }
    if let Ok(json) = serde_json::to_string(after) {
        out.push_str(&event("batches", &json));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::present::api::Progress;

    fn view(name: &str, running: bool, done: Option<usize>) -> BatchView {
        BatchView {
            running: Some(running),
            progress: done.map(|done| Progress { done, total: 10, rate: 1.0 }),
            ..BatchView::sample(name)
        }
    }

    fn names(out: &str) -> Vec<&str> {
        out.lines().filter_map(|l| l.strip_prefix("event: ")).collect()
    }

    #[test]
    fn a_stream_says_when_runs_start_progress_and_finish() {
        let mut out = String::new();
        changes(None, &[view("a", false, None)], &mut out);
        assert_eq!(names(&out), ["batches"]);
        let steps = [
            (vec![view("a", false, None)], vec![view("a", false, None)], vec![]),
            (vec![view("a", false, None)], vec![view("a", true, Some(0))], vec!["run-started", "batches"]),
            (vec![view("a", true, Some(0))], vec![view("a", true, Some(4))], vec!["run-progress", "batches"]),
            (vec![view("a", true, Some(4))], vec![view("a", false, None)], vec!["run-finished", "batches"]),
        ];
        let ended = |id| {
            let mut record = crate::model::run::RunRecord::started(id, "a", "admin", "t".into());
            record.state = crate::model::run::RunState::Finished;
            BatchView { last_run: Some(record), ..view("a", false, None) }
        };
        // A run that started and ended between two looks.
        let mut out = String::new();
        changes(Some(&[ended(1)]), &[ended(2)], &mut out);
        assert_eq!(names(&out), ["run-finished", "batches"]);
        for (before, after, expected) in steps {
            let mut out = String::new();
            changes(Some(&before), &after, &mut out);
            assert_eq!(names(&out), expected, "{out}");
        }
    }

    #[test]
    fn every_event_is_one_line_of_json() {
        let mut out = String::new();
        let mut hostile = view("a", true, Some(1));
        hostile.output = "line one\nline two\r\n<script>".to_owned();
        changes(Some(&[view("a", false, None)]), &[hostile], &mut out);
        for chunk in out.split("\n\n").filter(|c| !c.is_empty()) {
            let lines: Vec<&str> = chunk.lines().collect();
            assert_eq!(lines.len(), 2, "{chunk}");
            let data = lines[1].strip_prefix("data: ").expect("data");
            serde_json::from_str::<serde_json::Value>(data).expect("JSON");
        }
    }
}
