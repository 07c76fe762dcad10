//! Controlling a running daemon from the command line through its admin
//! endpoint, with a token (so every request is signed): `flagsd reload`
//! without a PID, `flagsd trigger`, and `flagsd run` of a batch the daemon
//! is running.

use std::path::Path;

use crate::helpers::*;

const TOKEN: &str = "s3cret-control";

/// Writes `flagsd.toml` in `dir`: an admin endpoint on a free port with the
/// token of the file `token` (its owner's only), then `rest` (batches,
/// tables).
fn configure(dir: &Path, rest: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let token = write_file(dir, "token", &format!("{TOKEN}\n"));
    std::fs::set_permissions(token, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_file(dir, "flagsd.toml", &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n{rest}"));
}

/// Runs `flagsd ARGS` in `dir`, reaching the daemon's endpoint at `addr`
/// (the file says port 0, which only the daemon's log resolves).
fn control(dir: &Path, addr: &str, args: &[&str]) -> (i32, String, String) {
    flagsd_in(dir, args, &[("FLAGSD_ADMIN__LISTEN", addr)])
}

/// A loopback address on which nothing listens.
fn closed_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn reload_without_a_pid_asks_the_daemon_and_prints_its_answer() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let one = batch("a", "[\"BR\"]", &server.url(), "1h");
    let two = format!("{one}{}", batch("b", "[\"AR\"]", &server.url(), "1h"));
    configure(dir.path(), &one);
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let batches = || http(&addr, "GET", "/batches", Some(TOKEN)).1;
    let reload = || control(dir.path(), &addr, &["reload", "--config", "flagsd.toml"]);
    let refusals = |log: &str| log.matches("configuration not reloaded").count();

    // A good file: the daemon runs its batches by the time it answers.
    configure(dir.path(), &two);
    let (status, stdout, stderr) = reload();
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}{stderr}\n{}", daemon.log());
    assert_eq!(stdout, format!("the daemon at http://{addr} reloaded flagsd.toml: 2 batches (a, b)\n"));
    assert!(batches().contains("\"name\":\"b\""), "{}", batches());
    assert_eq!(daemon.log().matches("configuration reloaded").count(), 1, "{}", daemon.log());

    // A file that only the daemon finds wrong (an output directory nobody
    // can write): it keeps its configuration, and says why.
    let unwritable = format!("{two}[[batch]]\nname = \"c\"\ncodes = [\"BR\"]\noutput = \"/proc/flagsd-test\"\n");
    configure(dir.path(), &unwritable);
    let (status, stdout, stderr) = reload();
    assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
    let expected = format!(
        "the daemon at http://{addr}: flagsd.toml was not reloaded; the previous configuration stays in force:\n\
         flagsd.toml:17:10: batch[2].output: '/proc/flagsd-test' cannot be created: no directory can be made in '/proc'"
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!batches().contains("\"name\":\"c\""), "{}", batches());
    assert_eq!(refusals(&daemon.log()), 1, "{}", daemon.log());

    // A file that does not load here: its problems, and nothing is sent.
    configure(dir.path(), &format!("{two}[[batch]]\nname = \"c\"\nmax_req = 0\n"));
    let (status, stdout, stderr) = reload();
    assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with("flagsd.toml:16:11: batch[2].max_req: must be >= 1"), "{stderr}");
    assert_eq!(refusals(&daemon.log()), 1, "the daemon was asked: {}", daemon.log());

    // What waits for a restart is said as a warning.
    configure(dir.path(), &format!("{two}[state]\ndir = \"elsewhere\"\n"));
    let (status, stdout, stderr) = reload();
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(stderr, "warning: state.dir, [admin] and [fleet] changes take effect at the next start\n");

    // Without the daemon's token there is no reload: the request is signed
    // with another, and the daemon's refusal is not signed with ours.
    std::fs::write(dir.path().join("token"), "another-token\n").unwrap();
    let (status, _, stderr) = reload();
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("is not signed with the token"), "{stderr}");
    assert_eq!(daemon.log().matches("configuration reloaded").count(), 2, "{}", daemon.log());

    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
    assert!(!daemon.log().contains(TOKEN), "{}", daemon.log());
}

#[test]
fn reload_without_a_pid_and_without_a_daemon_says_how_to_signal_it() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &batch("a", "[\"BR\"]", "DEMO", "1h"));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["reload", "--config", "flagsd.toml"], &[]);
    assert_eq!((status, stdout.as_str()), (3, ""), "{stderr}");
    assert_eq!(
        stderr,
        "*** Error: cannot ask the daemon of flagsd.toml to reload: the configuration has no admin endpoint \
         ([admin] listen); to signal its process instead: flagsd reload --config flagsd.toml PID\n"
    );

    configure(dir.path(), &batch("a", "[\"BR\"]", "DEMO", "1h"));
    let nowhere = closed_addr();
    let (status, stdout, stderr) = control(dir.path(), &nowhere, &["reload", "--config", "flagsd.toml"]);
    assert_eq!((status, stdout.as_str()), (3, ""), "{stderr}");
    let expected = format!(
        "*** Error: cannot ask the daemon of flagsd.toml to reload: the admin endpoint http://{nowhere}: not reachable"
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.ends_with("; to signal its process instead: flagsd reload --config flagsd.toml PID\n"), "{stderr}");
}

/// Runs `flagsd ARGS` in `dir` with `env`, in the background, its output piped.
fn spawn_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = flagsd_child();
    cmd.current_dir(dir).args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// A report's lines, the elapsed time blanked out and sorted (verbose
/// lines come in the order codes finish).
fn report_shape(stdout: &str) -> Vec<String> {
    let mut lines = report_lines(stdout);
    lines.sort();
    lines
}

#[test]
fn trigger_prints_the_run_id_and_with_wait_the_report_and_status_of_the_run() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let batches = format!(
        "[defaults]\nretries = 0\n\
         [[batch]]\nname = \"ok\"\ncodes = [\"BR\", \"AR\", \"ZZ\"]\nserver = \"{}\"\n\
         [[batch]]\nname = \"down\"\ncodes = [\"BR\", \"AR\"]\nserver = \"{}\"\nverbose = true\n",
        server.url(),
        closed_port_url()
    );
    configure(dir.path(), &batches);
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let trigger = |args: &[&str]| {
        let mut all = vec!["trigger", "--config", "flagsd.toml"];
        all.extend_from_slice(args);
        control(dir.path(), &addr, &all)
    };

    // Without --wait: the run's id, at once.
    let (status, stdout, stderr) = trigger(&["ok"]);
    assert_eq!((status, stdout.as_str(), stderr.as_str()), (0, "started run 1 of batch ok\n", ""), "{}", daemon.log());
    let ended = || {
        let (_, body) = http(&addr, "GET", "/runs/1", Some(TOKEN));
        serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|run| !run["ended_at"].is_null())
    };
    assert!(wait_until(LONG, ended), "{}", daemon.log());
    assert_eq!(server.bodies(), 2, "the daemon fetched BR and AR");

    // With --wait: then the report `flagsd run` prints for such a run, and
    // the run's status.
    let (status, stdout, stderr) = trigger(&["--wait", "ok"]);
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}{stderr}");
    let (first, report) = stdout.split_once('\n').unwrap();
    assert_eq!(first, "started run 2 of batch ok");
    assert!(report.starts_with("== batch ok ==\n"), "{report}");
    assert_eq!((count(report, "unchanged."), count(report, "not found.")), (2, 1), "{report}");
    let (status, here, _) = control(dir.path(), &addr, &["run", "--config", "flagsd.toml", "ok"]);
    assert_eq!(status, 0);
    assert_eq!(report_lines(report), report_lines(&here), "trigger --wait:\n{report}\nrun:\n{here}");

    // A run with errors: status 1, and its verbose lines.
    let (status, stdout, stderr) = trigger(&["--wait", "down"]);
    assert_eq!((status, stderr.as_str()), (1, ""), "{stdout}{stderr}");
    // Run 3 was `flagsd run`'s, in the same state database.
    let report = stdout.strip_prefix("started run 4 of batch down\n").unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(final_counts(report), (0, 0, 2), "{report}");
    assert_eq!(verbose_lines(report).len(), 2, "{report}");
    let (status, here, _) = control(dir.path(), &addr, &["run", "--config", "flagsd.toml", "down"]);
    assert_eq!(status, 1);
    assert_eq!(report_shape(report), report_shape(&here), "trigger --wait:\n{report}\nrun:\n{here}");

    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
    // The daemon gone: status 3.
    let (status, _, stderr) = trigger(&["ok"]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("not reachable"), "{stderr}");
}

#[test]
fn trigger_refuses_unknown_and_running_batches_and_ends_with_a_cancelled_run() {
    let slow = server(flagsd::testserver::TestServerOptions {
        delay: Some("0.5".parse().unwrap()),
        workers: 2,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let on_demand = format!("[[batch]]\nname = \"slow\"\ncodes = \"every\"\nserver = \"{}\"\n", slow.url());
    configure(dir.path(), &on_demand);
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let env = [("FLAGSD_ADMIN__LISTEN", addr.as_str())];
    let trigger = |config: &str, args: &[&str]| {
        let mut all = vec!["trigger", "--config", config];
        all.extend_from_slice(args);
        flagsd_in(dir.path(), &all, &env)
    };

    // Not in the configuration: a usage error. In this file, but not in
    // the daemon's: status 2 as well, naming the daemon.
    let (status, _, stderr) = trigger("flagsd.toml", &["nope"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.starts_with("*** Usage error: no batch named nope in the configuration\n"), "{stderr}");
    let extra = format!("{on_demand}[[batch]]\nname = \"extra\"\ncodes = [\"BR\"]\nserver = \"DEMO\"\n");
    configure(dir.path(), &extra);
    let (status, _, stderr) = trigger("flagsd.toml", &["extra"]);
    assert_eq!(status, 2, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "*** Error: the daemon at http://{addr} has no batch named extra: it has not loaded this configuration \
             (flagsd reload loads it)\n"
        )
    );

    // Running already: nothing is started, status 3, the run named.
    let (status, stdout, stderr) = trigger("flagsd.toml", &["slow"]);
    assert_eq!((status, stdout.as_str()), (0, "started run 1 of batch slow\n"), "{stderr}");
    let (status, stdout, stderr) = trigger("flagsd.toml", &["slow"]);
    assert_eq!((status, stdout.as_str()), (3, ""), "{stderr}");
    assert_eq!(
        stderr,
        format!("*** Error: the daemon at http://{addr} is running batch slow (run 1); nothing was started\n")
    );
    let (status, _, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "slow"], &env);
    assert_eq!(status, 0, "{stderr}");

    // A waiting trigger whose run is cancelled ends as its run: 130.
    let waiting = spawn_in(dir.path(), &["trigger", "--config", "flagsd.toml", "--wait", "slow"], &env);
    let hits = slow.hits();
    assert!(wait_until(LONG, || slow.hits() > hits), "{}", daemon.log());
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "slow"], &env);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("cancelled run 2 of batch slow: "), "{stdout}");
    let out = waiting.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(stdout.starts_with("started run 2 of batch slow\n== batch slow ==\n"), "{stdout}");
    assert_eq!(stderr, "*** Interrupted: run 2 of batch slow was cancelled.\n");

    // Without an admin endpoint, nothing can reach the daemon.
    write_file(dir.path(), "alone.toml", &on_demand);
    let (status, _, stderr) = flagsd_in(dir.path(), &["trigger", "--config", "alone.toml", "slow"], &[]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("no admin endpoint"), "{stderr}");
}

#[test]
fn run_warns_while_the_daemon_runs_the_batch_and_exclusive_refuses() {
    let slow = server(flagsd::testserver::TestServerOptions {
        delay: Some("0.5".parse().unwrap()),
        workers: 2,
        ..Default::default()
    });
    let fast = clean_server();
    let dir = tempfile::tempdir().unwrap();
    // One batch, fetched by the daemon from the slow server and by `flagsd
    // run` from the fast one: the label `mirror` names either.
    let world = format!(
        "[servers]\nmirror = \"{}\"\n[[batch]]\nname = \"world\"\ncodes = \"every\"\nserver = \"mirror\"\n",
        fast.url()
    );
    configure(dir.path(), &world);
    let mut daemon = Daemon::start(dir.path(), &[("FLAGSD_SERVERS__MIRROR", &slow.url())]);
    let addr = daemon.admin_addr();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--config", "flagsd.toml"];
        all.extend_from_slice(args);
        control(dir.path(), &addr, &all)
    };
    assert_eq!(
        http(&addr, "POST", "/batches/world/run", Some(TOKEN)),
        (202, "{\"run_id\":1,\"batch\":\"world\"}".to_owned())
    );

    // --exclusive: refused before any request.
    let (status, stdout, stderr) = run(&["--exclusive", "world"]);
    assert_eq!((status, stdout.as_str()), (3, ""), "{stderr}");
    assert_eq!(stderr, "*** Error: the daemon of flagsd.toml is running batch world (run 1); nothing was started\n");
    assert_eq!(fast.hits(), 0);

    // Otherwise a warning, and the run.
    let (status, stdout, stderr) = run(&["world"]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(
        stderr,
        "warning: the daemon of flagsd.toml is running batch world (run 1); two runs would write the same directory \
         at once\n"
    );
    assert!(stdout.starts_with("== batch world ==\n"), "{stdout}");
    assert!(fast.hits() >= 676, "{}", fast.hits());
    // -q says nothing.
    let (status, stdout, stderr) = run(&["-q", "world"]);
    assert_eq!((status, stdout.as_str(), stderr.as_str()), (0, "", ""));

    // Once the daemon's run has ended, nothing is said.
    let (status, _, stderr) = control(dir.path(), &addr, &["cancel", "--config", "flagsd.toml", "world"]);
    assert_eq!(status, 0, "{stderr}");
    let (status, _, stderr) = run(&["--exclusive", "world"]);
    assert_eq!((status, stderr.as_str()), (0, ""));

    // No daemon answering: no word, but --exclusive says it could not ask.
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
    let (status, _, stderr) = run(&["world"]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let (status, _, stderr) = run(&["--exclusive", "world"]);
    assert_eq!(status, 0, "{stderr}");
    let expected = format!(
        "note: --exclusive could not ask the daemon of flagsd.toml whether it runs these batches (the admin endpoint \
         http://{addr}: not reachable"
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}
