//! actix-http's own error lines on the admin endpoint's threads, counted
//! instead of logged.
//!
//! # Why
//!
//! actix-http logs every request it cannot parse (and every connection
//! reset mid-request) at ERROR, on the thread that serves the connection:
//! anyone who can connect could fill the journal with a loop, and filters
//! are the operator's (`--log-level`, `FLAGSD_LOG`), so they cannot be
//! relied on to hide these. The endpoint's worker threads therefore get a
//! subscriber of their own, [`QuietHttpErrors`], in front of the global
//! one: it hands everything to the global subscriber except actix-http's
//! warnings and errors, which it counts as [`Kind::Protocol`] for the
//! [`Throttle`]'s summaries. Other threads (the in-process `DEMO` server's
//! included) keep the global subscriber as it is.
//!
//! Spans are passed on too, but for `Span::current()`, which this
//! subscriber answers with "unknown" (tracing does not export the type
//! needed to pass it on, and nothing on these threads asks).

use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::Arc;

use tracing::dispatcher::DefaultGuard;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

use super::throttle::{Kind, Throttle};

/// The subscriber of the endpoint's threads: the global one, but for
/// actix-http's warnings and errors.
pub struct QuietHttpErrors {
    inner: Dispatch,
    throttle: Arc<Throttle>,
    max_level: LevelFilter,
}

impl QuietHttpErrors {
    /// Passes everything to `inner` but actix-http's warnings and errors,
    /// which go to `throttle`.
    pub fn new(inner: Dispatch, throttle: Arc<Throttle>) -> Self {
        // What the process logs at most (read before this subscriber
        // counts), and warnings, which this one takes.
        let max_level = LevelFilter::current().max(LevelFilter::WARN);
        Self { inner, throttle, max_level }
    }

    /// Whether this is an event of actix-http at warn level or above.
    fn counted(metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && *metadata.level() <= Level::WARN
            && (metadata.target() == "actix_http" || metadata.target().starts_with("actix_http::"))
    }
}

/// The text of an event's message.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for QuietHttpErrors {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::counted(metadata) { Interest::always() } else { self.inner.register_callsite(metadata) }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        Self::counted(metadata) || self.inner.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        if Self::counted(event.metadata()) {
            let mut message = Message::default();
            event.record(&mut message);
            self.throttle.hold(Kind::Protocol, message.0);
        } else {
            self.inner.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }
}

thread_local! {
    /// The subscriber set on this thread, kept for the thread's life.
    static INSTALLED: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// Makes [`QuietHttpErrors`] in front of `global` this thread's subscriber,
/// once (a thread keeps the first one).
pub fn install_on_this_thread(global: &Dispatch, throttle: &Arc<Throttle>) {
    // Only during the thread's teardown can the slot be gone: then there is
    // nothing left to log.
    let _ = INSTALLED.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let quiet = QuietHttpErrors::new(global.clone(), Arc::clone(throttle));
            *slot = Some(tracing::dispatcher::set_default(&Dispatch::new(quiet)));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    /// A subscriber that keeps the messages of the events it gets.
    #[derive(Default)]
    struct Kept(Arc<Mutex<Vec<String>>>);

    impl Subscriber for Kept {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut message = Message::default();
            event.record(&mut message);
            self.0.lock().expect("lock").push(format!("{} {}", event.metadata().target(), message.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn actix_http_errors_are_counted_and_the_rest_passed_on() {
        let kept = Kept::default();
        let lines = Arc::clone(&kept.0);
        let throttle = Arc::new(Throttle::default());
        let global = Dispatch::new(kept);
        // A thread of its own, as the endpoint's workers have.
        let counting = Arc::clone(&throttle);
        std::thread::spawn(move || {
            install_on_this_thread(&global, &counting);
            for _ in 0..3 {
                tracing::error!(target: "actix_http::h1::dispatcher", "stream error: parse error");
            }
            tracing::warn!(target: "actix_http", "a warning");
            tracing::trace!(target: "actix_http::h1::dispatcher", "a trace line");
            tracing::error!(target: "actix_httpx", "another crate");
            tracing::warn!(target: "flagsd::daemon::admin", "ours");
        })
        .join()
        .expect("the thread ends");
        let due = throttle.due(Instant::now());
        assert_eq!((due.len(), due[0].kind, due[0].count), (1, Kind::Protocol, 4), "{due:?}");
        assert_eq!(due[0].last, "a warning");
        let lines = lines.lock().expect("lock").clone();
        assert_eq!(
            lines,
            ["actix_http::h1::dispatcher a trace line", "actix_httpx another crate", "flagsd::daemon::admin ours"]
        );
    }
}
