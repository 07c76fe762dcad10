//! The fleet's guarantees under the faults that broke them (issue 23), one
//! test each, against real nats-server processes and real `flagsd serve`
//! nodes: late and repeated outcomes, malformed and foreign messages, NATS
//! losing its state, the runs bucket deleted, a tick missed while NATS was
//! away, credentials in the NATS URL, a node whose disk is full, a starter
//! that died before queueing, `flagsd cancel` and `flagsd trigger`.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flagsd::fleet::Fleet;
use flagsd::fleet::messages::FleetRun;
use flagsd::fleet::names::{last_key, run_token};
use flagsd::job::Ledger;
use flagsd::model::codes::parse_code;
use flagsd::model::run::{RunRecord, RunState};
use serde_json::Value;

use crate::fleetctl::*;
use crate::helpers::{Tmpfs, clean_server, closed_port_url, count, country_root, flagsd_in, http, server, wait_until};
use crate::natsd::NatsServer;

/// Runs `work` with a client of the fleet on `nats`, on an actix system of
/// its own.
fn with_fleet<T>(nats: &[String], work: impl AsyncFnOnce(Fleet) -> T) -> T {
    let settings = reader(nats);
    actix_rt::System::new().block_on(async move {
        let fleet =
            Fleet::join(&settings, "test-client", flagsd::fleet::Patience::Once, |_| {}).await.expect("join the fleet");
        work(fleet).await
    })
}

/// The batch's running run, once there is one.
fn running_run(nats: &[String]) -> FleetRun {
    let mut found = None;
    let seen = wait_until(FLEET_WAIT, || {
        found = with_fleet(nats, async |fleet| fleet.last_run("world").await.ok().flatten())
            .map(|(run, _)| run)
            .filter(|run| run.record.is_running());
        found.is_some()
    });
    assert!(seen, "no run of world started");
    found.expect("a running run")
}

/// Publishes `payload` on `subject`, through JetStream (its answer, as text).
fn publish(nats: &[String], subject: &str, payload: &[u8]) -> String {
    let (subject, payload) = (subject.to_owned(), Bytes::copy_from_slice(payload));
    with_fleet(nats, async |fleet| match fleet.js.publish(subject, payload).await {
        Ok(ack) => match ack.await {
            Ok(ack) => format!("stored as {}", ack.sequence),
            Err(e) => format!("refused: {e}"),
        },
        Err(e) => format!("not sent: {e}"),
    })
}

/// A metric's value in a scrape.
fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn outcomes_of_a_paused_node_and_repeated_outcomes_never_finish_a_run_early() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = slow_server("0.1");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "\"all\"", "");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    // The ack wait and the duplicate window shorter than the pause below.
    std::fs::write(&config, text.replace("ack_wait = \"3s\"", "ack_wait = \"2s\"\nduplicate_window = \"2s\""))
        .expect("write");
    let admin = [("FLAGSD_ADMIN__LISTEN", "0")];
    let nodes = [Node::start(&config, "a", &admin), Node::start(&config, "b", &admin)];
    nodes.iter().for_each(Node::wait_joined);
    let run = submit(&config);
    let token = running_run(&urls).token();
    assert!(wait_until(FLEET_WAIT, || flags.hits() >= 30), "the run did not start");
    nodes[1].signal("STOP");
    // Outcomes recorded so far, published again with another kind and no
    // message id (as a republish or a client retry would), enough of them
    // to make as many messages as the run has codes.
    let recorded = with_fleet(&urls, async |fleet| {
        let id = token.split('-').next().and_then(|id| id.parse().ok()).expect("an id");
        fleet.details(id).await.expect("the run").expect("its record").codes
    });
    assert!(!recorded.is_empty());
    let mut published = 0;
    while published < 194 {
        for result in &recorded {
            let mut again = result.clone();
            again.outcome = "http_error".to_owned();
            again.message = Some("HTTP 500 - a repeat".to_owned());
            let subject = format!("{FLEET}.outcomes.{token}.replayer");
            publish(&urls, &subject, &serde_json::to_vec(&[again]).expect("JSON"));
            published += 1;
        }
    }
    // Longer than the ack wait and the duplicate window: node a takes node
    // b's codes; node b's late outcomes come after.
    std::thread::sleep(Duration::from_secs(6));
    nodes[1].signal("CONT");
    let (status, document) = finish(run);
    assert_eq!(status, 0, "{document}");
    let batch = batch(&document);
    let counts = &batch["counts"];
    assert_eq!(
        (
            counts["downloaded"].as_u64().unwrap_or(0) + counts["unchanged"].as_u64().unwrap_or(0),
            counts["unfinished"].as_u64()
        ),
        (194, Some(0)),
        "{counts}"
    );
    assert_eq!(shares(batch).1, 194, "every code once");
    let record = fleet_runs(&urls).into_iter().next().expect("the run");
    let c = record.counts.expect("counts");
    assert_eq!((c.downloaded + c.unchanged, c.errors, record.state), (194, 0, RunState::Finished), "{record:?}");
    // The repeats were read, and dropped as duplicates.
    let duplicates: f64 = nodes
        .iter()
        .map(|node| http(&node.admin_addr(), "GET", "/metrics", None).1)
        .map(|scrape| metric(&scrape, "flagsd_fleet_messages_dropped_total{reason=\"duplicate\"}"))
        .sum();
    assert!(duplicates >= 1.0, "no duplicate dropped");
}

#[test]
fn malformed_and_foreign_messages_are_dropped_and_block_nothing() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = slow_server("0.05");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "\"every\"", "");
    let node = Node::start(&config, "a", &[("FLAGSD_ADMIN__LISTEN", "0")]);
    node.wait_joined();
    let run = submit(&config);
    let token = running_run(&urls).token();
    // The last code of the run, not fetched yet: garbage takes its subject first.
    let zz = format!("{FLEET}.outcomes.{token}.ZZ");
    assert!(publish(&urls, &zz, b"\x1b[2Jnot json").starts_with("stored"));
    let work = format!("{FLEET}.work.world.{token}");
    for payload in [&b"not json"[..], br#"{"code":"B"}"#, &vec![b'x'; 4096]] {
        assert!(publish(&urls, &work, payload).starts_with("stored"));
    }
    let foreign = format!("{FLEET}.work.world.{}", run_token(9999, "ffff"));
    assert!(publish(&urls, &foreign, br#"{"code":"BR"}"#).starts_with("stored"));
    let (status, document) = finish(run);
    assert_eq!(status, 0, "{document}");
    assert_every_code_once(batch(&document), &dir.path().join("out/world"));
    let zz = batch(&document)["codes"].as_array().and_then(|c| c.iter().find(|c| c["code"] == "ZZ")).cloned();
    assert_eq!(zz.map(|c| c["outcome"].clone()), Some(Value::from("not_found")), "ZZ's real outcome counts");
    let scrape = http(&node.admin_addr(), "GET", "/metrics", None).1;
    let dropped =
        |reason: &str| metric(&scrape, &format!("flagsd_fleet_messages_dropped_total{{reason=\"{reason}\"}}"));
    assert!(dropped("malformed") >= 3.0, "{scrape}");
    assert!(dropped("foreign") >= 1.0, "{scrape}");
    // A pointer deleted by hand: the batch runs again all the same.
    with_fleet(&urls, async |fleet| fleet.runs.delete(last_key("world")).await.expect("deleted"));
    let text = std::fs::read_to_string(&config).expect("the configuration");
    std::fs::write(&config, text.replace("codes = \"every\"", "codes = [\"BR\", \"ZZ\"]")).expect("write");
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}");
}

#[test]
fn a_node_recovers_when_nats_comes_back_without_its_state() {
    let Some(mut nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = server(Default::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "[\"BR\", \"ZZ\"]", "");
    let node = Node::start(&config, "a", &[("FLAGSD_ADMIN__LISTEN", "0")]);
    node.wait_joined();
    let addr = node.admin_addr();
    assert!(wait_until(FLEET_WAIT, || http(&addr, "GET", "/readyz", None).0 == 200), "{}", node.log());
    nats.restart_empty();
    // The node finds its queue gone (at its next heartbeat), says so,
    // creates it again, and takes work.
    assert!(wait_until(FLEET_WAIT, || node.log().contains("this node cannot take work")), "{}", node.log());
    assert!(wait_until(FLEET_WAIT, || http(&addr, "GET", "/readyz", None).0 == 200), "{}", node.log());
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}\n{}", node.log());
    let counts = &batch(&document)["counts"];
    assert_eq!((counts["downloaded"].as_u64(), counts["not_found"].as_u64()), (Some(1), Some(1)), "{counts}");
    // Live again: its heartbeat (renewed every 2 s) is back.
    let live = || flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]).1.contains("Live nodes: 1\n");
    assert!(wait_until(FLEET_WAIT, live), "{}", node.log());
}

#[test]
fn run_ids_start_again_after_the_runs_bucket_is_deleted_and_never_mix_runs() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = server(Default::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "[\"BR\", \"AR\", \"CL\", \"ZZ\"]", "");
    let _node = start_nodes(&config, &["a"]);
    for _ in 0..2 {
        let (status, document) = finish(submit(&config));
        assert_eq!(status, 0, "{document}");
    }
    with_fleet(&urls, async |fleet| {
        fleet.js.delete_key_value(format!("{FLEET}_runs")).await.expect("the runs bucket deleted");
    });
    let text = std::fs::read_to_string(&config).expect("the configuration");
    std::fs::write(&config, text.replace("[\"BR\", \"AR\", \"CL\", \"ZZ\"]", "[\"DE\", \"FR\"]")).expect("write");
    for id in [1, 2] {
        let (status, document) = finish(submit(&config));
        assert_eq!(status, 0, "{document}");
        let batch = batch(&document);
        assert_eq!(batch["run_id"].as_i64(), Some(id), "{document}");
        let codes: Vec<&str> =
            batch["codes"].as_array().expect("codes").iter().filter_map(|c| c["code"].as_str()).collect();
        assert_eq!(codes, ["DE", "FR"], "run {id} has only its own codes");
        assert_eq!(batch["counts"]["downloaded"].as_u64(), Some(2), "{document}");
    }
}

#[test]
fn a_tick_missed_while_nats_was_away_runs_when_it_comes_back() {
    let Some(mut nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = server(Default::default());
    let dir = tempfile::tempdir().expect("a directory");
    let every = 20_000_u64;
    let config = config(dir.path(), &urls, &flags.url(), "[\"BR\"]", "every = \"20s\"\n");
    let _node = start_nodes(&config, &["a"]);
    // The first run (the batch never ran) belongs to the current tick.
    assert!(wait_until(FLEET_WAIT, || fleet_ticks(&urls).len() == 1), "no first run");
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;
    let mut tick = (now() / every + 1) * every;
    if tick - now() < 6_000 {
        tick += every;
    }
    // Away from 4 s before the tick to 4 s after it.
    std::thread::sleep(Duration::from_millis(tick - 4_000 - now()));
    nats.stop();
    std::thread::sleep(Duration::from_millis(tick + 4_000 - now()));
    nats.launch();
    assert!(
        wait_until(FLEET_WAIT, || fleet_ticks(&urls).contains(&tick)),
        "tick {tick} never ran: {:?}",
        fleet_ticks(&urls)
    );
    let ticks = fleet_ticks(&urls);
    assert_eq!(ticks.iter().filter(|t| **t == tick).count(), 1, "{ticks:?}");
}

#[test]
fn credentials_in_the_nats_url_work_and_never_show() {
    let password = "pa#ss/w?rd";
    let Some(nats) = NatsServer::start_with_user("alice", password) else { return };
    let url = format!("nats://alice:{password}@127.0.0.1:{}", nats.port());
    let masked = format!("nats://***@127.0.0.1:{}", nats.port());
    let flags = server(Default::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), std::slice::from_ref(&url), &flags.url(), "[\"BR\", \"ZZ\"]", "");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("a notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("a timeout");
    let env = [("FLAGSD_ADMIN__LISTEN", "0"), ("NOTIFY_SOCKET", socket_path.to_str().expect("UTF-8"))];
    let node = Node::start(&config, "a", &env);
    node.wait_joined();
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}");
    let addr = node.admin_addr();
    let (_, stdout, stderr) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert!(stdout.contains(&format!("From the fleet {FLEET} at {masked}:")), "{stdout}{stderr}");
    let mut notified = String::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buffer) {
        notified.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(notified.contains(&masked), "{notified}");
    let everything = [
        node.log(),
        document.to_string(),
        stdout,
        stderr,
        notified,
        http(&addr, "GET", "/readyz", None).1,
        http(&addr, "GET", "/metrics", None).1,
        http(&addr, "GET", "/batches", None).1,
    ];
    for text in &everything {
        assert!(!text.contains(password) && !text.contains("pa#ss"), "the password shows in:\n{text}");
    }
    // A wrong password is named as such, and not shown either.
    let wrong = config_with_url(&config, &url, &url.replace(password, "wrong-horse"));
    let (status, _, stderr) = flagsd_in(dir.path(), &["run", "--config", wrong.to_str().expect("UTF-8")], &[]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains(&format!("NATS at {masked} refused the credentials")), "{stderr}");
    assert!(!stderr.contains("wrong-horse"), "{stderr}");
}

/// A copy of `config` with `from` replaced by `to`.
fn config_with_url(config: &Path, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(config).expect("the configuration");
    let path = config.with_file_name("other.toml");
    std::fs::write(&path, text.replace(from, to)).expect("write");
    path
}

#[test]
fn a_node_whose_disk_is_full_hands_its_codes_to_the_others() {
    let Some(nats) = NatsServer::start() else { return };
    let Some(disk) = Tmpfs::mount("256k") else { return };
    let urls = [nats.url()];
    let flags = slow_server("0.02");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "\"all\"", "");
    let full = disk.path.join("out");
    std::fs::create_dir_all(full.join("world")).expect("a directory");
    // Fill the file system, leaving no room for a flag.
    let filler = std::fs::File::create(disk.path.join("filler")).expect("a file");
    let _ = std::io::Write::write_all(&mut &filler, &vec![0u8; 256 * 1024]);
    drop(filler);
    let a = Node::start(&config, "a", &[]);
    let b = Node::start(
        &config,
        "b",
        &[("FLAGSD_DEFAULTS__OUTPUT", full.to_str().expect("UTF-8")), ("FLAGSD_ADMIN__LISTEN", "0")],
    );
    a.wait_joined();
    b.wait_joined();
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}\n{}", b.log());
    let first = batch(&document);
    assert_eq!(first["counts"]["downloaded"].as_u64(), Some(194), "{document}");
    let (by_node, _) = shares(first);
    assert_eq!(by_node.get("a"), Some(&194), "node a saved every flag: {by_node:?}");
    let (status, reason) = http(&b.admin_addr(), "GET", "/readyz", None);
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("disk world"), "{reason}");
    // While its disk stays full, the node still takes a work item now and
    // then (to see whether a write works again) and gives its codes back:
    // runs keep finishing, every code once.
    for _ in 0..2 {
        std::fs::remove_dir_all(dir.path().join("out")).expect("a's files removed");
        let (status, document) = finish(submit(&config));
        assert_eq!(status, 0, "{document}\n{}", b.log());
        let again = batch(&document);
        assert_eq!(again["counts"]["downloaded"].as_u64(), Some(194), "{document}");
        assert_eq!(shares(again).0.get("a"), Some(&194), "node a saved every flag");
    }
    // Room again: the node is ready again.
    std::fs::remove_file(disk.path.join("filler")).expect("room");
    assert!(wait_until(FLEET_WAIT, || http(&b.admin_addr(), "GET", "/readyz", None).0 == 200), "{}", b.log());
}

#[test]
fn a_run_whose_starter_died_before_queueing_is_completed_by_the_fleet() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = server(Default::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "[\"BR\", \"AR\", \"ZZ\"]", "");
    let _node = start_nodes(&config, &["a"]);
    // What a starter leaves when it dies right after recording its run: a
    // running record, and not one code queued.
    let mut record = RunRecord::started(41, "world", "run", flagsd::model::time::rfc3339(SystemTime::now()));
    record.started_by = Some("dead".to_owned());
    let run = FleetRun {
        record,
        nonce: "0dead0".to_owned(),
        tick: None,
        codes: ["BR", "AR", "ZZ"].iter().filter_map(|c| parse_code(c)).collect(),
    };
    with_fleet(&urls, async |fleet| {
        fleet.runs.put(last_key("world"), serde_json::to_vec(&run).expect("JSON").into()).await.expect("written");
    });
    let ended = |urls: &[String]| {
        with_fleet(urls, async |fleet| fleet.last_run("world").await.ok().flatten())
            .map(|(run, _)| run.record)
            .filter(|r| !r.is_running())
    };
    assert!(wait_until(FLEET_WAIT, || ended(&urls).is_some()), "the run never ended");
    let record = ended(&urls).expect("ended");
    let c = record.counts.expect("counts");
    assert_eq!((record.id, record.state, c.downloaded, c.not_found), (41, RunState::Finished, 2, 1), "{record:?}");
}

#[test]
fn cancel_stops_a_fleet_run_and_the_batch_runs_again_at_once() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = slow_server("0.5");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "\"every\"", "");
    let _node = start_nodes(&config, &["a"]);
    let run = submit(&config);
    let id = running_run(&urls).record.id;
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "world"], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with(&format!("cancelled run {id} of batch world: ")), "{stdout}");
    let (status, document) = finish(run);
    assert_eq!(status, 130, "{document}");
    let record = fleet_runs(&urls).into_iter().find(|r| r.id == id).expect("the run");
    assert_eq!((record.state, record.exit_status), (RunState::Cancelled, Some(130)), "{record:?}");
    let (status, _, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "world"], &[]);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stderr, "batch world has no run in progress\n");
    let (status, _, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "nope"], &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("no batch named nope"), "{stderr}");
    // The batch starts again at once.
    let next = submit(&config);
    assert!(wait_until(FLEET_WAIT, || running_run(&urls).record.id > id), "no new run");
    let (status, _, _) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "world"], &[]);
    assert_eq!(status, 0);
    assert_eq!(finish(next).0, 130);
    // NATS not answering: status 3.
    let nowhere = closed_port_url().replace("http://", "nats://").replace("/flags", "");
    let other = config_with_url(&config, &nats.url(), &nowhere);
    let (status, _, stderr) =
        flagsd_in(dir.path(), &["cancel", "--config", other.to_str().expect("UTF-8"), "world"], &[]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
}

#[test]
fn trigger_starts_a_fleet_run_waits_for_its_report_and_refuses_a_second() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let (flags, quick) = (slow_server("0.5"), clean_server());
    let dir = tempfile::tempdir().expect("a directory");
    let other =
        format!("\n[[batch]]\nname = \"quick\"\ncodes = [\"BR\", \"AR\", \"ZZ\"]\nserver = \"{}\"\n", quick.url());
    let config = config(dir.path(), &urls, &flags.url(), "\"every\"", &other);
    let _node = start_nodes(&config, &["a"]);
    let trigger = |args: &[&str]| {
        let mut all = vec!["trigger", "--config", "flagsd.toml"];
        all.extend_from_slice(args);
        flagsd_in(dir.path(), &all, &[])
    };

    // Begun in the fleet, fetched by its node, and reported as `run` does.
    let (status, stdout, stderr) = trigger(&["--wait", "quick"]);
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}{stderr}");
    let report = stdout.strip_prefix("started run 1 of batch quick\n").unwrap_or_else(|| panic!("{stdout}"));
    assert!(report.starts_with("== batch quick ==\n"), "{report}");
    assert_eq!((count(report, "flags downloaded."), count(report, "not found.")), (2, 1), "{report}");
    let record = fleet_runs(&urls).into_iter().find(|r| r.id == 1).expect("the run");
    assert_eq!((record.batch.as_str(), record.trigger.as_str()), ("quick", "admin"), "{record:?}");

    // A batch running in the fleet is not started twice.
    let (status, stdout, stderr) = trigger(&["world"]);
    assert_eq!((status, stdout.as_str()), (0, "started run 2 of batch world\n"), "{stderr}");
    let (status, stdout, stderr) = trigger(&["world"]);
    assert_eq!((status, stdout.as_str()), (3, ""), "{stderr}");
    assert_eq!(stderr, "*** Error: batch world is running in the fleet (run 2)\n");
    let (status, _, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "world"], &[]);
    assert_eq!(status, 0, "{stderr}");
}

#[test]
fn files_named_by_country_get_one_name_each_across_nodes() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    // 20 codes in 10 pairs, each pair one country name.
    let codes = [
        "ad", "ae", "af", "ag", "al", "am", "ao", "ar", "at", "au", "az", "ba", "bb", "bd", "be", "bf", "bg", "bh",
        "bi", "bj",
    ];
    let pairs: Vec<(&str, String)> =
        codes.iter().enumerate().map(|(i, cc)| (*cc, format!("\"Pair {}\"", i / 2))).collect();
    let root = country_root(&pairs.iter().map(|(cc, name)| (*cc, name.as_str())).collect::<Vec<_>>());
    let flags = server(flagsd::testserver::TestServerOptions {
        root: Some(root.path().to_owned()),
        delay: Some("0.05".parse().expect("a delay")),
        workers: 4,
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("a directory");
    let list: Vec<String> = codes.iter().map(|cc| format!("\"{}\"", cc.to_uppercase())).collect();
    let config = config(dir.path(), &urls, &flags.url(), &format!("[{}]", list.join(", ")), "naming = \"country\"\n");
    let _nodes = start_nodes(&config, &["a", "b"]);
    let (status, document) = finish(submit(&config));
    assert_eq!(status, 0, "{document}");
    let batch = batch(&document);
    assert_eq!(batch["counts"]["downloaded"].as_u64(), Some(20), "{document}");
    let (by_node, _) = shares(batch);
    assert_eq!(by_node.len(), 2, "both nodes fetched: {by_node:?}");
    let files: BTreeSet<String> = batch["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .filter_map(|c| c["file"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(files.len(), 20, "every code its own file: {files:?}");
    for code in batch["codes"].as_array().expect("codes") {
        let cc = code["code"].as_str().expect("a code").to_lowercase();
        let saved = std::fs::read(code["file"].as_str().expect("a file")).expect("the file");
        let flag = flagsd::testserver::dataset::get(&format!("flags/{cc}/{cc}.gif")).expect("the flag");
        assert!(saved == flag, "{} holds another code's bytes", code["file"]);
    }
    assert_eq!(std::fs::read_dir(dir.path().join("out/world")).expect("the files").count(), 20);
}

/// The batch's consumer as a flagsd whose work messages held one code each
/// left it (filtered on `{fleet}.work.{batch}.*`) is updated in place by
/// a node: the node takes this version's work items, and the run ends.
#[test]
fn a_consumer_of_an_older_flagsd_is_updated_to_take_work_items() {
    let Some(nats) = NatsServer::start() else { return };
    let urls = [nats.url()];
    let flags = server(Default::default());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &urls, &flags.url(), "\"every\"", "");
    with_fleet(&urls, async |fleet| {
        let old = async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(fleet.names.consumer("world")),
            filter_subject: format!("{FLEET}.work.world.*"),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            // The configuration's: only the filter differs.
            ack_wait: Duration::from_secs(3),
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        fleet.work.create_consumer(old).await.expect("an older flagsd's consumer");
    });
    let node = Node::start(&config, "a", &[]);
    node.wait_joined();
    let run = submit(&config);
    let (ended, end) = std::sync::mpsc::channel();
    std::thread::spawn(move || ended.send(finish(run)));
    let Ok((status, document)) = end.recv_timeout(FLEET_WAIT) else {
        panic!("the run did not end: the node took no work item\n{}", node.log());
    };
    assert_eq!(status, 0, "{document}");
    assert_every_code_once(batch(&document), &dir.path().join("out/world"));
}
