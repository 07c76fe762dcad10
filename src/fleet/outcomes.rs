//! A run's outcomes and its end.
//!
//! A node publishes the outcomes it settled in batches, one message for
//! the codes of one run it settled within a few milliseconds (or 64 of
//! them), on `{fleet}.outcomes.{run}.{node}`, and acknowledges their work
//! messages only once NATS has stored the batch ([`Fleet::record_outcomes`]).
//! The first outcome of a code in the stream's order is the code's outcome:
//! readers check every entry ([`read_outcomes`]) and keep the first valid
//! one of each code of the run; a later one is a duplicate (a code fetched
//! twice, by a node paused past the ack wait, or a republish), dropped and
//! counted, and a malformed or forged message counts for nothing and blocks
//! nothing.
//!
//! A run is finished when every one of its codes has an outcome, counted by
//! code, never by message: the finisher first asks the work stream whether
//! any of the run's codes is still queued (one request: a node acknowledges
//! a code, and waits for NATS to confirm, only after its outcome is
//! stored), and reads the outcomes only when none is.

use std::collections::HashSet;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::PublishMessage;
use futures_util::StreamExt as _;

use super::core::{Fleet, FleetError, nats_error};
use super::messages::{DropReason, FleetRun, read_outcomes};
use super::runs::json;
use crate::job::ledger::{RunKey, Stop};
use crate::model::exit::ExitStatus;
use crate::model::run::{CodeResult, RunRecord, RunState, tally};

/// A message dropped while reading outcomes: why, and its subject.
pub type Drop = (DropReason, String, &'static str);

impl Fleet {
    /// Stores `results` as outcomes of run `token` fetched by this node, in
    /// one message; whether each is its code's first is for readers to say.
    pub async fn record_outcomes(&self, token: &str, results: &[CodeResult]) -> Result<(), FleetError> {
        let subject = self.names.outcome_subject(token, &self.node);
        let what = || format!("cannot publish {} outcomes of run {token}", results.len());
        let message = PublishMessage::build().payload(json(&results));
        let ack = self.js.send_publish(subject, message).await.map_err(|e| nats_error(what(), e))?;
        ack.await.map_err(|e| nats_error(what(), e))?;
        Ok(())
    }

    /// The outcomes of `run`, in the order they were stored: the first
    /// valid one of each of its codes; and what was dropped on the way
    /// (malformed or foreign entries, second outcomes of a code).
    pub async fn outcomes_of(&self, run: &FleetRun) -> Result<(Vec<CodeResult>, Vec<Drop>), FleetError> {
        let token = run.token();
        let what = || format!("cannot read the outcomes of run {}", run.record.id);
        let filter = self.names.run_outcomes(&token);
        let config = pull::OrderedConfig { filter_subject: filter.clone(), ..Default::default() };
        let consumer = self.outcomes.create_consumer(config).await.map_err(|e| nats_error(what(), e))?;
        // The messages stored when the reader was made: what there is to read.
        let expected = consumer.cached_info().num_pending;
        if expected == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut messages = consumer.messages().await.map_err(|e| nats_error(what(), e))?;
        let mut seen = HashSet::new();
        let (mut outcomes, mut drops) = (Vec::new(), Vec::new());
        for _ in 0..expected {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(nats_error(what(), e)),
                None => break,
            };
            let subject = message.subject.to_string();
            let (results, dropped) = read_outcomes(&message.payload, &run.codes);
            drops.extend(dropped.into_iter().map(|(reason, why)| (reason, subject.clone(), why)));
            for (code, result) in results {
                if seen.insert(code) {
                    outcomes.push(result);
                } else {
                    drops.push((DropReason::Duplicate, subject.clone(), "a second outcome of its code"));
                }
            }
        }
        Ok((outcomes, drops))
    }

    /// Ends run `key` as finished if it is its batch's running run and
    /// every one of its codes has an outcome; the ended record when this
    /// call ended it (the messages dropped on the way are then counted).
    pub async fn finish_if_complete(&self, key: &RunKey) -> Result<Option<RunRecord>, FleetError> {
        let Some((run, revision)) = self.last_run(&key.batch).await? else { return Ok(None) };
        if run.key() != *key || !run.record.is_running() {
            return Ok(None);
        }
        // A code still queued (or held by a node) has no outcome yet.
        if self.queued(&key.batch, &run).await? > 0 {
            return Ok(None);
        }
        let (outcomes, drops) = self.outcomes_of(&run).await?;
        if outcomes.len() < run.codes.len() {
            return Ok(None);
        }
        let status = ExitStatus::of_counts(&tally(&outcomes));
        let ended = self.end_run(run, revision, RunState::Finished, &outcomes, status, None).await?;
        if ended.is_some() {
            for (reason, subject, why) in drops {
                self.dropped.count(reason, &subject, why);
            }
        }
        Ok(ended)
    }

    /// Ends run `key` as `stop` says, with what it recorded: a cancelled
    /// run's queued codes are removed (codes a node is fetching still
    /// finish, and their outcomes are dropped). `None` when the run is not
    /// its batch's running run (it ended already).
    pub async fn stop_run(&self, key: &RunKey, stop: Stop) -> Result<Option<RunRecord>, FleetError> {
        let Some((run, revision)) = self.last_run(&key.batch).await? else { return Ok(None) };
        if run.key() != *key || !run.record.is_running() {
            return Ok(None);
        }
        let (outcomes, _) = self.outcomes_of(&run).await?;
        let subject = self.names.run_work(&key.batch, &run.token());
        let (state, status, error) = match stop {
            Stop::Cancelled(status) => (RunState::Cancelled, status, None),
            Stop::Failed { status, error } => (RunState::Failed, status, Some(error)),
        };
        let ended = self.end_run(run, revision, state, &outcomes, status, error).await?;
        if ended.is_some() {
            // Ended first, purged next: nothing queues the codes again.
            let purged = self.work.purge().filter(subject).await;
            purged.map_err(|e| nats_error(format!("cannot remove the queued codes of run {}", key.id), e))?;
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::StatusCounts;

    #[test]
    fn a_tally_counts_kinds_and_unfinished_is_not_an_error() {
        let result = |code: &str, kind: &str| {
            let mut r = CodeResult::unfinished(crate::model::codes::parse_code(code).expect("a code"), String::new());
            r.outcome = kind.to_owned();
            r
        };
        let counts = tally(&[result("BR", "downloaded"), result("ZZ", "not_found"), result("AR", "http_error")]);
        assert_eq!(counts, StatusCounts { downloaded: 1, unchanged: 0, not_found: 1, errors: 1 });
        assert_eq!(ExitStatus::of_counts(&counts), ExitStatus::SomeErrors);
    }
}
