//! The ledger of one process: runs recorded in its state database.
//!
//! A run begins as a row of the database (and what earlier runs of its
//! batch saved is read at the same time, for conditional requests); its
//! outcomes are kept in memory by code, the first of each code winning
//! ([`Tally`]); it ends in one transaction that writes its counts, its
//! state, what each code left on disk and each code's outcome.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::ledger::{Begun, Ledger, LedgerFuture, RunKey, RunQuery, RunStart, Stop, Tally};
use crate::model::codes::CountryCode;
use crate::model::exit::ExitStatus;
use crate::model::outcome::CodeOutcome;
use crate::model::run::{RunDetails, RunRecord, RunState};
use crate::model::time::rfc3339;
use crate::store::state::{RunEnd, StateHandle};

/// A run this process has begun and not ended.
#[derive(Debug)]
struct OpenRun {
    batch: String,
    codes: Vec<CountryCode>,
    tally: Tally,
}

/// The runs of one process, in its state database.
#[derive(Debug)]
pub struct LocalLedger {
    db: StateHandle,
    open: RefCell<HashMap<i64, OpenRun>>,
}

impl LocalLedger {
    /// The ledger kept in `db`.
    pub fn new(db: StateHandle) -> Self {
        Self { db, open: RefCell::default() }
    }

    /// The database, for what is not about runs (readiness).
    pub fn db(&self) -> &StateHandle {
        &self.db
    }

    /// Ends open run `id` with `state`, `status` and `error`, and the
    /// counts of what it recorded.
    async fn end(
        &self,
        id: i64,
        state: RunState,
        status: Option<ExitStatus>,
        error: Option<String>,
    ) -> Result<Option<RunRecord>, super::ledger::LedgerError> {
        let Some(run) = self.open.borrow_mut().remove(&id) else { return Ok(None) };
        let counts = run.tally.counts();
        let status = status.unwrap_or_else(|| ExitStatus::of_counts(&counts));
        if run.tally.duplicates() > 0 {
            tracing::warn!(batch = %run.batch, run = id, duplicates = run.tally.duplicates(), "duplicate outcomes dropped");
        }
        let OpenRun { batch, tally, .. } = run;
        let written = self
            .db
            .call(move |db| {
                let end = RunEnd {
                    state,
                    counts,
                    exit_status: status.code(),
                    error: error.as_deref(),
                    outcomes: tally.outcomes(),
                };
                db.finish_run(id, &batch, &end)?;
                db.run(id)
            })
            .await?;
        Ok(written)
    }
}

impl Ledger for LocalLedger {
    fn describe(&self) -> String {
        format!("the state database '{}'", self.db.path().display())
    }

    fn begin<'a>(&'a self, start: RunStart<'a>) -> LedgerFuture<'a, Begun> {
        Box::pin(async move {
            let (batch, trigger) = (start.batch.to_owned(), start.trigger.to_owned());
            let now = SystemTime::now();
            let (known, id) = self
                .db
                .call(move |db| {
                    let known = db.files(&batch)?;
                    Ok((known, db.begin_run(&batch, &trigger, now)?))
                })
                .await?;
            let run = OpenRun { batch: start.batch.to_owned(), codes: start.codes.to_vec(), tally: Tally::default() };
            self.open.borrow_mut().insert(id, run);
            let record = RunRecord::started(id, start.batch, start.trigger, rfc3339(now));
            Ok(Begun { key: RunKey::local(start.batch, id), record, known: Some(known) })
        })
    }

    fn record<'a>(
        &'a self,
        key: &'a RunKey,
        outcome: &CodeOutcome,
        _node: Option<&str>,
    ) -> LedgerFuture<'a, super::ledger::Recorded> {
        let recorded = match self.open.borrow_mut().get_mut(&key.id) {
            Some(run) => run.tally.record(outcome),
            // A run that ended takes no more outcomes.
            None => super::ledger::Recorded::Duplicate,
        };
        Box::pin(std::future::ready(Ok(recorded)))
    }

    fn finish<'a>(&'a self, key: &'a RunKey) -> LedgerFuture<'a, Option<RunRecord>> {
        Box::pin(async move {
            let complete = self.open.borrow().get(&key.id).is_some_and(|run| run.tally.covers(&run.codes));
            if !complete {
                return Ok(None);
            }
            self.end(key.id, RunState::Finished, None, None).await
        })
    }

    fn stop<'a>(&'a self, key: &'a RunKey, stop: Stop) -> LedgerFuture<'a, Option<RunRecord>> {
        Box::pin(async move {
            match stop {
                Stop::Failed { status, error } => self.end(key.id, RunState::Failed, Some(status), Some(error)).await,
                Stop::Cancelled(status) => self.end(key.id, RunState::Cancelled, Some(status), None).await,
            }
        })
    }

    fn get(&self, id: i64) -> LedgerFuture<'_, Option<RunRecord>> {
        Box::pin(async move { Ok(self.db.call(move |db| db.run(id)).await?) })
    }

    fn last<'a>(&'a self, batches: &'a [String]) -> LedgerFuture<'a, BTreeMap<String, RunRecord>> {
        Box::pin(async move {
            let mut last = self.db.call(|db| db.last_runs()).await?;
            last.retain(|batch, _| batches.contains(batch));
            Ok(last)
        })
    }

    fn recent<'a>(&'a self, query: &'a RunQuery) -> LedgerFuture<'a, Vec<RunRecord>> {
        let query = query.clone();
        Box::pin(async move {
            Ok(self.db.call(move |db| db.runs(query.batch.as_deref(), query.limit, query.before)).await?)
        })
    }

    fn details(&self, id: i64) -> LedgerFuture<'_, Option<RunDetails>> {
        Box::pin(async move {
            let found = self
                .db
                .call(move |db| match db.run(id)? {
                    Some(record) => Ok(Some(RunDetails { record, codes: db.outcomes(id)? })),
                    None => Ok(None),
                })
                .await?;
            Ok(found)
        })
    }
}
