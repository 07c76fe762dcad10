//! A worker: downloads the one code it is given and answers with its outcome.
//!
//! The worker bounds each attempt by a deadline of its own: when it passes,
//! the download future is dropped (and with it any temporary file) and the
//! worker answers with a connection error, ready for its next code.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::seams::Fetch;
use crate::model::codes::CountryCode;
use crate::model::outcome::{DownloadError, Outcome};

/// Asks a worker to download one code.
#[derive(Debug, Message)]
#[rtype(result = "Outcome")]
pub struct Download {
    /// The country code.
    pub code: CountryCode,
}

/// A pool member: one download at a time, through a fetcher shared by the
/// whole pool (on whichever thread each worker runs).
pub struct Worker {
    fetcher: Arc<dyn Fetch>,
    deadline: Duration,
}

impl Worker {
    /// A worker using `fetcher` (shared with the rest of the pool), giving
    /// each attempt at most `deadline`.
    pub fn new(fetcher: Arc<dyn Fetch>, deadline: Duration) -> Self {
        Self { fetcher, deadline }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<Download> for Worker {
    // Atomic: the worker handles no other message until this download ends,
    // so it can never interleave two downloads.
    type Result = AtomicResponse<Self, Outcome>;

    fn handle(&mut self, msg: Download, _ctx: &mut Self::Context) -> Self::Result {
        let deadline = self.deadline;
        let attempt = tokio::time::timeout(deadline, Arc::clone(&self.fetcher).fetch(msg.code));
        let outcome = async move {
            attempt.await.unwrap_or_else(|_| {
                let detail = format!("no answer within {}s", deadline.as_secs_f64());
                Outcome::Failed(DownloadError::Connection { detail: Some(detail) })
            })
        };
        AtomicResponse::new(Box::pin(outcome.into_actor(self)))
    }
}
