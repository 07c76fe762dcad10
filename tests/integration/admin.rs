//! The admin endpoint of `flagsd serve`: probes, metrics, history, triggers,
//! the bearer token, and state that survives a restart.

use std::time::Duration;

use flagsd::testserver::{Faults, TestServer, TestServerOptions};

use crate::helpers::*;

/// A configuration with an admin endpoint on a free loopback port.
fn with_admin(batches: &str, admin_extra: &str) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}\n{batches}")
}

/// The runs of `/runs?batch=NAME` as JSON, once `done` holds for them.
fn runs_when(
    addr: &str,
    query: &str,
    token: Option<&str>,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut runs = Vec::new();
    let ok = wait_until(LONG, || {
        let (status, body) = http(addr, "GET", &format!("/runs?{query}"), token);
        runs = serde_json::from_str(&body).unwrap_or_default();
        status == 200 && done(&runs)
    });
    assert!(ok, "{runs:?}");
    runs
}

fn finished(runs: &[serde_json::Value], n: usize) -> bool {
    runs.len() >= n && runs.iter().all(|r| !r["ended_at"].is_null())
}

/// The value of one series in Prometheus text, 0 if absent.
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

#[test]
fn metrics_after_a_run_equal_its_counts() {
    let server = server(TestServerOptions {
        faults: Faults { error_rate: 0.3, ..Faults::default() },
        seed: 7,
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("[defaults]\nretries = 0\n{}", with_admin(&batch("mix", "\"every\"", &server.url(), "1h"), ""));
    write_file(dir.path(), "flagsd.toml", &config);
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();

    let runs = runs_when(&addr, "batch=mix", None, |r| finished(r, 1));
    let counts = &runs[0]["counts"];
    let (downloaded, not_found, errors) = (
        counts["downloaded"].as_f64().unwrap(),
        counts["not_found"].as_f64().unwrap(),
        counts["errors"].as_f64().unwrap(),
    );
    assert!(downloaded > 0.0 && not_found > 0.0 && errors > 0.0, "{counts}");
    assert_eq!(downloaded + not_found + errors, 676.0);

    let (status, metrics) = http(&addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert_eq!(series(&metrics, "flagsd_downloads_total{batch=\"mix\",outcome=\"downloaded\"}"), downloaded);
    assert_eq!(series(&metrics, "flagsd_downloads_total{batch=\"mix\",outcome=\"not_found\"}"), not_found);
    assert_eq!(series(&metrics, "flagsd_downloads_total{batch=\"mix\",outcome=\"http_error\"}"), errors);
    assert_eq!(series(&metrics, "flagsd_request_duration_seconds_count{batch=\"mix\"}"), 676.0);
    assert_eq!(series(&metrics, "flagsd_requests_in_flight{batch=\"mix\"}"), 0.0);
    assert_eq!(series(&metrics, "flagsd_batch_running{batch=\"mix\"}"), 0.0);
    assert_eq!(series(&metrics, "flagsd_last_run_exit_status{batch=\"mix\"}"), 1.0);
    let bytes: u64 = files_in(&dir.path().join("downloaded/mix"))
        .iter()
        .map(|f| std::fs::metadata(dir.path().join("downloaded/mix").join(f)).unwrap().len())
        .sum();
    assert_eq!(series(&metrics, "flagsd_downloaded_bytes_total{batch=\"mix\"}"), bytes as f64);
    assert_eq!(series(&metrics, "flagsd_runs_total{batch=\"mix\",result=\"errors\"}"), 1.0);
    assert_eq!(series(&metrics, "flagsd_runs_total{batch=\"mix\",result=\"success\"}"), 0.0);
    assert_eq!(series(&metrics, "flagsd_batch_schedule_seconds{batch=\"mix\"}"), 3600.0);
    let version = format!("flagsd_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(series(&metrics, &version), 1.0);
    // The process metrics are the daemon's own: it started after this test did.
    let started = series(&metrics, "process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started > now - 600.0 && started <= now + 1.0, "{started} vs {now}");
    assert!(series(&metrics, "process_resident_memory_bytes") > 1e6, "{metrics}");
    assert!(series(&metrics, "process_open_fds") < series(&metrics, "process_max_fds"), "{metrics}");
    assert!(series(&metrics, "process_cpu_seconds_total") > 0.0, "{metrics}");
    let samples = || metrics.lines().filter(|l| !l.starts_with('#'));
    assert!(samples().all(|l| l.starts_with("flagsd_") || l.starts_with("process_")), "{metrics}");

    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}

#[test]
fn triggering_runs_a_batch_once_at_a_time() {
    let server = server(TestServerOptions { delay: Some("1".parse().unwrap()), ..TestServerOptions::default() });
    let dir = tempfile::tempdir().unwrap();
    // On demand only: no `every`.
    let on_demand = format!("[[batch]]\nname = \"adhoc\"\ncodes = [\"BR\"]\nserver = \"{}\"\n", server.url());
    write_file(dir.path(), "flagsd.toml", &with_admin(&on_demand, ""));
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();

    let (status, body) = http(&addr, "POST", "/batches/adhoc/run", None);
    assert_eq!(status, 202, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).unwrap();
    let run_id = started["run_id"].as_i64().unwrap();
    // The server waits a second before answering: the run is still going.
    let (status, body) = http(&addr, "POST", "/batches/adhoc/run", None);
    assert_eq!(status, 409, "{body}");
    assert_eq!(http(&addr, "POST", "/batches/nosuch/run", None).0, 404);

    let (status, body) = http(&addr, "GET", "/batches", None);
    assert_eq!(status, 200);
    let batches: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(batches[0]["name"], "adhoc");
    assert_eq!(batches[0]["every"], serde_json::Value::Null);

    let runs = runs_when(&addr, "batch=adhoc&limit=5", None, |r| finished(r, 1));
    assert_eq!((runs.len(), runs[0]["id"].as_i64(), runs[0]["trigger"].as_str()), (1, Some(run_id), Some("admin")));
    assert_eq!(runs[0]["exit_status"], 0);
    assert!(dir.path().join("downloaded/adhoc/BR.gif").exists());
    // Once it has ended the batch can run again.
    assert_eq!(http(&addr, "POST", "/batches/adhoc/run", None).0, 202);
    assert_eq!(http(&addr, "GET", "/runs?limit=0", None).0, 400);

    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}

#[test]
fn a_token_is_required_and_enforced() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", "s3cret-token\n");
    // A fixed port, so that `status` finds the daemon from the same file.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = with_admin(&batch("a", "[\"BR\"]", &server.url(), "1h"), "token_file = \"token\"")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    write_file(dir.path(), "flagsd.toml", &config);
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();

    assert_eq!(http(&addr, "GET", "/healthz", None), (200, "ok\n".to_owned()));
    assert_eq!(http(&addr, "GET", "/readyz", None).0, 200);
    for path in ["/metrics", "/batches", "/runs"] {
        assert_eq!(http(&addr, "GET", path, None).0, 401, "{path} without a token");
        assert_eq!(http(&addr, "GET", path, Some("s3cret-tokem")).0, 401, "{path} with a wrong token");
        assert_eq!(http(&addr, "GET", path, Some("s3cret-token")).0, 200, "{path} with the token");
    }
    assert_eq!(http(&addr, "POST", "/batches/a/run", Some("nope")).0, 401);

    // `status` reads the daemon with the same token file.
    let (status, stdout, _) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.starts_with(&format!("From the daemon at http://{addr}:")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("a ") && l.contains("1h")), "{stdout}");

    // Not ready: only a request with the token learns why.
    std::fs::rename(dir.path().join("state"), dir.path().join("state.moved")).unwrap();
    assert_eq!(http(&addr, "GET", "/readyz", None), (503, "not ready\n".to_owned()));
    let (status, body) = http(&addr, "GET", "/readyz", Some("s3cret-token"));
    assert_eq!(status, 503);
    assert!(body.contains("not writable"), "{body}");

    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
    assert!(!daemon.log().contains("s3cret"), "the token must never be logged: {}", daemon.log());
}

#[test]
fn a_non_loopback_address_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Refused while checking the configuration: nothing is ever bound.
    write_file(dir.path(), "flagsd.toml", "[admin]\nlisten = \"0.0.0.0:0\"\n");
    for command in ["serve", "check-config"] {
        let (status, _, stderr) = flagsd_in(dir.path(), &[command, "--config", "flagsd.toml"], &[]);
        assert_eq!(status, 2, "{command}: {stderr}");
        assert!(
            stderr.starts_with(
                "flagsd.toml:2:10: admin.listen: '0.0.0.0:0' is not a loopback address: set admin.token_file"
            ),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn the_token_file_is_read_by_serve_but_not_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    // Under systemd the token is a credential that only the service can
    // read, so the check (and `systemctl reload`) must not need it.
    write_file(dir.path(), "flagsd.toml", "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"missing\"\n");
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stderr}");
    let (status, _, stderr) = flagsd_in(dir.path(), &["serve", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    // A relative path in the file starts from the file's directory.
    let missing = dir.path().canonicalize().unwrap().join("missing");
    let expected = format!("flagsd.toml:3:14: admin.token_file: cannot read the token file '{}'", missing.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
}

#[test]
fn readyz_fails_when_the_state_directory_is_not_writable() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &with_admin(&batch("a", "[\"BR\"]", &server.url(), "1h"), ""));
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    assert_eq!(http(&addr, "GET", "/readyz", None), (200, "ready\n".to_owned()));
    // Works for root too, unlike a permission change: the directory goes away.
    std::fs::rename(dir.path().join("state"), dir.path().join("state.moved")).unwrap();
    let (status, body) = http(&addr, "GET", "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("state 'state' is not writable"), "{body}");
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200, "alive, though not ready");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}

#[test]
fn state_survives_a_daemon_restart() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &with_admin(&batch("a", "[\"BR\", \"AR\"]", &server.url(), "1h"), ""));

    let mut first = Daemon::start(dir.path(), &[]);
    let addr = first.admin_addr();
    runs_when(&addr, "batch=a", None, |r| finished(r, 1));
    first.signal("TERM");
    assert_eq!(first.wait(LONG), Some(0));
    std::fs::remove_file(dir.path().join("daemon.log")).unwrap();

    let mut second = Daemon::start(dir.path(), &[]);
    let addr = second.admin_addr();
    let runs = runs_when(&addr, "batch=a", None, |r| finished(r, 2));
    // Newest first: the second daemon's run found both files current.
    assert_eq!(runs[0]["counts"]["unchanged"], 2, "{runs:?}");
    assert_eq!(runs[1]["counts"]["downloaded"], 2, "{runs:?}");
    assert!(runs[0]["id"].as_i64() > runs[1]["id"].as_i64());
    assert_eq!(server.bodies(), 2, "the restarted daemon asked conditionally");
    second.signal("TERM");
    assert_eq!(second.wait(LONG), Some(0));
}

#[test]
fn flagsd_reload_checks_without_the_token_then_signals_the_daemon() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", "s3cret-token\n");
    let one = with_admin(&batch("a", "[\"BR\"]", &server.url(), "1h"), "token_file = \"token\"");
    write_file(dir.path(), "flagsd.toml", &one);
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let batches = || http(&addr, "GET", "/batches", Some("s3cret-token"));
    let pid = daemon.pid().to_string();
    let reload = || flagsd_in(dir.path(), &["reload", "--config", "flagsd.toml", &pid], &[]);

    // As under systemd, the reload cannot read the token: only the
    // service could, and it read it at start.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    write_file(dir.path(), "flagsd.toml", &format!("{one}{}", batch("b", "[\"AR\"]", &server.url(), "1h")));
    let (status, stdout, stderr) = reload();
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(stdout, format!("flagsd.toml: OK (2 batches); asked flagsd (process {pid}) to reload it\n"));
    assert!(wait_until(LONG, || batches().1.contains("\"name\":\"b\"")), "{}", daemon.log());
    assert_eq!(batches().0, 200, "the token read at start still works");

    // A broken file: the reload fails with the reason and sends nothing.
    write_file(dir.path(), "flagsd.toml", &format!("{one}[[batch]]\nname = \"c\"\nmax_req = 0\n"));
    let (status, stdout, stderr) = reload();
    assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with("flagsd.toml:11:11: batch[1].max_req: must be >= 1"), "{stderr}");
    let log = daemon.log();
    assert_eq!((log.matches("configuration reloaded").count(), log.contains("not reloaded")), (1, false), "{log}");
    assert!(batches().1.contains("\"name\":\"b\""));

    // No such process: status 3, and the reason.
    let (status, _, stderr) = flagsd_in(dir.path(), &["reload", "--config", "flagsd.toml", "999999999"], &[]);
    assert_eq!(status, 2, "the file is checked first: {stderr}");
    write_file(dir.path(), "flagsd.toml", &one);
    let (status, _, stderr) = flagsd_in(dir.path(), &["reload", "--config", "flagsd.toml", "999999999"], &[]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("not signalling process 999999999: cannot inspect it (/proc/999999999/exe"), "{stderr}");

    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}

#[test]
fn flagsd_reload_signals_nothing_but_the_daemon_of_its_configuration() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &batch("a", "[\"BR\"]", &server.url(), "1h"));
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    write_file(&other, "flagsd.toml", &batch("b", "[\"AR\"]", &server.url(), "1h"));
    let mut daemon = Daemon::start(&other, &[]);
    assert!(wait_until(LONG, || daemon.log().contains("serving")), "{}", daemon.log());
    let reload = |pid: u32| flagsd_in(dir.path(), &["reload", "--config", "flagsd.toml", &pid.to_string()], &[]);

    // Not flagsd at all: left alone, and still running.
    let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let (status, stdout, stderr) = reload(sleeper.id());
    assert_eq!((status, stdout.as_str()), (3, ""), "{stderr}");
    let expected = format!("*** Error: not signalling process {}: it runs ", sleeper.id());
    assert!(stderr.starts_with(&expected) && stderr.contains("sleep, not flagsd"), "{stderr}");
    assert_eq!(sleeper.try_wait().unwrap(), None, "the process was signalled");
    // systemd's $MAINPID vouches only for the PID it names.
    let other_main = (sleeper.id() + 1).to_string();
    let pid = sleeper.id().to_string();
    let (status, _, stderr) =
        flagsd_in(dir.path(), &["reload", "--config", "flagsd.toml", &pid], &[("MAINPID", other_main.as_str())]);
    assert_eq!(status, 3, "{stderr}");
    assert_eq!(sleeper.try_wait().unwrap(), None, "the process was signalled");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    // flagsd serve, but of another file: left alone too.
    let (status, _, stderr) = reload(daemon.pid());
    assert_eq!(status, 3, "{stderr}");
    let theirs = other.join("flagsd.toml");
    assert!(stderr.contains(&format!("it is flagsd serve of {}, not of flagsd.toml", theirs.display())), "{stderr}");
    assert!(!daemon.log().contains("reload"), "{}", daemon.log());

    // Its own file, named another way (absolute): signalled.
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["reload", "-c", &theirs.display().to_string(), &daemon.pid().to_string()], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(wait_until(LONG, || daemon.log().contains("configuration reloaded")), "{}", daemon.log());
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}

/// A daemon serving batch `a` of `codes` every `every` from a clean server,
/// with an admin endpoint (no token): the server, the directory, the
/// daemon and the endpoint's address, once the first run has finished.
fn daemon_after_first_run(codes: &str, every: &str) -> (TestServer, tempfile::TempDir, Daemon, String) {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &with_admin(&batch("a", codes, &server.url(), every), ""));
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    runs_when(&addr, "batch=a", None, |runs| finished(runs, 1));
    (server, dir, daemon, addr)
}

/// Whether another process holds a POSIX lock on some byte of `path`.
fn locked_by_another_process(path: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `lock` is a valid `flock` that outlives the call, and the
    // descriptor is open.
    assert_eq!(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) }, 0);
    lock.l_type != libc::F_UNLCK as libc::c_short
}

#[test]
fn readyz_leaves_the_databases_locks_alone() {
    // Opening and closing flagsd.db inside the daemon would drop SQLite's
    // POSIX locks: another client (Debian's sqlite3, Python's module) would
    // then take itself for the last user and delete the live WAL.
    let (_server, dir, mut daemon, addr) = daemon_after_first_run("[\"BR\"]", "1h");
    let db = dir.path().join("state/flagsd.db");
    assert!(locked_by_another_process(&db), "SQLite holds a shared lock while the database is open");
    for _ in 0..3 {
        assert_eq!(http(&addr, "GET", "/readyz", None).0, 200);
        assert!(locked_by_another_process(&db), "/readyz dropped SQLite's lock");
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}

#[test]
fn a_connection_flood_on_the_admin_port_leaves_downloads_their_descriptors() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let codes: Vec<String> = flagsd::model::codes::all_countries()[..50].iter().map(|c| format!("\"{c}\"")).collect();
    let batch = format!("{}max_req = 50\n", batch("a", &format!("[{}]", codes.join(", ")), &server.url(), "1s"));
    write_file(dir.path(), "flagsd.toml", &with_admin(&batch, ""));
    // 50 workers take up to 100 descriptors; 200 leave room for them and
    // for what flagsd keeps aside, not for 150 more connections.
    let mut daemon = Daemon::start_with_open_files(dir.path(), 200);
    let addr = daemon.admin_addr();
    assert!(wait_until(LONG, || daemon.log().contains("run finished batch=a run=1")), "{}", daemon.log());
    let flood: Vec<std::net::TcpStream> = (0..150).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    assert_eq!(flood.len(), 150, "the backlog takes the connections the endpoint does not");
    // Two runs that start while the flood holds its connections.
    assert!(wait_until(LONG, || daemon.log().contains("run finished batch=a run=3")), "{}", daemon.log());
    let log = daemon.log();
    for run in 2..=3 {
        let line = log.lines().find(|l| l.contains(&format!("run finished batch=a run={run} "))).unwrap();
        assert!(line.contains("downloaded=50") || line.contains("unchanged=50"), "{line}");
        assert!(line.contains("errors=0"), "{line}");
    }
    drop(flood);
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}

#[test]
fn a_database_locked_by_another_process_does_not_freeze_the_daemon() {
    let (_server, dir, mut daemon, addr) = daemon_after_first_run("[\"BR\"]", "1s");
    // Another process holds the write lock: each tick's run now waits up
    // to 5 s for it, on the database's thread.
    let other = rusqlite::Connection::open(dir.path().join("state/flagsd.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    for _ in 0..12 {
        let answer = client.get(format!("http://{addr}/healthz")).send();
        assert!(answer.is_ok_and(|a| a.status() == 200), "/healthz stalled behind the lock\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    other.execute_batch("ROLLBACK").unwrap();
    let before = daemon.log().matches("run finished batch=a").count();
    assert!(wait_until(LONG, || daemon.log().matches("run finished batch=a").count() > before), "{}", daemon.log());
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}

#[test]
fn cancel_stops_the_daemons_run_and_the_batch_can_run_again_at_once() {
    let server =
        server(TestServerOptions { delay: Some("0.5".parse().unwrap()), workers: 2, ..TestServerOptions::default() });
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", "s3cret-admin\n");
    let config = with_admin(&batch("slow", "\"every\"", &server.url(), "1h"), "token_file = \"token\"");
    write_file(dir.path(), "flagsd.toml", &config);
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let env = [("FLAGSD_ADMIN__LISTEN", addr.as_str())];
    let cancel = || flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "slow"], &env);
    assert!(wait_until(LONG, || server.hits() >= 2), "{}", daemon.log());
    let (status, stdout, stderr) = cancel();
    assert_eq!(status, 0, "{stdout}{stderr}\n{}", daemon.log());
    assert!(stdout.starts_with("cancelled run 1 of batch slow: "), "{stdout}");
    let runs = runs_when(&addr, "batch=slow", Some("s3cret-admin"), |r| finished(r, 1));
    assert_eq!(
        (runs[0]["state"].as_str(), runs[0]["exit_status"].as_i64()),
        (Some("cancelled"), Some(130)),
        "{runs:?}"
    );
    // Nothing runs now.
    let (status, _, stderr) = cancel();
    assert_eq!((status, stderr.as_str()), (1, "batch slow has no run in progress\n"));
    // The batch starts again at once, and that run can be cancelled too.
    let (status, body) = http(&addr, "POST", "/batches/slow/run", Some("s3cret-admin"));
    assert_eq!(status, 202, "{body}");
    assert!(wait_until(LONG, || cancel().0 == 0), "{}", daemon.log());
    // Without an admin endpoint, nothing can reach the daemon: status 3.
    write_file(dir.path(), "alone.toml", &batch("slow", "\"every\"", &server.url(), "1h"));
    let (status, _, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "alone.toml", "slow"], &[]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("no admin endpoint"), "{stderr}");
    // The daemon gone: status 3 as well.
    drop(daemon);
    let (status, _, stderr) = cancel();
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("not reachable"), "{stderr}");
}

/// A daemon with an admin endpoint, a token, and the on-demand batch `a`
/// (it never runs by itself): its directory, the daemon and the address.
fn idle_daemon() -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", "s3cret-token\n");
    let on_demand = "[[batch]]\nname = \"a\"\ncodes = [\"BR\"]\nserver = \"DEMO\"\n";
    write_file(dir.path(), "flagsd.toml", &with_admin(on_demand, "token_file = \"token\""));
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    (dir, daemon, addr)
}

/// Clients that each send a request head a byte every 100 ms, and connect
/// again when the endpoint cuts them off, until dropped.
struct SlowClients {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SlowClients {
    fn start(addr: &str, count: usize) -> Self {
        use std::io::Write as _;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..count)
            .map(|_| {
                let (stop, addr) = (std::sync::Arc::clone(&stop), addr.to_owned());
                std::thread::spawn(move || {
                    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut stream) = std::net::TcpStream::connect(&addr) else { continue };
                        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                            if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[test]
fn healthz_answers_while_idle_and_slow_connections_are_held() {
    let (_dir, mut daemon, addr) = idle_daemon();
    let socket: std::net::SocketAddr = addr.parse().unwrap();
    // 200 connections that send nothing, and 20 that send a byte at a time.
    let idle: Vec<std::net::TcpStream> =
        (0..200).filter_map(|_| std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(2)).ok()).collect();
    assert!(idle.len() >= 150, "only {} connections", idle.len());
    let slow = SlowClients::start(&addr, 20);
    // A probe that gives up after 2 s (bench/admin-starve.sh measures how
    // fast it really is: the target is 100 ms).
    let probe = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap();
    for attempt in 0..5 {
        let answer = probe.get(format!("http://{addr}/healthz")).send();
        assert!(answer.as_ref().is_ok_and(|a| a.status() == 200), "attempt {attempt}: {answer:?}\n{}", daemon.log());
    }
    drop((slow, idle));
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}

#[test]
fn a_client_that_sends_its_request_slowly_is_cut_off() {
    use std::io::{Read as _, Write as _};
    let (_dir, _daemon, addr) = idle_daemon();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = std::time::Instant::now();
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a'));
    let mut answer = Vec::new();
    // A byte every 100 ms until the endpoint answers or closes.
    let cut = loop {
        let mut buffer = [0u8; 256];
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break true,
        }
        if started.elapsed() > LONG {
            break false;
        }
        if let Some(byte) = head.next()
            && stream.write_all(&[*byte]).is_err()
        {
            break true;
        }
    };
    let elapsed = started.elapsed();
    assert!(cut, "still connected after {elapsed:?}");
    // The head timeout is 2 s: 4 s leaves room for a busy machine, and is
    // still under the 5 s actix-web gives by default.
    assert!(elapsed < Duration::from_secs(4), "cut off after {elapsed:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A connection to `addr` from the loopback address `from` (any of
/// 127.0.0.0/8 is this host).
fn connect_from(from: std::net::Ipv4Addr, addr: &str) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        socket.connect(addr.parse().unwrap()).await.unwrap().into_std().unwrap()
    })
}

/// Whether the endpoint closed `stream` (it sent nothing, so an open
/// connection has nothing to read).
fn closed(stream: &std::net::TcpStream) -> bool {
    use std::io::Read as _;
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    !matches!((&*stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn one_peer_cannot_take_the_connections_of_another() {
    let (_dir, _daemon, addr) = idle_daemon();
    let other = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let theirs: Vec<std::net::TcpStream> = (0..3).map(|_| connect_from(other, &addr)).collect();
    let flood: Vec<std::net::TcpStream> = (0..60).map(|_| connect_from(std::net::Ipv4Addr::LOCALHOST, &addr)).collect();
    // The flood's oldest connections are closed at once to make room (well
    // before the 2 s head timeout), the other peer's are not.
    assert!(
        wait_until(Duration::from_millis(1500), || flood.iter().filter(|s| closed(s)).count() >= 50),
        "{} of 60 closed",
        flood.iter().filter(|s| closed(s)).count()
    );
    assert!(theirs.iter().all(|s| !closed(s)), "the other peer lost its connections");
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
}

/// The lines of `log` after its first `skip` ones.
fn lines_after(log: &str, skip: usize) -> Vec<String> {
    log.lines().skip(skip).map(str::to_owned).collect()
}

/// How many events the lines of `lines` that contain `kind` account for:
/// a line's `count=N`, or one.
fn counted(lines: &[String], kind: &str) -> u64 {
    lines
        .iter()
        .filter(|l| l.contains(kind))
        .map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("count=")).map_or(Some(1), |n| n.parse().ok()))
        .map(Option::unwrap_or_default)
        .sum()
}

#[test]
fn a_flood_of_bad_requests_is_logged_in_a_few_lines() {
    use std::io::{Read as _, Write as _};
    let (_dir, mut daemon, addr) = idle_daemon();
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    let before = daemon.log().lines().count();
    let started = std::time::Instant::now();
    // 1,000 requests that are not HTTP, each on a connection of its own…
    for _ in 0..1000 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nthis is no header\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
    // … and 1,000 with a wrong token.
    let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    for _ in 0..1000 {
        let answer = client.get(format!("http://{addr}/batches")).bearer_auth("wrong").send().unwrap();
        assert_eq!(answer.status(), 401);
    }
    // Every one is counted, in a line of its own kind each second at most.
    assert!(
        wait_until(LONG, || {
            let lines = lines_after(&daemon.log(), before);
            counted(&lines, "kind=protocol") >= 1000 && counted(&lines, "kind=unauthorized") >= 1000
        }),
        "{}",
        daemon.log()
    );
    // A line a second of each kind at most: 4 or so here, more only if the
    // machine was so busy that the flood took seconds.
    let seconds = usize::try_from(started.elapsed().as_secs()).unwrap();
    let lines = lines_after(&daemon.log(), before);
    assert!(lines.len() <= 2 * (seconds + 2), "{} lines in {seconds} s:\n{}", lines.len(), lines.join("\n"));
    assert!(lines.iter().all(|l| !l.contains("ERROR")), "{}", lines.join("\n"));
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}
