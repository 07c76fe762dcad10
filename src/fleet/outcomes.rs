//! A run's outcomes and its end.
//!
//! Each code's outcome goes to a subject of its own,
//! `{fleet}.outcomes.{run}.{CC}`, published only if that subject holds
//! nothing yet (`Nats-Expected-Last-Subject-Sequence: 0`): a create-if-absent
//! per code, so the first outcome of a code is the one the stream keeps,
//! whoever sends a second one and however late ([`Fleet::record_outcome`]).
//! Readers check every outcome ([`read_outcome`]) and keep the first valid
//! one of each code of the run, so a malformed or forged message counts for
//! nothing and blocks nothing: a valid outcome published after it is still
//! taken (its publish expects the malformed message's sequence).
//!
//! A run is finished when every one of its codes has an outcome, counted by
//! code, never by message: the finisher first asks the stream how many
//! subjects the run has (one request), and reads the outcomes only when
//! that could be all of them.

use std::collections::HashSet;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures_util::StreamExt as _;

use super::core::{Fleet, FleetError, nats_error};
use super::messages::{DropReason, FleetRun, read_outcome};
use super::names::message_id;
use super::runs::json;
use crate::job::ledger::{Recorded, RunKey, Stop};
use crate::model::codes::{CountryCode, parse_code};
use crate::model::exit::ExitStatus;
use crate::model::outcome::StatusCounts;
use crate::model::run::{CodeResult, RunRecord, RunState};

/// Tries at taking the place of malformed messages on a code's subject.
const PUBLISH_TRIES: usize = 3;

/// Most messages of one code's subject read to find a valid outcome.
const MAX_SCAN: usize = 16;

/// What a code's outcome subject holds.
enum Scan {
    /// A valid outcome.
    Valid,
    /// Only malformed messages, the last at this sequence (0: none).
    Invalid {
        /// The sequence of the last message.
        last: u64,
    },
}

/// The counts of `results` (one per code).
fn tally(results: &[CodeResult]) -> StatusCounts {
    let mut counts = StatusCounts::default();
    for result in results {
        counts.record_kind(&result.outcome);
    }
    counts
}

impl Fleet {
    /// Records `result` as `code`'s outcome in run `token` unless the code
    /// has a valid one: the first wins.
    pub async fn record_outcome(
        &self,
        token: &str,
        code: CountryCode,
        result: &CodeResult,
    ) -> Result<Recorded, FleetError> {
        let subject = self.names.outcome_subject(token, code);
        let what = || format!("cannot publish the outcome of {code} in run {token}");
        let mut expected = 0;
        for _ in 0..PUBLISH_TRIES {
            let message = PublishMessage::build()
                .payload(json(result))
                .message_id(message_id(token, code))
                .expected_last_subject_sequence(expected);
            let ack = self.js.send_publish(subject.clone(), message).await.map_err(|e| nats_error(what(), e))?;
            match ack.await {
                Ok(ack) if ack.duplicate => return Ok(Recorded::Duplicate),
                Ok(_) => return Ok(Recorded::First),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    match self.first_valid(&subject, code).await? {
                        // The code has its outcome: this one is a duplicate.
                        Scan::Valid => return Ok(Recorded::Duplicate),
                        // Only malformed messages: this one takes their place.
                        Scan::Invalid { last } => expected = last,
                    }
                }
                Err(e) => return Err(nats_error(what(), e)),
            }
        }
        Err(nats_error(what(), "the code's subject keeps getting malformed messages"))
    }

    /// Whether `subject` (the outcome subject of `code`) holds a valid
    /// outcome, reading its messages in order; the malformed ones met are
    /// counted as dropped.
    async fn first_valid(&self, subject: &str, code: CountryCode) -> Result<Scan, FleetError> {
        let what = || format!("cannot read the outcomes of {code} on {subject}");
        let mut from = 1;
        let mut last = 0;
        for _ in 0..MAX_SCAN {
            let next = self.outcomes.raw_message_builder().sequence(from).next_by_subject(subject.to_owned()).send();
            match next.await {
                Ok(message) => {
                    last = message.sequence;
                    match read_outcome(&message.payload, code) {
                        Ok(_) => return Ok(Scan::Valid),
                        Err((reason, why)) => self.dropped.count(reason, subject, why),
                    }
                    from = message.sequence + 1;
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(nats_error(what(), e)),
            }
        }
        Ok(Scan::Invalid { last })
    }

    /// How many of run `token`'s codes have a message on their subject.
    async fn outcome_subjects(&self, token: &str) -> Result<usize, FleetError> {
        let what = || format!("cannot count the outcomes of run {token}");
        let mut subjects = self
            .outcomes
            .info_with_subjects(self.names.run_outcomes(token))
            .await
            .map_err(|e| nats_error(what(), e))?;
        let mut count = 0;
        while let Some(item) = subjects.next().await {
            item.map_err(|e| nats_error(what(), e))?;
            count += 1;
        }
        Ok(count)
    }

    /// The outcomes of `run`, in the order they were recorded: the first
    /// valid one of each of its codes (the others are dropped and counted).
    /// An ended run's record no longer lists its codes: any code is then
    /// taken (its counts are in its record already).
    pub async fn outcomes_of(&self, run: &FleetRun) -> Result<Vec<CodeResult>, FleetError> {
        let token = run.token();
        let what = || format!("cannot read the outcomes of run {}", run.record.id);
        let filter = self.names.run_outcomes(&token);
        let mut subjects = self.outcomes.info_with_subjects(&filter).await.map_err(|e| nats_error(what(), e))?;
        let mut expected = 0;
        while let Some(item) = subjects.next().await {
            expected += item.map_err(|e| nats_error(what(), e))?.1;
        }
        if expected == 0 {
            return Ok(Vec::new());
        }
        let config = pull::OrderedConfig { filter_subject: filter.clone(), ..Default::default() };
        let consumer = self.outcomes.create_consumer(config).await.map_err(|e| nats_error(what(), e))?;
        let mut messages = consumer.messages().await.map_err(|e| nats_error(what(), e))?;
        let codes: HashSet<CountryCode> = run.code_list().into_iter().collect();
        let prefix = filter.trim_end_matches('*');
        let mut seen = HashSet::new();
        let mut outcomes = Vec::new();
        for _ in 0..expected {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(nats_error(what(), e)),
                None => break,
            };
            let subject = message.subject.as_str();
            let code = subject
                .strip_prefix(prefix)
                .and_then(parse_code)
                .filter(|code| codes.is_empty() || codes.contains(code));
            let Some(code) = code else {
                self.dropped.count(DropReason::Foreign, subject, "not a code of its run");
                continue;
            };
            match read_outcome(&message.payload, code) {
                Ok(result) if seen.insert(code) => outcomes.push(result),
                Ok(_) => self.dropped.count(DropReason::Duplicate, subject, "a second outcome of its code"),
                Err((reason, why)) => self.dropped.count(reason, subject, why),
            }
        }
        Ok(outcomes)
    }

    /// Ends run `key` as finished if it is its batch's running run and
    /// every one of its codes has an outcome; the ended record when this
    /// call ended it.
    pub async fn finish_if_complete(&self, key: &RunKey) -> Result<Option<RunRecord>, FleetError> {
        let Some((run, revision)) = self.last_run(&key.batch).await? else { return Ok(None) };
        if run.key() != *key || !run.record.is_running() {
            return Ok(None);
        }
        // Cheap checks first: a code still queued (or held by a node) has
        // no outcome yet, nor has a code whose subject is empty.
        if self.queued(&key.batch, &run).await? > 0 {
            return Ok(None);
        }
        let codes = run.codes.len();
        if self.outcome_subjects(&run.token()).await? < codes {
            return Ok(None);
        }
        let outcomes = self.outcomes_of(&run).await?;
        if outcomes.len() < codes {
            return Ok(None);
        }
        let counts = tally(&outcomes);
        self.end_run(run, revision, RunState::Finished, counts, ExitStatus::of_counts(&counts), None).await
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
        let counts = tally(&self.outcomes_of(&run).await?);
        let subject = self.names.work_subject(&key.batch, &run.token());
        let (state, status, error) = match stop {
            Stop::Cancelled(status) => (RunState::Cancelled, status, None),
            Stop::Failed { status, error } => (RunState::Failed, status, Some(error)),
        };
        let ended = self.end_run(run, revision, state, counts, status, error).await?;
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

    #[test]
    fn a_tally_counts_kinds_and_unfinished_is_not_an_error() {
        let result = |code: &str, kind: &str| {
            let mut r = CodeResult::unfinished(parse_code(code).expect("a code"), String::new());
            r.outcome = kind.to_owned();
            r
        };
        let counts = tally(&[result("BR", "downloaded"), result("ZZ", "not_found"), result("AR", "http_error")]);
        assert_eq!(counts, StatusCounts { downloaded: 1, unchanged: 0, not_found: 1, errors: 1 });
        assert_eq!(ExitStatus::of_counts(&counts), ExitStatus::SomeErrors);
    }
}
