//! Runs in a fleet: starting one (an id, a record, its codes queued),
//! reading its outcomes, finishing it once every code has one, cancelling
//! it.
//!
//! A run's progress lives in JetStream, not in the memory of the node that
//! started it: its codes are messages on the work-queue stream, its outcomes
//! messages on the outcome stream (one per code, de-duplicated by
//! `{run}/{code}`), its record an entry of the runs bucket. Any node can
//! therefore finish a run whose starter died: the first to see every code
//! accounted for writes the final record, by compare-and-set.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::core::{Fleet, FleetError};
use super::messages::{OutcomeMessage, RunEntry, RunState, WorkItem};
use super::names::{last_key, message_id, run_key};
use crate::config::BatchConfig;
use crate::model::exit::ExitStatus;
use crate::model::outcome::StatusCounts;
use crate::model::time::rfc3339;
use crate::present::api::RunCounts;
use crate::present::results::CodeResult;

/// The key holding the last run id handed out.
const NEXT_ID_KEY: &str = "next-id";

/// Publish acknowledgements awaited together when queueing a run's codes.
const PUBLISH_WINDOW: usize = 1000;

/// Why a run was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A run of the batch is in progress in the fleet.
    #[error("batch {batch} is running in the fleet (run {run})")]
    Running {
        /// The batch.
        batch: String,
        /// Its run in progress.
        run: i64,
    },
    /// NATS failed.
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

fn json<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail: every map key is a string.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn parse<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| FleetError::new(format!("unreadable {what}"), e))
}

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
    /// A new run id, unique in the fleet (a counter, by compare-and-set).
    async fn next_run_id(&self) -> Result<i64, FleetError> {
        loop {
            let entry =
                self.runs.entry(NEXT_ID_KEY).await.map_err(|e| FleetError::new("cannot read the run counter", e))?;
            let (next, written) = match entry {
                None => (
                    1,
                    self.runs
                        .create(NEXT_ID_KEY, json(&1_i64))
                        .await
                        .map_err(|e| e.kind() == CreateErrorKind::AlreadyExists),
                ),
                Some(entry) => {
                    let next = parse::<i64>("run counter", &entry.value)? + 1;
                    let update = self.runs.update(NEXT_ID_KEY, json(&next), entry.revision).await;
                    (next, update.map_err(|e| e.kind() == UpdateErrorKind::WrongLastRevision))
                }
            };
            match written {
                Ok(_) => return Ok(next),
                // Another node took this id first: try the next one.
                Err(true) => continue,
                Err(false) => {
                    return Err(FleetError::new("cannot update the run counter", "NATS did not take the write"));
                }
            }
        }
    }

    /// Run `id`'s record and its revision, if it exists.
    pub async fn run_entry(&self, id: i64) -> Result<Option<(RunEntry, u64)>, FleetError> {
        let entry =
            self.runs.entry(run_key(id)).await.map_err(|e| FleetError::new(format!("cannot read run {id}"), e))?;
        match entry {
            Some(entry) if !entry.value.is_empty() => Ok(Some((parse("run record", &entry.value)?, entry.revision))),
            _ => Ok(None),
        }
    }

    /// The latest run of `batch`, if it ever ran.
    pub async fn last_run(&self, batch: &str) -> Result<Option<(RunEntry, u64)>, FleetError> {
        let last =
            self.runs.get(last_key(batch)).await.map_err(|e| FleetError::new("cannot read the run history", e))?;
        match last {
            Some(bytes) => self.run_entry(parse("run id", &bytes)?).await,
            None => Ok(None),
        }
    }

    /// Starts a run of `batch` in the fleet, started by `trigger` (for the
    /// scheduled tick `tick`): records it and queues its codes for every
    /// node to pull. Refused while a run of the batch is in progress.
    ///
    /// The record is written first and the codes queued next, so that any
    /// node can finish the run once it has begun; the batch's pointer to its
    /// latest run is moved last, by compare-and-set on what was read when
    /// checking that no run is in progress: of two starts at once, the later
    /// one cancels its own run. A starter that dies before moving the
    /// pointer leaves a run the nodes still finish, and a batch that can run
    /// again.
    pub async fn start_run(&self, batch: &BatchConfig, trigger: &str, tick: Option<u64>) -> Result<i64, StartError> {
        let what = |id: i64| format!("cannot record run {id}");
        let pointer = self
            .runs
            .entry(last_key(&batch.name))
            .await
            .map_err(|e| FleetError::new("cannot read the run history", e))?;
        if let Some(pointer) = &pointer
            && let Some((last, _)) = self.run_entry(parse("run id", &pointer.value)?).await?
            && last.state == RunState::Running
        {
            return Err(StartError::Running { batch: batch.name.clone(), run: last.id });
        }
        let id = self.next_run_id().await?;
        let entry = RunEntry {
            id,
            batch: batch.name.clone(),
            trigger: trigger.to_owned(),
            started_by: self.node.clone(),
            tick,
            started_at: rfc3339(SystemTime::now()),
            codes: batch.job.codes.iter().map(ToString::to_string).collect(),
            state: RunState::Running,
            ended_at: None,
            counts: None,
            exit_status: None,
        };
        self.runs.put(run_key(id), json(&entry)).await.map_err(|e| FleetError::new(what(id), e))?;
        self.queue(batch, id).await?;
        let moved = match &pointer {
            Some(pointer) => self
                .runs
                .update(last_key(&batch.name), json(&id), pointer.revision)
                .await
                .map(drop)
                .map_err(|e| e.kind() == UpdateErrorKind::WrongLastRevision),
            None => self
                .runs
                .create(last_key(&batch.name), json(&id))
                .await
                .map(drop)
                .map_err(|e| e.kind() == CreateErrorKind::AlreadyExists),
        };
        match moved {
            Ok(()) => {
                tracing::info!(batch = %batch.name, run = id, codes = batch.job.codes.len(), trigger, "run queued in the fleet");
                Ok(id)
            }
            Err(true) => {
                // Another start got in between: this one gives way.
                self.cancel_run(id, ExitStatus::Interrupted).await?;
                let run = self.last_run(&batch.name).await?.map_or(0, |(last, _)| last.id);
                Err(StartError::Running { batch: batch.name.clone(), run })
            }
            Err(false) => Err(FleetError::new(what(id), "NATS did not take the write").into()),
        }
    }

    /// Queues the codes of run `id` of `batch`, each with its
    /// de-duplication id.
    async fn queue(&self, batch: &BatchConfig, id: i64) -> Result<(), FleetError> {
        let what = || format!("cannot queue the codes of run {id}");
        let subject = self.names.work_subject(&batch.name, id);
        for chunk in batch.job.codes.chunks(PUBLISH_WINDOW) {
            let mut acks = Vec::with_capacity(chunk.len());
            for &code in chunk {
                let item = WorkItem { run: id, batch: batch.name.clone(), code: code.to_string() };
                let message = PublishMessage::build().payload(json(&item)).message_id(message_id(id, code));
                acks.push(
                    self.js.send_publish(subject.clone(), message).await.map_err(|e| FleetError::new(what(), e))?,
                );
            }
            for ack in acks {
                ack.await.map_err(|e| FleetError::new(what(), e))?;
            }
        }
        Ok(())
    }

    /// Waits until run `id` is no longer running, watching its record, and
    /// returns it (`None` if it has no record).
    pub async fn wait_ended(&self, id: i64) -> Result<Option<RunEntry>, FleetError> {
        let what = || format!("cannot watch run {id}");
        // Watch first, then read: no change between the two is missed.
        let mut changes = self.runs.watch(run_key(id)).await.map_err(|e| FleetError::new(what(), e))?;
        let mut entry = self.run_entry(id).await?.map(|(entry, _)| entry);
        while entry.as_ref().is_some_and(|e| e.state == RunState::Running) {
            match changes.next().await {
                Some(Ok(change)) => entry = Some(parse("run record", &change.value)?),
                Some(Err(e)) => return Err(FleetError::new(what(), e)),
                None => return Err(FleetError::new(what(), "the watch ended")),
            }
        }
        Ok(entry)
    }

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

    /// The newest `limit` runs (of `batch` only, when given), newest first.
    pub async fn recent_runs(&self, batch: Option<&str>, limit: usize) -> Result<Vec<RunEntry>, FleetError> {
        let what = || "cannot read the run history".to_owned();
        let mut keys = self.runs.keys().await.map_err(|e| FleetError::new(what(), e))?;
        let mut ids = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| FleetError::new(what(), e))?;
            if let Some(id) = key.strip_prefix("run.").and_then(|id| id.parse::<i64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut runs = Vec::new();
        for id in ids {
            if runs.len() >= limit {
                break;
            }
            if let Some((entry, _)) = self.run_entry(id).await?
                && batch.is_none_or(|b| b == entry.batch)
            {
                runs.push(entry);
            }
        }
        Ok(runs)
    }

    /// The latest run of each of `batches`, by batch name.
    pub async fn last_runs<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, RunEntry>, FleetError> {
        let mut last = BTreeMap::new();
        for batch in batches {
            if let Some((entry, _)) = self.last_run(batch).await? {
                last.insert(batch.to_owned(), entry);
            }
        }
        Ok(last)
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
