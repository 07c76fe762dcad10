//! A worker: downloads the one code it is given and answers with its outcome.
//!
//! The worker bounds each attempt by a deadline of its own: when it passes,
//! the download future is dropped (and with it any temporary file) and the
//! worker answers with a connection error, ready for its next code.
//!
//! The answer is a message of its own ([`Settled`]) sent to the recipient
//! named in the [`Download`], not the reply of a request: the coordinator
//! then keeps no future per download in flight (actix polls every future an
//! actor has spawned each time the actor wakes, so a future per download
//! would cost the coordinator work in proportion to the pool at every
//! answer). The answer is sent exactly once: a download that is dropped
//! before it ends (the worker panicked, or its thread stopped) answers that
//! its worker was lost.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::seams::Fetch;
use crate::model::codes::CountryCode;
use crate::model::outcome::{DownloadError, Outcome};

/// Which dispatch an answer belongs to: the pool slot of the worker and the
/// coordinator's number for the dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The worker's slot in the pool.
    pub slot: usize,
    /// The dispatch's number (an answer to an older dispatch of the slot is
    /// stale).
    pub number: u64,
}

/// Asks a worker to download one code and to send a [`Settled`] to `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Download {
    /// The country code.
    pub code: CountryCode,
    /// Which dispatch this is.
    pub ticket: Ticket,
    /// Where the answer goes.
    pub reply: Recipient<Settled>,
}

/// A worker's answer to a [`Download`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Settled {
    /// The dispatch answered.
    pub ticket: Ticket,
    /// How the attempt ended; `None` when the worker was lost before it
    /// ended (it panicked, or its thread stopped).
    pub outcome: Option<Outcome>,
}

/// The outcome of an attempt that had no answer within `limit`: a
/// connection error (the worker's own deadline, or the coordinator's
/// backstop for a stuck worker).
pub fn no_answer(limit: Duration) -> Outcome {
    let detail = format!("no answer within {}s", limit.as_secs_f64());
    Outcome::Failed(DownloadError::Connection { detail: Some(detail) })
}

/// Sends the answer to a dispatch exactly once: the outcome, or, when
/// dropped without one, that the worker was lost.
struct Answer {
    reply: Recipient<Settled>,
    ticket: Ticket,
    sent: bool,
}

impl Answer {
    fn send(mut self, outcome: Outcome) {
        self.sent = true;
        self.reply.do_send(Settled { ticket: self.ticket, outcome: Some(outcome) });
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.sent {
            self.reply.do_send(Settled { ticket: self.ticket, outcome: None });
        }
    }
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
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Download, _ctx: &mut Self::Context) -> Self::Result {
        let deadline = self.deadline;
        let answer = Answer { reply: msg.reply, ticket: msg.ticket, sent: false };
        let attempt = tokio::time::timeout(deadline, Arc::clone(&self.fetcher).fetch(msg.code, msg.ticket.slot));
        let download = async move {
            let outcome = attempt.await.unwrap_or_else(|_| no_answer(deadline));
            answer.send(outcome);
        };
        AtomicResponse::new(Box::pin(download.into_actor(self)))
    }
}
