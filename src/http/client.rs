//! HTTP clients: built lazily, shared, and TLS only where it is needed.
//!
//! Building a client with the system's root certificates reads and parses
//! every file under `/etc/ssl/certs` (about 150 here), which costs more than
//! a whole `fetch -a` from a local server. So [`Clients`] holds two lazily
//! built clients: a plain one for `http://` URLs, which carries no root
//! certificates, and a TLS one for `https://`, built on first use. Redirects
//! are therefore followed here rather than by reqwest, so that an `http`
//! URL that redirects to `https` switches to the TLS client. Each worker
//! thread builds its own of each (see `PerThread`), on first use there.
//!
//! A [`ClientCache`] shares clients between the jobs of one process (the
//! batches of `run` and `serve`), so that 50 batches do not build 50 clients.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};

use super::connections::{Counters, CountingLayer, Opened};
use super::proxy::{ProxyFailure, ProxySettings, Routes, Tunnel, ask_tunnel};
use super::tls::TlsFiles;
use super::url::redact_credentials;

/// Timeouts of the HTTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Limit for establishing a connection.
    pub connect: Duration,
    /// Limit for any single read of the response.
    pub read: Duration,
    /// Limit for the whole request, body included.
    pub total: Duration,
}

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// The statuses whose `Location` is followed, as curl and browsers do: not
/// 300, 304 or 305, whose `Location` (if any) is no instruction to go there.
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

/// How a server is reached, beyond timeouts: set per server in the
/// configuration, or for `fetch` on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Transport {
    /// Extra certificate authorities and a client certificate.
    pub tls: TlsFiles,
    /// The proxy and the hosts that bypass it, if set.
    pub proxy: ProxySettings,
    /// Speak HTTP/2 from the first byte, without negotiating it: `h2c` for
    /// `http://` (curl's `--http2-prior-knowledge`).
    pub http2_prior_knowledge: bool,
}

/// What a client is built with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientOptions {
    /// Request timeouts.
    pub timeouts: Timeouts,
    /// Go direct whatever the proxy settings (the in-process server).
    pub no_proxy: bool,
    /// TLS files (and more) of the server.
    pub transport: Transport,
    /// Count the connections opened ([`Clients::opened`]). Counting costs
    /// reqwest a boxed connector, cloned for every request (about 7 % of
    /// flagsd's instructions per request), so it is off where nothing
    /// reports the count.
    pub count_connections: bool,
}

/// A client could not be built, or a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// reqwest failed to build a client (TLS set-up).
    #[error("cannot set up the HTTP client: {0}")]
    Client(reqwest::Error),
    /// A TLS file cannot be used.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// A proxy setting of the environment cannot be used.
    #[error("cannot set up the proxy: {0}")]
    ProxySetup(String),
    /// The request failed.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// The request through a proxy failed.
    #[error("{}", .0.error)]
    Proxy(Box<ProxyFailure>),
    /// A base URL that cannot be requested.
    #[error("cannot use the server URL {0}")]
    BaseUrl(String),
    /// A redirect that is not followed.
    #[error("{0}")]
    Redirect(String),
}

/// The plain and TLS clients of one set of options, each built on first use.
#[derive(Debug)]
pub struct Clients {
    options: ClientOptions,
    routes: OnceLock<Arc<Routes>>,
    opened: Arc<Counters>,
    plain: PerThread,
    tls: PerThread,
}

impl Clients {
    /// Clients for `options`; nothing is built yet.
    pub fn new(options: ClientOptions) -> Self {
        let opened = Arc::default();
        Self { options, routes: OnceLock::new(), opened, plain: PerThread::default(), tls: PerThread::default() }
    }

    /// Where requests go: read from the settings and the environment once.
    fn routes(&self) -> Result<&Arc<Routes>, RequestError> {
        if let Some(routes) = self.routes.get() {
            return Ok(routes);
        }
        let routes = if self.options.no_proxy {
            Routes::default()
        } else {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            Routes::resolve(&self.options.transport.proxy, env).map_err(RequestError::ProxySetup)?
        };
        Ok(self.routes.get_or_init(|| Arc::new(routes)))
    }

    fn builder(&self) -> Result<reqwest::ClientBuilder, RequestError> {
        let t = self.options.timeouts;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("flagsd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(t.connect)
            .read_timeout(t.read)
            .timeout(t.total)
            // Every request is bounded by the read and total timeouts, which
            // find a dead peer; TCP keepalive and TCP_USER_TIMEOUT would cost
            // five setsockopt calls per connection for nothing more.
            .tcp_keepalive(None)
            .tcp_keepalive_interval(None)
            .tcp_keepalive_retries(None)
            .tcp_user_timeout(None)
            .no_proxy();
        let routes = Arc::clone(self.routes()?);
        if routes.any() {
            builder = builder.proxy(reqwest::Proxy::custom(move |url| routes.proxy_for(url).map(|p| p.url.clone())));
        }
        let http2_only = self.options.transport.http2_prior_knowledge;
        if http2_only {
            builder = builder.http2_prior_knowledge();
        }
        if !self.options.count_connections {
            return Ok(builder);
        }
        Ok(builder.connector_layer(CountingLayer::new(Arc::clone(&self.opened), http2_only)))
    }

    /// The connections these clients opened so far (none counted unless
    /// [`ClientOptions::count_connections`]).
    pub fn opened(&self) -> Opened {
        self.opened.opened()
    }

    /// The client for a URL of `scheme`.
    fn for_scheme(&self, scheme: &str) -> Result<reqwest::Client, RequestError> {
        let (cell, tls) = if scheme == "https" { (&self.tls, true) } else { (&self.plain, false) };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let builder = self.builder()?;
        // No root certificates for plain HTTP: nothing to verify.
        let builder = if tls {
            self.options.transport.tls.apply(builder).map_err(RequestError::Tls)?
        } else {
            builder.tls_certs_only(Vec::new())
        };
        let client = builder.build().map_err(RequestError::Client)?;
        Ok(cell.insert(client))
    }

    /// Parses a job's base URL, once for all its requests, and checks that
    /// its client can be built (at start, so that a TLS problem of an
    /// https job ends it before any request).
    pub fn prepare_for(&self, url: &str) -> Result<reqwest::Url, RequestError> {
        let bad = |problem: &str| RequestError::BaseUrl(format!("{}: {problem}", redact_credentials(url)));
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(bad("not an http:// or https:// URL"));
        }
        self.for_scheme(parsed.scheme())?;
        Ok(parsed)
    }

    /// GETs `url` with `headers` (sent again to each redirect's target),
    /// following at most [`MAX_REDIRECTS`] redirects to http(s) URLs; returns
    /// the first response that is not a followed redirect.
    pub async fn get(&self, mut url: reqwest::Url, headers: &HeaderMap) -> Result<reqwest::Response, RequestError> {
        let mut redirects = 0;
        loop {
            let sent = self.for_scheme(url.scheme())?.get(url.clone()).headers(headers.clone()).send().await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => return Err(self.explain(error, &url).await),
            };
            let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok());
            let Some(location) = location.filter(|_| REDIRECTS.contains(&response.status().as_u16())) else {
                return Ok(response);
            };
            let next = url.join(location).map_err(|e| RequestError::Redirect(format!("bad redirect: {e}")))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(RequestError::Redirect(format!("redirect to a {}: URL", next.scheme())));
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(RequestError::Redirect(format!("more than {MAX_REDIRECTS} redirects")));
            }
            url = next;
        }
    }

    /// A failed request's error; through a proxy, with what the proxy did.
    async fn explain(&self, error: reqwest::Error, url: &reqwest::Url) -> RequestError {
        let Some(proxy) = self.routes.get().and_then(|routes| routes.proxy_for(url)) else {
            return error.into();
        };
        let target = format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0));
        let tunnel = if error.is_timeout() || !error.is_connect() {
            Tunnel::Open
        } else if url.scheme() == "https" {
            // The tunnel's own error carries no status: ask the proxy again.
            ask_tunnel(proxy, &target, self.options.timeouts.connect + self.options.timeouts.read).await
        } else {
            Tunnel::Unreachable
        };
        RequestError::Proxy(Box::new(ProxyFailure { proxy: proxy.shown.clone(), target, tunnel, error }))
    }
}

/// A client per thread. A connection's task runs on the thread that opened
/// it, so a worker that uses its own thread's client (and its own thread's
/// connections) never waits for another thread.
#[derive(Debug, Default)]
struct PerThread(Mutex<Vec<(ThreadId, reqwest::Client)>>);

impl PerThread {
    fn lock(&self) -> MutexGuard<'_, Vec<(ThreadId, reqwest::Client)>> {
        // Whole entries are pushed: a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This thread's client, if it has one.
    fn get(&self) -> Option<reqwest::Client> {
        let here = std::thread::current().id();
        self.lock().iter().find(|(thread, _)| *thread == here).map(|(_, client)| client.clone())
    }

    /// Keeps `client` as this thread's.
    fn insert(&self, client: reqwest::Client) -> reqwest::Client {
        self.lock().push((std::thread::current().id(), client.clone()));
        client
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Clients shared by the jobs of one process, by options.
#[derive(Debug, Default)]
pub struct ClientCache {
    by_options: RefCell<HashMap<ClientOptions, Arc<Clients>>>,
}

impl ClientCache {
    /// The shared clients for `options`.
    pub fn get(&self, options: ClientOptions) -> Arc<Clients> {
        let mut by_options = self.by_options.borrow_mut();
        Arc::clone(by_options.entry(options.clone()).or_insert_with(|| Arc::new(Clients::new(options))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts =
        Timeouts { connect: Duration::from_secs(5), read: Duration::from_secs(10), total: Duration::from_secs(30) };

    #[test]
    fn clients_are_shared_by_options() {
        let cache = ClientCache::default();
        let a = ClientOptions {
            timeouts: TIMEOUTS,
            no_proxy: false,
            transport: Transport::default(),
            count_connections: true,
        };
        let b = ClientOptions { no_proxy: true, ..a.clone() };
        assert!(Arc::ptr_eq(&cache.get(a.clone()), &cache.get(a.clone())));
        assert!(!Arc::ptr_eq(&cache.get(a), &cache.get(b)));
    }

    #[test]
    fn nothing_is_built_until_used() {
        let clients = Clients::new(ClientOptions {
            timeouts: TIMEOUTS,
            no_proxy: true,
            transport: Transport::default(),
            count_connections: true,
        });
        assert!(clients.plain.is_empty() && clients.tls.is_empty());
        clients.prepare_for("http://127.0.0.1/flags").unwrap();
        assert!(clients.plain.get().is_some() && clients.tls.is_empty());
        let elsewhere = std::thread::scope(|s| s.spawn(|| clients.plain.get().is_none()).join());
        assert!(elsewhere.unwrap(), "each thread builds its own");
    }
}
