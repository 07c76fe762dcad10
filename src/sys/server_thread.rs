//! An actix-web server on a thread of its own, with its own actix system:
//! how the test server and the admin endpoint run beside the code that
//! starts them.

use std::net::SocketAddr;
use std::{io, thread};

use actix_web::dev::{Server, ServerHandle};

/// A server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listening socket failed.
    #[error("cannot bind the {what} to {addr}: {source}")]
    Bind {
        /// Which server (`admin endpoint`, `test server`).
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The server thread could not be started or ended during start-up.
    #[error("cannot start the {what} thread: {detail}")]
    Thread {
        /// Which server.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// Runs the server that `build` binds on a new thread named `name`, and
/// returns once it is bound: `Err` with the reason when the thread cannot
/// start or dies during start-up, else `build`'s own result (its error, or
/// the handle that stops the server and the address it listens on).
pub fn spawn<E: Send + 'static>(
    name: &str,
    build: impl FnOnce() -> Result<(Server, SocketAddr), E> + Send + 'static,
) -> Result<Result<(ServerHandle, SocketAddr), E>, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread_name = name.to_owned();
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                match build() {
                    Ok((server, addr)) => {
                        let _ = ready_tx.send(Ok((server.handle(), addr)));
                        if let Err(e) = server.await {
                            tracing::error!(thread = %thread_name, error = %e, "server stopped with an error");
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| e.to_string())?;
    ready_rx.recv().map_err(|_| "it ended during start-up".to_owned())
}
