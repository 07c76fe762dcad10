//! Controlling a running daemon from the command line through its admin
//! endpoint, with a token (so every request is signed): `flagsd reload`
//! without a PID, `flagsd trigger`, and `flagsd run` of a batch the daemon
//! is running.

use std::path::Path;

use crate::helpers::*;

const TOKEN: &str = "s3cret-control";

/// Writes `flagsd.toml` in `dir`: an admin endpoint on a free port with the
/// token of the file `token`, then `rest` (batches, tables).
fn configure(dir: &Path, rest: &str) {
    write_file(dir, "token", &format!("{TOKEN}\n"));
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
         flagsd.toml: batch[2].output: '/proc' is not writable"
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!batches().contains("\"name\":\"c\""), "{}", batches());
    assert_eq!(refusals(&daemon.log()), 1, "{}", daemon.log());

    // A file that does not load here: its problems, and nothing is sent.
    configure(dir.path(), &format!("{two}[[batch]]\nname = \"c\"\nmax_req = 0\n"));
    let (status, stdout, stderr) = reload();
    assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with("flagsd.toml: batch[2].max_req: must be >= 1"), "{stderr}");
    assert_eq!(refusals(&daemon.log()), 1, "the daemon was asked: {}", daemon.log());

    // What waits for a restart is said as a warning.
    configure(dir.path(), &format!("{two}[state]\ndir = \"elsewhere\"\n"));
    let (status, stdout, stderr) = reload();
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(stderr, "warning: state.dir, [admin] and [fleet] changes take effect at the next start\n");

    // Without the daemon's token there is no reload: the request is signed
    // with another, and the daemon's refusal is not signed with ours.
    write_file(dir.path(), "token", "another-token\n");
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
