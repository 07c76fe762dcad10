//! The run ledger: where a run begins, records the outcome of each code,
//! and ends (finished, failed or cancelled), and where the history is read
//! back. One trait, two books: the state database of one process
//! ([`LocalLedger`](super::local::LocalLedger)) and a fleet's records in
//! NATS (`fleet::FleetLedger`). Every command and the daemon go through it,
//! so that a run of either kind obeys the same rules:
//!
//! - a run's accounting is by distinct code: the **first** outcome of a code
//!   wins; a later one is a duplicate, dropped and counted, and can never
//!   make a run look finished ([`Tally`] locally, a create-if-absent per
//!   code in a fleet);
//! - a run ends once: finished (every code has an outcome), failed (an error
//!   ended it), or cancelled (a signal, `flagsd cancel`), and its record
//!   then keeps its counts;
//! - the history is read through the same calls (`last`, `recent`,
//!   `details`) whoever wrote it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use crate::model::codes::CountryCode;
use crate::model::exit::ExitStatus;
use crate::model::outcome::{CodeOutcome, StatusCounts};
use crate::model::run::{RunDetails, RunRecord};
use crate::store::state::{KnownFiles, StateError};

/// What a ledger's calls return: a boxed future on the caller's thread.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + 'a>>;

/// Why a ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The batch has a run in progress: a batch never runs twice at once.
    #[error("batch {batch} is running{place} (run {run})")]
    Running {
        /// The batch.
        batch: String,
        /// Its run in progress.
        run: i64,
        /// Where, with a leading space, when it is not this process
        /// (`" in the fleet"`); else empty.
        place: &'static str,
    },
    /// A scheduled start for a tick the batch's newest run already ran for
    /// (or a later one): a tick runs at most once.
    #[error("batch {batch} already ran for tick {tick} (run {run})")]
    TickRan {
        /// The batch.
        batch: String,
        /// The tick asked for (UNIX milliseconds).
        tick: u64,
        /// The run that ran for it or later.
        run: i64,
    },
    /// The fleet's NATS servers failed; the source keeps NATS's own error.
    #[error("{what}: {source}")]
    Fleet {
        /// What was being done, naming the stream, bucket or run.
        what: String,
        /// What kind of failure, for the exit status and for retries.
        kind: FleetFailure,
        /// NATS's error (or the reason a message was refused).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The kinds of fleet failure a caller acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetFailure {
    /// NATS did not answer (down, unreachable, timed out): worth retrying.
    Unreachable,
    /// NATS refused the credentials: retrying changes nothing.
    Refused,
    /// A stream, bucket or consumer is missing (NATS lost its state, or
    /// someone deleted it): the fleet creates it again.
    Missing,
    /// Anything else NATS or a message said.
    Other,
}

impl LedgerError {
    /// Whether trying again later may succeed (NATS away, a stream being
    /// created again).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Fleet { kind: FleetFailure::Unreachable | FleetFailure::Missing, .. })
    }
}

/// What starts a run: the batch and its codes, what started it, and for a
/// scheduled run its tick (UNIX milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    /// The batch's name.
    pub batch: &'a str,
    /// The codes to fetch, as this process's configuration has them.
    pub codes: &'a [CountryCode],
    /// `schedule`, `admin`, `reload`, `run` or `fetch`.
    pub trigger: &'a str,
    /// The scheduled tick the run is for, if any.
    pub tick: Option<u64>,
}

/// A run's identity in its ledger: its batch and id, and in a fleet the
/// random nonce that makes it unique for ever (ids start again at 1 if the
/// fleet's records are lost; the nonce never repeats).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The run's batch.
    pub batch: String,
    /// The run id.
    pub id: i64,
    /// The fleet's nonce (empty for a local run).
    pub nonce: String,
}

impl<'a> RunStart<'a> {
    /// A run of `batch`, started by `trigger`, not for a tick.
    pub fn of(batch: &'a crate::config::BatchConfig, trigger: &'a str) -> Self {
        Self { batch: &batch.name, codes: &batch.job.codes, trigger, tick: None }
    }
}

impl RunKey {
    /// The key of local run `id` of `batch`.
    pub fn local(batch: &str, id: i64) -> Self {
        Self { batch: batch.to_owned(), id, nonce: String::new() }
    }
}

/// A run that has begun.
#[derive(Debug)]
pub struct Begun {
    /// Its key.
    pub key: RunKey,
    /// Its record (state `running`).
    pub record: RunRecord,
    /// What earlier runs of the batch saved, for conditional requests,
    /// when this process fetches the run itself.
    pub known: Option<KnownFiles>,
}

/// What recording an outcome did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// It is the code's outcome in this run.
    First,
    /// The code already had one: this one was dropped.
    Duplicate,
}

/// Which runs to list: newest first, of one batch or all, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this batch's runs.
    pub batch: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Only runs with a smaller id (the previous page's last id).
    pub before: Option<i64>,
}

/// How a run ends when it is not finished: failed by an error, or
/// cancelled (with the status of what cancelled it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// An error ended it; the status is the error's (2 or 3).
    Failed {
        /// The error's exit status.
        status: ExitStatus,
        /// What went wrong.
        error: String,
    },
    /// A signal or a cancel request ended it; the status is 130 or 143.
    Cancelled(ExitStatus),
}

/// The book of runs; see the module documentation.
pub trait Ledger {
    /// Where the runs are kept, for messages: `the state database
    /// 'state/flagsd.db'`, `the fleet flagsd at nats://***@h:4222`.
    fn describe(&self) -> String;

    /// Begins a run of `start.batch`, refused with [`LedgerError::Running`]
    /// while the batch has a run in progress.
    fn begin<'a>(&'a self, start: RunStart<'a>) -> LedgerFuture<'a, Begun>;

    /// Records `outcome` as its code's outcome in run `key`, fetched by
    /// `node` (in a fleet), unless the code has one: the first wins. The
    /// outcome is taken when this is called; the future says which it was.
    fn record<'a>(&'a self, key: &'a RunKey, outcome: &CodeOutcome, node: Option<&str>) -> LedgerFuture<'a, Recorded>;

    /// Ends run `key` as finished if every code has an outcome: its record
    /// gets the counts of the recorded outcomes and the exit status they
    /// make. `None` when it is not complete, or ended already.
    fn finish<'a>(&'a self, key: &'a RunKey) -> LedgerFuture<'a, Option<RunRecord>>;

    /// Ends run `key` as `stop` says, with the counts of what was recorded;
    /// `None` when it ended already.
    fn stop<'a>(&'a self, key: &'a RunKey, stop: Stop) -> LedgerFuture<'a, Option<RunRecord>>;

    /// Run `id`'s record.
    fn get(&self, id: i64) -> LedgerFuture<'_, Option<RunRecord>>;

    /// The latest run of each of `batches` that ever ran, by batch name.
    fn last<'a>(&'a self, batches: &'a [String]) -> LedgerFuture<'a, BTreeMap<String, RunRecord>>;

    /// The runs `query` asks for, newest first.
    fn recent<'a>(&'a self, query: &'a RunQuery) -> LedgerFuture<'a, Vec<RunRecord>>;

    /// Run `id` with the outcome of each of its codes.
    fn details(&self, id: i64) -> LedgerFuture<'_, Option<RunDetails>>;
}

/// One run's outcomes, by code: the first of each code wins, and later ones
/// are counted as duplicates. What a local run keeps until it ends.
#[derive(Debug, Default)]
pub struct Tally {
    /// The outcomes, in the order they came.
    outcomes: Vec<CodeOutcome>,
    /// Where each code's outcome is in `outcomes`.
    index: HashMap<CountryCode, usize>,
    duplicates: u64,
}

impl Tally {
    /// Records `outcome` unless its code has one.
    pub fn record(&mut self, outcome: &CodeOutcome) -> Recorded {
        if self.index.contains_key(&outcome.code) {
            self.duplicates += 1;
            return Recorded::Duplicate;
        }
        self.index.insert(outcome.code, self.outcomes.len());
        self.outcomes.push(outcome.clone());
        Recorded::First
    }

    /// The counts: one per code with an outcome.
    pub fn counts(&self) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for o in &self.outcomes {
            counts.record(&o.outcome);
        }
        counts
    }

    /// Whether every one of `codes` has an outcome.
    pub fn covers(&self, codes: &[CountryCode]) -> bool {
        codes.iter().all(|code| self.index.contains_key(code))
    }

    /// The outcomes, one per code, in the order they came.
    pub fn outcomes(&self) -> &[CodeOutcome] {
        &self.outcomes
    }

    /// Outcomes dropped because their code had one.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codes::parse_code;
    use crate::model::outcome::{DownloadError, Outcome};

    fn outcome(code: &str, outcome: Outcome) -> CodeOutcome {
        CodeOutcome {
            code: parse_code(code).expect("a code"),
            url: String::new(),
            outcome,
            attempts: 1,
            retry_cause: None,
        }
    }

    #[test]
    fn the_first_outcome_of_a_code_wins_and_duplicates_never_complete_a_run() {
        let codes: Vec<CountryCode> = ["BR", "AR", "CL"].iter().filter_map(|c| parse_code(c)).collect();
        let mut tally = Tally::default();
        assert_eq!(tally.record(&outcome("BR", Outcome::NotFound)), Recorded::First);
        let failed = Outcome::Failed(DownloadError::Connection { detail: None });
        assert_eq!(tally.record(&outcome("BR", failed.clone())), Recorded::Duplicate);
        assert_eq!(tally.record(&outcome("AR", failed)), Recorded::First);
        assert_eq!(tally.record(&outcome("AR", Outcome::NotFound)), Recorded::Duplicate);
        assert!(!tally.covers(&codes), "three outcomes for two codes do not finish a run of three");
        assert_eq!(tally.counts(), StatusCounts { not_found: 1, errors: 1, ..StatusCounts::default() });
        assert_eq!((tally.outcomes().len(), tally.duplicates()), (2, 2));
        tally.record(&outcome("CL", Outcome::NotFound));
        assert!(tally.covers(&codes));
    }
}
