//! One chaos case, from its seed: a nats-server, the flag server, the
//! nodes; each run submitted with `flagsd run --json` while its faults are
//! injected on time; then, once the faults are over, the invariants
//! checked ([`crate::invariants`]), the fleet healed (the full disk
//! released), and one more run with every node healthy, which must be
//! exact. A case that fails keeps its directory (configuration, node logs,
//! `flagsd run` output) and says where it is.
//!
//! The faults follow the schedule's times, with one exception: a forged
//! message or a bucket deletion due while nats-server is down waits until
//! the server is back, as any client's would.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flagsd::config::FleetSettings;
use flagsd::fleet::messages::FleetRun;
use flagsd::fleet::{Fleet, Patience};
use flagsd::model::codes::{CountryCode, parse_code};
use flagsd::testserver::{TestServer, TestServerOptions};
use serde_json::Value;

use crate::harness::{
    FLEET, LIBFAKETIME, Node, SmallDisk, Submission, eventually, faketime_env, is_root, require_tools, write_config,
};
use crate::invariants::{check_files, check_named_files, check_run, ended_runs, node_outcomes, tally, temp_files_gone};
use crate::nats::{Nats, Target};
use crate::natsd::NatsServer;
use crate::schedule::{ACK_WAIT, Codes, DUPLICATE_WINDOW, FaultKind, Forgery, NODE_NAMES, Rng, Schedule};

/// How long a node may take to join.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

/// How long a `flagsd run` may take once its faults are over: longer than
/// its 60 s of patience with NATS.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// How long the runs may take to end once the faults are over.
const END_LIMIT: Duration = Duration::from_secs(60);

/// How long the fleet may take to heal, drain and go idle.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The codes of the scheduled batch of a case with a clock offset.
const TICK_CODES: [&str; 4] = ["BR", "AR", "CL", "ZZ"];

/// How a case ended.
#[derive(Debug)]
pub enum Verdict {
    /// Every invariant held.
    Passed,
    /// A component is missing: why.
    Skipped(String),
    /// What broke, with the schedule, the logs and where the case's files are.
    Failed(String),
}

/// One step of a run's timeline.
#[derive(Debug)]
enum Action {
    Kill(usize),
    Launch(usize),
    Pause(usize),
    Resume(usize),
    NatsDown { hard: bool },
    NatsUp { empty: bool },
    Forge(Vec<Forgery>, u64),
    Fill,
    Delete(crate::schedule::Bucket),
}

impl Action {
    /// Whether it is a message to NATS (rather than to a process).
    fn talks_to_nats(&self) -> bool {
        matches!(self, Self::Forge(..) | Self::Delete(_))
    }
}

/// The actions of `faults`, at their times after the submission, in order.
fn timeline(faults: &[crate::schedule::Fault]) -> Vec<(Duration, Action)> {
    let mut steps = Vec::new();
    for fault in faults {
        let at = fault.at;
        match &fault.kind {
            FaultKind::Kill { node, down } => {
                steps.extend([(at, Action::Kill(*node)), (at + *down, Action::Launch(*node))])
            }
            FaultKind::Pause { node, paused } => {
                steps.extend([(at, Action::Pause(*node)), (at + *paused, Action::Resume(*node))]);
            }
            FaultKind::NatsRestart { hard, down } => {
                steps.extend([(at, Action::NatsDown { hard: *hard }), (at + *down, Action::NatsUp { empty: false })]);
            }
            FaultKind::NatsWipe { down } => {
                steps.extend([(at, Action::NatsDown { hard: true }), (at + *down, Action::NatsUp { empty: true })]);
            }
            FaultKind::Forge { forgeries, pick } => steps.push((at, Action::Forge(forgeries.clone(), *pick))),
            FaultKind::DiskFull { .. } => steps.push((at, Action::Fill)),
            FaultKind::DeleteBucket(bucket) => steps.push((at, Action::Delete(*bucket))),
        }
    }
    steps.sort_by_key(|(at, _)| *at);
    steps
}

/// A run the harness submitted, and how its `flagsd run` ended.
struct Submitted {
    /// Which run of the schedule (from 0).
    index: usize,
    /// Its id and nonce, as read from the fleet after the submission.
    key: Option<(i64, String)>,
    exit: crate::harness::Exit,
}

/// Everything a case runs, in the order it is dropped: nodes first, the
/// full disk unmounted before its directory goes.
struct World {
    nodes: Vec<Node>,
    disk: Option<(usize, SmallDisk)>,
    nats: NatsServer,
    /// The flag server, which the nodes fetch from as long as it lives.
    _flags: TestServer,
    dir: tempfile::TempDir,
}

/// The settings of the checker's own client of the fleet.
fn reader(url: &str) -> FleetSettings {
    FleetSettings {
        servers: vec![url.to_owned()],
        url_auth: None,
        name: FLEET.to_owned(),
        node: "chaos-checker".to_owned(),
        replicas: 1,
        creds_file: None,
        token_file: None,
        tls_ca_file: None,
        ack_wait: ACK_WAIT,
        duplicate_window: DUPLICATE_WINDOW,
    }
}

/// `GET /readyz` of the admin endpoint at `addr`: its status, if it answers.
fn readyz(addr: &str) -> Option<u16> {
    let client = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().ok()?;
    client.get(format!("http://{addr}/readyz")).send().ok().map(|r| r.status().as_u16())
}

/// The lines of a node's log worth reading in a report: warnings, errors
/// and the harness's launch lines, the last `most` of them.
fn log_excerpt(log: &str, most: usize) -> String {
    let lines: Vec<&str> =
        log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.starts_with("--- chaos")).collect();
    lines[lines.len().saturating_sub(most)..].join("\n")
}

/// Runs the case of `seed`.
pub fn run(seed: u64) -> Verdict {
    let schedule = Schedule::generate(seed);
    println!("{schedule}");
    let Some(nats) = NatsServer::start() else {
        return Verdict::Skipped("no nats-server".to_owned());
    };
    let clock = schedule.clock.filter(|_| {
        let found = std::path::Path::new(LIBFAKETIME).exists();
        assert!(found || !require_tools(), "FLAGSD_REQUIRE_TOOLS=1 but {LIBFAKETIME} is missing (package faketime)");
        if !found {
            println!("skipped: seed {seed}'s clock offset: {LIBFAKETIME} is missing (apt-get install faketime)");
        }
        found
    });
    let dir = tempfile::Builder::new().prefix("flagsd-chaos-").tempdir().expect("a directory for the case");
    let disk = schedule.small_disk().and_then(|node| {
        if !is_root() {
            println!("skipped: seed {seed}'s full disk: mounting a tmpfs needs root");
            return None;
        }
        match SmallDisk::mount(&dir.path().join("disk")) {
            Ok(disk) => Some((node, disk)),
            Err(why) => {
                assert!(!require_tools(), "FLAGSD_REQUIRE_TOOLS=1 but no tmpfs for the full disk: {why}");
                println!("skipped: seed {seed}'s full disk: {why}");
                None
            }
        }
    });
    let delay = format!("{}", schedule.delay.as_secs_f64()).parse().expect("a delay");
    let flags = crate::helpers::server(TestServerOptions { delay: Some(delay), workers: 4, ..Default::default() });
    let config = write_config(dir.path(), &nats.url(), &flags.url(), schedule.codes.keyword(), clock.is_some());
    let nodes = (0..schedule.nodes)
        .map(|i| {
            let mut env = Vec::new();
            if let Some((_, offset)) = clock.filter(|(node, _)| *node == i) {
                env.extend(faketime_env(offset));
            }
            if let Some((_, disk)) = disk.as_ref().filter(|(node, _)| *node == i) {
                env.push(("FLAGSD_DEFAULTS__OUTPUT".to_owned(), disk.path().display().to_string()));
            }
            Node::start(&config, NODE_NAMES[i], env)
        })
        .collect();
    let mut world = World { nodes, disk, nats, _flags: flags, dir };
    let violations = play(&schedule, &mut world, &config);
    if violations.is_empty() {
        return Verdict::Passed;
    }
    let mut report = format!("{schedule}\n{} violations:\n", violations.len());
    for violation in &violations {
        report += &format!("  - {violation}\n");
    }
    for node in &world.nodes {
        report += &format!("--- node {} (warnings and errors):\n{}\n", node.name, log_excerpt(&node.log(), 40));
    }
    let kept = std::mem::replace(&mut world.dir, tempfile::tempdir().expect("a directory")).keep();
    report += &format!("the case's files (configuration, node logs, run output) are kept in {}\n", kept.display());
    report += &format!("reproduce: FLAGSD_CHAOS_SEEDS={seed} cargo test --test chaos soak -- --nocapture\n");
    Verdict::Failed(report)
}

/// The codes of batch `batch` in `schedule`'s configuration.
fn batch_codes(schedule: &Schedule, batch: &str) -> Vec<CountryCode> {
    match batch {
        "tick" => TICK_CODES.iter().filter_map(|c| parse_code(c)).collect(),
        _ => schedule.codes.list(),
    }
}

/// The runs and their faults, then the checks; the violations.
fn play(schedule: &Schedule, world: &mut World, config: &std::path::Path) -> Vec<String> {
    let mut violations = Vec::new();
    if !eventually(JOIN_LIMIT, Duration::from_millis(50), || world.nodes.iter().all(Node::joined)) {
        let late: Vec<&str> = world.nodes.iter().filter(|n| !n.joined()).map(|n| n.name.as_str()).collect();
        return vec![format!("nodes {late:?} did not join within {} s", JOIN_LIMIT.as_secs())];
    }
    let observer = Nats::connect(&world.nats.url());
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut submitted: Vec<Submitted> = Vec::new();
    for (index, faults) in schedule.runs.iter().enumerate() {
        let submission = Submission::start(config, "world", &format!("run-{}", index + 1));
        let mut key = None;
        eventually(Duration::from_secs(20), Duration::from_millis(50), || {
            key = observer.last_run("world").ok().flatten().filter(|r| !seen.contains(&r.nonce));
            key.is_some()
        });
        let key: Option<(i64, String)> = key.map(|r: FleetRun| (r.record.id, r.nonce));
        if let Some((_, nonce)) = &key {
            seen.insert(nonce.clone());
        }
        let previous = submitted.last().and_then(|s| s.key.clone());
        let mut steps: VecDeque<(Duration, Action)> = timeline(faults).into();
        while let Some((at, action)) = steps.pop_front() {
            if let Some(wait) = (submission.started + at).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // A client cannot reach a server that is down: what it would
            // send waits until the server is back.
            let back = steps.iter().position(|(_, a)| matches!(a, Action::NatsUp { .. }));
            if let Some(back) = back.filter(|_| action.talks_to_nats() && !world.nats.is_running()) {
                steps.insert(back + 1, (at, action));
                continue;
            }
            if let Err(e) = act(schedule, world, &observer, action, key.as_ref(), previous.as_ref()) {
                violations.push(format!("run {}: a fault could not be injected: {e}", index + 1));
            }
        }
        let exit = submission.finish(RUN_LIMIT);
        submitted.push(Submitted { index, key, exit });
    }
    for node in &mut world.nodes {
        if !node.running() {
            violations.push(format!("node {} exited by itself; started again", node.name));
            node.launch();
        }
    }
    violations.extend(check(schedule, world, &observer, &submitted));
    violations
}

/// Performs `action`.
fn act(
    schedule: &Schedule,
    world: &mut World,
    observer: &Nats,
    action: Action,
    current: Option<&(i64, String)>,
    previous: Option<&(i64, String)>,
) -> Result<(), String> {
    match action {
        Action::Kill(node) => world.nodes[node].kill(),
        Action::Launch(node) => world.nodes[node].launch(),
        Action::Pause(node) => world.nodes[node].pause(),
        Action::Resume(node) => world.nodes[node].resume(),
        Action::NatsDown { hard: true } => world.nats.kill(),
        Action::NatsDown { hard: false } => world.nats.stop(),
        Action::NatsUp { empty } => {
            if empty {
                world.nats.empty_store();
            }
            world.nats.launch();
        }
        Action::Forge(forgeries, pick) => {
            let current = current.ok_or("the run's id is not known")?;
            let codes = schedule.codes.list();
            let target =
                Target { batch: "world", codes: &codes, current: current.clone(), previous: previous.cloned() };
            let mut rng = Rng::new(pick);
            for forgery in forgeries {
                for line in observer.forge(forgery, &target, &mut rng)? {
                    println!("chaos seed {}: forged {line}", schedule.seed);
                }
            }
        }
        Action::Fill => {
            if let Some((_, disk)) = &world.disk {
                disk.fill();
            }
        }
        Action::Delete(bucket) => observer.delete_bucket(&bucket.name(FLEET))?,
    }
    Ok(())
}

/// The checks once the faults are over; see [`crate::invariants`].
fn check(schedule: &Schedule, world: &mut World, observer: &Nats, submitted: &[Submitted]) -> Vec<String> {
    let mut violations = Vec::new();
    if !eventually(SETTLE_LIMIT, Duration::from_millis(200), || observer.missing().is_empty()) {
        violations.push(format!("the fleet did not create again {:?}", observer.missing()));
    }
    let fleet =
        match observer.block_on(Fleet::join(&reader(&world.nats.url()), "chaos-checker", Patience::Once, |_| {})) {
            Ok(fleet) => fleet,
            Err(e) => {
                violations.push(format!("the checker cannot join the fleet: {e}"));
                return violations;
            }
        };
    let newest = submitted.iter().filter_map(|s| s.key.as_ref().map(|k| k.0)).max().unwrap_or(0);
    let since = observer.last_run("tick").ok().flatten().map_or(newest, |r| r.record.id.max(newest));
    let (runs, unended) = ended_runs(&fleet, observer, since, END_LIMIT);
    violations.extend(unended);
    if !eventually(SETTLE_LIMIT, Duration::from_millis(100), || observer.work_left() == Ok(0)) {
        violations.push(format!("the work queue still holds {:?} messages", observer.work_left()));
    }
    for submission in submitted {
        violations.extend(check_submission(schedule, &runs, submission));
    }
    for run in &runs {
        violations.extend(check_run(&fleet, observer, run, &batch_codes(schedule, &run.record.batch)));
    }
    let killed: BTreeSet<u32> = world.nodes.iter().flat_map(|n| n.killed.iter().copied()).collect();
    let mut dirs = vec![world.dir.path().join("out")];
    let mut ignore = Vec::new();
    if let Some((_, disk)) = &world.disk {
        dirs.push(disk.path().to_owned());
        ignore.push(disk.path().join("filler"));
    }
    violations.extend(temp_files_gone(&dirs, &killed, SETTLE_LIMIT));
    let (wrong, leftovers) = check_files(&dirs, &ignore, &killed);
    violations.extend(wrong);
    if !leftovers.is_empty() {
        println!(
            "chaos seed {}: {} temporary files of killed nodes stay (removed after 10 minutes)",
            schedule.seed,
            leftovers.len()
        );
    }
    if let Some((_, disk)) = &mut world.disk {
        disk.release();
    }
    violations.extend(all_ready(world));
    violations.extend(final_run(schedule, world, observer, &fleet, &dirs, &killed));
    violations
}

/// The last line `flagsd run` wrote to stderr: its error, if it had one.
fn last_line(stderr: &str) -> &str {
    stderr.trim_end().lines().last().unwrap_or_default()
}

/// A submitted run: its `flagsd run` ended, as its record says, or with
/// status 3 and a clear message when its record was lost.
fn check_submission(schedule: &Schedule, runs: &[FleetRun], submission: &Submitted) -> Vec<String> {
    let name = format!("run {} of the schedule", submission.index + 1);
    let exit = &submission.exit;
    let Some(status) = exit.status else {
        return vec![format!("{name}: flagsd run did not exit within {} s (killed)", RUN_LIMIT.as_secs())];
    };
    let Some((id, nonce)) = &submission.key else {
        return vec![format!("{name}: no record appeared; flagsd run exited {status}: {}", last_line(&exit.stderr))];
    };
    let record = runs.iter().find(|r| r.record.id == *id && r.nonce == *nonce);
    let lossy = schedule.loses_records_from(submission.index);
    let mut violations = Vec::new();
    match (status, record) {
        (3, None) if lossy => {
            let said = last_line(&exit.stderr);
            let clear =
                said.contains(&format!("run {id}")) && (said.contains("record is gone") || said.contains("no record"));
            if !clear {
                violations.push(format!("{name}: flagsd run exited 3 without saying its record is gone: {said}"));
            }
        }
        (0 | 1, record) if record.is_some() || lossy => {
            // A run whose record went after it ended; but not another
            // run that took its id when the ids started again at 1.
            let codes = schedule.codes.list();
            match serde_json::from_str::<Value>(&exit.stdout) {
                Ok(document) => violations.extend(check_document(&name, &document["batches"][0], &codes, record)),
                Err(e) => violations.push(format!("{name}: no JSON ({e}): {}", last_line(&exit.stderr))),
            }
        }
        (_, None) => violations.push(format!(
            "{name}: run {id} ({nonce}) has no record {}, and flagsd run exited {status}: {}",
            if lossy { "after a fault that loses records" } else { "though no fault loses records" },
            last_line(&exit.stderr)
        )),
        (_, Some(run)) => violations.push(format!(
            "{name}: flagsd run exited {status} though run {id} ended {:?}: {}",
            run.record.state,
            last_line(&exit.stderr)
        )),
    }
    violations
}

/// A batch of a `flagsd run --json` document of a finished run of `codes`:
/// every code once, counted once, as its record (if it has one) counts them.
fn check_document(name: &str, batch: &Value, codes: &[CountryCode], run: Option<&FleetRun>) -> Vec<String> {
    let mut violations = Vec::new();
    let counts = &batch["counts"];
    let theirs = ["downloaded", "unchanged", "not_found", "errors"].map(|k| counts[k].as_u64().unwrap_or(u64::MAX));
    let ours = run.and_then(|run| run.record.counts).map(|c| [c.downloaded, c.unchanged, c.not_found, c.errors]);
    if let Some(ours) = ours.map(|c| c.map(|n| n as u64)).filter(|ours| *ours != theirs) {
        violations.push(format!("{name}: flagsd run's counts {theirs:?} are not its record's {ours:?}"));
    }
    let listed: Vec<&str> =
        batch["codes"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str()).collect();
    let distinct: BTreeSet<&str> = listed.iter().copied().collect();
    let wanted: BTreeSet<&str> = codes.iter().map(CountryCode::as_str).collect();
    let total: u64 = theirs.iter().sum();
    if distinct != wanted || listed.len() != wanted.len() || total != wanted.len() as u64 {
        let strangers: Vec<&&str> = distinct.difference(&wanted).take(12).collect();
        violations.push(format!(
            "{name}: flagsd run's document lists {} codes ({} distinct, {} of the batch's {}; others: {strangers:?}) \
             and counts {total}",
            listed.len(),
            distinct.len(),
            distinct.intersection(&wanted).count(),
            wanted.len()
        ));
    }
    violations
}

/// Waits until every node answers `/readyz` with 200; the violations.
fn all_ready(world: &mut World) -> Vec<String> {
    let mut violations = Vec::new();
    for node in &mut world.nodes {
        let ready = eventually(SETTLE_LIMIT, Duration::from_millis(200), || {
            node.admin_addr().and_then(|addr| readyz(&addr)) == Some(200)
        });
        if !ready {
            let status = node.admin_addr().and_then(|addr| readyz(&addr));
            violations.push(format!(
                "node {} is not ready {} s after the faults (/readyz {status:?})",
                node.name,
                SETTLE_LIMIT.as_secs()
            ));
        }
    }
    violations
}

/// The run after the faults, every node healthy: exact, and its files whole.
fn final_run(
    schedule: &Schedule,
    world: &World,
    observer: &Nats,
    fleet: &Fleet,
    dirs: &[PathBuf],
    killed: &BTreeSet<u32>,
) -> Vec<String> {
    let config = world.dir.path().join("flagsd.toml");
    let exit = Submission::start(&config, "world", "final").finish(RUN_LIMIT);
    let name = "the run after the faults";
    if exit.status != Some(0) {
        return vec![format!("{name}: flagsd run exited {:?}: {}", exit.status, last_line(&exit.stderr))];
    }
    let document: Value = match serde_json::from_str(&exit.stdout) {
        Ok(document) => document,
        Err(e) => return vec![format!("{name}: flagsd run printed no JSON ({e}): {}", last_line(&exit.stderr))],
    };
    let batch = &document["batches"][0];
    let counts = &batch["counts"];
    let count = |k: &str| counts[k].as_u64().unwrap_or(u64::MAX);
    let flags = count("downloaded").saturating_add(count("unchanged"));
    let not_found = if schedule.codes == Codes::Every { 482 } else { 0 };
    let mut violations = Vec::new();
    if (flags, count("not_found"), count("errors"), count("unfinished")) != (194, not_found, 0, 0) {
        violations.push(format!("{name}: counts {counts}, expected 194 flags, {not_found} not found, no error"));
    }
    let Some(id) = batch["run_id"].as_i64() else {
        return vec![format!("{name}: no run id in {batch}")];
    };
    let run = match observer.block_on(fleet.run_record(id)) {
        Ok(Some(run)) => run,
        other => return vec![format!("{name}: run {id}'s record: {other:?}")],
    };
    let codes = schedule.codes.list();
    violations.extend(check_document(name, batch, &codes, Some(&run)));
    violations.extend(check_run(fleet, observer, &run, &codes));
    match node_outcomes(observer, &run, &codes) {
        Ok((first, _)) => {
            violations.extend(check_named_files(&first));
            if tally(first.values()).3 > 0 {
                violations.push(format!("{name}: errors in its outcomes"));
            }
        }
        Err(e) => violations.push(e),
    }
    violations.extend(temp_files_gone(dirs, killed, SETTLE_LIMIT));
    violations.extend(check_files(dirs, &[], killed).0);
    violations
}
