//! What the endpoint's handlers share: the [`State`] of the endpoint, and
//! the way a request goes to the daemon and back ([`ask`]), with the
//! answers given when it does not come back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::auth::Credentials;
use super::requests::AdminRequest;
use super::session::Sessions;
use super::throttle::{Kind, Throttle};
use crate::present::api::ApiError;

/// What every handler shares: the way to the daemon, and the credentials.
pub struct State {
    /// Where requests go.
    pub daemon: mpsc::Sender<AdminRequest>,
    /// The token requests need and the nonces they sign, if a token is set.
    pub credentials: Option<Credentials>,
    /// How long a handler waits for the daemon.
    pub timeout: Duration,
    /// The rate limit of the lines logged for refusals.
    pub throttle: Arc<Throttle>,
    /// The console's sessions.
    pub sessions: Sessions,
    /// Host names the endpoint answers for besides `localhost` and IP
    /// addresses (`[admin] hosts`).
    pub hosts: Vec<String>,
    /// The configuration file the daemon serves, as its messages name it.
    pub config: String,
    /// Event streams that may be open at once.
    pub streams: Arc<Semaphore>,
}

impl State {
    /// The token, if one is configured.
    pub fn token(&self) -> Option<&str> {
        self.credentials.as_ref().map(Credentials::token)
    }
}

/// Why a request got no answer from the daemon.
#[derive(Debug)]
pub enum NoAnswer {
    /// The channel is closed or the reply sender was dropped.
    Gone,
    /// No answer within the timeout.
    Timeout,
}

/// Sends the request made by `request` to the daemon and waits for its
/// answer, [`State::timeout`] at most (sending included: a full channel
/// counts against it too).
pub async fn ask<T>(state: &State, request: impl FnOnce(oneshot::Sender<T>) -> AdminRequest) -> Result<T, NoAnswer> {
    let (reply, answer) = oneshot::channel();
    let exchange = async {
        state.daemon.send(request(reply)).await.map_err(|_| NoAnswer::Gone)?;
        answer.await.map_err(|_| NoAnswer::Gone)
    };
    tokio::time::timeout(state.timeout, exchange).await.unwrap_or(Err(NoAnswer::Timeout))
}

/// A JSON error answer.
pub fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ApiError::new(message))
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(body)
}

/// `503`, logged (rate-limited): the daemon did not answer `what`.
pub fn unanswered(state: &State, what: &str, why: NoAnswer) -> HttpResponse {
    let reason = match why {
        NoAnswer::Gone => "the daemon is not taking admin requests",
        NoAnswer::Timeout => "the daemon did not answer an admin request in time",
    };
    if state.throttle.allow(Kind::Unanswered, Instant::now(), || format!("{what}: {reason}")) {
        tracing::warn!(kind = %Kind::Unanswered.name(), request = what, "{reason}");
    }
    json_error(StatusCode::SERVICE_UNAVAILABLE, "the daemon did not answer")
}
