//! Ctrl-C: the final report for what finished, status 130, no partial file.

use std::io::Read as _;
use std::process::Stdio;

use flagsd::testserver::TestServerOptions;

use crate::helpers::*;

/// Starts `flagsd ARGS` (in `dir`, `URL` standing for a slow server),
/// waits for the first finished code, sends `signal`; returns (status, stdout).
fn stop_midway(dir: &std::path::Path, args: &[&str], signal: &str) -> (Option<i32>, String) {
    let server = server(TestServerOptions { delay: Some("0.2..2".parse().unwrap()), ..TestServerOptions::default() });
    let mut cmd = flagsd_child();
    cmd.current_dir(dir).args(args.iter().map(|a| a.replace("URL", &server.url())));
    act_after_first_outcome(cmd, |child| send_signal(child, signal))
}

#[test]
fn sigterm_stops_fetch_cleanly_with_status_143() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (status, stdout) =
        stop_midway(dir.path(), &["fetch", "-e", "-v", "-m", "50", "-s", "URL", "-o", "out"], "-TERM");
    assert_eq!(status, Some(143), "{stdout}");
    assert!(stdout.contains("Elapsed time: "), "{stdout}");
    assert_eq!(assert_only_complete_flags(&out), final_counts(&stdout).0);
}

#[test]
fn sigint_stops_every_batch_of_run_with_status_130() {
    let dir = tempfile::tempdir().unwrap();
    let two = "[defaults]\nverbose = true\nmax_req = 50\n[[batch]]\nname = \"one\"\ncodes = \"every\"\nserver = \"URL\"\n\
               [[batch]]\nname = \"two\"\ncodes = \"all\"\nserver = \"URL\"\n";
    write_file(dir.path(), "flagsd.toml", two);
    // `run` prints reports at the end; -v lines come with them, so wait on a
    // file instead of a line: start it, then interrupt once files appear.
    let server = server(TestServerOptions { delay: Some("0.2..2".parse().unwrap()), ..TestServerOptions::default() });
    let text = std::fs::read_to_string(dir.path().join("flagsd.toml")).unwrap().replace("URL", &server.url());
    write_file(dir.path(), "flagsd.toml", &text);
    let mut child = flagsd_child()
        .current_dir(dir.path())
        .args(["run", "--config", "flagsd.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let one = dir.path().join("downloaded/one");
    assert!(wait_until(std::time::Duration::from_secs(20), || !files_in(&one).is_empty()));
    send_signal(&child, "-INT");
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{stdout}");
    assert!(stdout.contains("== batch one ==") && stdout.contains("== batch two =="), "{stdout}");
    assert_eq!(stdout.matches("Elapsed time: ").count(), 2, "{stdout}");
    assert_only_complete_flags(&one);
    assert_only_complete_flags(&dir.path().join("downloaded/two"));
}

#[test]
fn sigint_prints_the_final_report_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    // Two worker threads: what runs on them is dropped, temporary files too.
    let args = ["fetch", "-e", "-v", "-m", "50", "--threads", "2", "-s", "URL", "-o", "out"];
    let (status, seen) = stop_midway(dir.path(), &args, "-INT");
    assert_eq!(status, Some(130), "{seen}");
    let finished = verbose_lines(&seen).len();
    assert!(finished < 676, "the run was not interrupted");
    let (ok, nf, _) = final_counts(&seen);
    assert_eq!(ok + nf, finished, "{seen}");
    assert!(seen.contains("--------------------\n") && seen.contains("Elapsed time: "), "{seen}");
    assert_eq!(assert_only_complete_flags(&dir.path().join("out")), ok);
}
