//! Misbehaviour on purpose: which requests get a fault (drawn from a seeded
//! generator, so a seed gives a reproducible mix), and the faulty answers
//! themselves.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::options::Faults;
use crate::model::random::{Dice, mix};

/// The dice of one server: which request gets which fault.
///
/// Each request gets dice of its own, seeded from the server's seed, the
/// request's path and how many times that path was asked for before: the
/// same seed then fails the same codes, on the same attempts, whatever the
/// concurrency and the order in which requests arrive.
#[derive(Debug)]
pub struct FaultDice {
    faults: Faults,
    seed: u64,
    /// Requests seen per path.
    attempts: Mutex<HashMap<String, u32>>,
}

impl FaultDice {
    /// Dice for `faults`, starting from `seed`.
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self { faults, seed, attempts: Mutex::default() }
    }

    /// The faults these dice decide.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The dice of the next request for `path`.
    pub fn for_request(&self, path: &str) -> RequestDice {
        let attempt = {
            let mut seen = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
            let count = seen.entry(path.to_owned()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let path_hash = path.bytes().fold(self.seed, |h, b| mix(h ^ u64::from(b)));
        RequestDice { dice: Dice::new(mix(path_hash ^ u64::from(attempt))), path_hash, attempt }
    }
}

/// The dice of one request (see [`FaultDice`]).
#[derive(Debug)]
pub struct RequestDice {
    dice: Dice,
    path_hash: u64,
    attempt: u32,
}

impl RequestDice {
    /// The next number in `[0, 1)` (for delays).
    pub fn unit(&self) -> f64 {
        self.dice.roll()
    }

    /// Whether a fault of probability `rate` strikes this request.
    pub fn roll(&self, rate: f64) -> bool {
        rate > 0.0 && self.dice.roll() < rate
    }

    /// Whether this request of a flapping path still fails: a `flap_rate`
    /// share of the paths fail their first `flap_failures` requests.
    pub fn flaps(&self, faults: &Faults) -> bool {
        faults.flap_rate > 0.0
            && ((self.path_hash >> 11) as f64 / (1u64 << 53) as f64) < faults.flap_rate
            && self.attempt <= faults.flap_failures
    }
}

/// An answer with `status` and a reason phrase of its own.
pub fn with_reason(status: StatusCode, reason: &'static str) -> HttpResponse {
    let mut response = HttpResponse::new(status);
    response.head_mut().reason = Some(reason);
    response
}

/// `503 Service Unavailable` with `Retry-After: {retry_after}`.
pub fn unavailable(retry_after: u64) -> HttpResponse {
    HttpResponse::ServiceUnavailable().insert_header(("Retry-After", retry_after.to_string())).finish()
}

/// Redirect chains for tests: `/redirect/{n}/flags/…` answers `302` to
/// `/redirect/{n-1}/flags/…`, and `/redirect/0/flags/…` to `/flags/…`;
/// `/redirect/ftp/flags/…` redirects to an `ftp:` URL.
pub fn redirect(path: &str) -> Option<HttpResponse> {
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
pub fn cut_short(first: Bytes, why: &'static str) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> {
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
