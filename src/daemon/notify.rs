//! The systemd notify protocol: `READY=1`, `RELOADING=1`, `STOPPING=1`,
//! `STATUS=…` and the watchdog. Every call is a no-op without
//! `NOTIFY_SOCKET`.

use sd_notify::NotifyState;

/// Tells systemd what the daemon is doing; silent without `NOTIFY_SOCKET`.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// Sends `WATCHDOG=1` at half the interval systemd asked for, if it asked.
pub fn start_watchdog() {
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tracing::debug!(interval_ms = interval.as_millis() as u64, "watchdog enabled");
        actix_rt::spawn(async move {
            let mut ticks = actix_rt::time::interval(interval / 2);
            loop {
                ticks.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
    }
}
