//! One code fetched and saved: the engine's [`Fetch`], composed of the HTTP
//! side's answer and the store's saving.
//!
//! Neither side knows the other: [`FlagSource`] answers requests and knows
//! nothing of files, [`Saver`] names and writes files and knows nothing of
//! HTTP. [`FlagFetcher`] is the order of one download: the saver says
//! whether an earlier file can be asked for conditionally, the source
//! answers, and a body streams from the one into the other, chunk by chunk,
//! with the country name asked for only if the saver names by country.

use std::sync::Arc;

use crate::engine::{Fetch, OutcomeFuture};
use crate::http::answer::{Conditional, FlagAnswer, FlagBody, FlagHead, FlagSource};
use crate::model::codes::CountryCode;
use crate::model::outcome::{DownloadError, Outcome, SavedFile};
use crate::store::save::{Earlier, Incoming, Saver};

/// Downloads flags from a [`FlagSource`] into a [`Saver`].
pub struct FlagFetcher {
    source: FlagSource,
    saver: Saver,
}

impl FlagFetcher {
    /// A fetcher asking `source` and saving through `saver`.
    pub fn new(source: FlagSource, saver: Saver) -> Self {
        Self { source, saver }
    }

    async fn download(&self, code: CountryCode, lane: usize) -> Result<Outcome, DownloadError> {
        let earlier = self.saver.earlier(code, |url| self.source.is_record_url(code, url)).await;
        let conditional =
            earlier.map(|Earlier { path, etag, last_modified }| Conditional { etag, last_modified, earlier: path });
        let body = match self.source.flag(code, conditional, lane).await? {
            FlagAnswer::NotModified(path) => return Ok(Outcome::Unchanged(path)),
            FlagAnswer::NotFound => return Ok(Outcome::NotFound),
            FlagAnswer::Body(body) => body,
        };
        let (mut incoming, FlagHead { status, etag, last_modified }) = self.receive(code, body).await?;
        if self.saver.keeps_timestamps() {
            incoming.dated(last_modified.as_deref().and_then(|date| httpdate::parse_http_date(date).ok()));
        }
        let saved = self.saver.save(code, incoming, || self.source.country_name(code, lane)).await?;
        let origin = Some(self.source.record_url(code));
        Ok(Outcome::Downloaded(SavedFile { status, etag, last_modified, origin, ..saved }))
    }

    /// Streams `body` into a new temporary file for `code`. A function of
    /// its own so that the body and the writer, which the loop borrows, are
    /// not kept in the download's future through the save that follows (it
    /// may await a metadata request): that future is allocated for every
    /// code, at the size of its largest state.
    async fn receive(&self, code: CountryCode, mut body: FlagBody) -> Result<(Incoming, FlagHead), DownloadError> {
        let mut incoming = self.saver.incoming(code)?;
        while let Some(chunk) = body.chunk().await? {
            incoming.push(chunk)?;
        }
        Ok((incoming, body.head))
    }
}

impl Fetch for FlagFetcher {
    fn display_url(&self, code: CountryCode) -> String {
        self.source.display_url(code)
    }

    fn fetch(self: Arc<Self>, code: CountryCode, lane: usize) -> OutcomeFuture {
        Box::pin(async move {
            // The connection this worker's last response used goes back to
            // the pool from a task of its own: let it run first, or hyper
            // opens a new connection while that one is on its way back.
            tokio::task::yield_now().await;
            match self.download(code, lane).await {
                Ok(outcome) => outcome,
                Err(error) => Outcome::Failed(error),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::future::ready;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::http::client::{ClientCache, ClientOptions, Timeouts, Transport};
    use crate::model::codes::parse_code;
    use crate::store::claims::{Claim, ClaimError, ClaimFuture, NameClaims};
    use crate::store::output::OutputDir;
    use crate::store::save::Names;
    use crate::store::state::{FileRecord, SharedKnownFiles};
    use crate::testserver::options::TestServerOptions;
    use crate::testserver::server::TestServer;

    const TIMEOUTS: Timeouts =
        Timeouts { connect: Duration::from_secs(5), read: Duration::from_secs(10), total: Duration::from_secs(30) };

    /// A claims backend that never answers.
    struct Unreachable;

    impl NameClaims for Unreachable {
        fn claim<'a>(&'a self, _: CountryCode, _: &'a str) -> ClaimFuture<'a, Result<Claim, ClaimError>> {
            Box::pin(ready(Err(ClaimError::new("the test bucket", "no answer"))))
        }

        fn release<'a>(&'a self, _: CountryCode, _: &'a str) -> ClaimFuture<'a, Result<(), ClaimError>> {
            Box::pin(ready(Ok(())))
        }
    }

    /// A fetcher from `server` into `dir`.
    fn fetcher(server: &TestServer, dir: &Path, names: Names, known: Option<SharedKnownFiles>) -> Arc<FlagFetcher> {
        let transport = Transport::default();
        let options = ClientOptions { timeouts: TIMEOUTS, no_proxy: true, transport, count_connections: false };
        let clients = ClientCache::default().get(options);
        let base = clients.prepare_for(&server.url()).unwrap();
        let output = Arc::new(OutputDir::prepare(dir).unwrap());
        Arc::new(FlagFetcher::new(FlagSource::new(clients, base), Saver::new(output, names, known, u64::MAX)))
    }

    fn server() -> TestServer {
        TestServer::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), TestServerOptions::default()).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_saved_flag_is_asked_for_conditionally_next_time() {
        let (server, dir) = (server(), tempfile::tempdir().unwrap());
        let known = SharedKnownFiles::default();
        let fetcher = fetcher(&server, dir.path(), Names::ByCode, Some(Arc::clone(&known)));
        let br = parse_code("BR").unwrap();
        let Outcome::Downloaded(saved) = Arc::clone(&fetcher).fetch(br, 0).await else { panic!("not downloaded") };
        assert_eq!(saved.path, dir.path().join("BR.gif"));
        assert_eq!(saved.origin, Some(format!("{}/br/br.gif", server.url())));
        assert!(saved.etag.is_some() && saved.sha256.is_some(), "{saved:?}");
        let record = FileRecord {
            status: "downloaded".to_owned(),
            path: Some(saved.path.clone()),
            size: Some(saved.bytes),
            sha256: saved.sha256,
            etag: saved.etag,
            last_modified: saved.last_modified,
            url: saved.origin,
        };
        known.write().unwrap().insert(br, record);
        assert_eq!(Arc::clone(&fetcher).fetch(br, 0).await, Outcome::Unchanged(saved.path));
        assert_eq!(fetcher.fetch(parse_code("ZZ").unwrap(), 0).await, Outcome::NotFound);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_that_fails_is_an_io_error_outcome() {
        let (server, dir) = (server(), tempfile::tempdir().unwrap());
        let fetcher = fetcher(&server, dir.path(), Names::ByCountry(Some(Arc::new(Unreachable))), None);
        let outcome = fetcher.fetch(parse_code("BR").unwrap(), 0).await;
        let detail = "cannot claim the file name 'Brazil.gif': the test bucket failed: no answer".to_owned();
        assert_eq!(outcome, Outcome::Failed(DownloadError::Io { detail }));
        assert_eq!(outcome.kind(), "io_error");
    }
}
