//! What must hold once the faults are over, whatever they were. Each check
//! returns the violations it found, in words, rather than panicking at the
//! first, so that one failing case reports everything it broke.
//!
//! - **One outcome a code.** Each code of a run has exactly one outcome:
//!   the first one a node published (in the stream's order; forged
//!   messages, marked by the harness, aside; a code fetched twice, by a
//!   node paused past the ack wait, has a later second one, which never
//!   counts); a finished run has one for each of the batch's codes and none
//!   for any other; the record's counts are the kinds of those outcomes;
//!   and the fleet's own reading of the run (`Ledger::details`) is that
//!   same outcome for each code.
//! - **Whole files.** Every file in every output directory is a `{CC}.gif`
//!   holding exactly its code's flag; no temporary file stays once the
//!   nodes are idle, except those of processes the harness killed with
//!   SIGKILL (the design leaves a killed process's temporary files for a
//!   later lane to remove after 10 minutes: they are listed, not failed).
//! - **Runs end, queues drain, the fleet heals.** No run stays `running`;
//!   the work queue empties (forged work included); every stream and bucket
//!   exists again; every node becomes ready.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flagsd::fleet::Fleet;
use flagsd::fleet::messages::FleetRun;
use flagsd::job::Ledger as _;
use flagsd::job::ledger::RunQuery;
use flagsd::model::codes::CountryCode;
use flagsd::model::run::{CodeResult, RunState};

use crate::harness::eventually;
use crate::nats::{Nats, RawOutcome};

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

/// Most codes named in one violation.
const SHOWN: usize = 12;

/// The suffix of a temporary file.
const TEMP_SUFFIX: &str = ".flagsd-tmp";

/// (downloaded, unchanged, not found, errors).
pub type Counts = (usize, usize, usize, usize);

/// The first `SHOWN` of `items`, and how many more.
fn some<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    let more = items.len().saturating_sub(SHOWN);
    let shown = items.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
    if more > 0 { format!("{shown} and {more} more") } else { shown }
}

/// The counts of `results`, by kind.
pub fn tally<'a>(results: impl IntoIterator<Item = &'a CodeResult>) -> Counts {
    let mut counts = (0, 0, 0, 0);
    for result in results {
        match result.outcome.as_str() {
            "downloaded" => counts.0 += 1,
            "unchanged" => counts.1 += 1,
            "not_found" => counts.2 += 1,
            _ => counts.3 += 1,
        }
    }
    counts
}

/// The outcomes of a node's batch as the nodes' rules read them, or why
/// the batch (or an entry) is not one.
fn readable(raw: &RawOutcome) -> Vec<Result<CodeResult, String>> {
    let entries: Vec<serde_json::Value> = match serde_json::from_slice(&raw.payload) {
        Ok(entries) => entries,
        Err(e) => return vec![Err(format!("not a batch of outcomes ({e}): {:?}", raw.payload))],
    };
    entries
        .into_iter()
        .map(|entry| {
            let result: CodeResult = serde_json::from_value(entry).map_err(|e| format!("not an outcome ({e})"))?;
            if result.code.len() != 2 || !result.code.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("not a code: {:?}", result.code));
            }
            if !KINDS.contains(&result.outcome.as_str()) {
                return Err(format!("an unknown kind {:?}", result.outcome));
            }
            Ok(result)
        })
        .collect()
}

/// A run's name in violations.
fn label(run: &FleetRun) -> String {
    format!("run {} of {} ({}, {:?})", run.record.id, run.record.batch, run.token(), run.record.state)
}

/// The first outcome each code of `run` got from a node, read raw from the
/// stream; the violations of one-outcome-a-code found on the way.
pub fn node_outcomes(
    nats: &Nats,
    run: &FleetRun,
    codes: &[CountryCode],
) -> Result<(BTreeMap<String, CodeResult>, Vec<String>), String> {
    let name = label(run);
    let raw = nats.outcomes(&run.token()).map_err(|e| format!("{name}: cannot read its outcomes: {e}"))?;
    let wanted: BTreeSet<&str> = codes.iter().map(CountryCode::as_str).collect();
    let mut first: BTreeMap<String, CodeResult> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut strangers = BTreeSet::new();
    for raw in raw.iter().filter(|o| !o.forged) {
        for read in readable(raw) {
            match read {
                Ok(result) if !wanted.contains(result.code.as_str()) => {
                    strangers.insert(result.code);
                }
                Ok(result) => {
                    first.entry(result.code.clone()).or_insert(result);
                }
                Err(why) => {
                    violations.push(format!("{name}: node {}'s batch #{} is unreadable: {why}", raw.node, raw.sequence))
                }
            }
        }
    }
    if !strangers.is_empty() {
        violations.push(format!("{name}: nodes published outcomes for codes not in the run: {}", some(strangers)));
    }
    Ok((first, violations))
}

/// The invariants of one ended run of a batch of `codes` (see the module
/// documentation).
pub fn check_run(fleet: &Fleet, nats: &Nats, run: &FleetRun, codes: &[CountryCode]) -> Vec<String> {
    let name = label(run);
    let (first, mut violations) = match node_outcomes(nats, run, codes) {
        Ok(read) => read,
        Err(e) => return vec![e],
    };
    if run.record.state != RunState::Finished {
        violations.push(format!("{name}: ended {:?}, and nothing in a chaos case cancels a run", run.record.state));
    }
    if run.record.state == RunState::Finished {
        let missing: Vec<&str> =
            codes.iter().map(CountryCode::as_str).filter(|code| !first.contains_key(*code)).collect();
        if !missing.is_empty() {
            violations.push(format!(
                "{name}: finished, but {} codes have no outcome: {}",
                missing.len(),
                some(missing)
            ));
        }
    }
    let counted = tally(first.values());
    match run.record.counts {
        Some(c) if (c.downloaded, c.unchanged, c.not_found, c.errors) == counted => {}
        Some(c) => violations.push(format!(
            "{name}: its record counts (downloaded, unchanged, not found, errors) = {:?}, its outcomes {counted:?}",
            (c.downloaded, c.unchanged, c.not_found, c.errors)
        )),
        None => violations.push(format!("{name}: ended without counts")),
    }
    match nats.block_on(fleet.details(run.record.id)) {
        Ok(Some(details)) => {
            let theirs: BTreeMap<&str, &CodeResult> = details.codes.iter().map(|c| (c.code.as_str(), c)).collect();
            if theirs.len() != details.codes.len() {
                violations.push(format!("{name}: the fleet's details name a code twice"));
            }
            let differ: Vec<String> = first
                .iter()
                .filter(|(code, ours)| theirs.get(code.as_str()).is_none_or(|t| *t != *ours))
                .map(|(code, ours)| {
                    let theirs = theirs.get(code.as_str()).map(|t| (t.outcome.as_str(), t.node.as_deref()));
                    format!("{code} ({} by {:?}; the fleet says {theirs:?})", ours.outcome, ours.node)
                })
                .chain(theirs.keys().filter(|code| !first.contains_key(**code)).map(|code| format!("{code} (forged)")))
                .collect();
            if !differ.is_empty() {
                violations.push(format!(
                    "{name}: the fleet's details differ from the first outcome nodes published: {}",
                    some(differ)
                ));
            }
        }
        Ok(None) => violations.push(format!("{name}: the fleet has no details of it")),
        Err(e) => violations.push(format!("{name}: cannot read its details: {e}")),
    }
    violations
}

/// The ended records of every run the fleet knows, and the violations of
/// those still running after `limit` (those that started after `since_id`
/// aside: a scheduled batch starts new ones all the time).
pub fn ended_runs(fleet: &Fleet, nats: &Nats, since_id: i64, limit: Duration) -> (Vec<FleetRun>, Vec<String>) {
    let read = || -> Result<Vec<FleetRun>, String> {
        let query = RunQuery { batch: None, limit: 1000, before: None };
        let records = nats.block_on(fleet.recent_runs(&query)).map_err(|e| e.to_string())?;
        let mut runs = Vec::new();
        for record in records {
            if let Some(run) = nats.block_on(fleet.run_record(record.id)).map_err(|e| e.to_string())? {
                runs.push(run);
            }
        }
        Ok(runs)
    };
    let mut runs = Vec::new();
    let mut error = None;
    let settled = eventually(limit, Duration::from_millis(250), || match read() {
        Ok(read) => {
            runs = read;
            error = None;
            !runs.iter().any(|r| r.record.is_running() && r.record.id <= since_id)
        }
        Err(e) => {
            error = Some(e);
            false
        }
    });
    let mut violations: Vec<String> = error.into_iter().map(|e| format!("cannot read the fleet's runs: {e}")).collect();
    if !settled {
        let running = runs.iter().filter(|r| r.record.is_running() && r.record.id <= since_id).map(label);
        violations.extend(running.map(|r| format!("{r}: still running {} s after the faults ended", limit.as_secs())));
    }
    runs.retain(|r| !r.record.is_running());
    (runs, violations)
}

/// Every file under `dirs` (recursively), but `ignore`.
fn files_under(dirs: &[PathBuf], ignore: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(_) if !ignore.contains(&path) => found.push(path),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// The process id a temporary file's name carries (`.{CC}.gif.{random}.{pid}.flagsd-tmp`).
fn temp_pid(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?.strip_suffix(TEMP_SUFFIX)?;
    name.rsplit('.').next()?.parse().ok()
}

/// The temporary files under `dirs` that no killed process left.
fn stray_temp_files(dirs: &[PathBuf], killed: &BTreeSet<u32>) -> Vec<PathBuf> {
    files_under(dirs, &[])
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(TEMP_SUFFIX))
        .filter(|p| temp_pid(p).is_none_or(|pid| !killed.contains(&pid)))
        .collect()
}

/// Waits up to `limit` for the temporary files of live processes to go;
/// the violation if some stay.
pub fn temp_files_gone(dirs: &[PathBuf], killed: &BTreeSet<u32>, limit: Duration) -> Vec<String> {
    if eventually(limit, Duration::from_millis(100), || stray_temp_files(dirs, killed).is_empty()) {
        return Vec::new();
    }
    let left = stray_temp_files(dirs, killed);
    vec![format!(
        "{} temporary files stay {} s after the nodes went idle: {}",
        left.len(),
        limit.as_secs(),
        some(left.iter().map(|p| p.display()))
    )]
}

/// Every file under `dirs` (but `ignore`) is a `{CC}.gif` holding exactly
/// its code's flag, or a temporary file (which [`temp_files_gone`] judges:
/// one may be a live download); the violations, and the temporary files of
/// killed processes.
pub fn check_files(dirs: &[PathBuf], ignore: &[PathBuf], killed: &BTreeSet<u32>) -> (Vec<String>, Vec<PathBuf>) {
    let mut violations = Vec::new();
    let mut leftovers = Vec::new();
    for path in files_under(dirs, ignore) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(TEMP_SUFFIX) {
            if temp_pid(&path).is_some_and(|pid| killed.contains(&pid)) {
                leftovers.push(path);
            }
            continue;
        }
        let code = name.strip_suffix(".gif").filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()));
        let Some(code) = code else {
            violations.push(format!("unexpected file {}", path.display()));
            continue;
        };
        let lower = code.to_ascii_lowercase();
        let Some(expected) = flagsd::testserver::dataset::get(&format!("flags/{lower}/{lower}.gif")) else {
            violations.push(format!("{} is saved, but {code} has no flag", path.display()));
            continue;
        };
        match std::fs::read(&path) {
            Ok(saved) if saved == expected => {}
            Ok(saved) => violations.push(format!(
                "{} holds {} bytes that are not {code}'s flag ({} bytes)",
                path.display(),
                saved.len(),
                expected.len()
            )),
            Err(e) => violations.push(format!("cannot read {}: {e}", path.display())),
        }
    }
    (violations, leftovers)
}

/// The outcomes of a run that saved files: each file it names holds its
/// code's flag.
pub fn check_named_files(results: &BTreeMap<String, CodeResult>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (code, result) in results {
        let Some(file) = &result.file else {
            if matches!(result.outcome.as_str(), "downloaded" | "unchanged") {
                wrong.push(format!("{code} ({} without a file)", result.outcome));
            }
            continue;
        };
        let lower = code.to_ascii_lowercase();
        let expected = flagsd::testserver::dataset::get(&format!("flags/{lower}/{lower}.gif"));
        match (std::fs::read(file), expected) {
            (Ok(saved), Some(expected)) if saved == expected => {}
            (Ok(_), _) => wrong.push(format!("{code} ({file} is not its flag)")),
            (Err(e), _) => wrong.push(format!("{code} ({file}: {e})")),
        }
    }
    if wrong.is_empty() {
        Vec::new()
    } else {
        vec![format!("{} outcomes name a file that is not their flag: {}", wrong.len(), some(wrong))]
    }
}

#[test]
fn files_are_whole_flags_or_leftovers_of_killed_nodes() {
    let dir = tempfile::tempdir().expect("a directory");
    let world = dir.path().join("world");
    std::fs::create_dir(&world).expect("a batch directory");
    let flag = |cc: &str| flagsd::testserver::dataset::get(&format!("flags/{cc}/{cc}.gif")).expect("a flag");
    let write = |name: &str, bytes: &[u8]| std::fs::write(world.join(name), bytes).expect("write");
    write("BR.gif", flag("br"));
    write("AR.gif", &flag("ar")[..100]);
    write("ZZ.gif", b"GIF89a");
    write("notes.txt", b"");
    write(".BR.gif.abc123.4242.flagsd-tmp", b"");
    write(".CL.gif.abc123.4343.flagsd-tmp", b"");
    write("filler", b"");
    let killed = BTreeSet::from([4242]);
    let (violations, leftovers) = check_files(&[dir.path().to_owned()], &[world.join("filler")], &killed);
    assert_eq!(leftovers, [world.join(".BR.gif.abc123.4242.flagsd-tmp")]);
    let text = violations.join("\n");
    assert_eq!(violations.len(), 3, "{text}");
    for expected in ["AR.gif holds 100 bytes", "ZZ has no flag", "unexpected file"] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    let stray = temp_files_gone(&[dir.path().to_owned()], &killed, Duration::ZERO).join("\n");
    assert!(stray.starts_with("1 temporary files stay") && stray.contains(".CL.gif.abc123.4343"), "{stray}");
}

#[test]
fn a_nodes_batch_holds_codes_of_known_kinds() {
    let raw = |payload: &str| RawOutcome {
        node: "a".to_owned(),
        sequence: 1,
        payload: bytes::Bytes::from(payload.to_owned()),
        forged: false,
    };
    let good = r#"{"code":"BR","outcome":"unchanged","status":304,"message":null,"attempts":1,"bytes":0,"file":"x","url":"u"}"#;
    let read = |payload: String| -> Vec<Result<String, String>> {
        readable(&raw(&payload)).into_iter().map(|r| r.map(|r| r.outcome)).collect()
    };
    assert_eq!(read(format!("[{good}]")), [Ok("unchanged".to_owned())]);
    assert!(read(format!("[{}]", good.replace("\"BR\"", "\"B1\"")))[0].is_err());
    assert!(read(format!("[{}]", good.replace("unchanged", "exploded")))[0].is_err());
    assert!(read("{".to_owned())[0].is_err());
    assert!(read(good.to_owned())[0].is_err(), "an outcome outside a batch");
    let batch = ["downloaded", "unchanged", "not_found", "io_error", "not_found"].map(|k| good.replace("unchanged", k));
    let results: Vec<CodeResult> =
        readable(&raw(&format!("[{}]", batch.join(",")))).into_iter().filter_map(Result::ok).collect();
    assert_eq!(tally(&results), (1, 1, 2, 1));
}
