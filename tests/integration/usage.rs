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
        assert_usage_error(&["BR", bad], &format!("'{bad}': each CC argument must be A to Z or AA to ZZ."));
    }
}

#[test]
fn limit_below_one_is_rejected() {
    assert_usage_error(&["-l", "0"], "--limit N must be >= 1");
    assert_usage_error(&["--limit", "-5"], "--limit N must be >= 1");
}

#[test]
fn threads_out_of_range_are_rejected() {
    assert_usage_error(&["--threads", "0"], "--threads N must be from 1 to 256 (got '0')");
    assert_usage_error(&["--threads", "257"], "--threads N must be from 1 to 256 (got '257')");
    assert_usage_error(&["--threads", "many"], "--threads N must be from 1 to 256 (got 'many')");
}

#[test]
fn max_req_below_one_is_rejected() {
    assert_usage_error(&["-m", "0"], "--max-req N must be >= 1");
    assert_usage_error(&["--max_req", "-1"], "--max-req N must be >= 1");
    assert_usage_error(&["--max-req", "lots"], "--max-req N must be >= 1 (got 'lots', not a whole number)");
}

#[test]
fn a_bad_duration_says_what_a_duration_looks_like() {
    let looks_like = "write a number and a unit, such as 500ms, 5s, 2m or 1h30m";
    assert_usage_error(
        &["--timeout=-5s"],
        &format!("--timeout: '-5s' is not a duration (it is negative): {looks_like}"),
    );
    assert_usage_error(
        &["--connect-timeout", "5"],
        &format!("--connect-timeout: '5' is not a duration (the number has no unit): {looks_like}"),
    );
}

/// Runs `flagsd ARGS` in an empty directory: (status, stdout, stderr).
fn run_flagsd(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    flagsd_in(dir.path(), args, &[])
}

/// Asserts that `flagsd ARGS` is a usage error: `message`, then `usage`,
/// and nothing else, status 2.
fn assert_usage(args: &[&str], message: &str, usage: &str) {
    let (status, stdout, stderr) = run_flagsd(args);
    assert_eq!(status, 2, "{args:?}: {stderr}");
    assert_eq!(stdout, "", "{args:?}");
    assert_eq!(stderr, format!("*** Usage error: {message}\n{usage}\n"), "{args:?}");
}

#[test]
fn a_missing_argument_is_named_with_the_usage_line_of_its_command() {
    let missing = "the following required arguments were not provided:";
    assert_usage(
        &["trigger"],
        &format!("{missing} <BATCH>"),
        "usage: flagsd trigger <BATCH>  (see flagsd trigger --help)",
    );
    assert_usage(
        &["generate", "completions"],
        &format!("{missing} <SHELL>"),
        "usage: flagsd generate completions <SHELL>  (see flagsd generate completions --help)",
    );
    assert_usage(
        &["cancel"],
        &format!("{missing} <BATCH>"),
        "usage: flagsd cancel <BATCH>  (see flagsd cancel --help)",
    );
    assert_usage(
        &["generate"],
        "'flagsd generate' needs a command: man, completions",
        "usage: flagsd generate [OPTIONS] <COMMAND>  (see flagsd generate --help)",
    );
    let (_, _, stderr) = run_flagsd(&["no-such-command"]);
    assert!(
        stderr.ends_with(
            "usage: flagsd [OPTIONS] <fetch|run|serve|check-config|reload|status|trigger|cancel|testserver|generate> ...  \
             (see flagsd --help)\n"
        ),
        "{stderr}"
    );
}

#[test]
fn a_value_flagsd_refuses_gets_the_usage_line_of_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "flagsd.toml", "[[batch]]\nname = \"a\"\n");
    let config = config.to_str().unwrap();
    assert_usage(
        &["status", "-c", config, "nope"],
        "no batch named 'nope' (configured: a)",
        "usage: flagsd status [OPTIONS] [BATCH]...  (see flagsd status --help)",
    );
    assert_usage(
        &["generate", "man", "flagsd.9"],
        &format!("no man page 'flagsd.9' (pages: {})", MAN_PAGES.join(", ")),
        "usage: flagsd generate man [OPTIONS] [PAGE]  (see flagsd generate man --help)",
    );
}

/// Every man page, as `generate man` lists them.
const MAN_PAGES: [&str; 14] = [
    "flagsd.1",
    "flagsd-cancel.1",
    "flagsd-check-config.1",
    "flagsd-fetch.1",
    "flagsd-generate-completions.1",
    "flagsd-generate-man.1",
    "flagsd-generate.1",
    "flagsd-reload.1",
    "flagsd-run.1",
    "flagsd-serve.1",
    "flagsd-status.1",
    "flagsd-testserver.1",
    "flagsd-trigger.1",
    "flagsd.toml.5",
];

#[test]
fn a_bare_flagsd_prints_the_help_and_status_2() {
    let (status, stdout, stderr) = run_flagsd(&[]);
    assert_eq!(status, 2, "{stderr}");
    assert_eq!(stderr, "");
    assert!(stdout.starts_with("Download country flags by two-letter code"), "{stdout}");
    for command in
        ["fetch", "run", "serve", "status", "trigger", "cancel", "check-config", "reload", "testserver", "generate"]
    {
        assert!(stdout.contains(&format!("\n  {command} ")), "{command} not in\n{stdout}");
    }
}

#[test]
fn each_command_shows_only_its_own_options_and_its_own_log_default() {
    let help = |command: &str| run_flagsd(&[command, "--help"]).1;
    let status = help("status");
    for absent in ["--max-req", "--output", "--verbose"] {
        assert!(!status.contains(absent), "status --help offers {absent}:\n{status}");
    }
    assert!(status.contains("[BATCH]..."), "{status}");
    assert!(help("serve").contains("[default: info]"), "serve logs at info");
    for command in ["fetch", "run", "status", "check-config", "testserver"] {
        let text = help(command);
        assert!(text.contains("[default: warn]") && !text.contains("[default: info]"), "{command}: {text}");
    }
}

#[test]
fn absurd_durations_are_rejected_before_anything_runs() {
    assert_usage_error(&["--timeout", "18446744073709551615s"], "--timeout: must be at most 366days");
    assert_usage_error(&["--read-timeout", "1000000years"], "--read-timeout: must be at most 366days");
    assert_usage_error(&["--retry-cap", "400days"], "--retry-cap: must be at most 366days");
}

#[test]
fn a_base_url_with_a_query_or_a_fragment_is_rejected() {
    assert_usage_error(
        &["-s", "http://127.0.0.1:9/flags?x=1"],
        "--server URL 'http://127.0.0.1:9/flags?x=1' has a query string ('?x=1'): flags are asked for at \
         BASE/cc/cc.gif, so a base URL cannot carry one",
    );
    assert_usage_error(
        &["-s", "http://user:pw@127.0.0.1:9/flags#top"],
        "--server URL 'http://***@127.0.0.1:9/flags#top' has a fragment ('#top'), which is never sent to a server: \
         remove it",
    );
}

#[test]
fn unknown_server_label_is_rejected() {
    assert_usage_error(
        &["-s", "NOWHERE"],
        "--server LABEL must be one of LOCAL, REMOTE, DELAY, ERROR, DEMO, or an http:// or https:// URL (got 'NOWHERE')",
    );
}

#[test]
fn options_clap_rejects_get_the_flags2_format_too() {
    assert_usage_error(&["--no-such-option"], "unexpected argument '--no-such-option' found");
    assert_usage_error(&["-l"], "a value is required for '--limit <N>' but none was supplied");
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

/// Runs `flagsd ARGS` under a pseudo-terminal (`script`), returning what it
/// printed; `None` where `script` is not installed.
fn under_a_terminal(args: &str, env: &[(&str, &str)]) -> Option<String> {
    let binary = assert_cmd::cargo::cargo_bin("flagsd");
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", binary.display()), "/dev/null"]);
    for var in leaked_vars() {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(e) => {
            println!("skipped: cannot run `script` for a terminal ({e})");
            None
        }
    }
}

#[test]
fn under_the_journal_logs_have_no_timestamps_or_colours() {
    let dir = tempfile::tempdir().unwrap();
    // -v: no progress bar, whose drawing uses escape codes of its own.
    let args = format!("--log-level debug fetch -v -s DEMO BR -o {}", dir.path().display());
    let Some(plain) = under_a_terminal(&args, &[]) else { return };
    // On a terminal, colours are on: the check below can tell.
    assert!(plain.contains('\u{1b}'), "{plain}");
    let Some(journal) = under_a_terminal(&args, &[("JOURNAL_STREAM", "8:12345")]) else { return };
    let line = journal.lines().find(|l| l.contains("download finished")).expect("an outcome line");
    assert!(line.starts_with("DEBUG download finished cc=BR"), "{line}");
    assert!(!journal.contains('\u{1b}'), "colour codes in {journal}");
}

#[test]
fn quiet_draws_no_progress_bar_on_a_terminal() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display();
    let Some(shown) = under_a_terminal(&format!("fetch -s {} -o {out} -a", server.url()), &[]) else { return };
    assert!(shown.contains("194/194"), "without -q, a bar: {shown}");
    let Some(shown) = under_a_terminal(&format!("fetch -q -s {} -o {out} -a", server.url()), &[]) else { return };
    assert_eq!(shown, "");
}
