//! The fleet's fault-injection suite: seeded schedules of faults against a
//! real fleet (real nats-server, real `flagsd serve` nodes, the built-in
//! flag server), and the invariants that must hold once the faults are
//! over.
//!
//! - [`schedule`]: a `u64` seed gives a case: nodes, codes, and timed
//!   faults (SIGKILL and SIGSTOP of nodes, nats-server restarted with or
//!   without its store, forged and replayed messages, a full disk, a clock
//!   offset, buckets deleted).
//! - [`case`]: runs a case, and [`invariants`] checks it.
//! - [`findings`]: what the cases found in the fleet, each reduced to a
//!   minimal test that fails until it is fixed.
//! - Two entry points: [`fixed_seeds_keep_every_invariant`], the seeds CI
//!   runs (chosen to cover every kind of fault: see
//!   [`the_fixed_seeds_cover_every_fault`]); and
//!   [`soak_seeds_from_the_environment`], which runs the seeds of
//!   `FLAGSD_CHAOS_SEEDS` (`1..50`, `7`, `3,9,20..25`) and none without it
//!   (`bench/chaos.sh SEEDS` runs it and sums up).
//!
//! Cases run two at a time (`FLAGSD_CHAOS_JOBS` changes that). Each prints
//! its seed and schedule first; a failing case prints its violations, the
//! nodes' warnings, where its files are kept, and how to run it alone.
//! Without a nats-server the tests print `skipped: …` (a failure with
//! `FLAGSD_REQUIRE_NATS=1`); without libfaketime, or without root for the
//! tmpfs, only that fault is skipped (a failure with `FLAGSD_REQUIRE_TOOLS=1`).

// Shared with the integration tests, of which this binary uses a part.
#[allow(dead_code)]
#[path = "../integration/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../integration/natsd.rs"]
mod natsd;

mod case;
mod findings;
mod harness;
mod invariants;
mod nats;
mod schedule;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use case::Verdict;
use schedule::{ACK_WAIT, DUPLICATE_WINDOW, FaultKind, Schedule};

/// The seeds CI runs. 213, 399 and 223 together hold every kind of fault
/// (see [`the_fixed_seeds_cover_every_fault`]); 2, 14, 33 and 56 hold the
/// faults every fleet meets (nodes killed and paused, NATS restarted and
/// emptied, a full disk, a clock offset, a replay) without deleting a
/// bucket, so that they keep guarding those whatever else fails.
const FIXED_SEEDS: [u64; 7] = [213, 399, 223, 2, 14, 33, 56];

/// Cases run at once, `FLAGSD_CHAOS_JOBS` or 2 (the machine has two cores).
fn jobs() -> usize {
    std::env::var("FLAGSD_CHAOS_JOBS").ok().and_then(|j| j.parse().ok()).filter(|j| *j > 0).unwrap_or(2)
}

/// The seeds of a list such as `1..50` (both ends included), `7`, or
/// `3,9,20..25`.
fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |s: &str| s.trim().parse::<u64>().map_err(|e| format!("{s:?} in {text:?}: {e}"));
        match part.split_once("..") {
            Some((low, high)) => {
                let (low, high) = (number(low)?, number(high.trim_start_matches('='))?);
                if low > high {
                    return Err(format!("{part:?}: the range is empty"));
                }
                seeds.extend(low..=high);
            }
            None => seeds.push(number(part)?),
        }
    }
    Ok(seeds)
}

/// Runs the cases of `seeds`, [`jobs`] at a time, each caught if it panics;
/// prints a line a seed and a summary, and panics if any failed.
fn run_seeds(seeds: &[u64]) {
    if natsd::NatsServer::reserve().is_none() {
        return; // printed `skipped: …`
    }
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let verdicts: Mutex<Vec<(u64, Duration, Verdict)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs().min(seeds.len()) {
            scope.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let began = Instant::now();
                    let verdict = std::panic::catch_unwind(|| case::run(seed)).unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default();
                        Verdict::Failed(format!("chaos seed {seed}: the harness panicked: {why}"))
                    });
                    let line = match &verdict {
                        Verdict::Passed => "passed".to_owned(),
                        Verdict::Skipped(why) => format!("skipped: {why}"),
                        Verdict::Failed(report) => format!("FAILED\n{report}"),
                    };
                    println!("chaos seed {seed}: {line} ({:.1} s)", began.elapsed().as_secs_f64());
                    verdicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
                        seed,
                        began.elapsed(),
                        verdict,
                    ));
                }
            });
        }
    });
    let verdicts = verdicts.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let failed: Vec<u64> =
        verdicts.iter().filter(|(_, _, v)| matches!(v, Verdict::Failed(_))).map(|(seed, _, _)| *seed).collect();
    let passed = verdicts.iter().filter(|(_, _, v)| matches!(v, Verdict::Passed)).count();
    let skipped = verdicts.len() - passed - failed.len();
    println!(
        "chaos: {passed} passed, {} failed, {skipped} skipped in {:.1} s{}",
        failed.len(),
        started.elapsed().as_secs_f64(),
        if failed.is_empty() { String::new() } else { format!(" (failed seeds: {failed:?})") }
    );
    assert!(failed.is_empty(), "chaos seeds failed: {failed:?} (their reports are above)");
}

#[test]
fn fixed_seeds_keep_every_invariant() {
    run_seeds(&FIXED_SEEDS);
}

#[test]
fn soak_seeds_from_the_environment() {
    let Some(text) = std::env::var("FLAGSD_CHAOS_SEEDS").ok().filter(|t| !t.trim().is_empty()) else {
        println!("no soak seeds: FLAGSD_CHAOS_SEEDS is not set (bench/chaos.sh 1..50 sets it)");
        return;
    };
    let seeds = parse_seeds(&text).unwrap_or_else(|e| panic!("FLAGSD_CHAOS_SEEDS: {e}"));
    run_seeds(&seeds);
}

#[test]
fn the_fixed_seeds_cover_every_fault() {
    let covered: std::collections::BTreeSet<&str> =
        FIXED_SEEDS.iter().flat_map(|seed| Schedule::generate(*seed).labels()).collect();
    let missing: Vec<&str> = Schedule::all_labels().into_iter().filter(|l| !covered.contains(l)).collect();
    assert!(missing.is_empty(), "no fixed seed has {missing:?}");
}

#[test]
fn a_seed_always_gives_the_same_schedule() {
    for seed in 0..200 {
        let schedule = Schedule::generate(seed);
        assert_eq!(schedule, Schedule::generate(seed));
        assert_eq!(schedule.to_string(), Schedule::generate(seed).to_string());
        assert!((2..=3).contains(&schedule.nodes) && (1..=2).contains(&schedule.runs.len()), "{schedule}");
        assert!(schedule.faults().count() > 0, "{schedule}");
        for fault in schedule.faults() {
            if let FaultKind::Pause { paused, .. } = fault.kind {
                assert!(paused > ACK_WAIT && paused > DUPLICATE_WINDOW, "{schedule}");
            }
        }
    }
    assert_ne!(Schedule::generate(1), Schedule::generate(2));
}

#[test]
fn seed_lists_are_ranges_and_numbers() {
    assert_eq!(parse_seeds("1..3"), Ok(vec![1, 2, 3]));
    assert_eq!(parse_seeds("7"), Ok(vec![7]));
    assert_eq!(parse_seeds("3, 9,20..=22"), Ok(vec![3, 9, 20, 21, 22]));
    assert!(parse_seeds("5..1").is_err());
    assert!(parse_seeds("x").is_err());
}
