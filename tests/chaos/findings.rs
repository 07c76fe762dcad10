//! What the chaos cases found, each reduced to the smallest test that
//! shows it: one nats-server, the fleet's library or one or two nodes, and
//! the one fault. Each test names the behaviour the fleet promises, and
//! fails while the fleet breaks it.

use std::future::IntoFuture as _;
use std::time::Duration;

use flagsd::config::FleetSettings;
use flagsd::fleet::messages::{FleetRun, read_work};
use flagsd::fleet::names::{last_key, run_key};
use flagsd::fleet::{Fleet, Patience};
use flagsd::job::Ledger as _;
use flagsd::job::ledger::RunStart;
use flagsd::model::codes::{CountryCode, every_code, parse_code};
use flagsd::model::outcome::StatusCounts;
use flagsd::model::run::{CodeResult, RunRecord, RunState};
use flagsd::testserver::TestServerOptions;

use crate::harness::{FLEET, Node, SmallDisk, Submission, eventually, is_root, write_config};
use crate::nats::{Nats, Target};
use crate::natsd::NatsServer;
use crate::schedule::{Bucket, Forgery, NODE_NAMES, Rng};

/// The settings of a client of the fleet at `url` with a de-duplication
/// window of `window`.
fn client(url: &str, window: Duration) -> FleetSettings {
    FleetSettings {
        servers: vec![url.to_owned()],
        url_auth: None,
        name: FLEET.to_owned(),
        node: "finding".to_owned(),
        replicas: 1,
        creds_file: None,
        token_file: None,
        tls_ca_file: None,
        ack_wait: Duration::from_secs(2),
        duplicate_window: window,
    }
}

/// `code`'s outcome `kind`, as node `node` publishes it.
fn outcome(code: &str, kind: &str, node: &str) -> CodeResult {
    CodeResult {
        code: code.to_owned(),
        outcome: kind.to_owned(),
        status: Some(200),
        message: None,
        attempts: 1,
        bytes: 1,
        file: None,
        url: "http://127.0.0.1:9/flags".to_owned(),
        node: Some(node.to_owned()),
        retry_cause: None,
    }
}

fn code(text: &str) -> CountryCode {
    parse_code(text).expect("a code")
}

/// A client of the fleet at `server` (de-duplication window `window`),
/// and a run of `codes` of batch `world` it started.
fn start_run(server: &NatsServer, observer: &Nats, window: Duration, codes: &[CountryCode]) -> (Fleet, FleetRun) {
    let settings = client(&server.url(), window);
    let fleet = observer.block_on(Fleet::join(&settings, "finding", Patience::Once, |_| {})).expect("join");
    let start = RunStart { batch: "world", codes, trigger: "run", tick: None };
    let run = observer.block_on(fleet.start_run(start)).expect("a run");
    (fleet, run)
}

/// `outcomes.rs`: "the first outcome of a code in the stream's order is
/// the code's outcome". A second outcome published after a malformed
/// message (and after the de-duplication window), as a node paused past it
/// publishes one, is read as a duplicate: the run's details keep the first.
#[test]
fn a_late_second_outcome_after_a_malformed_message_is_a_duplicate() {
    let Some(server) = NatsServer::start() else { return };
    let observer = Nats::connect(&server.url());
    let codes = [code("BR")];
    let (fleet, run) = start_run(&server, &observer, Duration::from_secs(1), &codes);
    let token = run.token();
    observer.block_on(fleet.record_outcomes(&token, &[outcome("BR", "downloaded", "a")])).expect("the first outcome");
    let target = Target { batch: "world", codes: &codes, current: (run.record.id, run.nonce.clone()), previous: None };
    observer.forge(Forgery::OutcomeNotJson, &target, &mut Rng::new(0)).expect("the malformed message");
    std::thread::sleep(Duration::from_millis(1500)); // past the window
    observer.block_on(fleet.record_outcomes(&token, &[outcome("BR", "unchanged", "b")])).expect("the second outcome");
    let details = observer.block_on(fleet.details(run.record.id)).expect("the details").expect("the run");
    let read: Vec<(&str, &str)> = details.codes.iter().map(|c| (c.code.as_str(), c.outcome.as_str())).collect();
    assert_eq!(read, [("BR", "downloaded")], "the second outcome was taken as the code's");
}

/// `runs.rs`: a run's codes are queued in work items of a few codes (a
/// sixteenth of the run, 16 at most), each code once, each item's subject
/// saying how many codes it holds: 676 codes are 43 messages, not 676.
#[test]
fn a_runs_codes_are_queued_in_work_items_each_code_once() {
    let Some(server) = NatsServer::start() else { return };
    let observer = Nats::connect(&server.url());
    let codes = every_code();
    let (_fleet, run) = start_run(&server, &observer, Duration::from_secs(60), &codes);
    let items = observer.work_items("world", &run.token()).expect("the work items");
    assert_eq!(items.len(), 43, "676 codes in items of 16");
    let mut queued = Vec::new();
    for (subject, payload) in &items {
        let size = subject.rsplit_once('.').and_then(|(_, n)| n.parse().ok());
        let parcel = read_work(payload, &run.codes, size).expect("a work item of the run");
        assert!(parcel.codes.len() <= 16 && parcel.attempts == 0, "{subject}: {parcel:?}");
        queued.extend(parcel.codes);
    }
    queued.sort();
    assert_eq!(queued, codes, "every code queued once");
}

/// `outcomes.rs`: "a malformed or forged message counts for nothing". Once
/// a run has ended, its record no longer lists its codes, and its details
/// take an outcome of any code: a well-formed outcome published for a code
/// that was never in the run shows in the run's details (so in `flagsd run
/// --json`, and `GET /runs/{id}`), beside counts that leave it out.
#[test]
fn an_ended_runs_details_leave_out_codes_that_were_not_in_it() {
    let Some(server) = NatsServer::start() else { return };
    let observer = Nats::connect(&server.url());
    let codes = [code("BR")];
    let (fleet, run) = start_run(&server, &observer, Duration::from_secs(2), &codes);
    observer.block_on(fleet.record_outcomes(&run.token(), &[outcome("BR", "downloaded", "a")])).expect("recorded");
    // As the node that recorded it would, the code leaves the queue.
    let queued = fleet.names.run_work("world", &run.token());
    observer.block_on(fleet.work.purge().filter(queued).into_future()).expect("the code acknowledged");
    let ended = observer.block_on(fleet.finish_if_complete(&run.key())).expect("the check").expect("finished");
    assert_eq!(ended.counts.map(|c| c.downloaded), Some(1));
    let target = Target { batch: "world", codes: &codes, current: (run.record.id, run.nonce.clone()), previous: None };
    observer.forge(Forgery::OutcomeCodeNotInRun, &target, &mut Rng::new(0)).expect("the forged outcome");
    let details = observer.block_on(fleet.details(run.record.id)).expect("the details").expect("the run");
    let listed: Vec<&str> = details.codes.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(listed, ["BR"], "the details of run {} (which counts 1 code)", run.record.id);
}

/// `core.rs`: streams and buckets are "created again by whichever node
/// finds one missing (NATS restarted without its store, a bucket deleted
/// to cap its growth)". Running nodes find them missing (the validators'
/// watch, the scheduler and `flagsd run` log "stream not found" or "503 no
/// responders" every second) and never create them again: only a process
/// that joins the fleet does.
#[test]
fn a_bucket_deleted_under_running_nodes_is_created_again() {
    let Some(server) = NatsServer::start() else { return };
    let flags = crate::helpers::server(TestServerOptions::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = write_config(dir.path(), &server.url(), &flags.url(), "all", false);
    let node = Node::start(&config, NODE_NAMES[0], Vec::new());
    assert!(eventually(Duration::from_secs(30), Duration::from_millis(50), || node.joined()), "{}", node.log());
    let observer = Nats::connect(&server.url());
    for bucket in [Bucket::Files, Bucket::Names, Bucket::Runs] {
        observer.delete_bucket(&bucket.name(FLEET)).expect("deleted");
    }
    let healed = eventually(Duration::from_secs(20), Duration::from_millis(200), || observer.missing().is_empty());
    assert!(healed, "still missing 20 s later: {:?}\n{}", observer.missing(), node.log());
}

/// `source.rs`: a node whose output directory failed "takes one code at a
/// time, the node not ready, until a write to its output directory
/// succeeds again". Its probe makes an empty temporary file, which a full
/// file system still allows: the node says it can take work again every
/// 2 s, takes a full pool of codes, and fails them all again.
#[test]
fn a_node_whose_disk_is_full_stays_not_ready() {
    if !is_root() {
        println!("skipped: mounting a tmpfs needs root");
        return;
    }
    let Some(server) = NatsServer::start() else { return };
    let flags = crate::helpers::server(TestServerOptions {
        delay: Some("0.05".parse().expect("a delay")),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("a directory");
    let config = write_config(dir.path(), &server.url(), &flags.url(), "all", false);
    let disk = match SmallDisk::mount(&dir.path().join("disk")) {
        Ok(disk) => disk,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    disk.fill();
    let output = ("FLAGSD_DEFAULTS__OUTPUT".to_owned(), disk.path().display().to_string());
    let full = Node::start(&config, NODE_NAMES[0], vec![output]);
    let healthy = Node::start(&config, NODE_NAMES[1], Vec::new());
    let joined = || full.joined() && healthy.joined();
    assert!(eventually(Duration::from_secs(30), Duration::from_millis(50), joined), "{}", full.log());
    let run = Submission::start(&config, "world", "run");
    let not_ready = || full.log().contains("this node cannot take work");
    assert!(eventually(Duration::from_secs(30), Duration::from_millis(20), not_ready), "{}", full.log());
    let recovered = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        full.log().contains("this node can take work again")
    });
    let exit = run.finish(Duration::from_secs(90));
    assert!(
        !recovered,
        "the node with a full disk said it could take work again (and the run exited {:?}):\n{}",
        exit.status,
        full.log()
    );
}

/// `app/fleet_run.rs`: "A run whose record is gone (NATS lost its state,
/// the bucket was deleted) is an error: it will not end." But `flagsd run`
/// waits for its run by id alone: once the records are lost, the ids start
/// again at 1, and the first run started then (here a scheduled run of
/// another batch, finished) takes the waiting run's id, `flagsd run` reads
/// that run as its own, prints its report for the batch it asked for, and
/// exits 0. The fleet's state after such a loss is written directly, so
/// that the test does not depend on a race.
#[test]
fn flagsd_run_never_takes_another_run_with_its_id_for_its_own() {
    let Some(server) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().expect("a directory");
    let config = write_config(dir.path(), &server.url(), "http://127.0.0.1:9/flags", "all", false);
    let run = Submission::start(&config, "world", "run"); // no node: it waits
    let observer = Nats::connect(&server.url());
    let mut ours = None;
    eventually(Duration::from_secs(20), Duration::from_millis(50), || {
        ours = observer.last_run("world").ok().flatten();
        ours.is_some()
    });
    let ours = ours.expect("the run's record");
    let counts = StatusCounts { downloaded: 3, unchanged: 0, not_found: 1, errors: 0 };
    let record = RunRecord {
        batch: "tick".to_owned(),
        trigger: "schedule".to_owned(),
        ended_at: Some(ours.record.started_at.clone()),
        state: RunState::Finished,
        counts: Some(counts),
        exit_status: Some(0),
        ..ours.record.clone()
    };
    let theirs = FleetRun { record, nonce: "0123456789ab".to_owned(), tick: Some(0), codes: Default::default() };
    observer.set_run_entry(&last_key("world"), None).expect("the loss");
    observer.set_run_entry(&run_key(ours.record.id), Some(&theirs)).expect("the new run");
    observer.set_run_entry(&last_key("tick"), Some(&theirs)).expect("the new run");
    let exit = run.finish(Duration::from_secs(90));
    let said = exit.stderr.trim_end().lines().last().unwrap_or_default().to_owned();
    assert_eq!(
        (exit.status, said.contains("record is gone")),
        (Some(3), true),
        "flagsd run took run {} of tick for its run of world:\n{}{}",
        ours.record.id,
        exit.stdout,
        exit.stderr
    );
}
