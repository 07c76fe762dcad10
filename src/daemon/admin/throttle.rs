//! Rejections on the admin endpoint, logged at most once a second of each
//! kind.
//!
//! # Why
//!
//! Anyone who can connect can make the endpoint refuse something (a wrong
//! token, bytes that are not HTTP, connections beyond the caps) as fast as
//! they can send it. One line per refusal would let them flood the journal
//! and bury what matters. So the first refusal of a kind is logged as it
//! happens; later ones within [`INTERVAL`] are only counted, and a summary
//! line (`count=N` and the last one's details) follows once the interval
//! has passed. Every refusal is accounted for; none is logged above warn.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The least time between two lines of one kind.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The longest detail kept for a summary.
const MAX_DETAIL: usize = 200;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request without valid credentials (`401`).
    Unauthorized,
    /// Bytes that are not an acceptable HTTP request (actix-http's own
    /// errors: parse errors, heads too large, connections reset).
    Protocol,
    /// A connection closed by the endpoint: to make room, or idle too long.
    Shed,
    /// A request the daemon's loop did not answer in time (`503`).
    Unanswered,
}

impl Kind {
    /// Every kind, in the order of their slots.
    const ALL: [Self; 4] = [Self::Unauthorized, Self::Protocol, Self::Shed, Self::Unanswered];

    /// The name logged in the `kind` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Protocol => "protocol",
            Self::Shed => "shed",
            Self::Unanswered => "unanswered",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The events of one kind since its last line.
#[derive(Debug, Default)]
struct Slot {
    logged_at: Option<Instant>,
    held: u64,
    last: String,
}

/// A summary due: `count` events of `kind` not logged one by one, the last
/// of them described by `last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Their kind.
    pub kind: Kind,
    /// How many.
    pub count: u64,
    /// The last one.
    pub last: String,
}

/// The counts behind the rate limit, shared by the endpoint's threads.
#[derive(Debug, Default)]
pub struct Throttle {
    slots: Mutex<[Slot; Kind::ALL.len()]>,
}

/// `text` cut to [`MAX_DETAIL`] characters.
fn cut(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_DETAIL) {
        text.truncate(at);
    }
    text
}

impl Throttle {
    /// Whether an event of `kind` at `now` is to be logged now: yes when no
    /// line of its kind was logged within [`INTERVAL`]. Otherwise it is
    /// counted for the next summary, `detail` kept as the last one's.
    pub fn allow(&self, kind: Kind, now: Instant, detail: impl FnOnce() -> String) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut slots[kind.slot()];
        if slot.logged_at.is_none_or(|at| now.saturating_duration_since(at) >= INTERVAL) {
            slot.logged_at = Some(now);
            true
        } else {
            slot.held += 1;
            slot.last = cut(detail());
            false
        }
    }

    /// Counts an event of `kind` that cannot be logged where it happens (a
    /// line logged from inside the logger would be lost): the next summary
    /// reports it.
    pub fn hold(&self, kind: Kind, detail: String) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut slots[kind.slot()];
        slot.held += 1;
        slot.last = cut(detail);
    }

    /// The summaries due at `now`: each kind with events held whose last
    /// line is [`INTERVAL`] old or more (each then counts as logged now).
    pub fn due(&self, now: Instant) -> Vec<Summary> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due = Vec::new();
        for (kind, slot) in Kind::ALL.into_iter().zip(slots.iter_mut()) {
            if slot.held > 0 && slot.logged_at.is_none_or(|at| now.saturating_duration_since(at) >= INTERVAL) {
                due.push(Summary { kind, count: slot.held, last: std::mem::take(&mut slot.last) });
                slot.held = 0;
                slot.logged_at = Some(now);
            }
        }
        due
    }

    /// Logs the summaries due at `now`, at warn level.
    pub fn log_due(&self, now: Instant) {
        for Summary { kind, count, last } in self.due(now) {
            tracing::warn!(
                kind = %kind.name(),
                count,
                last = %last,
                "admin events not logged one by one (a line a second of each kind at most)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_of_each_kind_and_every_event_counted() {
        let throttle = Throttle::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(throttle.allow(Kind::Unauthorized, at(0), || "first".into()));
        // Within the second: counted, not logged; other kinds are apart.
        for ms in 1..=999 {
            assert!(!throttle.allow(Kind::Unauthorized, at(ms), || format!("at {ms}")));
        }
        assert!(throttle.allow(Kind::Shed, at(500), || "shed".into()));
        throttle.hold(Kind::Protocol, "not HTTP".into());
        // The protocol errors were never logged: their summary is due now;
        // the refusals' once the second has passed.
        assert_eq!(throttle.due(at(999)), [Summary { kind: Kind::Protocol, count: 1, last: "not HTTP".into() }]);
        assert_eq!(throttle.due(at(1000)), [Summary { kind: Kind::Unauthorized, count: 999, last: "at 999".into() }]);
        assert_eq!(throttle.due(at(5000)), [], "nothing held, nothing due");
        // A summary counts as a line: the next event waits a second after it.
        assert!(!throttle.allow(Kind::Unauthorized, at(1500), String::new));
        assert!(throttle.allow(Kind::Unauthorized, at(2000), String::new));
        assert_eq!(throttle.due(at(2000)).len(), 0, "a line was just logged");
        assert_eq!(throttle.due(at(3000))[0].count, 1);
    }

    #[test]
    fn details_are_cut() {
        let throttle = Throttle::default();
        throttle.hold(Kind::Protocol, "é".repeat(1000));
        let due = throttle.due(Instant::now());
        assert_eq!(due[0].last.chars().count(), MAX_DETAIL);
    }
}
