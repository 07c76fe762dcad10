//! Diagnostics through tracing-subscriber, always on stderr.
//!
//! stdout carries the flags2 report and nothing else. The level comes from
//! `--log-level` or `FLAGSD_LOG` (EnvFilter syntax) and defaults to `warn`,
//! so a normal run prints no diagnostics at all.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::UsageError;

/// Installs the global subscriber. A filter that does not parse is a usage error.
pub fn init(filter: Option<&str>) -> Result<(), UsageError> {
    let filter = EnvFilter::try_new(filter.unwrap_or("warn"))
        .map_err(|e| UsageError(format!("--log-level / FLAGSD_LOG: {e}")))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init()
        .map_err(|e| UsageError(format!("cannot set up logging: {e}")))
}
