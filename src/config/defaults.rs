//! Every built-in default of flagsd, in one place.
//!
//! The `fetch` flags show these in `--help` (formatted by [`duration_text`]
//! and [`size_text`]), the configuration file starts from them, and the
//! HTTP client and the retry policy get them from here, so a default cannot
//! differ between the command line and a configuration file. The one
//! deliberate difference is the retry count: `fetch` keeps flags2's
//! behaviour (no retries), while unattended batches retry by default.

use std::time::Duration;

use crate::engine::retry::RetryPolicy;
use crate::http::client::Timeouts;

/// Concurrent requests of a `fetch` or a batch.
pub const MAX_REQ: usize = 30;

/// Most worker threads a process may be given (`--threads`, `threads`).
pub const MAX_THREADS: usize = 256;

/// Worker threads by default: one per available core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(MAX_THREADS)
}

/// Where files go (`fetch -o`); the base directory of batches.
pub const OUTPUT: &str = "downloaded";

/// The server of `fetch` and of a batch that names none.
pub const SERVER: &str = "LOCAL";

/// Limits of one request.
pub const TIMEOUTS: Timeouts =
    Timeouts { connect: Duration::from_secs(5), read: Duration::from_secs(10), total: Duration::from_secs(30) };

/// Further attempts of `fetch` (flags2 makes none).
pub const FETCH_RETRIES: u32 = 0;

/// Further attempts of a configured batch.
pub const BATCH_RETRIES: u32 = 2;

/// Backoff before the first retry.
pub const RETRY_BASE: Duration = Duration::from_millis(250);

/// Longest backoff between two attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(10);

/// Longest wait a server's `Retry-After` can ask for.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// Largest body saved: 10 MiB.
pub const MAX_SIZE: u64 = 10 * 1024 * 1024;

/// How long in-flight downloads may go on after SIGTERM (`serve`).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The state directory, relative to the working directory.
pub const STATE_DIR: &str = "state";

/// The configuration file used when neither `--config` nor `FLAGSD_CONFIG`
/// names one (and it exists).
pub const CONFIG_PATH: &str = "/etc/flagsd/flagsd.toml";

/// The namespace of a fleet's streams, buckets and subjects.
pub const FLEET_NAME: &str = "flagsd";

/// JetStream replicas of a fleet's streams and buckets.
pub const FLEET_REPLICAS: i64 = 1;

/// How long a fleet node may hold a code without a sign of life (it sends
/// one every third of this while it downloads) before the fleet hands the
/// code to another node.
pub const FLEET_ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a fleet's streams remember a message id, to drop a duplicate.
pub const FLEET_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The retry policy with `retries` further attempts and the default backoff.
pub const fn retry_policy(retries: u32) -> RetryPolicy {
    RetryPolicy { retries, base: RETRY_BASE, cap: RETRY_CAP, retry_after_cap: RETRY_AFTER_CAP }
}

/// A duration as the flags take it (`250ms`, `5s`, `1m`).
pub fn duration_text(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A size as the flags take it: `10MiB` for whole binary units, else bytes.
pub fn size_text(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{parse_duration, parse_size};

    #[test]
    fn the_texts_shown_in_help_parse_back_to_the_defaults() {
        for duration in [TIMEOUTS.connect, TIMEOUTS.read, TIMEOUTS.total, RETRY_BASE, RETRY_CAP, RETRY_AFTER_CAP] {
            assert_eq!(parse_duration(&duration_text(duration)), Ok(duration));
        }
        assert_eq!(duration_text(RETRY_BASE), "250ms");
        assert_eq!(size_text(MAX_SIZE), "10MiB");
        assert_eq!(parse_size(&size_text(MAX_SIZE)), Ok(MAX_SIZE));
        assert_eq!(size_text(1500), "1500");
        assert_eq!(size_text(3 << 30), "3GiB");
    }
}
