//! The metrics as Prometheus itself reads them: `promtool` lints a real
//! daemon's `/metrics`, and checks and unit-tests the example alert rules
//! (`config/flagsd-alerts.yml`, `tests/prometheus/alerts.test.yml`).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::helpers::*;

/// Runs promtool with `args` (in the repository, `stdin` piped to it); its
/// status and output.
fn promtool(promtool: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_example_alert_rules_fire_when_they_should() {
    let Some(tool) = tool("promtool") else { return };
    let (ok, out) = promtool(&tool, &["check", "rules", "config/flagsd-alerts.yml"], "");
    assert!(ok && out.contains("4 rules found"), "{out}");
    let (ok, out) = promtool(&tool, &["test", "rules", "tests/prometheus/alerts.test.yml"], "");
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

#[test]
fn a_daemons_metrics_pass_promtools_lint() {
    let Some(tool) = tool("promtool") else { return };
    let server = server(flagsd::testserver::TestServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let batch = batch("lint", "[\"BR\", \"ZZ\"]", &server.url(), "1h");
    write_file(dir.path(), "flagsd.toml", &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{batch}"));
    let mut daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let mut metrics = String::new();
    let ran = wait_until(LONG, || {
        metrics = http(&addr, "GET", "/metrics", None).1;
        metrics.contains("flagsd_runs_total{")
    });
    assert!(ran, "{metrics}");
    let (ok, out) = promtool(&tool, &["check", "metrics"], &metrics);
    assert!(ok, "promtool check metrics:\n{out}\n{metrics}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}
