//! The engine's two seams: where codes turn into outcomes ([`Fetch`]), and
//! where outcomes go ([`OutcomeSink`]).
//!
//! The coordinator and its workers hold only these traits, so the actor
//! system knows nothing of HTTP, files or reports. The HTTP side implements
//! [`Fetch`]; reports, logs and metrics implement [`OutcomeSink`]; and the
//! coordinator's guarantees (one outcome per code, also when a worker panics
//! or hangs) are tested with fetchers that misbehave on purpose.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::model::codes::CountryCode;
use crate::model::outcome::{CodeOutcome, Outcome};

/// A boxed, single-threaded future yielding one outcome.
pub type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome>>>;

/// Turns a country code into an outcome.
pub trait Fetch: 'static {
    /// The URL that `fetch` requests for `code`.
    fn url(&self, code: CountryCode) -> String;
    /// The URL as reports and logs show it: credentials masked.
    fn display_url(&self, code: CountryCode) -> String;
    /// Downloads `code` from `url` and says how it ended. Never panics on
    /// anything a server or the disk does.
    fn fetch(&self, code: CountryCode, url: String) -> OutcomeFuture;
}

/// Receives each outcome as it arrives (report lines, progress, logs), and
/// optionally each attempt (metrics).
pub trait OutcomeSink {
    /// Called once per finished code, in completion order.
    fn record(&mut self, outcome: &CodeOutcome);
    /// Called when an attempt is handed to a worker.
    fn attempt_started(&mut self) {}
    /// Called when an attempt ends (answered, failed or timed out), after
    /// `elapsed`.
    fn attempt_finished(&mut self, _elapsed: Duration) {}
    /// Called when a failed attempt is to be tried again.
    fn retry_scheduled(&mut self, _code: CountryCode) {}
}
