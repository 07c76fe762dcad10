//! Who may use the admin endpoint, tried as an attacker would: a process
//! that took the admin port and relays whatever it gets to the real daemon,
//! and replays what it recorded.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::*;

const TOKEN: &str = "s3cret-token";

/// A daemon with a token and the on-demand batch `a` (it never runs by
/// itself): its directory, the daemon and the endpoint's address.
fn daemon_with_token() -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", &format!("{TOKEN}\n"));
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n\
                  [[batch]]\nname = \"a\"\ncodes = [\"BR\"]\nserver = \"DEMO\"\n";
    write_file(dir.path(), "flagsd.toml", config);
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    (dir, daemon, addr)
}

/// A process on a port of its own that relays every byte of every
/// connection to `target` and back, and keeps what clients sent.
struct Relay {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Self {
        let sent: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let kept = Arc::clone(&sent);
        let addr = tcp_server(move |client| {
            let kept = Arc::clone(&kept);
            async move {
                let Ok(upstream) = tokio::net::TcpStream::connect(target).await else { return };
                let index = {
                    let mut kept = kept.lock().unwrap();
                    kept.push(Vec::new());
                    kept.len() - 1
                };
                let (mut from_client, mut to_daemon) = (client, upstream);
                let (mut client_read, mut client_write) = from_client.split();
                let (mut daemon_read, mut daemon_write) = to_daemon.split();
                let up = async {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                        kept.lock().unwrap()[index].extend_from_slice(&buffer[..n]);
                        if daemon_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = daemon_write.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut daemon_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            }
        });
        Self { addr, sent }
    }

    /// Each request clients sent through the relay, as raw bytes (their
    /// heads: flagsd's clients send no bodies).
    fn requests(&self) -> Vec<Vec<u8>> {
        let mut requests = Vec::new();
        for connection in self.sent.lock().unwrap().iter() {
            let mut rest = connection.as_slice();
            while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = &rest[..end + 4];
                let text = String::from_utf8_lossy(head).to_ascii_lowercase();
                assert!(
                    !text.contains("transfer-encoding")
                        && text
                            .lines()
                            .all(|l| !l.starts_with("content-length: ") || l.trim_end() == "content-length: 0"),
                    "a request with a body: {text}"
                );
                requests.push(head.to_vec());
                rest = &rest[end + 4..];
            }
            assert!(rest.is_empty(), "a request cut short: {:?}", String::from_utf8_lossy(rest));
        }
        requests
    }
}

/// Sends `raw` as is to `addr` and returns the status code of the answer.
fn replay(addr: &str, raw: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream.write_all(raw).unwrap();
    let mut status_line = String::new();
    BufReader::new(&stream).read_line(&mut status_line).unwrap();
    status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// The value of the `Authorization` header of a raw request, if any.
fn authorization(raw: &[u8]) -> Option<String> {
    String::from_utf8_lossy(raw).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization").then(|| value.trim().to_owned())
    })
}

#[test]
fn a_relaying_impostor_gets_neither_the_token_nor_a_request_it_can_replay() {
    let (dir, daemon, addr) = daemon_with_token();
    let relay = Relay::start(addr.parse().unwrap());
    let through = relay.addr.to_string();
    let env = [("FLAGSD_ADMIN__LISTEN", through.as_str())];

    // The relay is faithful: both commands work through it.
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &env);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.starts_with(&format!("From the daemon at http://{through}:")), "{stdout}");
    let (status, _, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "a"], &env);
    assert_eq!((status, stderr.as_str()), (1, "batch a has no run in progress\n"), "{}", daemon.log());
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["reload", "--config", "flagsd.toml"], &env);
    assert_eq!(status, 0, "{stdout}{stderr}");
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["trigger", "--config", "flagsd.toml", "a"], &env);
    assert_eq!((status, stdout.as_str()), (0, "started run 1 of batch a\n"), "{stderr}");

    let requests = relay.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    for raw in &requests {
        let text = String::from_utf8_lossy(raw);
        assert!(!text.contains(TOKEN), "the token went through the impostor: {text}");
        assert!(!text.to_ascii_lowercase().contains("bearer"), "a bearer credential went through: {text}");
    }
    let signed: Vec<&Vec<u8>> = requests.iter().filter(|raw| authorization(raw).is_some()).collect();
    assert!(signed.len() >= 4, "status, cancel, reload and trigger each sign their request: {requests:?}");
    for raw in signed {
        // The same bytes again: refused.
        assert_eq!(replay(&addr, raw), 401, "replayed: {}", String::from_utf8_lossy(raw));
        // Its credentials on other requests: refused.
        let credentials = authorization(raw).unwrap();
        let others = [
            ("GET", "/batches"),
            ("GET", "/runs"),
            ("GET", "/metrics"),
            ("POST", "/batches/a/run"),
            ("POST", "/reload"),
        ];
        for (method, path) in others {
            let answer = raw_request(&addr, method, path, &[("Authorization", credentials.as_str())]);
            assert_eq!(answer.code(), 401, "{method} {path} with {credentials}");
        }
    }
    let (status, runs) = http(&addr, "GET", "/runs?batch=a", Some(TOKEN));
    let runs: Vec<serde_json::Value> = serde_json::from_str(&runs).unwrap();
    assert_eq!((status, runs.len()), (200, 1), "only the trigger's run was started: {runs:?}");
    let log = daemon.log();
    assert_eq!(log.matches("configuration reloaded").count(), 1, "only the reload's reload: {log}");
    assert!(!log.contains(TOKEN));
}

#[test]
fn a_signed_request_is_accepted_once_for_its_method_and_path_only() {
    use flagsd::present::api::{NonceAnswer, SignedAuthorization, request_mac, response_mac};

    let (_dir, _daemon, addr) = daemon_with_token();
    let nonce = || {
        let (status, body) = http(&addr, "GET", "/nonce", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<NonceAnswer>(&body).unwrap().nonce
    };
    let signed = |nonce: &str, method: &str, target: &str| {
        let mac = request_mac(TOKEN, nonce, method, target, b"");
        (SignedAuthorization { nonce: nonce.to_owned(), mac }.header_value(), mac)
    };

    let first = nonce();
    let (credentials, mac) = signed(&first, "GET", "/runs?limit=1");
    let answer = raw_request(&addr, "GET", "/runs?limit=1", &[("Authorization", &credentials)]);
    assert_eq!(answer.code(), 200);
    // The answer is signed for this request: the client knows it came from
    // a holder of the token.
    let info = answer.header("authentication-info").expect("a signed answer");
    let expected = response_mac(TOKEN, &mac, 200, &answer.body);
    assert_eq!(info, format!("mac=\"{}\"", flagsd::model::digest::hex(&expected)));
    // Once only.
    assert_eq!(raw_request(&addr, "GET", "/runs?limit=1", &[("Authorization", &credentials)]).code(), 401);

    // For its method and path only, even with a nonce never used.
    let second = nonce();
    let (credentials, _) = signed(&second, "GET", "/batches");
    for (method, path) in [("GET", "/runs"), ("GET", "/batches?x=1"), ("POST", "/batches"), ("GET", "/metrics")] {
        let answer = raw_request(&addr, method, path, &[("Authorization", &credentials)]);
        assert_eq!(answer.code(), 401, "{method} {path}");
    }
    // The right request still works with it: the failures used nothing up.
    assert_eq!(raw_request(&addr, "GET", "/batches", &[("Authorization", &credentials)]).code(), 200);

    // A nonce the daemon did not issue, and a signature under another token.
    let mut forged = nonce().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let (credentials, _) = signed(&forged, "GET", "/batches");
    assert_eq!(raw_request(&addr, "GET", "/batches", &[("Authorization", &credentials)]).code(), 401);
    let third = nonce();
    let mac = request_mac("another-token", &third, "GET", "/batches", b"");
    let credentials = SignedAuthorization { nonce: third, mac }.header_value();
    assert_eq!(raw_request(&addr, "GET", "/batches", &[("Authorization", &credentials)]).code(), 401);

    // The bearer token still works, for curl and Prometheus.
    assert_eq!(http(&addr, "GET", "/batches", Some(TOKEN)).0, 200);
}
