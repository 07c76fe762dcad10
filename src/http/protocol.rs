//! Whether a TLS server speaks HTTP/2, learnt from one request before the
//! others fan out.
//!
//! A server says which protocol it speaks (ALPN) only at the end of a TLS
//! handshake. Each worker has a TLS client of its own (see
//! `client::PerLane`), so if every worker sent its first request at once, a
//! pool of 100 would open 100 HTTP/2 connections where one carries them all.
//! So the first TLS request to a server is a probe: the other requests wait
//! until its connection is made (its client reports the protocol the
//! handshake chose) or its answer comes, then either share one client per
//! thread (HTTP/2) or go each through its own (HTTP/1.1). curl's
//! `--parallel` waits the same way by default.
//!
//! A probe that fails (no connection, a timeout) decides HTTP/1.1, so that
//! a server that is down fails every request at once rather than one at a
//! time. A probe dropped before its answer (its worker's deadline, an
//! interrupted run) hands the probe on to the next request. The others wait
//! at most a connect timeout (their deadline allows for it): a server that
//! is slower to answer is taken for HTTP/1.1 until the probe's answer says
//! otherwise.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Nothing is known yet, and nobody is asking.
const UNKNOWN: u8 = 0;
/// A probe is out.
const PROBING: u8 = 1;
/// HTTP/1.1 (or a probe that failed).
const HTTP1: u8 = 2;
/// HTTP/2: one connection per thread carries every request.
const HTTP2: u8 = 3;

/// What is known of a server's protocol over TLS.
#[derive(Debug)]
pub struct Protocol {
    state: AtomicU8,
    decided: Notify,
}

impl Protocol {
    /// Nothing known yet: the first request will probe.
    pub fn unknown() -> Self {
        Self { state: AtomicU8::new(UNKNOWN), decided: Notify::new() }
    }

    /// HTTP/2 is spoken from the first byte (prior knowledge): no probe.
    pub fn http2() -> Self {
        Self { state: AtomicU8::new(HTTP2), decided: Notify::new() }
    }

    /// Whether the server is known to speak HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.state.load(Ordering::Acquire) == HTTP2
    }

    /// Waits until the protocol is known, or for `patience` at most (then
    /// HTTP/1.1 is taken), or returns the probe that this request is to be:
    /// report its answer with [`Probe::answered`].
    pub async fn known_or_probe(&self, patience: Duration) -> Option<Probe<'_>> {
        let give_up = tokio::time::Instant::now() + patience;
        loop {
            let decided = self.decided.notified();
            tokio::pin!(decided);
            // Registered before the state is read, so a decision made in
            // between still wakes this request.
            decided.as_mut().enable();
            match self.state.compare_exchange(UNKNOWN, PROBING, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Probe { protocol: self, answered: false }),
                Err(PROBING) => {
                    if tokio::time::timeout_at(give_up, decided).await.is_err() {
                        // The probe's answer may still upgrade this to HTTP/2.
                        let _ = self.state.compare_exchange(PROBING, HTTP1, Ordering::AcqRel, Ordering::Acquire);
                        self.decided.notify_waiters();
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// What a connection to the server said. HTTP/2 is always taken (also
    /// after the others stopped waiting); HTTP/1.1 only while the probe is
    /// out, so that a failed request after an HTTP/2 handshake does not
    /// undo it.
    pub fn learnt(&self, http2: bool) {
        if http2 {
            self.state.store(HTTP2, Ordering::Release);
        } else {
            let _ = self.state.compare_exchange(PROBING, HTTP1, Ordering::AcqRel, Ordering::Acquire);
        }
        self.decided.notify_waiters();
    }
}

/// The request that finds out the protocol for the others.
#[derive(Debug)]
pub struct Probe<'a> {
    protocol: &'a Protocol,
    answered: bool,
}

impl Probe<'_> {
    /// The probe's answer: whether it came over HTTP/2 (`false` for a
    /// failed request too), unless its connection said so already.
    pub fn answered(mut self, http2: bool) {
        self.answered = true;
        self.protocol.learnt(http2);
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        // Handed on, unless the others stopped waiting meanwhile.
        let state = &self.protocol.state;
        if !self.answered && state.compare_exchange(PROBING, UNKNOWN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.protocol.decided.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(60);

    #[tokio::test(flavor = "current_thread")]
    async fn requests_wait_for_the_probe_and_a_dropped_probe_is_handed_on() {
        let protocol = Arc::new(Protocol::unknown());
        let probe = protocol.known_or_probe(PATIENCE).await.expect("the first request probes");
        let waiting = {
            let protocol = Arc::clone(&protocol);
            tokio::spawn(async move { protocol.known_or_probe(PATIENCE).await.is_none() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a second request waits for the probe");
        drop(probe);
        // The waiting request becomes the probe: it is not told "known".
        assert!(!waiting.await.expect("the waiting request"), "a dropped probe is handed on");
        let probe = protocol.known_or_probe(PATIENCE).await.expect("still unknown: probe again");
        probe.answered(true);
        assert!(protocol.is_http2());
        assert!(protocol.known_or_probe(PATIENCE).await.is_none(), "known: no more probes");
        assert!(Protocol::http2().is_http2() && !Protocol::unknown().is_http2());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_probe_decides_http1_for_everyone() {
        let protocol = Protocol::unknown();
        protocol.known_or_probe(PATIENCE).await.expect("a probe").answered(false);
        assert!(protocol.known_or_probe(PATIENCE).await.is_none() && !protocol.is_http2());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_slow_probe_is_waited_for_a_while_and_may_still_say_http2() {
        let protocol = Protocol::unknown();
        let probe = protocol.known_or_probe(PATIENCE).await.expect("a probe");
        let started = tokio::time::Instant::now();
        assert!(protocol.known_or_probe(PATIENCE).await.is_none(), "the wait ends without a probe");
        assert_eq!(started.elapsed(), PATIENCE, "after the patience, not before");
        assert!(protocol.known_or_probe(PATIENCE).await.is_none(), "later requests do not wait");
        assert!(!protocol.is_http2());
        probe.answered(true);
        assert!(protocol.is_http2(), "the late answer still counts");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_handshake_decides_before_the_answer_and_a_failed_answer_does_not_undo_http2() {
        let protocol = Protocol::unknown();
        let probe = protocol.known_or_probe(PATIENCE).await.expect("a probe");
        protocol.learnt(true);
        assert!(protocol.known_or_probe(PATIENCE).await.is_none() && protocol.is_http2(), "known at the handshake");
        probe.answered(false);
        assert!(protocol.is_http2(), "a request that failed after an HTTP/2 handshake");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_probe_dropped_after_the_others_gave_up_leaves_http1() {
        let protocol = Protocol::unknown();
        let probe = protocol.known_or_probe(PATIENCE).await.expect("a probe");
        assert!(protocol.known_or_probe(PATIENCE).await.is_none());
        drop(probe);
        assert!(protocol.known_or_probe(PATIENCE).await.is_none(), "no new probe, no wait");
    }
}
