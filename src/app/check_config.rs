//! `flagsd check-config`: reads the configuration as `serve` would and
//! reports every problem, or a one-line summary, after any warning.

use crate::config::ConfigSource;
use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::model::text::terminal_safe_lines;

/// Checks the configuration of `source`: every problem on its own line
/// (status 2), else the warnings (secret files others can read) on stderr
/// and `FILE: OK (N batches, M scheduled)` (status 0).
pub fn check_config(source: &ConfigSource) -> Result<ExitStatus, FatalError> {
    let settings = source.load_checked()?;
    for warning in settings.secret_warnings(&source.origin(), &[]) {
        eprintln!("{}", terminal_safe_lines(&warning.to_string()));
    }
    let scheduled = settings.batches.iter().filter(|b| b.every.is_some()).count();
    println!("{}: OK ({} batches, {scheduled} scheduled)", source.origin(), settings.batches.len());
    Ok(ExitStatus::Success)
}
