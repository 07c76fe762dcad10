//! When and how soon to try a code again.
//!
//! Only failures that another attempt can cure are retried: connection
//! errors and timeouts, and the statuses 408, 429, 500, 502, 503 and 504.
//! Never 404 or another 4xx, never a disk error. The delay is exponential
//! backoff with full jitter (a uniform pick between zero and
//! `min(cap, base × 2^(attempt-1))`), so a crowd of clients does not retry in
//! step. A server's `Retry-After` is a floor: the wait is the longer of it
//! and the backoff (so `Retry-After: 0` does not mean three attempts at
//! once); one longer than `retry_after_cap` ends the retries, since the
//! server asks to be left alone longer than we are willing to wait. A
//! failed `metadata.json` is retried like the flag's own request.
//!
//! The delay is computed here rather than with a crate such as `backoff` or
//! `backon`: those own the retry loop, while here the coordinator re-queues
//! the code and only needs the number (and must honour `Retry-After`, which
//! they do not know about).
//!
//! The coordinator applies the policy: a code waiting for its retry is not
//! held by a worker but re-queued with a not-before time, so other codes keep
//! flowing.

use std::time::Duration;

use crate::model::outcome::{DownloadError, Outcome};
use crate::model::random::Dice;

/// Statuses worth another attempt.
const RETRYABLE_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// The retry settings of a job (the defaults live in
/// [`config::defaults`](crate::config::defaults)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further attempts after the first (0: no retries).
    pub retries: u32,
    /// Backoff before the first retry (before jitter).
    pub base: Duration,
    /// Longest backoff (before jitter).
    pub cap: Duration,
    /// Longest wait a server's `Retry-After` can ask for.
    pub retry_after_cap: Duration,
}

/// Whether a response with `status` may be worth another attempt.
pub fn retryable_status(status: u16) -> bool {
    RETRYABLE_STATUSES.contains(&status)
}

/// Whether `outcome` may be cured by trying again.
pub fn retryable(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Failed(DownloadError::Connection { .. }) => true,
        Outcome::Failed(DownloadError::Http { status, .. }) => retryable_status(*status),
        Outcome::Failed(DownloadError::Metadata { transient, .. }) => *transient,
        _ => false,
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempts + 1`, or `None` when the
    /// code is done (success, a final error, or no retries left).
    pub fn delay(&self, outcome: &Outcome, attempts: u32, dice: &Dice) -> Option<Duration> {
        if attempts > self.retries || !retryable(outcome) {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let backoff = ceiling.mul_f64(dice.roll());
        match outcome {
            // Asked to stay away longer than we wait: give up now.
            Outcome::Failed(DownloadError::Http { retry_after: Some(wait), .. }) if *wait > self.retry_after_cap => {
                None
            }
            // Never sooner than our own backoff (`Retry-After: 0` is no
            // licence to hammer).
            Outcome::Failed(DownloadError::Http { retry_after: Some(wait), .. }) => Some((*wait).max(backoff)),
            _ => Some(backoff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, retry_after: Option<Duration>) -> Outcome {
        Outcome::Failed(DownloadError::Http { status, reason: String::new(), retry_after })
    }

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(60),
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let dice = Dice::new(1);
        let p = policy(3);
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(p.delay(&http(status, None), 1, &dice).is_some(), "{status}");
        }
        for status in [400, 401, 403, 410, 418, 501] {
            assert!(p.delay(&http(status, None), 1, &dice).is_none(), "{status}");
        }
        assert!(p.delay(&Outcome::NotFound, 1, &dice).is_none());
        assert!(p.delay(&Outcome::Downloaded(crate::model::outcome::SavedFile::new("BR.gif", 1)), 1, &dice).is_none());
        assert!(p.delay(&Outcome::Unchanged("BR.gif".into()), 1, &dice).is_none());
        assert!(p.delay(&Outcome::Failed(DownloadError::Io { detail: String::new() }), 1, &dice).is_none());
        assert!(p.delay(&Outcome::Failed(DownloadError::Connection { detail: None }), 1, &dice).is_some());
    }

    #[test]
    fn retries_stop_at_the_limit() {
        let dice = Dice::new(1);
        let failed = http(503, None);
        assert!(policy(2).delay(&failed, 2, &dice).is_some());
        assert!(policy(2).delay(&failed, 3, &dice).is_none());
        assert!(policy(0).delay(&failed, 1, &dice).is_none());
    }

    #[test]
    fn backoff_grows_with_jitter_under_the_cap() {
        let dice = Dice::new(9);
        let p =
            RetryPolicy { retries: 40, base: Duration::from_millis(100), cap: Duration::from_secs(1), ..policy(40) };
        let failed = http(500, None);
        for attempts in 1..=40 {
            let ceiling = Duration::from_millis(100 * (1 << (attempts - 1).min(4))).min(Duration::from_secs(1));
            let delay = p.delay(&failed, attempts, &dice).unwrap();
            assert!(delay <= ceiling, "attempt {attempts}: {delay:?} > {ceiling:?}");
        }
        let waits: Vec<_> = (0..100).map(|_| p.delay(&failed, 10, &dice).unwrap()).collect();
        assert!(
            waits.iter().any(|w| *w < Duration::from_millis(500))
                && waits.iter().any(|w| *w > Duration::from_millis(500))
        );
    }

    #[test]
    fn retry_after_is_a_floor_and_beyond_its_cap_a_reason_to_give_up() {
        let dice = Dice::new(1);
        let p = RetryPolicy { retry_after_cap: Duration::from_secs(5), ..policy(1) };
        assert_eq!(p.delay(&http(503, Some(Duration::from_secs(2))), 1, &dice), Some(Duration::from_secs(2)));
        assert_eq!(p.delay(&http(503, Some(Duration::from_secs(5))), 1, &dice), Some(Duration::from_secs(5)));
        assert_eq!(p.delay(&http(429, Some(Duration::from_secs(6))), 1, &dice), None, "over the cap");
        // `Retry-After: 0` waits our own backoff, which is never zero here.
        let p = RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(1), ..p };
        let delays: Vec<_> = (0..20).map(|_| p.delay(&http(503, Some(Duration::ZERO)), 1, &dice)).collect();
        assert!(delays.iter().all(|d| d.is_some_and(|d| d > Duration::ZERO)), "{delays:?}");
        assert!(delays.iter().any(|d| d.is_some_and(|d| d > Duration::from_millis(100))), "{delays:?}");
    }

    #[test]
    fn metadata_failures_are_retried_when_transient() {
        let dice = Dice::new(1);
        let metadata = |transient| Outcome::Failed(DownloadError::Metadata { detail: String::new(), transient });
        assert!(policy(1).delay(&metadata(true), 1, &dice).is_some());
        assert!(policy(1).delay(&metadata(false), 1, &dice).is_none());
    }
}
