//! The fleet: several `flagsd serve` processes as nodes of one fleet, real
//! nats-server processes (one server, or a three-server cluster), the
//! built-in test server with a delay, and nodes killed, stopped and paused
//! for real. Each test prints `skipped: …` without a nats-server >= 2.10
//! (CI requires one).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use flagsd::fleet::{Fleet, Patience};
use flagsd::job::ledger::RunStart;
use flagsd::model::run::{RunRecord, RunState};
use flagsd::testserver::TestServerOptions;

use crate::fleetctl::*;
use crate::helpers::{assert_only_complete_flags, closed_port_url, flagsd_in, http, server, wait_until, write_file};
use crate::natsd::{NatsCluster, NatsServer};

#[test]
fn three_nodes_share_one_run_of_676_codes() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = slow_server("0.01");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "\"every\"", "");
    let _nodes = start_nodes(&config, &["a", "b", "c"]);
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}");
    let batch = batch(&document);
    assert_every_code_once(batch, &dir.path().join("out/world"));
    let (by_node, _) = shares(batch);
    for node in ["a", "b", "c"] {
        assert!(by_node.get(node).is_some_and(|n| *n > 0), "{node} fetched nothing: {by_node:?}");
    }
    assert_eq!(by_node.values().sum::<usize>(), 676, "{by_node:?}");
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.starts_with(&format!("From the fleet {FLEET} at {}:", nats.url())), "{stdout}");
    assert!(stdout.contains("exit 0: 194 downloaded, 482 not found"), "{stdout}");
    assert!(stdout.contains("Live nodes: 3\nNODE"), "{stdout}");
}

#[test]
fn a_node_killed_mid_run_loses_nothing() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = slow_server("0.1");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "\"every\"", "");
    let mut nodes = start_nodes(&config, &["a", "b", "c"]);
    let run = submit(&config);
    assert!(wait_until(FLEET_WAIT, || flags.hits() >= 60), "the run did not start");
    let victim = &mut nodes[1];
    victim.child.kill().expect("SIGKILL");
    victim.child.wait().expect("reaped");
    let (status, document) = finish(run);
    assert_eq!(status, 0, "{document}");
    assert_every_code_once(batch(&document), &dir.path().join("out/world"));
}

#[test]
fn a_scheduled_batch_runs_once_per_tick_on_three_nodes() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = server(TestServerOptions::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "[\"BR\", \"AR\"]", "every = \"2s\"\n");
    let _nodes = start_nodes(&config, &["a", "b", "c"]);
    let finished = |runs: &[RunRecord]| runs.iter().filter(|r| r.state == RunState::Finished).count();
    assert!(wait_until(FLEET_WAIT, || finished(&fleet_runs(&[nats.url()])) >= 4), "fewer than 4 runs");
    let runs = fleet_runs(&[nats.url()]);
    let ticks = fleet_ticks(&[nats.url()]);
    let distinct: BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(ticks.len(), runs.len(), "every run belongs to a tick: {runs:?}");
    assert_eq!(distinct.len(), ticks.len(), "a tick ran more than once: {ticks:?}");
    assert!(ticks.iter().all(|t| t % 2000 == 0), "ticks are aligned to 2 s: {ticks:?}");
    let starters: BTreeSet<&str> = runs.iter().filter_map(|r| r.started_by.as_deref()).collect();
    assert!(starters.iter().all(|s| ["a", "b", "c"].contains(s)), "{starters:?}");
}

#[test]
fn losing_one_server_of_a_three_server_cluster_loses_nothing() {
    let Some(mut cluster) = NatsCluster::start() else { return };
    let flags = slow_server("0.05");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &cluster.urls(), &flags.url(), "\"every\"", "");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    std::fs::write(&config, text.replace("[fleet]\n", "[fleet]\nreplicas = 3\n")).expect("write");
    let _nodes = start_nodes(&config, &["a", "b", "c"]);
    let run = submit(&config);
    assert!(wait_until(FLEET_WAIT, || flags.hits() >= 100), "the run did not start");
    let leader = cluster.leader().unwrap_or(0);
    cluster.kill(leader);
    let (status, document) = finish(run);
    assert_eq!(status, 0, "{document}");
    assert_every_code_once(batch(&document), &dir.path().join("out/world"));
}

#[test]
fn sigterm_with_codes_in_flight_exits_0_and_the_fleet_finishes() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = slow_server("0.5");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "\"every\"", "max_req = 30\n");
    let mut nodes = start_nodes(&config, &["a", "b"]);
    let run = submit(&config);
    assert!(wait_until(FLEET_WAIT, || flags.hits() >= 40), "the run did not start");
    nodes[0].signal("TERM");
    let started = Instant::now();
    assert_eq!(nodes[0].wait(FLEET_WAIT), Some(0), "{}", nodes[0].log());
    // The shutdown timeout (3 s), then the hand-back and the acknowledgements.
    assert!(started.elapsed() < Duration::from_secs(12), "took {:?}", started.elapsed());
    let (status, document) = finish(run);
    assert_eq!(status, 0, "{document}");
    assert_every_code_once(batch(&document), &dir.path().join("out/world"));
    let log = nodes[0].log();
    assert!(log.contains("leaving the fleet") && log.contains("stopped"), "{log}");
}

#[test]
fn a_node_that_starts_before_nats_becomes_ready_when_it_comes() {
    let Some(mut nats) = NatsServer::reserve() else { return };
    let flags = server(TestServerOptions::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "[\"BR\", \"ZZ\"]", "");
    let node = Node::start(&config, "a", &[("FLAGSD_ADMIN__LISTEN", "0")]);
    let addr = node.admin_addr();
    let (status, body) = http(&addr, "GET", "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not in the fleet yet"), "{body}");
    // What needs the fleet answers 503, not 500, until the node has joined.
    for (method, path) in [("GET", "/runs"), ("POST", "/batches/world/run"), ("POST", "/batches/world/cancel")] {
        let (status, body) = http(&addr, method, path, None);
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert!(body.contains("not in the fleet yet"), "{body}");
    }
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200, "alive, though not ready");
    assert_eq!(http(&addr, "GET", "/fleet", None).0, 503, "the console's fleet view waits for the node too");
    assert!(wait_until(FLEET_WAIT, || node.log().contains("cannot join the fleet yet")), "{}", node.log());
    nats.launch();
    node.wait_joined();
    assert!(wait_until(FLEET_WAIT, || http(&addr, "GET", "/readyz", None).0 == 200), "{}", node.log());
    let live = format!("flagsd_fleet_nodes{{fleet=\"{FLEET}\"}} 1\n");
    assert!(wait_until(FLEET_WAIT, || http(&addr, "GET", "/metrics", None).1.contains(&live)), "{}", node.log());
    // The console's fleet view: the fleet, this node, the live nodes.
    let (status, body) = http(&addr, "GET", "/fleet", None);
    assert_eq!(status, 200, "{body}");
    let fleet: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((fleet["name"].as_str(), fleet["node"].as_str()), (Some(FLEET), Some("a")), "{body}");
    let nodes: Vec<&str> = fleet["nodes"].as_array().into_iter().flatten().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(nodes, ["a"], "{body}");
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}");
    let counts = &batch(&document)["counts"];
    assert_eq!((counts["downloaded"].as_u64(), counts["not_found"].as_u64()), (Some(1), Some(1)), "{counts}");
}

#[test]
fn a_flag_saved_by_one_node_is_unchanged_for_another() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = server(TestServerOptions::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "[\"BR\", \"AR\", \"CL\"]", "");
    let mut a = Node::start(&config, "a", &[]);
    a.wait_joined();
    let (status, first) = finish(submit(&config));
    assert_eq!(status, 0, "{first}");
    assert_eq!(batch(&first)["counts"]["downloaded"].as_u64(), Some(3), "{first}");
    assert_eq!(shares(batch(&first)).0.get("a"), Some(&3));
    a.signal("TERM");
    assert_eq!(a.wait(FLEET_WAIT), Some(0));
    let b = Node::start(&config, "b", &[]);
    b.wait_joined();
    let bodies = flags.bodies();
    let (status, second) = finish(submit(&config));
    assert_eq!(status, 0, "{second}");
    assert_eq!(batch(&second)["counts"]["unchanged"].as_u64(), Some(3), "{second}");
    assert_eq!(shares(batch(&second)).0.get("b"), Some(&3));
    assert_eq!(flags.bodies(), bodies, "nothing was transferred again");
    assert_eq!(flags.not_modified(), 3);
    // Files removed meanwhile, with their directory: asked for again, saved again.
    std::fs::remove_dir_all(dir.path().join("out")).expect("remove the files");
    let (status, third) = finish(submit(&config));
    assert_eq!(status, 0, "{third}");
    assert_eq!(batch(&third)["counts"]["downloaded"].as_u64(), Some(3), "{third}");
    assert_eq!(assert_only_complete_flags(&dir.path().join("out/world")), 3);
}

#[test]
fn a_paused_node_redelivered_elsewhere_still_gives_each_code_one_outcome() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = server(TestServerOptions {
        delay: Some("0.2".parse().expect("a delay")),
        workers: 4,
        record: true,
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "\"every\"", "");
    let nodes = start_nodes(&config, &["a", "b"]);
    let run = submit(&config);
    assert!(wait_until(FLEET_WAIT, || flags.hits() >= 30), "the run did not start");
    nodes[1].signal("STOP");
    // Longer than the ack wait (3 s): node a takes the paused node's codes
    // and redoes them meanwhile.
    std::thread::sleep(Duration::from_secs(8));
    nodes[1].signal("CONT");
    let (status, document) = finish(run);
    assert_eq!(status, 0, "{document}");
    assert_every_code_once(batch(&document), &dir.path().join("out/world"));
    let runs = fleet_runs(&[nats.url()]);
    let run = runs.first().expect("the run");
    let counts = run.counts.expect("the run's counts");
    assert_eq!((counts.downloaded + counts.unchanged, counts.not_found, counts.errors), (194, 482, 0), "{run:?}");
    // The paused node's codes were delivered twice: requested twice.
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    for (path, _) in flags.requests() {
        *requests.entry(path).or_insert(0) += 1;
    }
    assert!(requests.values().any(|n| *n > 1), "no code was delivered twice");
}

#[test]
fn check_config_checks_the_fleet_section_without_nats() {
    let dir = tempfile::tempdir().expect("a directory");
    let bad = "[fleet]\nnats = [\"http://127.0.0.1:4222\"]\nname = \"my.fleet\"\nreplicas = 9\n\
               token_file = \"missing-token\"\n";
    write_file(dir.path(), "bad.toml", bad);
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "bad.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    for expected in [
        "bad.toml:2:9: fleet.nats[0]: 'http://127.0.0.1:4222' must start with nats:// or tls://",
        "bad.toml:3:8: fleet.name: 'my.fleet' must be 1 to 32 letters, digits, '-' or '_'",
        "bad.toml:4:12: fleet.replicas: must be from 1 to 5 (got 9)",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in\n{stderr}");
    }
    // Nothing listens there: check-config does not need NATS.
    let nats = closed_port_url().replace("http://", "nats://").replace("/flags", "");
    write_file(dir.path(), "good.toml", &format!("[fleet]\nnats = \"{nats}\"\nnode = \"n1\"\n"));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "good.toml"], &[]);
    assert_eq!((status, stdout.as_str()), (0, "good.toml: OK (0 batches, 0 scheduled)\n"), "{stderr}");
    let env = [("FLAGSD_FLEET__REPLICAS", "0")];
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "good.toml"], &env);
    assert_eq!(status, 2, "{stderr}");
    assert_eq!(stderr, "environment variable FLAGSD_FLEET__REPLICAS: must be from 1 to 5 (got 0)\n");
}

#[test]
fn a_fleet_run_without_nats_is_a_clear_fatal_error() {
    let dir = tempfile::tempdir().expect("a directory");
    let nats = closed_port_url().replace("http://", "nats://").replace("/flags", "");
    let config = config(dir.path(), std::slice::from_ref(&nats), &closed_port_url(), "[\"BR\"]", "");
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", config.to_str().expect("UTF-8")], &[]);
    assert_eq!(status, 3, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("cannot connect to NATS at {nats}")), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn retries_wait_on_their_node_with_their_attempts_counted() {
    let Some(nats) = NatsServer::start() else { return };
    // Half of the flag paths answer 503 once, then the flag.
    let flags = server(TestServerOptions {
        faults: flagsd::testserver::Faults { flap_rate: 0.5, flap_failures: 1, ..Default::default() },
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "\"all\"", "");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    std::fs::write(&config, text.replace("retries = 0\n", "retries = 2\nretry_base = \"100ms\"\n")).expect("write");
    let _nodes = start_nodes(&config, &["a", "b"]);
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}");
    let batch = batch(&document);
    assert_eq!(batch["counts"]["downloaded"].as_u64(), Some(194), "{document}");
    let codes = batch["codes"].as_array().expect("codes");
    let retried = codes.iter().filter(|c| c["attempts"].as_u64() == Some(2)).count();
    assert!(retried > 40, "{retried} codes took two attempts");
    assert!(codes.iter().all(|c| matches!(c["attempts"].as_u64(), Some(1 | 2))), "{document}");
}

#[test]
fn interrupting_a_fleet_run_cancels_it() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = slow_server("0.5");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "\"every\"", "");
    let node = Node::start(&config, "a", &[]);
    node.wait_joined();
    let run = submit(&config);
    assert!(wait_until(FLEET_WAIT, || flags.hits() >= 10), "the run did not start");
    let status = Command::new("kill").args(["-INT", &run.id().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()));
    let (status, document) = finish(run);
    assert_eq!(status, 130, "{document}");
    let batch = batch(&document);
    assert_eq!(batch["interrupted"].as_bool(), Some(true), "{document}");
    assert!(batch["counts"]["unfinished"].as_u64().is_some_and(|n| n > 500), "{document}");
    let runs = fleet_runs(&[nats.url()]);
    let run = runs.first().expect("the run");
    assert_eq!((run.state, run.exit_status), (RunState::Cancelled, Some(130)), "{run:?}");
    // Its queued codes are gone: the node goes idle.
    let hits = flags.hits();
    std::thread::sleep(Duration::from_secs(2));
    assert!(flags.hits() <= hits + 10, "the node kept fetching a cancelled run");
}

#[test]
fn a_token_protected_nats_needs_the_token_file() {
    let Some(nats) = NatsServer::start_with_token(Some("s3cret-nats")) else { return };
    let flags = server(TestServerOptions::default());
    let dir = tempfile::tempdir().expect("a directory");
    let token = write_file(dir.path(), "nats-token", "s3cret-nats\n");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "[\"BR\"]", "");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    let with_token = text.replace("[fleet]\n", &format!("[fleet]\ntoken_file = \"{}\"\n", token.display()));
    std::fs::write(&config, &with_token).expect("write");
    let node = Node::start(&config, "a", &[]);
    node.wait_joined();
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}");
    assert_eq!(batch(&document)["counts"]["downloaded"].as_u64(), Some(1), "{document}");
    // Without the token, `run` is refused with the reason.
    std::fs::write(&config, &text).expect("write");
    let (status, _, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains(&format!("NATS at {} refused the credentials", nats.url())), "{stderr}");
}

#[test]
fn of_two_starts_of_a_batch_at_once_one_runs() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &closed_port_url(), "[\"BR\"]", "");
    let source = flagsd::config::ConfigSource { path: Some(config), overrides: Default::default() };
    let settings = source.load().expect("the configuration");
    let fleet_settings = settings.fleet.clone().expect("[fleet]");
    let batch = settings.batches[0].clone();
    let (first, second) = actix_rt::System::new().block_on(async move {
        let join = |name: &'static str| Fleet::join(&fleet_settings, name, Patience::Once, |_| {});
        let (a, b) = (join("a").await.expect("join"), join("b").await.expect("join"));
        tokio::join!(a.start_run(RunStart::of(&batch, "admin")), b.start_run(RunStart::of(&batch, "admin")))
    });
    let started = [&first, &second].iter().filter(|r| r.is_ok()).count();
    assert_eq!(started, 1, "{first:?} {second:?}");
    let refused = [first, second].into_iter().find_map(Result::err).expect("one refused");
    assert!(refused.to_string().starts_with("batch world is running in the fleet"), "{refused}");
    let runs = fleet_runs(&[nats.url()]);
    let running: Vec<&RunRecord> = runs.iter().filter(|r| r.state == RunState::Running).collect();
    assert_eq!(running.len(), 1, "{runs:?}");
}

#[test]
fn a_fleet_run_with_errors_keeps_their_causes_in_its_record() {
    let Some(nats) = NatsServer::start() else { return };
    let flags = server(TestServerOptions {
        faults: flagsd::testserver::Faults { error_rate: 1.0, ..Default::default() },
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &[nats.url()], &flags.url(), "[\"BR\", \"AR\", \"CL\"]", "");
    let _nodes = start_nodes(&config, &["a", "b"]);
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 1, "{document}");
    let runs = fleet_runs(&[nats.url()]);
    let [run] = runs.as_slice() else { panic!("{runs:?}") };
    let causes: Vec<(&str, usize)> = run.causes.iter().map(|c| (c.cause.as_str(), c.count)).collect();
    assert_eq!(causes, [("HTTP 418", 3)], "{run:?}");
    // flagsd status BATCH lists them, each with the node that fetched it.
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml", "world"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains(&format!("\nworld's last run (run {}) had 3 errors: 3 HTTP 418\n", run.id)), "{stdout}");
    for code in ["BR", "AR", "CL"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("*** Error for {code}: HTTP 418")));
        assert!(line.is_some_and(|l| l.ends_with("[node a]") || l.ends_with("[node b]")), "{code}: {stdout}");
    }
}
