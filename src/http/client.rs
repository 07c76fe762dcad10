//! HTTP clients: built lazily, shared where that is safe, TLS only where it
//! is needed.
//!
//! Loading the system's root certificates reads and parses every file
//! under `/etc/ssl/certs` (about 150 here), which costs more than a whole
//! `fetch -a` from a local server. So [`Clients`] keeps plain clients for
//! `http://` URLs, which carry no root certificates, and TLS clients for
//! `https://`, whose TLS set-up is built once, on first use, and shared.
//! Redirects are therefore followed here rather than by reqwest, so that an
//! `http` URL that redirects to `https` switches to a TLS client.
//!
//! Each thread has a plain client, and each worker (its lane, on its
//! thread) a TLS client of its own, so that its TLS connection is its own:
//! see `PerLane`. Over HTTP/2 the lanes share one client per thread, whose
//! one connection carries them all; a TLS server's first request finds out
//! which it speaks before the others go (see [`Protocol`]).
//!
//! A [`ClientCache`] shares clients between the jobs of one process (the
//! batches of `run` and `serve`), so that 50 batches do not load the roots
//! 50 times.
//!
//! A redirect is checked against the rule of [`super::redirect`] before it
//! is followed: a target whose address is more internal than the server
//! that sent it is refused, and a name on another host is asked through a
//! guarded client, one per thread and class, whose resolver keeps only the
//! addresses the rule allows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};

use super::causes::find_source;
use super::connections::{ConnectionsLayer, Counters, OnConnect, Opened};
use super::protocol::Protocol;
use super::proxy::{ProxyFailure, ProxySettings, Routes, Tunnel, ask_tunnel};
use super::redirect::{AddressClass, GuardedResolver, InternalAddress, InternalRedirect, ip_host};
use super::tls::{TlsError, TlsFiles};
use super::url::{CredentialsFileError, parse_typed, read_credentials_file, redact_credentials, set_credentials};

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
    /// Follow redirects to more internal addresses than the server that
    /// sent them (see [`super::redirect`]).
    pub allow_internal_redirects: bool,
    /// A file holding the server's `user:password`, set on its base URL.
    pub credentials_file: Option<PathBuf>,
}

impl Transport {
    /// The secret files among these settings, each with its key in a
    /// `[servers]` entry.
    pub fn secret_files(&self) -> Vec<(&'static str, &Path)> {
        let files = [
            ("client_key", &self.tls.client_key),
            ("credentials_file", &self.credentials_file),
            ("proxy_credentials_file", &self.proxy.credentials_file),
        ];
        files.into_iter().filter_map(|(key, path)| Some((key, path.as_deref()?))).collect()
    }
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
    Tls(#[from] TlsError),
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
    /// A redirect to a more internal address than the server that sent it.
    #[error(transparent)]
    InternalRedirect(#[from] InternalRedirect),
    /// The server's credentials file cannot be used.
    #[error("cannot read the server's credentials: {0}")]
    Credentials(#[from] CredentialsFileError),
}

/// The plain and TLS clients of one set of options, each built on first use.
#[derive(Debug)]
pub struct Clients {
    options: ClientOptions,
    routes: OnceLock<Arc<Routes>>,
    opened: Arc<Counters>,
    tls_config: OnceLock<rustls::ClientConfig>,
    /// What each TLS server (host and port) speaks, learnt by a probe; a
    /// job talks to one or a few, so they are looked up in order.
    protocols: Mutex<Vec<(String, u16, Arc<Protocol>)>>,
    plain: PerLane,
    tls: PerLane,
    /// The clients of redirects to names on other hosts, whose resolver
    /// keeps only addresses of a class: by [`guarded_lane`].
    guarded: PerLane,
}

/// The lane of the guarded client for `scheme` and the class `limit`.
fn guarded_lane(tls: bool, limit: AddressClass) -> usize {
    usize::from(tls) * 4 + limit as usize
}

impl Clients {
    /// Clients for `options`; nothing is built yet.
    pub fn new(options: ClientOptions) -> Self {
        let opened = Arc::default();
        let (plain, tls, guarded) = (PerLane::default(), PerLane::default(), PerLane::default());
        let (routes, tls_config, protocols) = (OnceLock::new(), OnceLock::new(), Mutex::default());
        Self { options, routes, opened, tls_config, protocols, plain, tls, guarded }
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

    fn builder(&self, http2_only: bool) -> Result<reqwest::ClientBuilder, RequestError> {
        let t = self.options.timeouts;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("flagsd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .retry(super::refused::policy())
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
        if http2_only {
            builder = builder.http2_prior_knowledge();
        }
        if !self.options.count_connections {
            return Ok(builder);
        }
        Ok(builder.connector_layer(ConnectionsLayer::new(self.opened.hook(), http2_only)))
    }

    /// A client for `https://` (or plain HTTP), speaking HTTP/2 alone if
    /// `http2_only`, whose new connections are also reported to `learn`.
    fn build(&self, tls: bool, http2_only: bool, learn: Option<OnConnect>) -> Result<reqwest::Client, RequestError> {
        let builder = self.builder(http2_only)?;
        self.finish(builder, tls, http2_only, learn)
    }

    /// [`build`](Self::build)'s end, for a builder set up already.
    fn finish(
        &self,
        mut builder: reqwest::ClientBuilder,
        tls: bool,
        http2_only: bool,
        learn: Option<OnConnect>,
    ) -> Result<reqwest::Client, RequestError> {
        if let Some(learn) = learn {
            builder = builder.connector_layer(ConnectionsLayer::new(learn, http2_only));
        }
        // No root certificates for plain HTTP: nothing to verify.
        let builder = if tls {
            builder.use_preconfigured_tls(self.tls_config(http2_only)?)
        } else {
            builder.tls_certs_only(Vec::new())
        };
        builder.build().map_err(RequestError::Client)
    }

    /// The connections these clients opened so far (none counted unless
    /// [`ClientOptions::count_connections`]).
    pub fn opened(&self) -> Opened {
        self.opened.opened()
    }

    /// The TLS set-up of a TLS client here, offering HTTP/2 and HTTP/1.1
    /// or HTTP/2 alone (ALPN); what they share is built on first use.
    fn tls_config(&self, http2_only: bool) -> Result<rustls::ClientConfig, RequestError> {
        let shared = match self.tls_config.get() {
            Some(config) => config,
            None => {
                let config = self.options.transport.tls.client_config().map_err(RequestError::Tls)?;
                self.tls_config.get_or_init(|| config)
            }
        };
        let mut config = shared.clone();
        config.alpn_protocols =
            if http2_only { vec![b"h2".to_vec()] } else { vec![b"h2".to_vec(), b"http/1.1".to_vec()] };
        Ok(config)
    }

    /// What the TLS server of `url` speaks (HTTP/2 from the start with
    /// prior knowledge).
    fn protocol_of(&self, url: &reqwest::Url) -> Arc<Protocol> {
        let (host, port) = (url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0));
        // Whole entries are pushed: a poisoned lock is still consistent.
        let mut protocols = self.protocols.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, protocol)) = protocols.iter().find(|(h, p, _)| h == host && *p == port) {
            return Arc::clone(protocol);
        }
        let prior = self.options.transport.http2_prior_knowledge;
        let protocol = Arc::new(if prior { Protocol::http2() } else { Protocol::unknown() });
        protocols.push((host.to_owned(), port, Arc::clone(&protocol)));
        protocol
    }

    /// The client of `lane` for a URL of `scheme`: over TLS, the lane's
    /// own; for plain HTTP, the one this thread's lanes share (`SHARED`;
    /// see [`PerLane`] for why). Over TLS to an HTTP/2 server, pass
    /// `SHARED` as the lane.
    fn for_scheme(&self, scheme: &str, lane: usize) -> Result<reqwest::Client, RequestError> {
        let tls = scheme == "https";
        let (cell, lane) = if tls { (&self.tls, lane) } else { (&self.plain, SHARED) };
        if let Some(client) = cell.get(lane) {
            return Ok(client);
        }
        // A thread's shared TLS client serves a server known to speak
        // HTTP/2: it speaks it from the start, so that its requests wait for
        // its one connection rather than each opening its own, at first and
        // whenever the server closes it (nginx does every 1,000 requests).
        // So the probe's client, which offered HTTP/1.1 too, is not the one
        // shared.
        let http2_only = self.options.transport.http2_prior_knowledge || (tls && lane == SHARED);
        Ok(cell.insert(lane, self.build(tls, http2_only, None)?))
    }

    /// This thread's client for redirects to a name of another host over
    /// `scheme`, which resolves names to addresses no more internal than
    /// `limit` only.
    fn guarded(&self, scheme: &str, limit: AddressClass) -> Result<reqwest::Client, RequestError> {
        let tls = scheme == "https";
        let lane = guarded_lane(tls, limit);
        if let Some(client) = self.guarded.get(lane) {
            return Ok(client);
        }
        let builder = self.builder(false)?.dns_resolver(Arc::new(GuardedResolver::new(limit)));
        Ok(self.guarded.insert(lane, self.finish(builder, tls, false, None)?))
    }

    /// Parses a job's base URL, once for all its requests, and checks that
    /// its client can be built (at start, so that a TLS problem of an
    /// https job ends it before any request).
    pub fn prepare_for(&self, url: &str) -> Result<reqwest::Url, RequestError> {
        let bad = |problem: &str| RequestError::BaseUrl(format!("{}: {problem}", redact_credentials(url)));
        let mut parsed = parse_typed(url).map_err(|e| bad(&e.reason))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(bad("not an http:// or https:// URL"));
        }
        if let Some(path) = &self.options.transport.credentials_file {
            let credentials = read_credentials_file(path)?;
            set_credentials(&mut parsed, &credentials).map_err(|e| bad(&e.to_string()))?;
        }
        // Lane 0: the first worker's, on this thread.
        self.for_scheme(parsed.scheme(), 0)?;
        Ok(parsed)
    }

    /// GETs `url` with `headers` (sent again to each redirect's target)
    /// through the client of `lane` (the asking worker's: see [`PerLane`]),
    /// following at most [`MAX_REDIRECTS`] redirects to http(s) URLs that
    /// the rule of [`super::redirect`] allows; returns the first response
    /// that is not a followed redirect.
    pub async fn get(
        &self,
        mut url: reqwest::Url,
        headers: &HeaderMap,
        lane: usize,
    ) -> Result<reqwest::Response, RequestError> {
        // The job's own host, kept when the first redirect comes (most
        // requests are never redirected: nothing is copied for them).
        let mut origin = None;
        let (mut redirects, mut guard) = (0, None);
        loop {
            if let Some(limit) = guard {
                let sent = self.guarded(url.scheme(), limit)?.get(url.clone()).headers(headers.clone()).send().await;
                let response = match sent {
                    Ok(response) => response,
                    Err(error) => {
                        return Err(match find_source::<InternalAddress>(&error) {
                            Some(refused) => InternalRedirect::new(&url, refused.address, limit).into(),
                            None => self.explain(error, &url).await,
                        });
                    }
                };
                match self.follow(&response, &url, &mut origin, &mut redirects)? {
                    None => return Ok(response),
                    Some((next, limit)) => (url, guard) = (next, limit),
                }
                continue;
            }
            let protocol = (url.scheme() == "https").then(|| self.protocol_of(&url));
            let probe = match &protocol {
                Some(protocol) => protocol.known_or_probe(self.options.timeouts.connect).await,
                None => None,
            };
            let client = match (&protocol, &probe) {
                // A client of its own, which says what the server speaks as
                // soon as its connection is made: the others go then, not
                // when the answer comes.
                (Some(protocol), Some(_)) => {
                    let protocol = Arc::clone(protocol);
                    self.build(true, false, Some(Arc::new(move |http2| protocol.learnt(http2))))?
                }
                (Some(protocol), None) if protocol.is_http2() => self.for_scheme(url.scheme(), SHARED)?,
                _ => self.for_scheme(url.scheme(), lane)?,
            };
            let sent = client.get(url.clone()).headers(headers.clone()).send().await;
            if let Some(probe) = probe {
                probe.answered(sent.as_ref().is_ok_and(|r| r.version() == reqwest::Version::HTTP_2));
                if !protocol.as_ref().is_some_and(|p| p.is_http2()) {
                    // Over HTTP/1.1 the probe's connection is this lane's.
                    self.tls.insert(lane, client);
                }
            }
            let response = match sent {
                Ok(response) => response,
                Err(error) => return Err(self.explain(error, &url).await),
            };
            match self.follow(&response, &url, &mut origin, &mut redirects)? {
                None => return Ok(response),
                Some((next, limit)) => (url, guard) = (next, limit),
            }
        }
    }

    /// Whether `response` to a request for `url`, after `redirects`
    /// redirects, is a redirect to follow: `None` for an answer, else where
    /// it leads and the class its name must resolve within, if it must.
    /// `origin` is the host of the job's URL, set here at the first
    /// redirect. The response is borrowed: most are answers, returned as
    /// they are.
    fn follow(
        &self,
        response: &reqwest::Response,
        url: &reqwest::Url,
        origin: &mut Option<Option<String>>,
        redirects: &mut usize,
    ) -> Result<Option<(reqwest::Url, Option<AddressClass>)>, RequestError> {
        let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok());
        let Some(location) = location.filter(|_| REDIRECTS.contains(&response.status().as_u16())) else {
            return Ok(None);
        };
        let next = url.join(location).map_err(|e| RequestError::Redirect(format!("bad redirect: {e}")))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(RequestError::Redirect(format!("redirect to a {}: URL", next.scheme())));
        }
        let origin = origin.get_or_insert_with(|| url.host_str().map(str::to_owned)).as_deref();
        *redirects += 1;
        if *redirects > MAX_REDIRECTS {
            return Err(RequestError::Redirect(format!("more than {MAX_REDIRECTS} redirects")));
        }
        if self.options.transport.allow_internal_redirects {
            return Ok(Some((next, None)));
        }
        let proxied = |url: &reqwest::Url| self.routes.get().is_some_and(|routes| routes.proxy_for(url).is_some());
        let peer = if proxied(url) { None } else { response.remote_addr().map(|addr| addr.ip()) };
        let hop = Hop { sender: sender_class(peer, url), next: &next, origin, next_proxied: proxied(&next) };
        let limit = hop.guard()?;
        Ok(Some((next, limit)))
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

/// The class of the server that answered `url` from the address `peer`
/// (`None` through a proxy, or when not known): that of its address, else
/// that of the URL's host when it is an IP address, else public.
fn sender_class(peer: Option<IpAddr>, url: &reqwest::Url) -> AddressClass {
    peer.map(AddressClass::of).or_else(|| AddressClass::of_literal(url)).unwrap_or(AddressClass::Public)
}

/// One redirect, as the rule of [`super::redirect`] judges it.
struct Hop<'a> {
    /// The class of the server that sent it.
    sender: AddressClass,
    /// Where it leads.
    next: &'a reqwest::Url,
    /// The host of the job's base URL (its own name is the operator's).
    origin: Option<&'a str>,
    /// Whether `next` is asked through a proxy, which resolves its names.
    next_proxied: bool,
}

impl Hop<'_> {
    /// Refused, or followed: through a guarded client of the sender's class
    /// (`Some`) for a name of another host than the job's, else as usual.
    fn guard(&self) -> Result<Option<AddressClass>, InternalRedirect> {
        if let Some(ip) = ip_host(self.next) {
            return match AddressClass::of(ip) > self.sender {
                true => Err(InternalRedirect::new(self.next, ip, self.sender)),
                false => Ok(None),
            };
        }
        let unguarded = self.sender == AddressClass::Local || self.next_proxied || self.next.host_str() == self.origin;
        Ok((!unguarded).then_some(self.sender))
    }
}

/// The lane of the client that a thread's lanes share.
const SHARED: usize = usize::MAX;

/// Clients by worker (its lane) and thread.
///
/// A client's pool hands a returned connection to whichever request of the
/// client waits longest, and a request that finds no idle connection starts
/// a new one at once. Over TLS, with one client for many workers, a
/// connection coming back from one worker went to another whose TLS
/// handshake was still running, and that handshake's connection then joined
/// the pool as well: 100 workers opened up to 152 TLS connections. So each
/// worker has a TLS client of its own, whose connection comes back to that
/// worker only (`docs/benchmarks.md` has the figures).
///
/// Plain HTTP keeps one client per thread (`SHARED`): a TCP connection is set
/// up in one round trip, before any answer can come back, so connections
/// are not taken from one another there (a test checks it), and a client
/// per worker would cost `fetch -m 1000` 6 MiB and 4 % more time. HTTP/2
/// shares one client per thread too: one connection carries every lane
/// (see [`Protocol`] for how a TLS server's HTTP/2 is learnt).
///
/// The thread is part of the key because a connection's task runs on the
/// thread that opened it: a worker that uses connections opened on its own
/// thread never waits for another thread (jobs of different pool sizes may
/// place a lane on different threads).
#[derive(Debug, Default)]
struct PerLane(Mutex<HashMap<(ThreadId, usize), reqwest::Client>>);

impl PerLane {
    fn lock(&self) -> MutexGuard<'_, HashMap<(ThreadId, usize), reqwest::Client>> {
        // Whole entries are inserted: a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client of `lane` on this thread, if it has one.
    fn get(&self, lane: usize) -> Option<reqwest::Client> {
        self.lock().get(&(std::thread::current().id(), lane)).cloned()
    }

    /// Keeps `client` as the one of `lane` on this thread.
    fn insert(&self, lane: usize, client: reqwest::Client) -> reqwest::Client {
        self.lock().insert((std::thread::current().id(), lane), client.clone());
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

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).expect("a URL")
    }

    #[test]
    fn each_hop_is_judged_by_the_class_of_its_sender() {
        use AddressClass::*;
        let judge = |sender, next: &str, origin: Option<&str>, next_proxied| {
            let next = url(next);
            Hop { sender, next: &next, origin, next_proxied }.guard().map_err(|refused| refused.class)
        };
        let origin = Some("flags.example");
        // Addresses written in the URL: judged at once.
        assert_eq!(judge(Public, "http://127.0.0.1:9090/metrics", origin, false), Err(Local));
        assert_eq!(judge(Public, "http://[::ffff:a9fe:a9fe]/", origin, true), Err(Local), "through a proxy too");
        assert_eq!(judge(Public, "http://10.0.0.1/", origin, false), Err(Private));
        assert_eq!(judge(Private, "http://10.0.0.1/", origin, false), Ok(None));
        assert_eq!(judge(Private, "http://169.254.169.254/", origin, false), Err(Local));
        assert_eq!(judge(Local, "http://127.0.0.2:1/", origin, false), Ok(None));
        assert_eq!(judge(Public, "http://93.184.216.34/", origin, false), Ok(None));
        // Names: resolved under the sender's class, unless nothing is above
        // it, a proxy resolves them, or it is the job's own server.
        assert_eq!(judge(Public, "http://cdn.example/x", origin, false), Ok(Some(Public)));
        assert_eq!(judge(Private, "http://cdn.example/x", origin, false), Ok(Some(Private)));
        assert_eq!(judge(Local, "http://cdn.example/x", origin, false), Ok(None));
        assert_eq!(judge(Public, "http://cdn.example/x", origin, true), Ok(None));
        assert_eq!(judge(Public, "https://flags.example:8443/x", origin, false), Ok(None));
        assert_eq!(sender_class(None, &url("http://10.0.0.1/")), Private);
        assert_eq!(sender_class(None, &url("http://flags.example/")), Public);
        assert_eq!(sender_class(Some("127.0.0.1".parse().expect("an IP")), &url("http://flags.example/")), Local);
    }

    /// A server on `ip` that answers every request with `answer`; its port.
    async fn answering(ip: [u8; 4], answer: String) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), 0)).await.expect("a listener");
        let port = listener.local_addr().expect("an address").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0];
                        if stream.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        port
    }

    fn clients() -> Clients {
        let transport = Transport::default();
        Clients::new(ClientOptions { timeouts: TIMEOUTS, no_proxy: true, transport, count_connections: true })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_redirect_within_the_senders_class_is_followed() {
        let body = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsecond!".to_owned();
        let second = answering([127, 0, 0, 2], body).await;
        let redirect =
            format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:{second}/x\r\nContent-Length: 0\r\n\r\n");
        let first = answering([127, 0, 0, 1], redirect).await;
        let clients = clients();
        let base = clients.prepare_for(&format!("http://127.0.0.1:{first}/flags")).expect("a base URL");
        let answer = clients.get(base, &HeaderMap::new(), 0).await.expect("followed: loopback to loopback");
        assert_eq!(answer.remote_addr().map(|a| a.ip().to_string()).as_deref(), Some("127.0.0.2"));
        assert_eq!(answer.text().await.expect("a body"), "second!");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_guarded_client_resolves_names_within_its_class_only() {
        let body = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned();
        let port = answering([127, 0, 0, 1], body).await;
        let clients = clients();
        let target = url(&format!("http://localhost:{port}/secret"));
        for limit in [AddressClass::Public, AddressClass::Private] {
            let error = clients.guarded("http", limit).expect("a client").get(target.clone()).send().await;
            let error = error.expect_err("localhost is local");
            let refused = find_source::<InternalAddress>(&error).expect("the guard's refusal");
            assert_eq!(
                (refused.host.as_str(), refused.class, refused.limit),
                ("localhost", AddressClass::Local, limit)
            );
        }
        let answer = clients.guarded("http", AddressClass::Local).expect("a client").get(target).send().await;
        assert_eq!(answer.expect("allowed").text().await.expect("a body"), "ok");
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
        assert!(clients.plain.get(SHARED).is_some() && clients.plain.get(0).is_none() && clients.tls.is_empty());
        let elsewhere = std::thread::scope(|s| s.spawn(|| clients.plain.get(SHARED).is_none()).join());
        assert!(elsewhere.unwrap(), "each thread builds its own");
    }
}
