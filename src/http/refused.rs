//! Requests left unanswered as a connection ended, sent again.
//!
//! An HTTP/2 server that closes a connection gracefully (nginx does after
//! `keepalive_requests`, 1,000 by default) sends GOAWAY naming the last
//! stream it will answer, then closes: the requests on later streams, and
//! those still queued for a stream, were never processed. A server may also
//! refuse a single stream (`REFUSED_STREAM`). Such a request is sent again
//! on a new connection, as curl and browsers do; flagsd's requests are GETs,
//! which HTTP allows a client to repeat (RFC 9110, section 9.2.2). It is not
//! one of the user's `retries`, which count attempts after a failure the
//! server or the network caused, and `attempts` in the results stays 1.
//!
//! reqwest resends a request turned away by GOAWAY, but at most twice, and
//! not one caught by the connection's end or dropped by hyper. With many
//! workers on one connection that is too few: the requests turned away
//! queue for the next connection behind the workers' new ones, and are
//! turned away again. Six batches of 50 workers against nginx with
//! `keepalive_requests 100` lost 0–23 of 676 codes per batch. [`policy`]
//! allows [`RESENDS`] per request.

use std::error::Error as StdError;
use std::io;

use reqwest::{Method, retry};

use super::causes::{find_source, innermost_message};

/// Most times one request is sent again after going unanswered.
pub const RESENDS: u32 = 10;

/// The clients' retry policy: a GET left unanswered as its connection
/// ended is sent again, up to [`RESENDS`] times; nothing else is (flagsd's
/// own retries do what the user asked for).
pub fn policy() -> retry::Builder {
    retry::for_host(AnyHost)
        // No budget shared between requests: each is bounded by RESENDS, and
        // most were never processed.
        .no_budget()
        .max_retries_per_request(RESENDS)
        .classify_fn(|attempt| match attempt.error() {
            Some(error) if attempt.method() == Method::GET && unanswered(error) => {
                tracing::debug!(url = %attempt.uri(), error = innermost_message(error), "sending again a request left unanswered");
                attempt.retryable()
            }
            _ => attempt.success(),
        })
}

/// Whether `error` (or one of its causes) says that the request went
/// unanswered as a connection ended, in a way that makes sending it again
/// on a new connection safe:
///
/// - an HTTP/2 server turned it away unprocessed: a graceful GOAWAY that
///   left its stream out, or its stream refused;
/// - the connection ended under it, a "broken pipe" (which h2 reports for
///   the streams still open when an HTTP/2 connection ends, including those
///   still queued for a stream when the server allows fewer at a time than
///   there are workers);
/// - hyper gave it up locally: its connection task ended without answering
///   it, which hyper does to the request it holds while waiting for a
///   stream when GOAWAY arrives (hyperium/hyper#2500).
fn unanswered(error: &(dyn StdError + 'static)) -> bool {
    // hyper names that case only as a "user" error. Its other user errors
    // (a bad header, an unsupported version or body) cannot come from
    // flagsd's GETs, and would fail the same way at once if they did.
    if find_source::<hyper::Error>(error).is_some_and(hyper::Error::is_user) {
        return true;
    }
    if let Some(h2) = find_source::<h2::Error>(error) {
        let (reason, remote) = (h2.reason(), h2.is_remote());
        return (remote && h2.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
            || (remote && h2.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM))
            || h2.get_io().is_some_and(broken_pipe);
    }
    find_source::<io::Error>(error).is_some_and(broken_pipe)
}

fn broken_pipe(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

/// Every host: the policy belongs to clients that are each built for one
/// server's requests, so every request they send is in its scope.
struct AnyHost;

impl PartialEq<&str> for AnyHost {
    fn eq(&self, _host: &&str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Wrapper<E: StdError + 'static>(#[source] E);

    #[test]
    fn other_failures_are_not_sent_again() {
        // A stream reset locally, or with another reason, was not turned away.
        for reason in [h2::Reason::REFUSED_STREAM, h2::Reason::CANCEL, h2::Reason::NO_ERROR] {
            assert!(!unanswered(&Wrapper(h2::Error::from(reason))), "{reason:?}");
        }
        assert!(!unanswered(&io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
    }

    #[test]
    fn a_connection_that_ended_under_a_request_is_a_reason_to_send_it_again() {
        let ended = io::Error::new(io::ErrorKind::BrokenPipe, "stream closed because of a broken pipe");
        assert!(unanswered(&ended));
        assert!(unanswered(&Wrapper(ended)), "found among the causes");
    }
}
