//! Runs in a fleet: starting one, queueing its codes (again, when the fleet
//! lost them), ending it once, and reading the history.
//!
//! A batch's newest run is the record under `last.{batch}`: a start is a
//! compare-and-set that replaces an ended run (or none) with a new running
//! one, so of two starts at once exactly one wins, and a batch never runs
//! twice at once; a scheduled start also refuses a tick the newest run
//! already ran for, so a tick runs at most once. Ends and cancels are
//! compare-and-sets on the same record, so a run ends once. A copy of each
//! record lives under `run.{id}` for the history (written at the start and
//! at the end; `last.{batch}` wins where they disagree).
//!
//! The record is written before the codes are queued: a starter that dies
//! while queueing leaves a running run that the fleet completes (the
//! finisher queues its missing codes again: [`Fleet::requeue_missing`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_nats::jetstream::kv::{CreateErrorKind, Entry, UpdateErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::core::{Fleet, FleetError, fleet_error, nats_error};
use super::messages::{FleetRun, MAX_PARCEL, WorkItem, parcel_size};
use super::names::Names;
use super::names::{last_key, message_id, run_key};
use crate::job::ledger::{FleetFailure, LedgerError, RunQuery, RunStart};
use crate::model::causes::Causes;
use crate::model::codes::CountryCode;
use crate::model::exit::ExitStatus;
use crate::model::run::{CodeResult, RunRecord, RunState, tally};
use crate::model::time::rfc3339;

/// The key holding the last run id handed out.
const NEXT_ID_KEY: &str = "next-id";

/// Publish acknowledgements awaited together when queueing a run's codes.
const PUBLISH_WINDOW: usize = 1000;

/// Run records kept in the history: the record `RUNS_KEPT` ids older than
/// a run that ends is deleted.
pub const RUNS_KEPT: i64 = 10_000;

/// Most records read to fill one page of the history.
const SCAN_LIMIT: usize = 2_000;

/// `value` as JSON.
pub(super) fn json<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail: every map key is a string.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// `bytes` as a `T`, or an error naming `what`.
pub(super) fn parse<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| nats_error(format!("unreadable {what}"), e))
}

/// A random nonce for a new run: 12 hex digits.
fn new_nonce() -> String {
    let mut bytes = [0u8; 6];
    // Without the system's randomness the time's low bits still make a
    // repeat unlikely; a nonce needs to be unique, not secret.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    crate::model::digest::hex(&bytes)
}

impl Fleet {
    /// A new run id (a counter, by compare-and-set: no two starters get the
    /// same one while the bucket lives).
    async fn next_run_id(&self) -> Result<i64, FleetError> {
        loop {
            let entry = self.runs.entry(NEXT_ID_KEY).await.map_err(|e| nats_error("cannot read the run counter", e))?;
            let (next, written) =
                match entry {
                    None => (
                        1,
                        self.runs.create(NEXT_ID_KEY, json(&1_i64)).await.map(drop).map_err(|e| {
                            (e.kind() == CreateErrorKind::AlreadyExists).then_some(()).ok_or(e.to_string())
                        }),
                    ),
                    Some(entry) => {
                        let next = parse::<i64>("run counter", &entry.value)?.max(0) + 1;
                        let update = self.runs.update(NEXT_ID_KEY, json(&next), entry.revision).await;
                        let lost = |e: async_nats::jetstream::kv::UpdateError| {
                            (e.kind() == UpdateErrorKind::WrongLastRevision).then_some(()).ok_or(e.to_string())
                        };
                        (next, update.map(drop).map_err(lost))
                    }
                };
            match written {
                Ok(()) => return Ok(next),
                // Another node took this id first: try the next one.
                Err(Ok(())) => continue,
                Err(Err(e)) => return Err(fleet_error("cannot update the run counter", FleetFailure::Other, e)),
            }
        }
    }

    /// `batch`'s newest run and the revision of its record, if it ever
    /// ran. A record that cannot be read (an older flagsd's, or one written
    /// by hand) counts as none, with a warning: it never blocks the batch.
    pub async fn last_run(&self, batch: &str) -> Result<Option<(FleetRun, u64)>, FleetError> {
        let entry = self.runs.entry(last_key(batch)).await.map_err(|e| nats_error("cannot read the run history", e))?;
        Ok(entry.and_then(|entry| readable(batch, &entry).map(|run| (run, entry.revision))))
    }

    /// Run `id`'s record: its copy in the history, or the batch's newest
    /// run when that is the same run (which wins when they disagree).
    pub async fn run_record(&self, id: i64) -> Result<Option<FleetRun>, FleetError> {
        let entry = self.runs.entry(run_key(id)).await.map_err(|e| nats_error(format!("cannot read run {id}"), e))?;
        let Some(copy) = entry.filter(|e| !e.value.is_empty()) else { return Ok(None) };
        let Ok(copy) = serde_json::from_slice::<FleetRun>(&copy.value) else {
            tracing::warn!(run = id, "an unreadable run record is left out");
            return Ok(None);
        };
        if copy.record.is_running()
            && let Some((last, _)) = self.last_run(&copy.record.batch).await?
            && last.record.id == id
            && last.nonce == copy.nonce
        {
            return Ok(Some(last));
        }
        Ok(Some(copy))
    }

    /// Starts a run as `start` says: records it as `batch`'s newest run and
    /// queues its codes for every node to pull. Refused while a run of the
    /// batch is in progress, or (for a scheduled start) when the newest run
    /// already ran for this tick or a later one.
    pub async fn start_run(&self, start: RunStart<'_>) -> Result<FleetRun, FleetError> {
        let batch = start.batch;
        let current =
            self.runs.entry(last_key(batch)).await.map_err(|e| nats_error("cannot read the run history", e))?;
        let last = current.as_ref().and_then(|entry| readable(batch, entry));
        if let Some(last) = &last {
            if last.record.is_running() {
                return Err(running(batch, last.record.id));
            }
            if let (Some(tick), Some(ran)) = (start.tick, last.tick)
                && ran >= tick
            {
                return Err(LedgerError::TickRan { batch: batch.to_owned(), tick, run: last.record.id });
            }
        }
        let id = self.next_run_id().await?;
        let mut record = RunRecord::started(id, batch, start.trigger, rfc3339(SystemTime::now()));
        record.started_by = Some(self.node.clone());
        let run =
            FleetRun { record, nonce: new_nonce(), tick: start.tick, codes: start.codes.iter().copied().collect() };
        let moved = match &current {
            Some(entry) => self
                .runs
                .update(last_key(batch), json(&run), entry.revision)
                .await
                .map(drop)
                .map_err(|e| (e.kind() == UpdateErrorKind::WrongLastRevision).then_some(()).ok_or(e.to_string())),
            None => self
                .runs
                .create(last_key(batch), json(&run))
                .await
                .map(drop)
                .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists).then_some(()).ok_or(e.to_string())),
        };
        match moved {
            Ok(()) => {}
            // Another start got in between: this one gives way.
            Err(Ok(())) => {
                let winner = self.last_run(batch).await?.map_or(0, |(run, _)| run.record.id);
                return Err(running(batch, winner));
            }
            Err(Err(e)) => return Err(fleet_error(format!("cannot record run {id}"), FleetFailure::Other, e)),
        }
        // The history's copy is written while the codes are queued.
        let ((), queued) = tokio::join!(self.save_copy(&run), self.queue(batch, &run, start.codes));
        match queued {
            Ok(()) => {
                tracing::info!(%batch, run = id, codes = run.codes.len(), trigger = start.trigger, "run queued in the fleet");
            }
            // The run is recorded: the fleet queues what is missing.
            Err(e) => tracing::warn!(%batch, run = id, error = %e, "not every code was queued; the fleet queues them"),
        }
        Ok(run)
    }

    /// Writes `run`'s copy in the history (a failure is logged: the
    /// batch's newest record holds it meanwhile).
    async fn save_copy(&self, run: &FleetRun) {
        if let Err(e) = self.runs.put(run_key(run.record.id), json(run)).await {
            tracing::warn!(run = run.record.id, error = %e, "cannot write the run's copy in the history");
        }
    }

    /// Queues `codes` of `run` of `batch` in parcels (work items of
    /// several codes: [`parcel_size`]), each with its de-duplication id (so
    /// queueing the same codes twice within the window queues them once).
    pub(super) async fn queue(&self, batch: &str, run: &FleetRun, codes: &[CountryCode]) -> Result<(), FleetError> {
        let items = codes.chunks(parcel_size(run.codes.len())).map(|parcel| (parcel, 0));
        self.publish_work(batch, &run.token(), items, true).await
    }

    /// Queues again codes of run `token` of `batch` that a node gave back,
    /// each with the attempts made at it (in work items of codes with as
    /// many attempts, without de-duplication ids: they are new messages).
    pub(super) async fn queue_again(
        &self,
        batch: &str,
        token: &str,
        codes: &[(CountryCode, u32)],
    ) -> Result<(), FleetError> {
        let mut by_attempts: BTreeMap<u32, Vec<CountryCode>> = BTreeMap::new();
        for &(code, attempts) in codes {
            by_attempts.entry(attempts).or_default().push(code);
        }
        let items = by_attempts
            .iter()
            .flat_map(|(attempts, codes)| codes.chunks(MAX_PARCEL).map(move |parcel| (parcel, *attempts)));
        self.publish_work(batch, token, items, false).await
    }

    /// Publishes `items` (codes, and the attempts made at them) as work
    /// items of run `token` of `batch`, with de-duplication ids when
    /// `dedupe`, awaiting the acknowledgements [`PUBLISH_WINDOW`] at a time.
    async fn publish_work<'a>(
        &self,
        batch: &str,
        token: &str,
        items: impl Iterator<Item = (&'a [CountryCode], u32)>,
        dedupe: bool,
    ) -> Result<(), FleetError> {
        let what = || format!("cannot queue the codes of run {token}");
        let mut acks = Vec::new();
        let mut items = items.peekable();
        while items.peek().is_some() {
            for (parcel, attempts) in items.by_ref().take(PUBLISH_WINDOW) {
                let subject = self.names.work_subject(batch, token, parcel.len());
                let mut message = PublishMessage::build().payload(json(&WorkItem::of(parcel, attempts)));
                if dedupe {
                    message = message.message_id(message_id(token, parcel));
                }
                acks.push(self.js.send_publish(subject, message).await.map_err(|e| nats_error(what(), e))?);
            }
            for ack in acks.drain(..) {
                ack.await.map_err(|e| nats_error(what(), e))?;
            }
        }
        Ok(())
    }

    /// How many of `run`'s codes of `batch` wait in the work queue (queued
    /// or held by a node).
    pub(super) async fn queued(&self, batch: &str, run: &FleetRun) -> Result<u64, FleetError> {
        let what = || format!("cannot count the queued codes of run {}", run.record.id);
        self.codes_in_queue(&self.names.run_work(batch, &run.token())).await.map_err(|e| nats_error(what(), e))
    }

    /// How many codes the work items on `filter` hold (queued or held by
    /// a node), as their subjects say.
    pub(super) async fn codes_in_queue(&self, filter: &str) -> Result<u64, async_nats::Error> {
        use futures_util::StreamExt as _;
        let mut subjects = self.work.info_with_subjects(filter).await?;
        let mut codes = 0;
        while let Some(item) = subjects.next().await {
            let (subject, messages) = item?;
            codes += Names::codes_of_work_subject(&subject) * messages as u64;
        }
        Ok(codes)
    }

    /// Queues again the codes of `batch`'s running `run` that have no
    /// outcome, when none of its codes is in the queue any more (the queue
    /// was lost, or its starter died while queueing); the number queued.
    pub async fn requeue_missing(&self, batch: &str, run: &FleetRun) -> Result<usize, FleetError> {
        if self.queued(batch, run).await? > 0 {
            return Ok(0);
        }
        let (done, _) = self.outcomes_of(run).await?;
        let missing: Vec<CountryCode> =
            run.code_list().into_iter().filter(|code| !done.iter().any(|o| o.code == code.as_str())).collect();
        if !missing.is_empty() {
            self.queue(batch, run, &missing).await?;
            tracing::warn!(%batch, run = run.record.id, codes = missing.len(), "codes queued again: the fleet had lost them");
        }
        Ok(missing.len())
    }

    /// Ends `run` (the batch's newest, read at `revision`) in `state` with
    /// `counts` and `status` (and `error`), unless it changed meanwhile;
    /// the ended record, or `None` when another node ended it first.
    pub(super) async fn end_run(
        &self,
        run: FleetRun,
        revision: u64,
        state: RunState,
        outcomes: &[CodeResult],
        status: ExitStatus,
        error: Option<String>,
    ) -> Result<Option<RunRecord>, FleetError> {
        let id = run.record.id;
        let ended = FleetRun {
            record: RunRecord {
                ended_at: Some(rfc3339(SystemTime::now())),
                state,
                counts: Some(tally(outcomes)),
                exit_status: Some(status.code()),
                error,
                causes: Causes::of(outcomes).kept(),
                ..run.record
            },
            ..run
        };
        match self.runs.update(last_key(&ended.record.batch), json(&ended), revision).await {
            Ok(_) => {}
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => return Ok(None),
            Err(e) => return Err(nats_error(format!("cannot record the end of run {id}"), e)),
        }
        self.save_copy(&ended).await;
        if let Err(e) = self.runs.purge(run_key(id - RUNS_KEPT)).await {
            tracing::debug!(error = %e, "cannot forget an old run");
        }
        Ok(Some(ended.record))
    }

    /// The runs `query` asks for, newest first: the ids below the counter
    /// (or below `query.before`), read one by one, at most [`SCAN_LIMIT`].
    pub async fn recent_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, FleetError> {
        let top = match self.runs.get(NEXT_ID_KEY).await.map_err(|e| nats_error("cannot read the run counter", e))? {
            Some(bytes) => parse::<i64>("run counter", &bytes)?,
            None => return Ok(Vec::new()),
        };
        let start = query.before.map_or(top, |before| (before - 1).min(top));
        let mut runs = Vec::new();
        for id in (1..=start).rev().take(SCAN_LIMIT) {
            if runs.len() >= query.limit {
                break;
            }
            if let Some(run) = self.run_record(id).await?
                && query.batch.as_deref().is_none_or(|b| b == run.record.batch)
            {
                runs.push(run.record);
            }
        }
        Ok(runs)
    }

    /// The newest run of each of `batches`, by batch name.
    pub async fn last_runs(&self, batches: &[String]) -> Result<BTreeMap<String, RunRecord>, FleetError> {
        let mut last = BTreeMap::new();
        for batch in batches {
            if let Some((run, _)) = self.last_run(batch).await? {
                last.insert(batch.clone(), run.record);
            }
        }
        Ok(last)
    }
}

/// The error of a start refused because run `run` of `batch` is running.
fn running(batch: &str, run: i64) -> FleetError {
    LedgerError::Running { batch: batch.to_owned(), run, place: " in the fleet" }
}

/// The run record in `entry`, unless it cannot be read (logged).
fn readable(batch: &str, entry: &Entry) -> Option<FleetRun> {
    if entry.value.is_empty() {
        return None;
    }
    match serde_json::from_slice::<FleetRun>(&entry.value) {
        Ok(run) if run.record.batch == *batch => Some(run),
        Ok(_) | Err(_) => {
            tracing::warn!(%batch, "the batch's newest run record is unreadable; it counts as none");
            None
        }
    }
}
