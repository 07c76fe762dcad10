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
