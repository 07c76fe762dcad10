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

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::core::{Fleet, FleetError};
use super::messages::{RunEntry, RunState, WorkItem};
use super::names::{last_key, message_id, run_key};
use crate::config::BatchConfig;
use crate::model::exit::ExitStatus;
use crate::model::time::rfc3339;

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

pub(super) fn json<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail: every map key is a string.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

pub(super) fn parse<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| FleetError::new(format!("unreadable {what}"), e))
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
