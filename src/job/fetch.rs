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
use crate::http::answer::{Conditional, FlagAnswer, FlagBody, FlagSource};
use crate::model::codes::CountryCode;
use crate::model::outcome::{DownloadError, Outcome, SavedFile};
use crate::store::save::{Earlier, Saver};

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
        let mut body = match self.source.flag(code, conditional, lane).await? {
            FlagAnswer::NotModified(path) => return Ok(Outcome::Unchanged(path)),
            FlagAnswer::NotFound => return Ok(Outcome::NotFound),
            FlagAnswer::Body(body) => body,
        };
        let mut incoming = self.saver.incoming(code)?;
        while let Some(chunk) = body.chunk().await? {
            incoming.push(chunk)?;
        }
        let saved = self.saver.save(code, incoming, self.source.country_name(code, lane)).await?;
        let FlagBody { status, etag, last_modified, .. } = body;
        let origin = Some(self.source.record_url(code));
        Ok(Outcome::Downloaded(SavedFile { status, etag, last_modified, origin, ..saved }))
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
