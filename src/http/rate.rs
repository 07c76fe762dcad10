//! Per-server politeness: at most N requests per second (or minute, hour).
//!
//! A [`RateLimiter`] spaces requests evenly: each caller takes the next free
//! slot and sleeps until it. It is written here rather than taken from a
//! crate such as `governor`: the need is one interval per server, a dozen
//! lines with a mutex (workers on several threads share it), where
//! `governor` brings its own clock abstraction and a burst model flagsd
//! does not use.
//!
//! Limiters are shared by server label through [`RateLimiters`], so every
//! batch that uses one server in a process (the daemon, or `flagsd run`)
//! shares one budget.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A request rate such as `50/s`, kept as the interval between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    interval: Duration,
}

impl Rate {
    /// The time between two requests.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl FromStr for Rate {
    type Err = String;

    /// Parses `N/s`, `N/m` or `N/h` (`N` > 0, decimals allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a rate such as \"50/s\", \"100/m\" or \"10/h\"");
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: f64 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        if !(count.is_finite() && count > 0.0) {
            return Err(bad());
        }
        let interval = Duration::try_from_secs_f64(per / count).map_err(|_| bad())?;
        Ok(Self { interval })
    }
}

/// Spaces requests at least one interval apart.
#[derive(Debug)]
pub struct RateLimiter {
    /// The interval of the whole rate.
    interval: Duration,
    /// How many processes share the rate (a fleet's live nodes): this one
    /// spaces its requests that many intervals apart.
    sharers: AtomicU32,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter for `rate`.
    pub fn new(rate: Rate) -> Self {
        Self { interval: rate.interval, sharers: AtomicU32::new(1), next_free: Mutex::new(None) }
    }

    /// Takes the next free slot at or after `now`.
    fn reserve(&self, now: Instant) -> Instant {
        // The lock guards two plain values: a panic cannot leave them torn.
        let mut next_free = self.next_free.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = next_free.map_or(now, |next| next.max(now));
        *next_free = Some(slot + self.interval * self.sharers.load(Ordering::Relaxed));
        slot
    }

    /// Waits for this caller's slot.
    pub async fn wait(&self) {
        let now = Instant::now();
        let slot = self.reserve(now);
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }
}

/// The limiters of one process, by server label and rate.
#[derive(Debug, Default)]
pub struct RateLimiters {
    by_label: RefCell<HashMap<(String, Rate), Arc<RateLimiter>>>,
}

impl RateLimiters {
    /// The shared limiter for `label` at `rate` (created on first use).
    pub fn get(&self, label: &str, rate: Rate) -> Arc<RateLimiter> {
        let mut map = self.by_label.borrow_mut();
        Arc::clone(map.entry((label.to_owned(), rate)).or_insert_with(|| Arc::new(RateLimiter::new(rate))))
    }

    /// Shares every rate among `sharers` processes (at least one): each
    /// server's rate is then the budget of all of them together.
    pub fn share_among(&self, sharers: u32) {
        for limiter in self.by_label.borrow().values() {
            limiter.sharers.store(sharers.max(1), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("50/s".parse::<Rate>().unwrap().interval(), Duration::from_millis(20));
        assert_eq!("2/m".parse::<Rate>().unwrap().interval(), Duration::from_secs(30));
        assert_eq!("0.5/s".parse::<Rate>().unwrap().interval(), Duration::from_secs(2));
        for bad in ["50", "0/s", "-1/s", "x/s", "5/d", "inf/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limiters_are_shared_by_label_and_rate() {
        let limiters = RateLimiters::default();
        let rate: Rate = "10/s".parse().unwrap();
        assert!(Arc::ptr_eq(&limiters.get("LOCAL", rate), &limiters.get("LOCAL", rate)));
        assert!(!Arc::ptr_eq(&limiters.get("LOCAL", rate), &limiters.get("OTHER", rate)));
    }

    #[test]
    fn requests_are_spaced_by_the_interval() {
        let limiter = RateLimiter::new("100/s".parse().unwrap());
        let start = Instant::now();
        let slots: Vec<Instant> = (0..11).map(|_| limiter.reserve(start)).collect();
        assert_eq!(slots[0], start);
        assert_eq!(slots[10] - start, Duration::from_millis(100));
        // After a quiet spell the next request goes at once.
        let later = start + Duration::from_secs(5);
        assert_eq!(limiter.reserve(later), later);
    }

    #[test]
    fn a_shared_rate_spaces_each_sharer_further_apart() {
        let limiters = RateLimiters::default();
        let limiter = limiters.get("LOCAL", "10/s".parse().unwrap());
        let now = Instant::now();
        assert_eq!(limiter.reserve(now), now);
        assert_eq!(limiter.reserve(now), now + Duration::from_millis(100));
        limiters.share_among(3);
        assert_eq!(limiter.reserve(now), now + Duration::from_millis(200));
        assert_eq!(limiter.reserve(now), now + Duration::from_millis(500));
        limiters.share_among(0);
        assert_eq!(limiter.reserve(now), now + Duration::from_millis(800));
    }
}
