//! Hostile servers: they answer whatever a test scripts, to play a server
//! that lies, floods or misleads, and flagsd must stay within its bounds.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use crate::helpers::*;

/// A request as the hostile server saw it: its request line and headers.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET /flags/br/br.gif HTTP/1.1`.
    pub line: String,
    /// Header lines, as sent.
    pub headers: Vec<String>,
}

impl Seen {
    /// The path of the request line.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or_default()
    }

    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// The script of a hostile server: the raw response to a request, given
/// the requests seen before it (the current one last).
type Script = dyn Fn(&[Seen]) -> Vec<u8> + Send + Sync;

/// An HTTP/1.1 server on a free loopback port that answers each request
/// with its script's bytes and closes the connection.
pub struct Hostile {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hostile {
    /// Starts serving `script` on a thread of its own (it lives as long as
    /// the test process).
    pub fn start(script: impl Fn(&[Seen]) -> Vec<u8> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, script) = (Arc::clone(&shared), Arc::clone(&script));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    let mut lines = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
                            break;
                        }
                        lines.push(line.trim_end().to_owned());
                    }
                    if lines.is_empty() {
                        return;
                    }
                    let request = Seen { line: lines.remove(0), headers: lines };
                    let response = {
                        let mut seen = seen.lock().expect("lock");
                        seen.push(request);
                        script(&seen)
                    };
                    let _ = (&stream).write_all(&response);
                });
            }
        });
        Self { addr, seen }
    }

    /// The base URL flags are asked under: `http://127.0.0.1:PORT/flags`.
    pub fn url(&self) -> String {
        format!("http://{}/flags", self.addr)
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// A complete response: status line, extra header lines, body.
pub fn response(status: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The bundled flag of `cc` (lower case).
pub fn flag(cc: &str) -> Vec<u8> {
    flagsd::testserver::dataset::get(&format!("flags/{cc}/{cc}.gif")).expect("a bundled flag").to_vec()
}

#[test]
fn a_fifo_or_a_device_where_an_empty_flag_was_saved_is_not_opened() {
    // An empty body with an ETag: the recorded size is 0, which a FIFO and
    // /dev/zero both show.
    let server = Hostile::start(|_| response("200 OK", &["ETag: \"e\"".to_owned()], b""));
    let work = tempfile::tempdir().unwrap();
    let (out, state) = (work.path().join("out"), work.path().join("state"));
    let url = server.url();
    let args = ["BR", "AR", "-s", &url, "--state", state.to_str().unwrap()];
    let (status, stdout, _) = fetch(&out, &args);
    assert_eq!((status, final_counts(&stdout)), (0, (2, 0, 0)), "{stdout}");

    std::fs::remove_file(out.join("BR.gif")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(out.join("BR.gif")).status().unwrap().success());
    std::fs::remove_file(out.join("AR.gif")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", out.join("AR.gif")).unwrap();
    let run = flagsd().arg("fetch").args(args).arg("-o").arg(&out).timeout(LONG).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!((run.status.code(), final_counts(&stdout)), (Some(0), (2, 0, 0)), "{stdout}");
    assert!(server.seen()[2..].iter().all(|r| r.header("If-None-Match").is_none()), "asked conditionally");
    for cc in ["BR", "AR"] {
        let meta = std::fs::symlink_metadata(out.join(format!("{cc}.gif"))).unwrap();
        assert!(meta.file_type().is_file() && meta.len() == 0, "{cc}");
    }
}

#[test]
fn oversized_validators_are_neither_stored_nor_sent_back() {
    let server = Hostile::start(|seen| {
        let etag = if seen[0].path().contains("/br/") { "x".repeat(4096) } else { "small".to_owned() };
        let cc = if seen[seen.len() - 1].path().contains("/br/") { "br" } else { "ar" };
        response("200 OK", &[format!("ETag: \"{etag}\"")], &flag(cc))
    });
    let work = tempfile::tempdir().unwrap();
    let (out, state) = (work.path().join("out"), work.path().join("state"));
    let url = server.url();
    for _ in 0..2 {
        let (status, stdout, _) = fetch(&out, &["BR", "-s", &url, "--state", state.to_str().unwrap()]);
        assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}");
    }
    let second = &server.seen()[1];
    assert_eq!(second.header("If-None-Match"), None, "a 4 KiB ETag was sent back");
    let db = std::fs::read(state.join("flagsd.db")).unwrap();
    assert!(!db.windows(1024).any(|w| w.iter().all(|b| *b == b'x')), "a 4 KiB ETag was stored");
}

#[test]
fn a_304_with_a_location_is_not_followed() {
    let server = Hostile::start(|seen| match seen.len() {
        1 => response("200 OK", &["ETag: \"e\"".to_owned()], &flag("br")),
        _ => response("304 Not Modified", &["Location: /flags/elsewhere".to_owned()], b""),
    });
    let work = tempfile::tempdir().unwrap();
    let (out, state) = (work.path().join("out"), work.path().join("state"));
    let url = server.url();
    let args = ["BR", "-v", "-s", &url, "--state", state.to_str().unwrap()];
    assert_eq!(fetch(&out, &args).0, 0);
    let (status, stdout, _) = fetch(&out, &args);
    assert!(status == 0 && stdout.contains("BR unchanged"), "{stdout}");
    assert_eq!(server.seen().len(), 2, "{:?}", server.seen());
}

#[test]
fn a_retry_after_beyond_the_cap_ends_the_retries() {
    let server = Hostile::start(|_| response("503 Service Unavailable", &["Retry-After: 3600".to_owned()], b""));
    let out = tempfile::tempdir().unwrap();
    let url = server.url();
    // The default cap is 60 s: waiting it out, then failing again, was
    // the old behaviour; now the one answer is final.
    let mut run = flagsd();
    run.args(["fetch", "BR", "-v", "--retries", "2", "-s", &url, "-o"]).arg(out.path()).timeout(LONG);
    let output = run.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("*** Error for BR: HTTP 503"), "{stdout}");
    assert_eq!(server.seen().len(), 1);
}

/// A configuration of one batch named by country from `url`.
fn by_country(url: &str, codes: &str) -> String {
    let defaults = "[defaults]\nretry_base = \"10ms\"\n";
    format!("{defaults}[[batch]]\nname = \"c\"\ncodes = {codes}\nserver = \"{url}\"\nnaming = \"country\"\n")
}

#[test]
fn a_failed_metadata_request_is_retried() {
    let server = Hostile::start(|seen| {
        let last = &seen[seen.len() - 1];
        let metadata_requests = seen.iter().filter(|r| r.path().ends_with("metadata.json")).count();
        match (last.path().ends_with("metadata.json"), metadata_requests) {
            (false, _) => response("200 OK", &[], &flag("br")),
            (true, 1) => response("503 Service Unavailable", &[], b""),
            (true, _) => response("200 OK", &[], br#"{"country": "Brazil"}"#),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &by_country(&server.url(), "[\"BR\"]"));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(files_in(&dir.path().join("downloaded/c")), ["Brazil.gif"]);
}

#[test]
fn a_server_that_renames_its_countries_cannot_grow_the_directory() {
    let server = Hostile::start(|seen| {
        let last = &seen[seen.len() - 1];
        let cc = if last.path().contains("/br/") { "br" } else { "ar" };
        if last.path().ends_with("metadata.json") {
            // A new name every time it is asked.
            response("200 OK", &[], format!("{{\"country\": \"Land {}\"}}", seen.len()).as_bytes())
        } else {
            response("200 OK", &[], &flag(cc))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", &by_country(&server.url(), "[\"BR\", \"AR\"]"));
    let out = dir.path().join("downloaded/c");
    for _ in 0..4 {
        let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
        assert_eq!(status, 0, "{stdout}{stderr}");
        assert_eq!(files_in(&out).len(), 2, "{:?}", files_in(&out));
    }
    // A file someone changed is theirs: it is kept.
    let names = files_in(&out);
    std::fs::write(out.join(&names[0]), b"mine").unwrap();
    assert_eq!(flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]).0, 0);
    let after = files_in(&out);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.contains(&names[0]));
}

/// A configuration whose admin endpoint is `addr`, with a token file.
fn admin_at(dir: &std::path::Path, addr: &str, token: bool) {
    let token_line = if token { "token_file = \"token\"\n" } else { "" };
    write_file(dir, "token", "s3cret-token\n");
    let config = format!("[admin]\nlisten = \"{addr}\"\n{token_line}[[batch]]\nname = \"a\"\nserver = \"DEMO\"\n");
    write_file(dir, "flagsd.toml", &config);
}

#[test]
fn status_never_sends_the_token_and_believes_only_signed_answers() {
    // Something else took the admin port while the daemon is down: it hands
    // out a nonce, and answers anything else with a table of its own.
    let json = || vec!["Content-Type: application/json".to_owned()];
    let impostor = Hostile::start(move |seen| match seen.last().map(Seen::path) {
        Some("/nonce") => {
            response("200 OK", &json(), format!("{{\"nonce\":\"{}\",\"expires_in\":30}}", "0a".repeat(32)).as_bytes())
        }
        _ => response("200 OK", &json(), b"[]"),
    });
    let addr = impostor.url().trim_start_matches("http://").trim_end_matches("/flags").to_owned();
    let dir = tempfile::tempdir().unwrap();
    admin_at(dir.path(), &addr, true);
    let (status, stdout, _) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.starts_with("From the state database"), "{stdout}");
    assert!(stdout.lines().next().unwrap().contains("is not signed with the token"), "{stdout}");
    let seen = impostor.seen();
    let paths: Vec<&str> = seen.iter().map(Seen::path).collect();
    assert_eq!(paths, ["/nonce", "/batches"], "{seen:?}");
    assert!(seen[1].header("Authorization").is_some_and(|a| a.starts_with("flagsd-hmac ")), "{seen:?}");
    for request in &seen {
        let text = format!("{request:?}");
        assert!(
            !text.contains("s3cret-token") && !text.to_lowercase().contains("bearer"),
            "the token went out: {text}"
        );
    }
}

#[test]
fn status_reads_a_bounded_answer() {
    let flood = vec![b' '; 5 << 20];
    let impostor = Hostile::start(move |_| response("200 OK", &[], &flood));
    let addr = impostor.url().trim_start_matches("http://").trim_end_matches("/flags").to_owned();
    let dir = tempfile::tempdir().unwrap();
    admin_at(dir.path(), &addr, false);
    let (status, stdout, _) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.lines().next().unwrap().contains("answer larger than 4194304 bytes"), "{stdout}");
}

#[test]
fn a_reason_phrase_of_300_kb_is_cut_where_it_is_read_and_its_event_reaches_the_journal() {
    let reason = "A".repeat(300_000);
    let server = Hostile::start(move |_| response(&format!("500 {reason}"), &[], b""));
    let out = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(out.path(), &["BR", "--json", "-s", &server.url()]);
    assert_eq!(status, 1, "{}", &stdout[..stdout.len().min(500)]);
    let document: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON document");
    let message = document["codes"][0]["message"].as_str().expect("a message");
    assert!(message.starts_with("HTTP 500 - AAA") && message.len() < 300, "{} bytes", message.len());

    let journal = FakeJournal::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}verbose = true\n", batch("b", "[\"BR\"]", &server.url(), "1h"));
    write_file(dir.path(), "flagsd.toml", &config);
    let log = write_file(dir.path(), "daemon.log", "");
    let env = journal.env(&log);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let daemon = Daemon::start(dir.path(), &env);
    assert!(wait_until(LONG, || journal.text().contains("MESSAGE=download failed")), "{}", daemon.log());
    let entry = journal.entries().into_iter().find(|e| e.windows(15).any(|w| w == b"download failed")).unwrap();
    assert!(entry.len() < 16 * 1024, "{} bytes", entry.len());
    assert!(String::from_utf8_lossy(&entry).contains("HTTP 500 - AAA"));
}

#[test]
fn endless_headers_end_the_response() {
    let headers: Vec<String> = (0..200).map(|i| format!("X-Filler-{i}: {}", "x".repeat(50))).collect();
    let server = Hostile::start(move |_| response("200 OK", &headers, &flag("br")));
    let out = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(out.path(), &["BR", "-v", "-s", &server.url()]);
    assert_eq!(status, 1, "{stdout}");
    assert!(stdout.contains("*** Error for BR: Connection error ("), "{stdout}");
    assert!(files_in(out.path()).is_empty());
}

#[test]
fn a_huge_metadata_json_is_read_only_to_its_limit() {
    let server = Hostile::start(|seen| {
        if seen[seen.len() - 1].path().ends_with("metadata.json") {
            let padding = " ".repeat(100 * 1024);
            response("200 OK", &[], format!("{{\"country\": \"Brazil\"{padding}}}").as_bytes())
        } else {
            response("200 OK", &[], &flag("br"))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[defaults]\nretries = 0\n[[batch]]\nname = \"v\"\ncodes = [\"BR\"]\nserver = \"{}\"\nnaming = \"country\"\nverbose = true\n",
        server.url()
    );
    write_file(dir.path(), "flagsd.toml", &config);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml", "v"], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.contains("*** Error for BR: Metadata error (larger than 65536 bytes)"), "{stdout}");
}
