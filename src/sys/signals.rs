//! Unix signals as futures.
//!
//! Handlers are installed when [`StopSignals::install`] is called, not when a
//! future is first polled, so a signal that arrives between start-up and the
//! first poll is neither lost nor fatal (the default disposition would kill
//! the process and leave its temporary files behind).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, `systemctl stop`).
    Terminate,
}

/// Listeners for SIGINT and SIGTERM.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Installs the handlers now.
    pub fn install() -> io::Result<Self> {
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.interrupt.recv() => StopSignal::Interrupt,
            _ = self.terminate.recv() => StopSignal::Terminate,
        }
    }
}

/// Asks process `pid` to reload its configuration (SIGHUP), as `kill -HUP`
/// does, for hosts without procps' `kill`.
pub fn send_hangup(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
    if sent == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hangup_reaches_a_process_and_a_missing_one_is_an_error() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        send_hangup(child.id()).expect("sent");
        let status = child.wait().expect("it ends");
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGHUP));
        assert_eq!(send_hangup(child.id()).unwrap_err().raw_os_error(), Some(libc::ESRCH));
        assert_eq!(send_hangup(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
