//! The admin HTTP endpoint of `flagsd serve`: health, readiness, metrics,
//! batches, runs, and a way to start a run now.
//!
//! # Why a channel
//!
//! The daemon runs on a single-threaded actix system and keeps its state in
//! `Rc`s and `RefCell`s, which cannot cross threads; actix-web handlers run
//! on the server's own worker threads. So the endpoint owns no daemon state
//! at all: [`AdminServer`] runs on its own thread with its own actix system,
//! and each request becomes an [`AdminRequest`] sent over a
//! [`tokio::sync::mpsc`] channel, carrying a [`tokio::sync::oneshot`] sender
//! for the answer. The daemon's loop receives the requests next to its other
//! events, answers from its own thread, and never shares memory with the
//! server.
//!
//! The parts: [`routes`] (what each path asks and answers), [`auth`] (the
//! bearer token and signed requests), [`nonce`] (the nonces signed requests
//! spend), [`requests`] (the typed messages to the daemon).

pub mod auth;
pub mod nonce;
pub mod requests;
pub mod routes;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpServer, web};
use tokio::sync::mpsc;

pub use requests::{AdminRequest, Cancel, Trigger, Unavailable};

use crate::sys::limits::ADMIN_CONNECTIONS;
use crate::sys::server_thread::{self, ServerError};

/// How long a handler waits for the daemon's answer before giving `503`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint is called in errors.
const WHAT: &str = "admin endpoint";

/// Where the admin endpoint listens and whether it wants a token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminOptions {
    /// The address to listen on (port 0 for any free port).
    pub listen: SocketAddr,
    /// The token required by every endpoint but the open ones
    /// ([`auth::OPEN_PATHS`]), as a bearer token or by signed requests;
    /// `None` leaves them all open.
    pub token: Option<String>,
}

impl fmt::Debug for AdminOptions {
    /// Shows whether a token is set, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn build(
    options: AdminOptions,
    daemon: mpsc::Sender<AdminRequest>,
) -> Result<(actix_web::dev::Server, SocketAddr), ServerError> {
    let bind = options.listen;
    let credentials = match options.token {
        Some(token) => {
            let nonces = nonce::Nonces::random().map_err(|e| ServerError::Thread {
                what: WHAT,
                detail: format!("no random secret for its nonces: {e}"),
            })?;
            Some(auth::Credentials::new(token, nonces))
        }
        None => None,
    };
    let state = web::Data::new(routes::State { daemon, credentials, timeout: ANSWER_TIMEOUT });
    let server = HttpServer::new(move || routes::app(state.clone()))
        .workers(1)
        // A flood of connections waits in the backlog instead of taking
        // the descriptors downloads need (sys::limits keeps these aside).
        .max_connections(ADMIN_CONNECTIONS as usize)
        .backlog(64)
        .shutdown_timeout(1)
        .bind(bind)
        .map_err(|source| ServerError::Bind { what: WHAT, addr: bind, source })?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    Ok((server.disable_signals().run(), addr))
}

/// The admin endpoint, running on its own thread; stopped when dropped.
pub struct AdminServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// Binds `options.listen` (port 0 for a free port) and serves on a new
    /// thread with its own actix system, forwarding every request to
    /// `daemon`. Returns once the socket is bound.
    pub fn spawn(options: AdminOptions, daemon: mpsc::Sender<AdminRequest>) -> Result<Self, ServerError> {
        let (handle, addr) = server_thread::spawn("flagsd-admin", move || build(options, daemon))
            .map_err(|detail| ServerError::Thread { what: WHAT, detail })??;
        Ok(Self { addr, handle })
    }

    /// The address the endpoint listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        // `stop` sends its command at once; its future only reports completion.
        drop(self.handle.stop(false));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::time::Instant;

    use super::*;

    fn local() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    #[test]
    fn binding_a_taken_address_fails_naming_it() {
        let taken = TcpListener::bind(local()).expect("bind a port");
        let addr = taken.local_addr().expect("its address");
        let (daemon, _requests) = mpsc::channel(1);
        match AdminServer::spawn(AdminOptions { listen: addr, token: None }, daemon) {
            Err(error @ ServerError::Bind { .. }) => {
                let expected = format!("cannot bind the admin endpoint to {addr}: ");
                assert!(error.to_string().starts_with(&expected), "{error}");
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(server) => panic!("bound {} twice", server.addr()),
        }
    }

    #[test]
    fn the_server_listens_until_dropped() {
        let (daemon, _requests) = mpsc::channel(1);
        let server = AdminServer::spawn(AdminOptions { listen: local(), token: None }, daemon).expect("it starts");
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        TcpStream::connect(addr).expect("it listens");
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "{addr} still accepts connections");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn options_never_show_the_token() {
        let options = AdminOptions { listen: local(), token: Some("s3cret-token".into()) };
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
