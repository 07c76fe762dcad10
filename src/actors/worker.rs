//! A worker: downloads the one code it is given and answers with its outcome.

use std::rc::Rc;

use actix::prelude::*;

use crate::codes::CountryCode;
use crate::download::Fetch;
use crate::outcome::Outcome;

/// Asks a worker to download one code from `url`.
#[derive(Debug, Message)]
#[rtype(result = "Outcome")]
pub struct Download {
    /// The country code.
    pub code: CountryCode,
    /// The URL to request.
    pub url: String,
}

/// A pool member: one download at a time, through a shared fetcher.
pub struct Worker {
    fetcher: Rc<dyn Fetch>,
}

impl Worker {
    /// A worker using `fetcher` (shared with the rest of the pool).
    pub fn new(fetcher: Rc<dyn Fetch>) -> Self {
        Self { fetcher }
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
        AtomicResponse::new(Box::pin(self.fetcher.fetch(msg.code, msg.url).into_actor(self)))
    }
}
