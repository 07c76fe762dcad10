//! `flagsd serve` as a child process: schedules, SIGHUP, SIGTERM, sd_notify.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use flagsd::testserver::{Faults, TestServerOptions};

use crate::helpers::*;

#[test]
fn batches_run_on_schedule_and_sighup_reloads_good_files_only() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &batch("a", "[\"BR\"]", &server.url(), "1s"));
    let mut daemon = Daemon::start(dir.path(), &[]);

    // The first run at start, then more on schedule.
    assert!(wait_until(LONG, || server.hits() >= 3), "{}", daemon.log());
    // A run may be writing right now: check the finished file only.
    let saved = std::fs::read(dir.path().join("downloaded/a/BR.gif")).unwrap();
    assert_eq!(saved, flagsd::testserver::dataset::get("flags/br/br.gif").unwrap());
    assert!(daemon.log().contains("run finished batch=a run=1 downloaded=1"), "{}", daemon.log());

    // A good file adds a batch.
    let two = format!(
        "{}{}",
        batch("a", "[\"BR\"]", &server.url(), "1s"),
        batch("b", "[\"AR\", \"ZZ\"]", &server.url(), "1h")
    );
    write_file(dir.path(), "flagsd.toml", &two);
    daemon.signal("HUP");
    assert!(wait_until(LONG, || dir.path().join("downloaded/b/AR.gif").exists()), "{}", daemon.log());

    // A bad file is logged and the old schedule keeps running.
    write_file(dir.path(), "flagsd.toml", "[[batch]]\nname = \"a\"\nmax_req = 0\nserver = \"LOCAL\"\n");
    daemon.signal("HUP");
    assert!(
        wait_until(LONG, || daemon.log().contains("flagsd.toml:3:11: batch[0].max_req: must be >= 1")),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("configuration not reloaded"));
    let before = server.hits();
    assert!(wait_until(LONG, || server.hits() >= before + 2), "schedule stopped after a bad reload");

    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
    assert_eq!(assert_only_complete_flags(&dir.path().join("downloaded/a")), 1);
}

#[test]
fn sigterm_during_a_run_exits_0_within_the_shutdown_timeout_leaving_no_partial_file() {
    let server =
        server(TestServerOptions { delay: Some("1..4".parse().unwrap()), workers: 2, ..TestServerOptions::default() });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[daemon]\nshutdown_timeout = \"1500ms\"\n[defaults]\nmax_req = 100\n{}",
        batch("slow", "\"every\"", &server.url(), "1h")
    );
    write_file(dir.path(), "flagsd.toml", &text);
    let mut daemon = Daemon::start(dir.path(), &[]);
    assert!(wait_until(LONG, || server.hits() >= 100), "{}", daemon.log());
    // Some downloads finished, the rest are in flight.
    let out = dir.path().join("downloaded/slow");
    assert!(wait_until(LONG, || !files_in(&out).is_empty()));

    let stopping = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait(LONG);
    let took = stopping.elapsed();
    assert_eq!(status, Some(0), "{}", daemon.log());
    // The 1.5 s shutdown timeout plus slack for a loaded machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(daemon.log().contains("abandoning it"), "{}", daemon.log());
    let saved = assert_only_complete_flags(&out);
    assert!(saved > 0 && saved < 194, "{saved}");
    // The abandoned run is recorded, with what finished and SIGTERM's status.
    let state = flagsd::store::state::StateDb::open_read_only(&dir.path().join("state")).unwrap().unwrap();
    let run = &state.runs(Some("slow"), 1, None).unwrap()[0];
    assert_eq!(run.exit_status, Some(143), "{run:?}");
    assert_eq!(run.counts.map(|c| c.downloaded), Some(saved), "{run:?}");
}

#[test]
fn a_bad_configuration_at_start_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", "[defaults]\nmax_req = -1\n");
    let mut daemon = Daemon::start(dir.path(), &[]);
    assert_eq!(daemon.wait(LONG), Some(2));
    assert!(daemon.log().starts_with("flagsd.toml:2:11: defaults.max_req: must be >= 1"), "{}", daemon.log());
}

/// Reads notify datagrams until one contains `wanted`; returns all states seen.
fn receive_until(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + LONG;
    loop {
        assert!(Instant::now() < deadline, "no {wanted} in {seen:?}");
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = text.lines().any(|l| l == wanted);
        seen.extend(text.lines().map(str::to_owned));
        if done {
            return;
        }
    }
}

#[test]
fn the_notify_socket_hears_ready_reloading_stopping_and_watchdog() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &batch("a", "[\"BR\"]", &server.url(), "1h"));
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")];
    let mut daemon = Daemon::start(dir.path(), &env);

    let mut seen = Vec::new();
    receive_until(&socket, "READY=1", &mut seen);
    receive_until(&socket, "WATCHDOG=1", &mut seen);
    daemon.signal("HUP");
    receive_until(&socket, "RELOADING=1", &mut seen);
    receive_until(&socket, "READY=1", &mut seen);
    daemon.signal("TERM");
    receive_until(&socket, "STOPPING=1", &mut seen);
    assert_eq!(daemon.wait(LONG), Some(0));

    let order: Vec<&str> =
        seen.iter().map(String::as_str).filter(|s| ["READY=1", "RELOADING=1", "STOPPING=1"].contains(s)).collect();
    assert_eq!(order, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], "{seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("STATUS=")), "{seen:?}");
}

#[test]
fn an_overdue_tick_is_skipped_not_run_twice() {
    let server = server(TestServerOptions { delay: Some("2.5".parse().unwrap()), ..TestServerOptions::default() });
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &batch("slow", "[\"BR\"]", &server.url(), "1s"));
    let started = Instant::now();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let skipped = "previous run still in progress; skipping ticks until it ends";
    assert!(wait_until(LONG, || daemon.log().contains(skipped)), "{}", daemon.log());
    // Let a few more ticks pass: each run takes 2.5 s, ticks come every second.
    std::thread::sleep(Duration::from_secs(3));
    // Logged once per run, not once per tick.
    let log = daemon.log();
    assert!(log.matches(skipped).count() <= log.matches("run finished").count() + 1, "{log}");
    let allowed = started.elapsed().as_secs_f64() / 2.5 + 2.0;
    assert!(server.hits() as f64 <= allowed, "{} requests in {:?}", server.hits(), started.elapsed());
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}

#[test]
fn reload_reruns_changed_batches_and_drops_removed_ones() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let both =
        format!("{}{}", batch("keep", "[\"BR\"]", &server.url(), "1h"), batch("gone", "[\"AR\"]", &server.url(), "1s"));
    write_file(dir.path(), "flagsd.toml", &both);
    let mut daemon = Daemon::start(dir.path(), &[]);
    assert!(wait_until(LONG, || dir.path().join("downloaded/keep/BR.gif").exists()), "{}", daemon.log());
    assert!(wait_until(LONG, || dir.path().join("downloaded/gone/AR.gif").exists()), "{}", daemon.log());

    // `keep` changes its codes; `gone` is removed.
    write_file(dir.path(), "flagsd.toml", &batch("keep", "[\"CL\"]", &server.url(), "1h"));
    daemon.signal("HUP");
    assert!(wait_until(LONG, || dir.path().join("downloaded/keep/CL.gif").exists()), "{}", daemon.log());
    assert!(wait_until(LONG, || daemon.log().contains("batch removed from the schedule batch=gone")));
    let gone_runs = |log: &str| log.matches("run started batch=gone").count();
    let before = gone_runs(&daemon.log());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(gone_runs(&daemon.log()), before, "a removed batch still runs");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}

#[test]
fn verbose_batches_log_each_failed_code_as_a_warning() {
    let server = faulty(Faults { error_rate: 1.0, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}verbose = true\n", batch("loud", "[\"BR\", \"AR\"]", &server.url(), "1h"));
    write_file(dir.path(), "flagsd.toml", &text);
    let mut daemon = Daemon::start(dir.path(), &[]);
    let ended = "run finished with errors batch=loud";
    assert!(wait_until(LONG, || daemon.log().contains(ended)), "{}", daemon.log());
    let log = daemon.log();
    for cc in ["AR", "BR"] {
        let line = log.lines().find(|l| l.contains(&format!("cc={cc}"))).unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains("WARN") && line.contains("download failed batch=loud"), "{line}");
        assert!(line.contains("kind=\"http_error\"") && line.contains("status=418"), "{line}");
    }
    // The run's own line is a warning too, with its causes.
    let run = log.lines().find(|l| l.contains(ended)).unwrap_or_default();
    assert!(run.contains("WARN") && run.contains("errors=2") && run.contains("causes=2 HTTP 418"), "{run}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}
