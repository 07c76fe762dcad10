//! Shared fixtures: a test server per test, the binary with a clean
//! environment, and readers for its report.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use assert_cmd::Command;
use flagsd::testserver::{Faults, TestServer, TestServerOptions};

/// Starts a test server on a free loopback port.
pub fn server(options: TestServerOptions) -> TestServer {
    TestServer::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options).expect("test server starts")
}

/// A test server injecting `faults`.
pub fn faulty(faults: Faults) -> TestServer {
    server(TestServerOptions { faults, ..TestServerOptions::default() })
}

/// A test server serving the bundled data set, without faults.
pub fn clean_server() -> TestServer {
    server(TestServerOptions::default())
}

/// A base URL on which nothing listens.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}/flags")
}

/// Variables of the caller's environment that would change what flagsd
/// does: its own settings, proxies, and systemd's.
pub fn leaked_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| {
            let lower = k.to_ascii_lowercase();
            k.starts_with("FLAGSD_")
                || lower.ends_with("_proxy")
                || ["JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"].contains(&k.as_str())
        })
        .collect()
}

/// The binary, with none of [`leaked_vars`] inherited from the caller.
pub fn flagsd() -> Command {
    let mut cmd = Command::cargo_bin("flagsd").expect("binary built");
    for var in leaked_vars() {
        cmd.env_remove(var);
    }
    cmd
}

/// The binary as a `std` command (for children that run in the
/// background), with a clean environment like [`flagsd`].
pub fn flagsd_child() -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("flagsd"));
    for var in leaked_vars() {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `flagsd fetch ARGS -o DIR` and returns (status, stdout, stderr).
pub fn fetch(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = flagsd().arg("fetch").args(args).arg("-o").arg(dir).output().expect("flagsd runs");
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The report's lines with the elapsed time blanked out.
pub fn report_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| if l.starts_with("Elapsed time: ") { "Elapsed time: *".to_owned() } else { l.to_owned() })
        .collect()
}

/// The verbose lines keyed by country code (`BR OK` → `BR`,
/// `*** Error for BR: …` → `BR`), each code with all of its lines.
pub fn verbose_lines(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_code: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stdout.lines() {
        let code = if let Some(rest) = line.strip_prefix("*** Error for ") {
            rest.split(':').next()
        } else if line.len() >= 3 && line.as_bytes()[2] == b' ' && line[..2].bytes().all(|b| b.is_ascii_uppercase()) {
            Some(&line[..2])
        } else {
            None
        };
        if let Some(code) = code {
            by_code.entry(code.to_owned()).or_default().push(line.to_owned());
        }
    }
    by_code
}

/// The number in a final-report line such as ` 17 flags downloaded.`.
pub fn count(stdout: &str, suffix: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim_start().split_once(' ')?;
            rest.starts_with(suffix).then(|| n.parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// The (downloaded, not found, errors) counts of a final report.
pub fn final_counts(stdout: &str) -> (usize, usize, usize) {
    (count(stdout, "flag"), count(stdout, "not found."), count(stdout, "error"))
}

/// Names of the files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Asserts that `dir` holds only complete `{CC}.gif` files, each identical
/// to the bundled data set, and no temporary file.
pub fn assert_only_complete_flags(dir: &Path) -> usize {
    let names = files_in(dir);
    for name in &names {
        let cc = name.strip_suffix(".gif").unwrap_or_else(|| panic!("unexpected file {name}"));
        assert!(cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase()), "unexpected file {name}");
        let lower = cc.to_ascii_lowercase();
        let expected = flagsd::dataset::get(&format!("flags/{lower}/{lower}.gif")).expect("a known flag");
        let saved = std::fs::read(dir.join(name)).expect("read saved flag");
        assert!(saved == expected, "{name} differs from the data set");
    }
    names.len()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Writes `text` as `name` in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Runs `flagsd ARGS` in `cwd` with extra environment; returns (status, stdout, stderr).
pub fn flagsd_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = flagsd();
    cmd.current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("flagsd runs");
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Spawns `cmd` (a verbose fetch) with stdout piped, waits for its first
/// finished code (by then others are in flight), calls `midway` with the
/// child, then reads the rest; returns (status, stdout).
pub fn act_after_first_outcome(
    mut cmd: std::process::Command,
    midway: impl FnOnce(&std::process::Child),
) -> (Option<i32>, String) {
    use std::io::{BufRead as _, Read as _};
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("flagsd starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    while !(seen.contains(" OK\n") || seen.contains(" not found: ")) {
        assert_ne!(stdout.read_line(&mut seen).expect("read stdout"), 0, "flagsd ended early: {seen}");
    }
    midway(&child);
    stdout.read_to_string(&mut seen).expect("read stdout");
    (child.wait().expect("wait for flagsd").code(), seen)
}

/// Sends `signal` (`-INT`, `-TERM`, …) to `child`.
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}
