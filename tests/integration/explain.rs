//! Failures that explain themselves: the causes after a report with
//! errors, the hint when nothing answered, and `flagsd status BATCH` and
//! `--json` showing what became of a batch's last run.

use std::time::Duration;

use flagsd::testserver::Faults;

use crate::helpers::*;

#[test]
fn a_fetch_that_reaches_nothing_says_why_and_hints_at_demo() {
    let dir = tempfile::tempdir().unwrap();
    let url = closed_port_url();
    let (status, stdout, stderr) = fetch(dir.path(), &["-s", &url, "BR", "CN"]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    // The lines flags2 prints stay as they were.
    assert!(stdout.ends_with(&format!("  2 errors.\nElapsed time: {}s\n", elapsed(&stdout))), "{stdout}");
    let expected =
        format!("2 errors: 2 connection refused ({url})\nis a server listening there? -s DEMO uses the built-in one\n");
    assert_eq!(stderr, expected);
}

#[test]
fn errors_of_several_kinds_are_counted_without_the_hint() {
    let server = faulty(Faults { status_rate: 1.0, status: 500, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = fetch(dir.path(), &["-s", &server.url(), "BR", "CN", "AR"]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert_eq!(stderr, format!("3 errors: 3 HTTP 500 ({})\n", server.url()));
    // Quiet means quiet, and a run without errors says nothing more.
    let (_, stdout, stderr) = fetch(dir.path(), &["-q", "-s", &server.url(), "BR"]);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""));
    let clean = clean_server();
    let (status, _, stderr) = fetch(dir.path(), &["-s", &clean.url(), "BR"]);
    assert_eq!((status, stderr.as_str()), (0, ""));
}

#[test]
fn a_batch_run_says_its_causes_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let url = closed_port_url();
    write_file(dir.path(), "flagsd.toml", &on_demand("dead", "[\"BR\"]", &url));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "-c", "flagsd.toml"], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.contains("  1 error.\n"), "{stdout}");
    let expected = format!(
        "1 error: 1 connection refused ({url})\nis a server listening there? server = \"DEMO\" uses the built-in one\n"
    );
    assert_eq!(stderr, expected);
}

#[test]
fn status_of_named_batches_lists_the_failures_of_their_last_runs() {
    let server = faulty(Faults { status_rate: 1.0, status: 503, ..Faults::default() });
    let clean = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[state]\ndir = \"state\"\n{}{}",
        on_demand("broken", "[\"BR\", \"CN\"]", &server.url()),
        on_demand("fine", "[\"AR\"]", &clean.url())
    );
    write_file(dir.path(), "flagsd.toml", &config);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "-c", "flagsd.toml"], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");

    // The whole table: no failures listed.
    let (status, all, stderr) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(all.contains("exit 1: 0 downloaded, 2 errors") && !all.contains("*** Error"), "{all}");

    // Named: each batch's last run, its causes and its failed codes.
    let (status, named, stderr) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml", "broken", "fine"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(named.contains("\nbroken's last run (run 1) had 2 errors: 2 HTTP 503\n"), "{named}");
    for code in ["BR", "CN"] {
        assert!(named.contains(&format!("*** Error for {code}: HTTP 503")), "{named}");
    }
    assert!(named.contains("\nfine's last run (run 2) had no errors.\n"), "{named}");

    // --json: the same facts, as one document.
    let (status, json, stderr) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml", "--json", "broken"], &[]);
    assert_eq!(status, 0, "{stderr}");
    let document: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
    assert_eq!(document["command"], "status");
    assert_eq!(document["source"]["kind"], "state_database");
    let batches = document["batches"].as_array().expect("batches");
    assert_eq!(batches.len(), 1, "{json}");
    assert_eq!(batches[0]["name"], "broken");
    assert_eq!(batches[0]["last_run"]["counts"]["errors"], 2);
    assert_eq!(batches[0]["last_run"]["causes"][0]["cause"], "HTTP 503");
    let failed: Vec<&str> = document["failures"]["broken"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert_eq!(sorted(failed), ["BR", "CN"]);
    let (_, json, _) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml", "--json"], &[]);
    let document: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
    assert_eq!(document["batches"].as_array().map(Vec::len), Some(2), "{json}");
    assert!(document.get("failures").is_none(), "{json}");
}

#[test]
fn status_asks_the_daemon_for_a_runs_failures_with_a_signed_request() {
    let server = faulty(Faults { status_rate: 1.0, status: 404, ..Faults::default() });
    let refused = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", "t0ken\n");
    let config = format!(
        "[state]\ndir = \"state\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n{}{}",
        on_demand("dead", "[\"BR\"]", &refused),
        on_demand("gone", "[\"CN\"]", &server.url())
    );
    write_file(dir.path(), "flagsd.toml", &config);
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let (code, body) = http(&addr, "POST", "/batches/dead/run", Some("t0ken"));
    assert_eq!(code, 202, "{body}");
    let finished = || http(&addr, "GET", "/batches/dead", Some("t0ken")).1.contains("\"state\":\"finished\"");
    assert!(wait_until(Duration::from_secs(30), finished), "{}", daemon.log());

    // One batch has a page of its own.
    let (code, body) = http(&addr, "GET", "/batches/gone", Some("t0ken"));
    assert_eq!(code, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((view["name"].as_str(), view["last_run"].is_null()), (Some("gone"), true), "{body}");
    assert_eq!(http(&addr, "GET", "/batches/nope", Some("t0ken")).0, 404);
    assert_eq!(http(&addr, "GET", "/batches/gone", None).0, 401);

    let env = [("FLAGSD_ADMIN__LISTEN", addr.as_str())];
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml", "dead", "gone"], &env);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.starts_with(&format!("From the daemon at http://{addr}:\n")), "{stdout}");
    assert!(stdout.contains("\ndead's last run (run 1) had 1 error: 1 connection refused\n"), "{stdout}");
    assert!(stdout.contains("*** Error for BR: Connection error (connection refused)"), "{stdout}");
    assert!(stdout.contains("\ngone has never run.\n"), "{stdout}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0), "{}", daemon.log());
}

/// A batch `name` of `codes` (a TOML array) from `url`, run on demand,
/// into `out-{name}`.
fn on_demand(name: &str, codes: &str, url: &str) -> String {
    format!("[[batch]]\nname = \"{name}\"\ncodes = {codes}\nserver = \"{url}\"\noutput = \"out-{name}\"\n")
}

/// The elapsed time a report gives, as printed.
fn elapsed(stdout: &str) -> &str {
    stdout.rsplit("Elapsed time: ").next().and_then(|t| t.strip_suffix("s\n")).unwrap_or_default()
}

fn sorted(mut codes: Vec<&str>) -> Vec<&str> {
    codes.sort_unstable();
    codes
}
