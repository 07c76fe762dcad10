//! What the nodes of a fleet write to NATS, as JSON: the work items, the
//! outcomes, the run records, the tick claims and the nodes' heartbeats.
//! Every node reads what any node (or anyone with access to the subjects)
//! wrote, so every message is checked as it is read ([`read_outcome`],
//! [`read_work`]): its size is capped, its run comes from its subject, its
//! code must belong to the run, and a message that fails is dropped and
//! counted ([`Dropped`]), never trusted and never allowed to block.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::job::ledger::RunKey;
use crate::model::codes::{CodeSet, CountryCode, parse_code};
use crate::model::run::{CodeResult, RunRecord};

use super::names::run_token;

/// Most codes queued in one work item.
pub const MAX_PARCEL: usize = 16;

/// Largest work item read, in bytes: room for [`MAX_PARCEL`] codes.
pub const MAX_WORK_ITEM: usize = 256;

/// Largest batch of outcomes read, in bytes.
pub const MAX_OUTCOMES: usize = 512 * 1024;

/// Most outcomes a node publishes in one message.
pub const MAX_BATCH: usize = 64;

/// Longest message or URL of an outcome read, in bytes: a longer one is cut
/// (at a character boundary).
const MAX_TEXT: usize = 2048;

/// The outcome kinds a node publishes.
const KINDS: [&str; 9] = [
    "downloaded",
    "unchanged",
    "not_found",
    "http_error",
    "connection_error",
    "too_large",
    "io_error",
    "metadata_error",
    "internal_error",
];

/// A parcel of codes of one run, queued on the work stream as one message
/// (fewer messages than codes: NATS's work is per message); the run is the
/// subject's (`{fleet}.work.{batch}.{run}.{n}`), never the payload's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The country codes, [`MAX_PARCEL`] at most.
    pub codes: Vec<String>,
    /// Attempts made at them before they were queued in this message (by
    /// a node that handed them back); the server's delivery count adds the
    /// attempts made since.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkItem {
    /// The work item of `codes`, `attempts` made at them already.
    pub fn of(codes: &[CountryCode], attempts: u32) -> Self {
        Self { codes: codes.iter().map(CountryCode::to_string).collect(), attempts }
    }
}

/// A work item as read and checked: its codes (each once, all of its run)
/// and the attempts made at them before it was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parcel {
    /// The codes.
    pub codes: Vec<CountryCode>,
    /// Attempts made before this message was queued.
    pub attempts: u32,
}

/// How many codes a run of `codes` codes queues per work item: a sixteenth
/// of the run (so that every node of a fleet gets a share of a small run),
/// [`MAX_PARCEL`] at most.
pub fn parcel_size(codes: usize) -> usize {
    codes.div_ceil(16).clamp(1, MAX_PARCEL)
}

/// A run as the fleet records it: the batch's newest run under
/// `last.{batch}` (the record that counts while it is the newest: starts,
/// ends and cancels are compare-and-set on it), and a copy under
/// `run.{id}` for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRun {
    /// The record every ledger keeps.
    #[serde(flatten)]
    pub record: RunRecord,
    /// The run's nonce: its key is `{id}-{nonce}`.
    pub nonce: String,
    /// The scheduled tick (UNIX milliseconds) it runs for, if scheduled.
    #[serde(default)]
    pub tick: Option<u64>,
    /// The codes asked for, as a set of 676 bits (a record stays small
    /// however many codes its run has).
    pub codes: CodeSet,
}

impl FleetRun {
    /// The run's key.
    pub fn key(&self) -> RunKey {
        RunKey { batch: self.record.batch.clone(), id: self.record.id, nonce: self.nonce.clone() }
    }

    /// The run's key as its subjects carry it, `{id}-{nonce}`.
    pub fn token(&self) -> String {
        run_token(self.record.id, &self.nonce)
    }

    /// The run's codes, `AA` first.
    pub fn code_list(&self) -> Vec<CountryCode> {
        self.codes.codes()
    }
}

/// A claim on a scheduled tick: the node that will start its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickClaim {
    /// The claiming node.
    pub node: String,
    /// When it claimed, RFC 3339 UTC.
    pub claimed_at: String,
}

/// A node's heartbeat, renewed every few seconds while the node can take
/// work; a node whose heartbeat has expired is gone (or not ready).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBeat {
    /// The node's name.
    pub node: String,
    /// When it joined, RFC 3339 UTC.
    pub joined_at: String,
    /// When it last said it was alive, RFC 3339 UTC.
    pub heartbeat_at: String,
    /// Codes it is fetching right now.
    pub in_flight: u64,
    /// How much of each batch's work it holds.
    #[serde(default)]
    pub load: BTreeMap<String, Load>,
}

/// How much of a batch's work a node holds, as its heartbeat says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Codes of the work items it holds (their messages not acknowledged).
    pub holding: u64,
    /// Those of them not settled yet.
    pub open: u64,
}

/// Why a message was dropped, as the metric's `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// Not JSON, not the expected fields, too large, or an unknown kind.
    Malformed,
    /// For a run this fleet does not have, or a code not in its run.
    Foreign,
    /// A second outcome of a code (it was fetched twice).
    Duplicate,
    /// A code of a run that has ended (cancelled, or finished meanwhile).
    Ended,
}

impl DropReason {
    const ALL: [Self; 4] = [Self::Malformed, Self::Foreign, Self::Duplicate, Self::Ended];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Foreign => "foreign",
            Self::Duplicate => "duplicate",
            Self::Ended => "ended",
        }
    }
}

/// The messages a process dropped, by reason, for
/// `flagsd_fleet_messages_dropped_total`.
#[derive(Debug, Default)]
pub struct Dropped {
    counts: [AtomicU64; 4],
}

impl Dropped {
    /// Counts one message on `subject` dropped for `reason` (`why`, in
    /// more words), and says so in the log: a duplicate at debug level
    /// (redeliveries make them), anything else as a warning.
    pub fn count(&self, reason: DropReason, subject: &str, why: &str) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
        let subject = crate::model::text::terminal_safe(subject, 200);
        match reason {
            DropReason::Duplicate | DropReason::Ended => {
                tracing::debug!(reason = reason.label(), %subject, why, "message dropped");
            }
            DropReason::Malformed | DropReason::Foreign => {
                tracing::warn!(reason = reason.label(), %subject, why, "message dropped");
            }
        }
    }

    /// The counts so far, by reason label (every reason, zeros included).
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL.iter().map(|r| (r.label(), self.counts[*r as usize].load(Ordering::Relaxed))).collect()
    }
}

/// The parcel of a work item of a run with `codes`, or why it is dropped:
/// every code must be the run's, none twice, and (when its subject says
/// how many there are, `size`) as many as its subject says.
pub fn read_work(payload: &[u8], codes: &CodeSet, size: Option<usize>) -> Result<Parcel, Rejected> {
    if payload.len() > MAX_WORK_ITEM {
        return Err((DropReason::Malformed, "too large"));
    }
    let item: WorkItem = serde_json::from_slice(payload).map_err(|_| (DropReason::Malformed, "not a work item"))?;
    if item.codes.is_empty() || item.codes.len() > MAX_PARCEL || size.is_some_and(|n| n != item.codes.len()) {
        return Err((DropReason::Malformed, "not as many codes as its subject says"));
    }
    let mut parcel = Vec::with_capacity(item.codes.len());
    for text in &item.codes {
        let code = parse_code(text).filter(|_| text.len() == 2).ok_or((DropReason::Malformed, "not a country code"))?;
        if !codes.contains(code) {
            return Err((DropReason::Foreign, "a code that is not in its run"));
        }
        if parcel.contains(&code) {
            return Err((DropReason::Malformed, "a code twice"));
        }
        parcel.push(code);
    }
    Ok(Parcel { codes: parcel, attempts: item.attempts })
}

/// A message or entry dropped: why, in a reason and in words.
pub type Rejected = (DropReason, &'static str);

/// The outcomes of a run with `codes` published as `payload` (a batch: a
/// JSON array of them), each with its code, and the entries dropped (or the
/// whole message, when it is not a batch), each with why.
pub fn read_outcomes(payload: &[u8], codes: &CodeSet) -> (Vec<(CountryCode, CodeResult)>, Vec<Rejected>) {
    if payload.len() > MAX_OUTCOMES {
        return (Vec::new(), vec![(DropReason::Malformed, "too large")]);
    }
    let Ok(entries) = serde_json::from_slice::<Vec<serde_json::Value>>(payload) else {
        return (Vec::new(), vec![(DropReason::Malformed, "not a batch of outcomes")]);
    };
    let (mut results, mut drops) = (Vec::new(), Vec::new());
    for entry in entries.into_iter().take(4 * MAX_BATCH) {
        match read_entry(entry, codes) {
            Ok(found) => results.push(found),
            Err(dropped) => drops.push(dropped),
        }
    }
    (results, drops)
}

/// One outcome of a batch, checked.
fn read_entry(
    entry: serde_json::Value,
    codes: &CodeSet,
) -> Result<(CountryCode, CodeResult), (DropReason, &'static str)> {
    let mut result: CodeResult =
        serde_json::from_value(entry).map_err(|_| (DropReason::Malformed, "not an outcome"))?;
    let code = parse_code(&result.code)
        .filter(|_| result.code.len() == 2)
        .ok_or((DropReason::Malformed, "not a country code"))?;
    // `br` is read as BR: shown and recorded as BR, as a code is everywhere.
    result.code = code.to_string();
    if !codes.contains(code) {
        return Err((DropReason::Foreign, "a code that is not in its run"));
    }
    if !KINDS.contains(&result.outcome.as_str()) {
        return Err((DropReason::Malformed, "an unknown outcome"));
    }
    for text in [result.message.as_mut(), Some(&mut result.url), result.file.as_mut(), result.node.as_mut()]
        .into_iter()
        .flatten()
    {
        cut(text);
    }
    Ok((code, result))
}

/// `text` cut to [`MAX_TEXT`] bytes, at a character boundary.
fn cut(text: &mut String) {
    if text.len() > MAX_TEXT {
        let end = (0..=MAX_TEXT).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> CountryCode {
        parse_code(text).expect("a code")
    }

    #[test]
    fn work_items_must_name_codes_of_their_run_each_once() {
        let codes: CodeSet = [code("BR"), code("AR")].into_iter().collect();
        let parcel = |codes: &[&str], attempts| Parcel { codes: codes.iter().map(|c| code(c)).collect(), attempts };
        assert_eq!(read_work(br#"{"codes":["BR","AR"]}"#, &codes, Some(2)), Ok(parcel(&["BR", "AR"], 0)));
        assert_eq!(read_work(br#"{"codes":["AR"],"attempts":2}"#, &codes, None), Ok(parcel(&["AR"], 2)));
        assert_eq!(read_work(br#"{"codes":["br"]}"#, &codes, Some(1)), Ok(parcel(&["BR"], 0)));
        let foreign = read_work(br#"{"codes":["BR","CL"]}"#, &codes, Some(2));
        assert_eq!(foreign.map_err(|e| e.0), Err(DropReason::Foreign));
        for (bad, size) in [
            (&b"garbage"[..], None),
            (br#"{"code":"BR"}"#, None),
            (br#"{"codes":["B"]}"#, None),
            (br#"{"codes":[]}"#, None),
            (br#"{"codes":["BR","BR"]}"#, Some(2)),
            (br#"{"codes":["BR","AR"]}"#, Some(1)),
        ] {
            assert_eq!(read_work(bad, &codes, size).map_err(|e| e.0), Err(DropReason::Malformed), "{bad:?}");
        }
        let huge = format!(r#"{{"codes":["BR"],"pad":"{}"}}"#, "x".repeat(MAX_WORK_ITEM));
        assert_eq!(read_work(huge.as_bytes(), &codes, None).map_err(|e| e.0), Err(DropReason::Malformed));
        let full: Vec<CountryCode> = crate::model::codes::every_code().into_iter().take(MAX_PARCEL).collect();
        let item = serde_json::to_vec(&WorkItem::of(&full, u32::MAX)).expect("JSON");
        assert!(item.len() <= MAX_WORK_ITEM, "a full parcel is {} bytes", item.len());
    }

    #[test]
    fn parcels_are_small_for_small_runs() {
        assert_eq!(parcel_size(676), MAX_PARCEL);
        assert_eq!(parcel_size(100), 7);
        assert_eq!(parcel_size(20), 2);
        assert_eq!(parcel_size(16), 1);
        assert_eq!(parcel_size(0), 1);
    }

    #[test]
    fn outcomes_come_in_batches_checked_entry_by_entry() {
        let codes: CodeSet = [code("BR"), code("AR")].into_iter().collect();
        let result = |cc: &str, kind: &str| {
            let mut r = CodeResult::unfinished(code(cc), "u".into());
            r.outcome = kind.to_owned();
            r
        };
        let mut long = result("AR", "not_found");
        long.url = "é".repeat(MAX_TEXT);
        let batch = serde_json::to_vec(&[
            result("BR", "downloaded"),
            result("CL", "downloaded"),
            result("BR", "unfinished"),
            long,
        ])
        .expect("JSON");
        let (results, drops) = read_outcomes(&batch, &codes);
        assert_eq!(
            results.iter().map(|(c, r)| (c.as_str(), r.outcome.as_str())).collect::<Vec<_>>(),
            [("BR", "downloaded"), ("AR", "not_found")]
        );
        assert!(results[1].1.url.len() <= MAX_TEXT && results[1].1.url.starts_with('é'));
        assert_eq!(drops.iter().map(|d| d.0).collect::<Vec<_>>(), [DropReason::Foreign, DropReason::Malformed]);
        for bad in [&b"{"[..], br#"{"code":"BR"}"#, &vec![b' '; MAX_OUTCOMES + 1]] {
            let (results, drops) = read_outcomes(bad, &codes);
            assert!(results.is_empty());
            assert_eq!(
                drops.iter().map(|d| d.0).collect::<Vec<_>>(),
                [DropReason::Malformed],
                "{:?}",
                &bad[..bad.len().min(20)]
            );
        }
        let lower = serde_json::to_vec(&[result("BR", "downloaded")]).expect("JSON");
        let lower = String::from_utf8(lower).expect("UTF-8").replace("\"BR\"", "\"br\"");
        assert_eq!(read_outcomes(lower.as_bytes(), &codes).0[0].1.code, "BR");
        let garbage = br#"[{"code":"B","outcome":"downloaded"}, 7]"#;
        assert_eq!(read_outcomes(garbage, &codes).1.len(), 2);
    }
}
