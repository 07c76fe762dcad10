//! Unix signals as futures.
//!
//! Handlers are installed when the listener is created, not when it is first
//! polled, so a signal that arrives between start-up and the first poll is
//! not lost (and does not kill the process with the default disposition).

use std::future::Future;
use std::io;

use tokio::signal::unix::{SignalKind, signal};

/// Completes at the first SIGINT (Ctrl-C). The handler is installed now.
pub fn interrupted() -> io::Result<impl Future<Output = ()>> {
    let mut sigint = signal(SignalKind::interrupt())?;
    Ok(async move {
        sigint.recv().await;
    })
}

/// Completes at the first SIGINT or SIGTERM. If the handlers cannot be
/// installed the default dispositions stay, and this never completes.
pub async fn terminated() {
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot listen for signals");
            std::future::pending::<()>().await;
        }
    }
}
