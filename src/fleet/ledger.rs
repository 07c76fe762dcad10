//! The fleet as a run [`Ledger`]: the same calls as a local run's, kept in
//! NATS ([`runs`](super::runs), [`outcomes`](super::outcomes)). A run begun
//! here is queued for the nodes to fetch; its outcomes are recorded by the
//! nodes that fetch its codes, and it is finished by whichever node first
//! sees every code accounted for.

use std::collections::BTreeMap;

use super::core::Fleet;
use crate::job::ledger::{Begun, Ledger, LedgerFuture, Recorded, RunKey, RunQuery, RunStart, Stop};
use crate::model::outcome::CodeOutcome;
use crate::model::run::{CodeResult, RunDetails, RunRecord};

impl Ledger for Fleet {
    fn describe(&self) -> String {
        format!("the fleet {} at {}", self.names.fleet(), self.servers)
    }

    fn begin<'a>(&'a self, start: RunStart<'a>) -> LedgerFuture<'a, Begun> {
        Box::pin(async move {
            let run = self.start_run(start).await?;
            Ok(Begun { key: run.key(), record: run.record, known: None })
        })
    }

    /// Stores the outcome as the code's, unless the code has one: which of
    /// the two is for the readers of the run to say (the first in the
    /// stream's order), so a fleet answers [`Recorded::First`].
    fn record<'a>(&'a self, key: &'a RunKey, outcome: &CodeOutcome, node: Option<&str>) -> LedgerFuture<'a, Recorded> {
        let mut result = CodeResult::of(outcome);
        result.node = node.map(str::to_owned);
        Box::pin(async move {
            let token = super::names::run_token(key.id, &key.nonce);
            self.record_outcomes(&token, &[result]).await?;
            Ok(Recorded::First)
        })
    }

    fn finish<'a>(&'a self, key: &'a RunKey) -> LedgerFuture<'a, Option<RunRecord>> {
        Box::pin(self.finish_if_complete(key))
    }

    fn stop<'a>(&'a self, key: &'a RunKey, stop: Stop) -> LedgerFuture<'a, Option<RunRecord>> {
        Box::pin(self.stop_run(key, stop))
    }

    fn get(&self, id: i64) -> LedgerFuture<'_, Option<RunRecord>> {
        Box::pin(async move { Ok(self.run_record(id).await?.map(|run| run.record)) })
    }

    fn last<'a>(&'a self, batches: &'a [String]) -> LedgerFuture<'a, BTreeMap<String, RunRecord>> {
        Box::pin(self.last_runs(batches))
    }

    fn recent<'a>(&'a self, query: &'a RunQuery) -> LedgerFuture<'a, Vec<RunRecord>> {
        Box::pin(self.recent_runs(query))
    }

    fn details(&self, id: i64) -> LedgerFuture<'_, Option<RunDetails>> {
        Box::pin(async move {
            let Some(run) = self.run_record(id).await? else { return Ok(None) };
            let (codes, _) = self.outcomes_of(&run).await?;
            Ok(Some(RunDetails { record: run.record, codes }))
        })
    }
}
