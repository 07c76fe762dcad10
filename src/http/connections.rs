//! The connections a client actually opened, by protocol.
//!
//! The pool size says how many requests may be in flight, not how many
//! connections carry them: over HTTP/2 one connection carries them all.
//! [`ConnectionsLayer`] wraps reqwest's connector, so it sees every new
//! connection (direct, through a proxy, or a tunnel) once it is
//! established, and whether TLS negotiated `h2` for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::Connection;
use serde::Serialize;

/// Connections opened, by protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Opened {
    /// HTTP/1.1 connections.
    pub http1: u64,
    /// HTTP/2 connections (negotiated with ALPN, or by prior knowledge).
    pub http2: u64,
}

impl Opened {
    /// What was opened since `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self { http1: self.http1.saturating_sub(earlier.http1), http2: self.http2.saturating_sub(earlier.http2) }
    }

    /// `3 connections opened (HTTP/1.1)`, `1 connection opened (HTTP/2)`,
    /// or both protocols with their counts.
    pub fn describe(self) -> String {
        let total = self.http1 + self.http2;
        let noun = if total == 1 { "connection" } else { "connections" };
        let protocols = match (self.http1, self.http2) {
            (0, 0) => return "no connection opened".to_owned(),
            (_, 0) => "HTTP/1.1".to_owned(),
            (0, _) => "HTTP/2".to_owned(),
            (h1, h2) => format!("{h1} HTTP/1.1, {h2} HTTP/2"),
        };
        format!("{total} {noun} opened ({protocols})")
    }
}

/// The counters of one client, shared with its connector.
#[derive(Debug, Default)]
pub struct Counters {
    http1: AtomicU64,
    http2: AtomicU64,
}

impl Counters {
    /// The connections opened so far.
    pub fn opened(&self) -> Opened {
        Opened { http1: self.http1.load(Ordering::Relaxed), http2: self.http2.load(Ordering::Relaxed) }
    }

    fn record(&self, http2: bool) {
        let counter = if http2 { &self.http2 } else { &self.http1 };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A report that counts each connection here.
    pub fn hook(self: &Arc<Self>) -> OnConnect {
        let counters = Arc::clone(self);
        Arc::new(move |http2| counters.record(http2))
    }
}

/// Told of each connection a client establishes, and whether it speaks
/// HTTP/2.
pub type OnConnect = Arc<dyn Fn(bool) + Send + Sync>;

/// A connector layer that reports every connection it establishes: to
/// count them ([`Counters::hook`]), or to learn what a server speaks (see
/// `protocol`).
#[derive(Clone)]
pub struct ConnectionsLayer {
    report: OnConnect,
    /// Every connection speaks HTTP/2 (prior knowledge), ALPN or not.
    http2_only: bool,
}

impl ConnectionsLayer {
    /// Reports to `report`; `http2_only` for a client with HTTP/2 prior
    /// knowledge.
    pub fn new(report: OnConnect, http2_only: bool) -> Self {
        Self { report, http2_only }
    }
}

impl std::fmt::Debug for ConnectionsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionsLayer").field("http2_only", &self.http2_only).finish_non_exhaustive()
    }
}

impl<S> tower_layer::Layer<S> for ConnectionsLayer {
    type Service = Reporting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Reporting { inner, layer: self.clone() }
    }
}

/// The connector of [`ConnectionsLayer`].
#[derive(Debug, Clone)]
pub struct Reporting<S> {
    inner: S,
    layer: ConnectionsLayer,
}

impl<S, R> tower_service::Service<R> for Reporting<S>
where
    S: tower_service::Service<R>,
    S::Response: Connection,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let connecting = self.inner.call(request);
        let layer = self.layer.clone();
        Box::pin(async move {
            let connection = connecting.await?;
            (layer.report)(layer.http2_only || connection.connected().is_negotiated_h2());
            Ok(connection)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_are_described_by_protocol() {
        assert_eq!(Opened::default().describe(), "no connection opened");
        assert_eq!(Opened { http1: 0, http2: 1 }.describe(), "1 connection opened (HTTP/2)");
        assert_eq!(Opened { http1: 30, http2: 0 }.describe(), "30 connections opened (HTTP/1.1)");
        assert_eq!(Opened { http1: 2, http2: 1 }.describe(), "3 connections opened (2 HTTP/1.1, 1 HTTP/2)");
        let later = Opened { http1: 5, http2: 2 };
        assert_eq!(later.since(Opened { http1: 3, http2: 2 }), Opened { http1: 2, http2: 0 });
    }

    #[test]
    fn counters_count_by_protocol() {
        let counters = Counters::default();
        counters.record(false);
        counters.record(true);
        counters.record(false);
        assert_eq!(counters.opened(), Opened { http1: 2, http2: 1 });
    }
}
