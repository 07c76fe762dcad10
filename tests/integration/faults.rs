//! Misbehaving servers: each fault's outcome, retries, deadlines, size caps,
//! and the accounting invariant over random fault mixes.

use std::path::Path;
use std::time::{Duration, Instant};

use flagsd::testserver::{Faults, TestServerOptions};

use crate::helpers::*;

const PREVIOUS: &[u8] = b"the previous, good file";

/// Fetches BR with `args` from a server with `faults`, over an existing
/// BR.gif; returns (status, the verbose line for BR, elapsed).
fn fetch_br(faults: Faults, args: &[&str]) -> (i32, String, Duration) {
    let server = faulty(faults);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("BR.gif"), PREVIOUS).unwrap();
    let url = server.url();
    let mut full = vec!["-v", "BR", "-s", url.as_str()];
    full.extend_from_slice(args);
    let started = Instant::now();
    let (status, stdout, stderr) = fetch(dir.path(), &full);
    let elapsed = started.elapsed();
    let line = verbose_lines(&stdout).remove("BR").map(|l| l.join("\n")).unwrap_or_else(|| panic!("{stdout}{stderr}"));
    assert_previous_file_only(dir.path());
    (status, line, elapsed)
}

/// The directory holds the untouched previous BR.gif and nothing else.
fn assert_previous_file_only(dir: &Path) {
    assert_eq!(files_in(dir), ["BR.gif"], "stray files");
    assert_eq!(std::fs::read(dir.join("BR.gif")).unwrap(), PREVIOUS, "the previous file changed");
}

#[test]
fn a_reset_connection_is_a_connection_error() {
    let (status, line, _) = fetch_br(Faults { reset_rate: 1.0, ..Faults::default() }, &[]);
    assert_eq!(status, 1);
    assert_eq!(line, "*** Error for BR: Connection error (truncated body: connection reset)");
}

#[test]
fn a_truncated_body_is_an_error() {
    let (status, line, _) = fetch_br(Faults { truncate_rate: 1.0, ..Faults::default() }, &[]);
    assert_eq!(status, 1);
    assert!(line.starts_with("*** Error for BR: Connection error (truncated body: "), "{line}");
}

#[test]
fn a_hanging_server_times_out_within_the_deadline() {
    let (status, line, elapsed) = fetch_br(Faults { hang_rate: 1.0, ..Faults::default() }, &["--timeout", "1s"]);
    assert_eq!(status, 1);
    assert_eq!(line, "*** Error for BR: Connection error (timed out)");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?} for a 1 s deadline");
}

#[test]
fn a_slow_body_hits_the_read_timeout() {
    let faults = Faults { slow_rate: 1.0, slow_interval: Duration::from_secs(2), ..Faults::default() };
    let (status, line, elapsed) = fetch_br(faults, &["--read-timeout", "500ms"]);
    assert_eq!(status, 1);
    assert_eq!(line, "*** Error for BR: Connection error (timed out)");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?} for a 0.5 s read timeout");
}

#[test]
fn a_slow_body_within_the_timeouts_is_saved() {
    let server = faulty(Faults { slow_rate: 1.0, slow_interval: Duration::from_millis(20), ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-v", "BR", "-s", &server.url()]);
    assert_eq!(status, 0, "{stdout}");
    assert_eq!(assert_only_complete_flags(dir.path()), 1);
}

#[test]
fn a_fixed_status_is_reported_as_received() {
    let (status, line, _) = fetch_br(Faults { status_rate: 1.0, status: 502, ..Faults::default() }, &[]);
    assert_eq!(status, 1);
    assert_eq!(line, "*** Error for BR: HTTP 502 - Bad Gateway");
}

#[test]
fn a_body_over_the_size_cap_is_refused() {
    // BR.gif is 7,7 KiB: over 1 KiB by Content-Length, and while streaming
    // when the server sends no length (slow, chunked pieces).
    let (status, line, _) = fetch_br(Faults::default(), &["--max-size", "1KiB"]);
    assert_eq!(status, 1);
    assert_eq!(line, "*** Error for BR: Response too large (over 1024 bytes)");
}

#[test]
fn retries_cure_a_flapping_server() {
    let server = faulty(Faults { flap_rate: 1.0, flap_failures: 2, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let args =
        ["-v", "BR", "AR", "-s", &server.url(), "--retries", "2", "--retry-base", "10ms", "--log-level", "debug"];
    let (status, stdout, stderr) = fetch(dir.path(), &args);
    assert_eq!(status, 0, "{stdout}");
    assert_eq!(assert_only_complete_flags(dir.path()), 2);
    assert_eq!(server.hits(), 6, "two failures and a success for each code");
    // Each line says how many attempts it took, and why it was retried.
    for cc in ["AR", "BR"] {
        assert_eq!(verbose_lines(&stdout)[cc], [format!("{cc} OK (after 3 attempts; retried after HTTP 503)")]);
        let retries = stderr.lines().filter(|l| l.contains("will retry") && l.contains(&format!("cc={cc}")));
        let causes: Vec<bool> = retries.map(|l| l.contains("cause=\"HTTP 503\"")).collect();
        assert_eq!(causes, [true, true], "{stderr}");
    }
}

#[test]
fn the_error_servers_teapot_is_not_retried_as_the_docs_say() {
    let server = faulty(Faults { error_rate: 1.0, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) =
        fetch(dir.path(), &["-v", "BR", "AR", "-s", &server.url(), "--retries", "2", "--retry-base", "10ms"]);
    assert_eq!(status, 1);
    assert_eq!(verbose_lines(&stdout)["BR"], ["*** Error for BR: HTTP 418 - I'm a Teapot"]);
    assert_eq!(server.hits(), 2, "one request a code: 418 is not transient");
}

#[test]
fn without_retries_a_flapping_server_is_an_error() {
    let (status, line, _) = fetch_br(Faults { flap_rate: 1.0, flap_failures: 1, ..Faults::default() }, &[]);
    assert_eq!(status, 1);
    assert_eq!(line, "*** Error for BR: HTTP 503 - Service Unavailable");
}

#[test]
fn the_retry_limit_is_respected_and_reported() {
    let server = faulty(Faults { status_rate: 1.0, status: 500, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) =
        fetch(dir.path(), &["-v", "BR", "-s", &server.url(), "--retries", "2", "--retry-base", "10ms"]);
    assert_eq!(status, 1);
    assert_eq!(verbose_lines(&stdout)["BR"], ["*** Error for BR: HTTP 500 - Internal Server Error (after 3 attempts)"]);
    assert_eq!(server.hits(), 3);
}

#[test]
fn not_found_is_never_retried() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let (status, _, _) = fetch(dir.path(), &["ZZ", "-s", &server.url(), "--retries", "5", "--retry-base", "10ms"]);
    assert_eq!(status, 0);
    assert_eq!(server.hits(), 1);
}

#[test]
fn retry_after_is_honoured() {
    let server = server(TestServerOptions {
        faults: Faults { unavailable_rate: 1.0, retry_after: 2, ..Faults::default() },
        record: true,
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) =
        fetch(dir.path(), &["-v", "BR", "-s", &server.url(), "--retries", "1", "--retry-base", "10ms"]);
    assert_eq!(status, 1, "{stdout}");
    let times = server.requests_for("/flags/br/br.gif");
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?} despite Retry-After: 2");
}

#[test]
fn a_waiting_retry_does_not_hold_a_worker() {
    // One worker, and every code fails its first request: a retry is queued
    // behind the codes not yet tried, so the first 26 requests are 26
    // different codes, not each code twice in a row.
    let server = server(TestServerOptions {
        faults: Faults { flap_rate: 1.0, flap_failures: 1, ..Faults::default() },
        record: true,
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-v", "A", "-m", "1", "-s", &server.url(), "--retries", "1"]);
    assert_eq!(status, 0, "{stdout}");
    let paths: Vec<String> = server.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths.len(), 52);
    let first: std::collections::BTreeSet<&String> = paths[..26].iter().collect();
    assert_eq!(first.len(), 26, "{paths:?}");
}

#[test]
fn credentials_in_the_url_are_never_printed() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url().replace("http://", "http://alice:s3cret@");
    let (status, stdout, stderr) = fetch(dir.path(), &["-v", "BR", "ZZ", "-s", &url, "--log-level", "debug"]);
    assert_eq!(status, 0, "{stderr}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("CUSTOM site: {}", server.url().replace("http://", "http://***@"))),
        "{stdout}"
    );
    assert!(stdout.contains("ZZ not found: http://***@"), "{stdout}");
}

#[test]
fn a_rate_limit_spaces_requests() {
    let server = server(TestServerOptions { record: true, ..TestServerOptions::default() });
    let dir = tempfile::tempdir().unwrap();
    let (status, _, _) = fetch(dir.path(), &["A", "-l", "11", "-m", "11", "-s", &server.url(), "--rate", "20/s"]);
    assert_eq!(status, 0);
    let times: Vec<Instant> = server.requests().into_iter().map(|(_, t)| t).collect();
    assert_eq!(times.len(), 11);
    // Ten gaps of 50 ms at 20/s; a little slack for scheduling.
    let span = times[10] - times[0];
    assert!(span >= Duration::from_millis(450), "11 requests in {span:?} at 20/s");
}

#[test]
fn the_pool_is_lowered_to_fit_a_small_open_files_limit() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("flagsd");
    let script = format!(
        "ulimit -n 200 && exec {} fetch -e -m 1000 -s {} -o {}",
        binary.display(),
        server.url(),
        dir.path().display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", &script]);
    for var in leaked_vars() {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    // (200 - 96 reserved, admin connections included) / 2 descriptors per
    // worker.
    assert!(stdout.contains("\n52 concurrent connections will be used.\n"), "{stdout}");
    assert!(stderr.contains("cannot hold 676 concurrent connections; using 52"), "{stderr}");
    assert_eq!(assert_only_complete_flags(dir.path()), 194);
}

/// A small deterministic generator for the property test's cases.
struct Cases(u64);

impl Cases {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn every_code_gets_exactly_one_outcome_over_random_fault_mixes() {
    let mut cases = Cases(20261124);
    let pools = [1, 3, 17, 100, 400, 1000];
    for case in 0..8 {
        let mut rate = |max: f64| cases.next() * max;
        let faults = Faults {
            unavailable_rate: rate(0.1),
            retry_after: 0,
            status_rate: rate(0.1),
            status: 502,
            error_rate: rate(0.15),
            flap_rate: rate(0.3),
            flap_failures: 1,
            reset_rate: rate(0.1),
            truncate_rate: rate(0.15),
            slow_rate: rate(0.05),
            slow_interval: Duration::from_millis(5),
            ..Faults::default()
        };
        let seed = (cases.next() * 1e9) as u64;
        let pool = pools[case % pools.len()];
        let retries = (cases.next() * 3.0) as u32;
        // Worker threads 1 to 4: the invariant holds whichever thread a worker is on.
        let threads = (case % 4 + 1).to_string();
        let label = format!("case {case}: pool {pool}, {threads} threads, retries {retries}, seed {seed}, {faults:?}");
        let server = server(TestServerOptions { faults, seed, workers: 2, ..TestServerOptions::default() });
        let dir = tempfile::tempdir().unwrap();
        let (pool_arg, retries_arg) = (pool.to_string(), retries.to_string());
        let url = server.url();
        let args = [
            "-e",
            "-v",
            "-m",
            &pool_arg,
            "--threads",
            &threads,
            "-s",
            &url,
            "--retries",
            &retries_arg,
            "--retry-base",
            "5ms",
        ];
        let (status, stdout, stderr) = fetch(dir.path(), &args);
        let lines = verbose_lines(&stdout);
        assert_eq!(lines.len(), 676, "{label}: {stderr}");
        assert!(lines.values().all(|l| l.len() == 1), "{label}: a code with several lines");
        let (ok, nf, err) = final_counts(&stdout);
        assert_eq!(ok + nf + err, 676, "{label}");
        // `BR OK`, or `BR OK (after 2 attempts; …)` for a code that was retried.
        let saved = lines.values().filter(|l| l[0].split(' ').nth(1) == Some("OK")).count();
        assert_eq!(saved, ok, "{label}");
        assert_eq!(status, if err > 0 { 1 } else { 0 }, "{label}");
        assert_eq!(assert_only_complete_flags(dir.path()), ok, "{label}");
    }
}

#[test]
fn redirects_are_followed_up_to_ten_and_only_to_http() {
    let server = clean_server();
    let base = |prefix: &str| server.url().replace("/flags", &format!("/redirect/{prefix}/flags"));
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-v", "BR", "-s", &base("9")]);
    assert_eq!(status, 0, "{stdout}");
    assert_eq!(assert_only_complete_flags(dir.path()), 1);

    let (status, stdout, _) = fetch(dir.path(), &["-v", "AR", "-s", &base("10")]);
    assert_eq!(status, 1);
    assert_eq!(verbose_lines(&stdout)["AR"], ["*** Error for AR: Connection error (more than 10 redirects)"]);

    let (status, stdout, _) = fetch(dir.path(), &["-v", "AR", "-s", &base("ftp")]);
    assert_eq!(status, 1);
    assert_eq!(verbose_lines(&stdout)["AR"], ["*** Error for AR: Connection error (redirect to a ftp: URL)"]);
}
