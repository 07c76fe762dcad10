//! The admin HTTP endpoint of `flagsd serve`: health, readiness, metrics,
//! batches, runs, ways to start and cancel a run now, and a reload.
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
//! The parts: [`routes`] (what each path asks and answers), [`exchange`]
//! (the state handlers share, and the way to the daemon and back),
//! [`console`] (the operator's web page), [`session`] (its sign-in),
//! [`guard`] (what keeps other sites out), [`auth`] (the bearer token and signed requests), [`nonce`] (the nonces signed requests
//! spend), [`requests`] (the typed messages to the daemon), and what keeps
//! the endpoint answering under a flood: [`connections`] (caps that close
//! idle connections to make room), [`throttle`] (rejections logged a line a
//! second of each kind at most) and [`http_errors`] (actix-http's own error
//! lines counted instead of logged).
//!
//! # Limits
//!
//! A request head must arrive within [`HEAD_TIMEOUT`] of the connection
//! (else `408`, and the connection is closed); an idle connection is closed
//! [`KEEP_ALIVE`] after its last answer. At most [`HELD`] connections are
//! held, [`PER_PEER`] from one address; beyond, idle ones are closed, oldest
//! first ([`connections`]). Held connections cost two descriptors each (the
//! socket and the duplicate that closes it); with up to [`ACCEPTED`]
//! connections accepted and not yet held or closed, the endpoint never
//! holds more than the descriptors `sys::limits` keeps aside for it. More
//! connections wait in a listen backlog of [`BACKLOG`], which costs no
//! descriptor.

pub mod auth;
pub mod connections;
pub mod console;
pub mod exchange;
pub mod guard;
pub mod http_errors;
pub mod nonce;
pub mod requests;
pub mod routes;
pub mod session;
pub mod throttle;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{HttpServer, web};
use tokio::sync::mpsc;
use tracing::Dispatch;

pub use requests::{AdminRequest, Cancel, Reload, Trigger, Unavailable};

use crate::sys::limits::ADMIN_CONNECTIONS;
use crate::sys::server_thread::{self, ServerError};

/// How long a handler waits for the daemon's answer before giving `503`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has, from connecting, to send a whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an idle connection stays open after an answer.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How long a closing connection may take to flush what is left.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The most connections held at once.
pub const HELD: usize = 12;

/// The most connections held at once from one IP address.
pub const PER_PEER: usize = 8;

/// The most connections accepted at once (held, and on their way in or
/// out); more wait in the listen backlog. With two descriptors for each held
/// one, this makes [`ADMIN_CONNECTIONS`] descriptors at most.
pub const ACCEPTED: usize = ADMIN_CONNECTIONS as usize - HELD;

/// Connections the kernel queues until the endpoint accepts them. They cost
/// flagsd no descriptor; a queue too short for a reconnecting flood drops
/// a probe's connection attempt, which the prober then repeats only a
/// second later.
pub const BACKLOG: u32 = 1024;

const _: () = assert!(PER_PEER < HELD && HELD < ACCEPTED && ACCEPTED + HELD <= ADMIN_CONNECTIONS as usize);

/// How often idle connections past their deadline are closed, used nonces
/// forgotten, and the rejections not logged one by one summed up.
const TICK: Duration = Duration::from_millis(250);

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
    /// Host names it answers for besides `localhost` and IP addresses.
    pub hosts: Vec<String>,
    /// The configuration file the daemon serves, as its messages name it.
    pub config: String,
}

impl fmt::Debug for AdminOptions {
    /// Shows whether a token is set, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("hosts", &self.hosts)
            .field("config", &self.config)
            .finish()
    }
}

/// Binds the endpoint with its limits, on the thread that will run it, and
/// starts the ticker that closes overdue connections, forgets expired
/// nonces and logs the summaries of refusals.
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
    let throttle = Arc::new(throttle::Throttle::default());
    let limits = connections::Limits {
        total: HELD,
        per_peer: PER_PEER,
        // actix-web answers `408` at the head timeout; this closes what is
        // left a second later, and trickled second requests.
        first_request: HEAD_TIMEOUT + Duration::from_secs(1),
        between_requests: KEEP_ALIVE + HEAD_TIMEOUT,
    };
    let held = connections::Connections::new(limits, Arc::clone(&throttle));
    let state = web::Data::new(exchange::State {
        daemon,
        credentials,
        timeout: ANSWER_TIMEOUT,
        throttle: Arc::clone(&throttle),
        sessions: session::Sessions::default(),
        hosts: options.hosts,
        config: options.config,
        streams: Arc::new(tokio::sync::Semaphore::new(console::STREAMS)),
    });
    // The subscriber of this thread now is the global one.
    let global = tracing::dispatcher::get_default(Dispatch::clone);
    let app_state = state.clone();
    let worker_throttle = Arc::clone(&throttle);
    let connecting = Arc::clone(&held);
    let server = HttpServer::new(move || {
        // Called on each worker thread, which serves the connections.
        http_errors::install_on_this_thread(&global, &worker_throttle);
        routes::app(app_state.clone())
    })
    .workers(1)
    .max_connections(ACCEPTED)
    .backlog(BACKLOG)
    .client_request_timeout(HEAD_TIMEOUT)
    .client_disconnect_timeout(DISCONNECT_TIMEOUT)
    .keep_alive(KEEP_ALIVE)
    .on_connect(move |io, extensions| connecting.on_connect(io, extensions))
    .shutdown_timeout(1)
    .bind(bind)
    .map_err(|source| ServerError::Bind { what: WHAT, addr: bind, source })?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(TICK);
        loop {
            tick.tick().await;
            let now = Instant::now();
            held.reap(now);
            if let Some(credentials) = &state.credentials {
                credentials.nonces().prune(now);
            }
            state.sessions.forget_expired(now);
            throttle.log_due(now);
        }
    });
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

    fn options(listen: SocketAddr, token: Option<String>) -> AdminOptions {
        AdminOptions { listen, token, hosts: Vec::new(), config: "flagsd.toml".into() }
    }

    #[test]
    fn binding_a_taken_address_fails_naming_it() {
        let taken = TcpListener::bind(local()).expect("bind a port");
        let addr = taken.local_addr().expect("its address");
        let (daemon, _requests) = mpsc::channel(1);
        match AdminServer::spawn(options(addr, None), daemon) {
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
        let server = AdminServer::spawn(options(local(), None), daemon).expect("it starts");
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
        let options = options(local(), Some("s3cret-token".into()));
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
