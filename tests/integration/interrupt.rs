//! Ctrl-C: the final report for what finished, status 130, no partial file.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::Stdio;

use flagsd::testserver::TestServerOptions;

use crate::helpers::*;

#[test]
fn sigint_prints_the_final_report_and_leaves_no_partial_file() {
    let server = server(TestServerOptions { delay: Some("0.2..2".parse().unwrap()), ..TestServerOptions::default() });
    let dir = tempfile::tempdir().unwrap();
    let mut child = flagsd_child()
        .args(["fetch", "-e", "-v", "-m", "50", "-s", &server.url(), "-o"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Wait for the first finished code: by then others are in flight.
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "flagsd ended early: {seen}");
        seen.push_str(&line);
        if line.ends_with(" OK\n") || line.contains("not found") {
            break;
        }
    }
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    stdout.read_to_string(&mut seen).unwrap();

    assert_eq!(status.code(), Some(130), "{seen}");
    let finished = verbose_lines(&seen).len();
    assert!(finished < 676, "the run was not interrupted");
    let (ok, nf, _) = final_counts(&seen);
    assert_eq!(ok + nf, finished, "{seen}");
    assert!(seen.contains("--------------------\n") && seen.contains("Elapsed time: "), "{seen}");
    assert_eq!(assert_only_complete_flags(dir.path()), ok);
}
