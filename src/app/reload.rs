//! `flagsd reload PID`: what a unit's `ExecReload=` runs.
//!
//! It checks the configuration as `check-config` does (every problem on its
//! own line, status 2; secrets are not read, since systemd does not hand a
//! service's credentials to `ExecReload=`), and only a good file is followed
//! by SIGHUP to the daemon, which then reloads it. So `systemctl reload`
//! fails, with the reason in the journal, on a bad file, and the daemon
//! keeps its old configuration. The signal is sent by flagsd itself: a
//! minimal system has no `/bin/kill`.

use crate::config::ConfigSource;
use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::sys::signals::send_hangup;

/// Checks the configuration of `source`, then sends SIGHUP to `pid`.
pub fn reload(source: &ConfigSource, pid: u32) -> Result<ExitStatus, FatalError> {
    let settings = source.load_checked()?;
    send_hangup(pid).map_err(|source| FatalError::Signal { pid, source })?;
    println!("{}: OK ({} batches); asked flagsd (process {pid}) to reload it", source.origin(), settings.batches.len());
    Ok(ExitStatus::Success)
}
