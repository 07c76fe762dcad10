//! `flagsd testserver` as its own process, and the validators and `304`
//! answers of the built-in server, over raw HTTP/1.1.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use flagsd::testserver::{TestServer, TestServerOptions};

use crate::helpers::*;

/// `flagsd testserver` on a free port with one worker and `extra`
/// options, as a child process, and the base URL it printed.
fn spawn_testserver(extra: &[&str]) -> (Child, String) {
    let mut child = flagsd_child()
        .args(["testserver", "--bind", "127.0.0.1:0", "--workers", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("Serving flags at ").unwrap_or_else(|| panic!("{line}")).to_owned();
    (child, url)
}

#[test]
fn serves_the_bundled_flags_until_sigterm() {
    let (mut child, url) = spawn_testserver(&[]);
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/flags"), "{url}");

    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-a", "-s", &url]);
    assert_eq!(status, 0, "{stdout}");
    assert_eq!(assert_only_complete_flags(dir.path()), 194);

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn sigterm_stops_it_within_its_grace_even_with_a_request_hanging() {
    // actix's default grace is 30 s: a hanging request held the server
    // that long after SIGTERM.
    let (mut child, url) = spawn_testserver(&["--hang-rate", "1"]);
    let addr = url.strip_prefix("http://").and_then(|u| u.strip_suffix("/flags")).expect("a base URL");
    let mut hanging = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut hanging, b"GET /flags/br/br.gif HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // No answer says that the request is in: the kernel does, when the
    // server's end of the connection has nothing left to read.
    let (server_port, client_port) = (hanging.peer_addr().unwrap().port(), hanging.local_addr().unwrap().port());
    assert!(wait_until(Duration::from_secs(10), || unread_bytes(server_port, client_port) == Some(0)), "never read");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let stopped = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !stopped {
        child.kill().unwrap();
    }
    assert!(stopped, "still serving 10 s after SIGTERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The bytes waiting to be read at the end of a loopback TCP connection
/// whose own port is `local_port` and peer's `remote_port`, from
/// `/proc/net/tcp` (the `rx_queue` column); `None` if there is no such end.
fn unread_bytes(local_port: u16, remote_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |address: &str| address.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, queues) = (fields.get(1)?, fields.get(2)?, fields.get(4)?);
        if port(local)? != local_port || port(remote)? != remote_port {
            return None;
        }
        u64::from_str_radix(queues.split_once(':')?.1, 16).ok()
    })
}

#[test]
fn an_address_in_use_exits_3() {
    let server = clean_server();
    let out = flagsd().args(["testserver", "--bind", &server.addr().to_string()]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("*** Error: cannot bind the test server to 127.0.0.1:"), "{stderr}");
}

#[test]
fn bad_fault_options_are_usage_errors() {
    for args in [["--error-rate", "2"], ["--delay", "1..0.5"]] {
        let out = flagsd().arg("testserver").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// Sends `GET path` with `extra` headers to the server.
fn raw_get(server: &TestServer, path: &str, extra: &[(&str, &str)]) -> RawAnswer {
    raw_request(&server.addr().to_string(), "GET", path, extra)
}

/// `"` + the first 16 bytes of SHA-256 in hex + `"`.
fn expected_etag(body: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Asserts a `304` without a body and with the given validators.
fn assert_not_modified(answer: &RawAnswer, etag: &str, last_modified: &str) {
    assert_eq!(answer.status, "HTTP/1.1 304 Not Modified", "{:?}", answer.headers);
    assert!(answer.body.is_empty(), "a 304 with a body: {:?}", answer.body);
    assert_eq!(answer.header("etag"), Some(etag));
    assert_eq!(answer.header("last-modified"), Some(last_modified));
}

#[test]
fn bundled_files_carry_validators_and_get_304_when_unchanged() {
    let server = clean_server();
    let path = "/flags/br/br.gif";
    let first = raw_get(&server, path, &[]);
    assert_eq!(first.status, "HTTP/1.1 200 OK");
    let flag = flagsd::testserver::dataset::get("flags/br/br.gif").expect("a bundled flag");
    assert_eq!(first.body, flag);
    let etag = expected_etag(flag);
    assert_eq!(first.header("etag"), Some(etag.as_str()));
    let date = "Mon, 01 Jan 2024 00:00:00 GMT";
    assert_eq!(first.header("last-modified"), Some(date));

    let metadata = raw_get(&server, "/flags/br/metadata.json", &[]);
    assert_eq!(metadata.status, "HTTP/1.1 200 OK");
    let expected = expected_etag(flagsd::testserver::dataset::get("flags/br/metadata.json").expect("bundled metadata"));
    assert_eq!(metadata.header("etag"), Some(expected.as_str()));
    assert_eq!(metadata.header("last-modified"), Some(date));
    assert_eq!((server.bodies(), server.not_modified()), (2, 0));

    assert_not_modified(&raw_get(&server, path, &[("If-None-Match", &etag)]), &etag, date);
    let listed = format!("\"nope\", W/{etag}");
    assert_not_modified(&raw_get(&server, path, &[("If-None-Match", &listed)]), &etag, date);
    assert_not_modified(&raw_get(&server, path, &[("If-None-Match", "*")]), &etag, date);
    assert_not_modified(&raw_get(&server, path, &[("If-Modified-Since", date)]), &etag, date);
    assert_eq!((server.bodies(), server.not_modified()), (2, 4));

    let still_sent: [&[(&str, &str)]; 3] = [
        &[("If-None-Match", "\"nope\""), ("If-Modified-Since", date)],
        &[("If-Modified-Since", "Sun, 31 Dec 2023 23:59:59 GMT")],
        &[("If-Modified-Since", "not a date")],
    ];
    for extra in still_sent {
        let again = raw_get(&server, path, extra);
        assert_eq!(again.status, "HTTP/1.1 200 OK", "{extra:?}");
        assert_eq!(again.body, flag, "{extra:?}");
        assert_eq!(again.header("etag"), Some(etag.as_str()), "{extra:?}");
    }
    let missing = raw_get(&server, "/flags/zz/zz.gif", &[("If-None-Match", "*")]);
    assert!(missing.status.starts_with("HTTP/1.1 404 "), "{}", missing.status);
    assert_eq!(missing.header("etag"), None);
    assert_eq!((server.hits(), server.bodies(), server.not_modified()), (10, 5, 4));
}

#[test]
fn root_files_are_tagged_by_their_current_content_and_mtime() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("xx")).unwrap();
    let file = dir.path().join("xx").join("xx.gif");
    let write = |content: &[u8], unix_millis: u64| {
        std::fs::write(&file, content).unwrap();
        let mtime = UNIX_EPOCH + Duration::from_millis(unix_millis);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
    };
    write(b"GIF89a first", 1_580_644_800_500); // 2020-02-02T12:00:00.5Z
    let server = server(TestServerOptions { root: Some(dir.path().to_owned()), ..Default::default() });
    let path = "/flags/xx/xx.gif";

    let first = raw_get(&server, path, &[]);
    assert_eq!(first.status, "HTTP/1.1 200 OK");
    assert_eq!(first.body, b"GIF89a first");
    let etag = expected_etag(b"GIF89a first");
    assert_eq!(first.header("etag"), Some(etag.as_str()));
    let date = "Sun, 02 Feb 2020 12:00:00 GMT";
    assert_eq!(first.header("last-modified"), Some(date));
    assert_not_modified(&raw_get(&server, path, &[("If-None-Match", &etag)]), &etag, date);
    assert_not_modified(&raw_get(&server, path, &[("If-Modified-Since", date)]), &etag, date);
    assert_eq!((server.bodies(), server.not_modified()), (1, 2));

    // Same length, same second: only the content tells the versions apart.
    write(b"GIF89a other", 1_580_644_800_700);
    let changed = raw_get(&server, path, &[("If-None-Match", &etag)]);
    assert_eq!(changed.status, "HTTP/1.1 200 OK");
    assert_eq!(changed.body, b"GIF89a other");
    let new_etag = expected_etag(b"GIF89a other");
    assert_ne!(new_etag, etag);
    assert_eq!(changed.header("etag"), Some(new_etag.as_str()));
    assert_not_modified(&raw_get(&server, path, &[("If-None-Match", &new_etag)]), &new_etag, date);

    // A later mtime: the old date no longer passes If-Modified-Since.
    write(b"GIF89a other", 1_580_644_801_000);
    let later = raw_get(&server, path, &[("If-Modified-Since", date)]);
    assert_eq!(later.status, "HTTP/1.1 200 OK");
    assert_eq!(later.header("last-modified"), Some("Sun, 02 Feb 2020 12:00:01 GMT"));
    assert_eq!(later.header("etag"), Some(new_etag.as_str()));
    assert_eq!((server.hits(), server.bodies(), server.not_modified()), (6, 3, 3));
}

#[test]
fn curl_resumes_a_partial_download_with_a_byte_range() {
    let server = clean_server();
    let flag = flagsd::testserver::dataset::get("flags/br/br.gif").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("br.gif");
    std::fs::write(&file, &flag[..flag.len() / 3]).unwrap();
    let url = format!("{}/br/br.gif", server.url());
    let Some(curl) = tool("curl") else { return };
    let out =
        Command::new(curl).args(["-sS", "--noproxy", "*", "-C", "-", "-o"]).arg(&file).arg(&url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&file).unwrap(), flag, "the resumed file differs");
}

#[test]
fn ranges_are_served_partially_and_refused_past_the_end() {
    let server = clean_server();
    let flag = flagsd::testserver::dataset::get("flags/br/br.gif").unwrap();
    let len = flag.len();
    let whole = raw_get(&server, "/flags/br/br.gif", &[]);
    assert_eq!((whole.code(), whole.header("accept-ranges")), (200, Some("bytes")));
    let etag = whole.header("etag").unwrap().to_owned();

    let part = raw_get(&server, "/flags/br/br.gif", &[("Range", "bytes=10-19")]);
    assert_eq!(part.code(), 206);
    assert_eq!(part.header("content-range"), Some(format!("bytes 10-19/{len}").as_str()));
    assert_eq!(part.body, flag[10..20]);
    let tail = raw_get(&server, "/flags/br/br.gif", &[("Range", "bytes=-5")]);
    assert_eq!((tail.code(), tail.body.as_slice()), (206, &flag[len - 5..]));

    let past = raw_get(&server, "/flags/br/br.gif", &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(past.code(), 416);
    assert_eq!(past.header("content-range"), Some(format!("bytes */{len}").as_str()));

    // If-Range: the current tag lets the range through, another one gets it all.
    let current = raw_get(&server, "/flags/br/br.gif", &[("Range", "bytes=0-0"), ("If-Range", &etag)]);
    assert_eq!((current.code(), current.body.len()), (206, 1));
    let stale = raw_get(&server, "/flags/br/br.gif", &[("Range", "bytes=0-0"), ("If-Range", "\"old\"")]);
    assert_eq!((stale.code(), stale.body.len()), (200, len));
}

#[test]
fn failed_preconditions_get_412() {
    let server = clean_server();
    let path = "/flags/br/br.gif";
    let etag = raw_get(&server, path, &[]).header("etag").unwrap().to_owned();
    assert_eq!(raw_get(&server, path, &[("If-Match", &etag)]).code(), 200);
    assert_eq!(raw_get(&server, path, &[("If-Match", "\"other\"")]).code(), 412);
    assert_eq!(raw_get(&server, path, &[("If-Match", &format!("W/{etag}"))]).code(), 412, "weak tags never match");
    let before = "Sun, 31 Dec 2023 23:59:59 GMT";
    assert_eq!(raw_get(&server, path, &[("If-Unmodified-Since", before)]).code(), 412);
    assert_eq!(raw_get(&server, path, &[("If-Unmodified-Since", "Mon, 01 Jan 2024 00:00:00 GMT")]).code(), 200);
}

#[test]
fn other_methods_get_405_and_a_request_without_host_400() {
    let server = clean_server();
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let answer = raw_request(&server.addr().to_string(), method, "/flags/br/br.gif", &[]);
        assert_eq!((answer.code(), answer.header("allow")), (405, Some("GET, HEAD")), "{method}");
    }
    assert_eq!(raw_request(&server.addr().to_string(), "HEAD", "/flags/br/br.gif", &[]).code(), 200);
    // reqwest always sends Host: speak HTTP/1.1 by hand.
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /flags/br/br.gif HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /flags/br/br.gif HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.0 200 ") || answer.starts_with(b"HTTP/1.1 200 "), "HTTP/1.0 needs no Host");
}

#[test]
fn a_seed_fails_the_same_codes_at_any_concurrency() {
    let failed_codes = |pool: &str| {
        let server = faulty_seeded(0.3, 42);
        let dir = tempfile::tempdir().unwrap();
        let (_, stdout, _) = fetch(dir.path(), &["-e", "-v", "-m", pool, "-s", &server.url()]);
        let lines = verbose_lines(&stdout);
        let failed: Vec<String> =
            lines.iter().filter(|(_, l)| l.iter().any(|l| l.contains("HTTP 418"))).map(|(cc, _)| cc.clone()).collect();
        assert!(failed.len() > 100 && failed.len() < 300, "{}", failed.len());
        failed
    };
    assert_eq!(failed_codes("1"), failed_codes("200"));
}

fn faulty_seeded(error_rate: f64, seed: u64) -> TestServer {
    server(TestServerOptions {
        faults: flagsd::testserver::Faults { error_rate, ..Default::default() },
        seed,
        workers: 2,
        ..TestServerOptions::default()
    })
}

#[test]
fn bind_takes_a_host_name() {
    let mut child =
        flagsd_child().args(["testserver", "--bind", "localhost:0"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(line.starts_with("Serving flags at http://127.0.0.1:"), "{line}");
}
