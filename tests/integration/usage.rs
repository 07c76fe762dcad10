//! Usage errors and fatal start-up errors: message, status, and no request.

use crate::helpers::*;

fn assert_usage_error(args: &[&str], message: &str) {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let url = server.url();
    let mut full: Vec<&str> = vec!["-s", &url];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = fetch(&out_dir, &full);
    assert_eq!(status, 2, "{args:?}: {stderr}");
    let mut lines = stderr.lines();
    assert_eq!(lines.next(), Some(format!("*** Usage error: {message}").as_str()), "{args:?}");
    assert!(lines.next().is_some_and(|l| l.starts_with("usage: flagsd fetch")), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(server.hits(), 0, "{args:?} reached the server");
    assert!(!out_dir.exists(), "{args:?} created the output directory");
}

#[test]
fn bad_code_arguments_are_rejected() {
    for bad in ["ABC", "1", "B-"] {
        assert_usage_error(&["BR", bad], "each CC argument must be A to Z or AA to ZZ.");
    }
}

#[test]
fn limit_below_one_is_rejected() {
    assert_usage_error(&["-l", "0"], "--limit N must be >= 1");
    assert_usage_error(&["--limit", "-5"], "--limit N must be >= 1");
}

#[test]
fn max_req_below_one_is_rejected() {
    assert_usage_error(&["-m", "0"], "--max_req CONCURRENT must be >= 1");
    assert_usage_error(&["--max_req", "-1"], "--max_req CONCURRENT must be >= 1");
}

#[test]
fn unknown_server_label_is_rejected() {
    assert_usage_error(
        &["-s", "NOWHERE"],
        "--server LABEL must be one of LOCAL, REMOTE, DELAY, ERROR, DEMO, or an http:// or https:// URL (got 'NOWHERE')",
    );
}

#[test]
fn unknown_options_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = fetch(dir.path(), &["--no-such-option"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("--no-such-option"), "{stderr}");
}

#[test]
fn a_bad_log_filter_is_a_usage_error() {
    let out = flagsd().args(["--log-level", "=bad=", "fetch", "-s", "DEMO"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("*** Usage error: --log-level"));
}

#[test]
fn unwritable_output_directory_exits_3_before_any_request() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be created, even by root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (status, stdout, stderr) = fetch(&file.join("out"), &["-e", "-s", &server.url()]);
    assert_eq!(status, 3, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.starts_with("*** Error: cannot write to output directory '"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(server.hits(), 0);
}

#[test]
fn help_documents_labels_and_exit_statuses() {
    let out = flagsd().args(["fetch", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["--max-req", "--every", "--all", "--limit", "--server", "--verbose", "--output", "DEMO", "REMOTE", "130"]
    {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = flagsd()
        .args(["--log-format", "json", "--log-level", "debug", "fetch", "-s", "DEMO", "BR", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let events: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finished = events.iter().find(|e| e["message"] == "download finished").expect("an outcome event");
    assert_eq!((finished["cc"].as_str(), finished["kind"].as_str()), (Some("BR"), Some("downloaded")));
}

#[test]
fn under_the_journal_logs_have_no_timestamps_or_colours() {
    let dir = tempfile::tempdir().unwrap();
    let out = flagsd()
        .env("JOURNAL_STREAM", "8:12345")
        .args(["--log-level", "debug", "fetch", "-s", "DEMO", "BR", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr.lines().find(|l| l.contains("download finished")).expect("an outcome line");
    assert!(line.starts_with("DEBUG download finished cc=BR"), "{line}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr}");
}
