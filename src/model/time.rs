//! Times as flagsd writes them: RFC 3339, UTC, to the millisecond.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` as RFC 3339, UTC, to the millisecond (`2026-11-25T06:00:00.000Z`).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Seconds since the UNIX epoch (negative before it).
pub fn unix_seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The time `seconds` after the UNIX epoch (the epoch itself for anything
/// before it or not a number).
pub fn from_unix_seconds(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_unix_seconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(unix_seconds(t), 1_700_000_000.25);
        assert_eq!(from_unix_seconds(1_700_000_000.25), t);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.250Z");
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(2)), -2.0);
        assert_eq!(from_unix_seconds(-5.0), UNIX_EPOCH);
    }
}
