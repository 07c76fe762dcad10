//! `flagsd check-config`: reads the configuration as `serve` would and
//! reports every problem, or a one-line summary.

use crate::config::ConfigSource;
use crate::job::FatalError;
use crate::model::exit::ExitStatus;

/// Checks the configuration of `source`: every problem on its own line
/// (status 2), else `FILE: OK (N batches, M scheduled)` (status 0).
pub fn check_config(source: &ConfigSource) -> Result<ExitStatus, FatalError> {
    let settings = source.load_checked()?;
    let scheduled = settings.batches.iter().filter(|b| b.every.is_some()).count();
    println!("{}: OK ({} batches, {scheduled} scheduled)", source.origin(), settings.batches.len());
    Ok(ExitStatus::Success)
}
