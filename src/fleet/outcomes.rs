//! A run's outcomes and its end: each code's outcome published once
//! (de-duplicated by `{run}/{code}`, on a subject per kind so that the
//! stream counts them), the run finished by whichever node first sees every
//! code accounted for, or cancelled.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::kv::UpdateErrorKind;
use async_nats::jetstream::message::PublishMessage;
use futures_util::StreamExt as _;

use super::core::{Fleet, FleetError};
use super::messages::{OutcomeMessage, RunEntry, RunState};
use super::names::run_key;
use super::runs::{json, parse};
use crate::model::exit::ExitStatus;
use crate::model::outcome::StatusCounts;
use crate::model::time::rfc3339;
use crate::present::api::RunCounts;
use crate::present::results::CodeResult;

/// The counts of a run's outcomes, given as kinds and how many of each,
/// and its exit status.
fn tally<'a>(kinds: impl IntoIterator<Item = (&'a str, usize)>) -> (RunCounts, ExitStatus) {
    let mut counts = StatusCounts::default();
    for (kind, n) in kinds {
        for _ in 0..n {
            counts.record_kind(kind);
        }
    }
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let run_counts = RunCounts {
        downloaded: n(counts.downloaded),
        unchanged: n(counts.unchanged),
        not_found: n(counts.not_found),
        errors: n(counts.errors),
    };
    (run_counts, ExitStatus::of_counts(&counts))
}

impl Fleet {
    /// Publishes `result` as the outcome of its code in run `run`; a second
    /// outcome for the same code is dropped by de-duplication.
    pub async fn publish_outcome(&self, run: i64, result: CodeResult) -> Result<(), FleetError> {
        let id = format!("{run}/{}", result.code);
        let kind = result.outcome.clone();
        let message = OutcomeMessage { run, result };
        let publish = PublishMessage::build().payload(json(&message)).message_id(id);
        let what = || format!("cannot publish an outcome of run {run}");
        let ack = self
            .js
            .send_publish(self.names.outcome_subject(run, &kind), publish)
            .await
            .map_err(|e| FleetError::new(what(), e))?;
        ack.await.map_err(|e| FleetError::new(what(), e))?;
        Ok(())
    }

    /// How many outcomes of each kind the stream holds for run `id`.
    async fn outcome_counts(&self, id: i64) -> Result<BTreeMap<String, usize>, FleetError> {
        let what = || format!("cannot count the outcomes of run {id}");
        let filter = self.names.run_outcomes(id);
        let mut subjects = self.outcomes.info_with_subjects(&filter).await.map_err(|e| FleetError::new(what(), e))?;
        let prefix = filter.trim_end_matches('*');
        let mut counts = BTreeMap::new();
        while let Some(item) = subjects.next().await {
            let (subject, n) = item.map_err(|e| FleetError::new(what(), e))?;
            if let Some(kind) = subject.strip_prefix(prefix) {
                *counts.entry(kind.to_owned()).or_insert(0) += n;
            }
        }
        Ok(counts)
    }

    /// The outcomes of run `id`, in the order they were recorded, one per
    /// code (the first, should a code have two).
    pub async fn outcomes(&self, id: i64) -> Result<Vec<OutcomeMessage>, FleetError> {
        let expected: usize = self.outcome_counts(id).await?.values().sum();
        if expected == 0 {
            return Ok(Vec::new());
        }
        let what = || format!("cannot read the outcomes of run {id}");
        let config = pull::OrderedConfig { filter_subject: self.names.run_outcomes(id), ..Default::default() };
        let consumer = self.outcomes.create_consumer(config).await.map_err(|e| FleetError::new(what(), e))?;
        let mut messages = consumer.messages().await.map_err(|e| FleetError::new(what(), e))?;
        let mut seen = HashSet::new();
        let mut outcomes = Vec::new();
        for _ in 0..expected {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(FleetError::new(what(), e)),
                None => break,
            };
            let outcome: OutcomeMessage = parse("outcome", &message.payload)?;
            if seen.insert(outcome.result.code.clone()) {
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }

    /// Writes run `id`'s final record if every code has an outcome and no
    /// other node wrote it first; returns it when this call wrote it.
    ///
    /// The counts come from the stream's count of each kind's subject (one
    /// request); only when they add up to more than the run's codes (a code
    /// published twice, further apart than the de-duplication window) are
    /// the outcomes read, keeping the first of each code.
    pub async fn finish_if_complete(&self, id: i64) -> Result<Option<RunEntry>, FleetError> {
        let Some((entry, revision)) = self.run_entry(id).await? else { return Ok(None) };
        if entry.state != RunState::Running {
            return Ok(None);
        }
        let by_kind = self.outcome_counts(id).await?;
        let total: usize = by_kind.values().sum();
        let (counts, status) = match total.cmp(&entry.codes.len()) {
            std::cmp::Ordering::Less => return Ok(None),
            std::cmp::Ordering::Equal => tally(by_kind.iter().map(|(kind, n)| (kind.as_str(), *n))),
            std::cmp::Ordering::Greater => {
                let outcomes = self.outcomes(id).await?;
                if outcomes.len() < entry.codes.len() {
                    return Ok(None);
                }
                tally(outcomes.iter().map(|o| (o.result.outcome.as_str(), 1)))
            }
        };
        self.end_run(entry, revision, RunState::Finished, counts, status).await
    }

    /// Cancels run `id` (stopped by `signal_status`): its queued codes are
    /// removed, and its record ends with what finished.
    pub async fn cancel_run(&self, id: i64, signal_status: ExitStatus) -> Result<Option<RunEntry>, FleetError> {
        let Some((entry, revision)) = self.run_entry(id).await? else { return Ok(None) };
        if entry.state != RunState::Running {
            return Ok(None);
        }
        let subject = self.names.work_subject(&entry.batch, id);
        self.work.purge().filter(subject).await.map_err(|e| FleetError::new(format!("cannot cancel run {id}"), e))?;
        let outcomes = self.outcomes(id).await?;
        let (counts, _) = tally(outcomes.iter().map(|o| (o.result.outcome.as_str(), 1)));
        self.end_run(entry, revision, RunState::Cancelled, counts, signal_status).await
    }

    /// Writes the end of a run by compare-and-set on `revision`.
    async fn end_run(
        &self,
        entry: RunEntry,
        revision: u64,
        state: RunState,
        counts: RunCounts,
        status: ExitStatus,
    ) -> Result<Option<RunEntry>, FleetError> {
        let ended = RunEntry {
            state,
            ended_at: Some(rfc3339(SystemTime::now())),
            counts: Some(counts),
            exit_status: Some(status.code()),
            ..entry
        };
        match self.runs.update(run_key(ended.id), json(&ended), revision).await {
            Ok(_) => Ok(Some(ended)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(FleetError::new(format!("cannot record the end of run {}", ended.id), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: &str, kind: &str) -> OutcomeMessage {
        let mut result = CodeResult::unfinished(crate::model::codes::parse_code(code).expect("a code"), String::new());
        result.outcome = kind.to_owned();
        OutcomeMessage { run: 1, result }
    }

    #[test]
    fn a_tally_counts_kinds_and_errors_make_status_1() {
        let all_good = [outcome("BR", "downloaded"), outcome("ZZ", "not_found"), outcome("AR", "unchanged")];
        let kinds = |outcomes: &[OutcomeMessage]| -> Vec<(String, usize)> {
            outcomes.iter().map(|o| (o.result.outcome.clone(), 1)).collect()
        };
        let (counts, status) = tally(kinds(&all_good).iter().map(|(k, n)| (k.as_str(), *n)));
        assert_eq!(counts, RunCounts { downloaded: 1, unchanged: 1, not_found: 1, errors: 0 });
        assert_eq!(status, ExitStatus::Success);
        let (counts, status) = tally([("http_error", 1), ("downloaded", 1)]);
        assert_eq!(tally([("not_found", 482), ("downloaded", 194)]).0.not_found, 482);
        assert_eq!((counts.errors, status), (1, ExitStatus::SomeErrors));
    }
}
