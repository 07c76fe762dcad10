//! Forward proxies: `--proxy`, `--noproxy`, the environment, a server's
//! `proxy` key, and what flagsd says when the proxy is the problem. The
//! proxy is a small one written here: absolute-form requests for `http://`
//! and CONNECT tunnels for `https://`, with optional credentials, and a
//! mode that refuses every tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::tls::{Pki, TlsFront};

/// How the proxy behaves.
#[derive(Clone, Default)]
struct Rules {
    /// `user:password` it requires in `Proxy-Authorization`.
    credentials: Option<&'static str>,
    /// Refuse every CONNECT with 403.
    refuse_tunnels: bool,
}

/// A forward proxy on a free loopback port; it counts what it relayed.
struct ForwardProxy {
    addr: SocketAddr,
    forwarded: Arc<AtomicUsize>,
    tunnels: Arc<AtomicUsize>,
}

impl ForwardProxy {
    fn start(rules: Rules) -> Self {
        let (forwarded, tunnels) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counters = (Arc::clone(&forwarded), Arc::clone(&tunnels));
        let addr =
            tcp_server(move |client| relay(client, rules.clone(), (Arc::clone(&counters.0), Arc::clone(&counters.1))));
        Self { addr, forwarded, tunnels }
    }

    /// `http://[user:password@]127.0.0.1:PORT`.
    fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(credentials) => format!("http://{credentials}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

/// Reads a request head (up to the blank line) from `stream`.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

async fn relay(mut client: TcpStream, rules: Rules, (forwarded, tunnels): (Arc<AtomicUsize>, Arc<AtomicUsize>)) {
    let Some(head) = read_head(&mut client).await else { return };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let mut words = request_line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    if let Some(credentials) = rules.credentials {
        let expected =
            format!("proxy-authorization: basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
        if !headers.iter().any(|h| h.eq_ignore_ascii_case(&expected)) {
            let refusal = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\
                           Content-Length: 0\r\nConnection: close\r\n\r\n";
            let _ = client.write_all(refusal.as_bytes()).await;
            return;
        }
    }
    if method == "CONNECT" {
        if rules.refuse_tunnels || !target.starts_with("127.0.0.1:") {
            let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            return;
        }
        let Ok(mut upstream) = TcpStream::connect(target).await else { return };
        tunnels.fetch_add(1, Ordering::SeqCst);
        if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        return;
    }
    // Absolute form: http://127.0.0.1:PORT/path. Only loopback targets.
    let Some(rest) = target.strip_prefix("http://127.0.0.1:") else { return };
    let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut upstream) = TcpStream::connect(format!("127.0.0.1:{port}")).await else { return };
    forwarded.fetch_add(1, Ordering::SeqCst);
    let kept = headers.iter().filter(|h| {
        let lower = h.to_ascii_lowercase();
        !(lower.starts_with("proxy-") || lower.starts_with("connection:"))
    });
    let mut request = format!("{method} /{path} HTTP/1.1\r\n");
    for header in kept {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(request.as_bytes()).await.is_ok() {
        let _ = tokio::io::copy(&mut upstream, &mut client).await;
    }
}

#[test]
fn fetch_goes_through_the_proxy_it_is_given() {
    let (server, proxy) = (clean_server(), ForwardProxy::start(Rules::default()));
    let out = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = fetch(out.path(), &["BR", "AR", "-s", &server.url(), "--proxy", &proxy.url(None)]);
    assert_eq!((status, final_counts(&stdout)), (0, (2, 0, 0)), "{stdout}{stderr}");
    assert_eq!(assert_only_complete_flags(out.path()), 2);
    assert_eq!(proxy.forwarded(), 2, "both requests went through the proxy");
}

#[test]
fn no_proxy_entries_are_honoured_for_ip_hosts_as_curl_does() {
    let (server, proxy) = (clean_server(), ForwardProxy::start(Rules::default()));
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut through_proxy = 0;
    for (no_proxy, extra, proxied) in [
        ("*", &[][..], false),
        ("127.0.0.0/8", &[], false),
        ("example.com, 127.0.0.1", &[], false),
        ("10.0.0.0/8", &[], true),
        ("localhost", &[], true),
        ("*", &["--noproxy", ""], true),
    ] {
        let mut args = vec!["fetch", "BR", "-s", url.as_str(), "-o", "out"];
        args.extend(extra);
        let env = [("http_proxy", proxy.url(None)), ("NO_PROXY", no_proxy.to_owned())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, stdout, stderr) = flagsd_in(dir.path(), &args, &env);
        assert_eq!(status, 0, "NO_PROXY={no_proxy} {extra:?}: {stdout}{stderr}");
        through_proxy += usize::from(proxied);
        assert_eq!(proxy.forwarded(), through_proxy, "NO_PROXY={no_proxy} {extra:?} proxied: {proxied}");
    }
}

#[test]
fn a_proxy_that_is_down_is_named_and_its_credentials_masked() {
    let server = clean_server();
    let down = closed_port_url();
    let authority = down.trim_start_matches("http://").trim_end_matches("/flags");
    let out = tempfile::tempdir().unwrap();
    let proxy = format!("http://user:s3cret@{authority}");
    let (status, stdout, stderr) = fetch(out.path(), &["BR", "-v", "-s", &server.url(), "--proxy", &proxy]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    let expected = format!("BR: Connection error (cannot reach proxy http://***@{authority}: connection refused)");
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"), "{stdout}{stderr}");
}

#[test]
fn https_goes_through_a_tunnel_and_a_refused_tunnel_shows_the_proxy_status() {
    let (server, pki) = (clean_server(), Pki::new());
    let front = TlsFront::start(server.addr(), &pki, false);
    let ca = pki.file("ca.pem").to_str().expect("a UTF-8 path").to_owned();
    let out = tempfile::tempdir().unwrap();
    let target = front.url().trim_start_matches("https://").trim_end_matches("/flags").to_owned();

    let open = ForwardProxy::start(Rules { credentials: Some("ann:pa ss"), refuse_tunnels: false });
    let good = open.url(Some("ann:pa%20ss"));
    let (status, stdout, _) = fetch(out.path(), &["BR", "-s", &front.url(), "--cacert", &ca, "--proxy", &good]);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}");
    assert_eq!(open.tunnels(), 1);

    let bad = open.url(Some("ann:wrong"));
    let (status, stdout, _) = fetch(out.path(), &["AR", "-v", "-s", &front.url(), "--cacert", &ca, "--proxy", &bad]);
    assert_eq!(status, 1, "{stdout}");
    let expected = format!(
        "AR: Connection error (proxy http://***@{} refused the tunnel to {target}: 407 Proxy Authentication Required)",
        open.addr
    );
    assert!(stdout.contains(&expected), "{stdout}");

    let closed = ForwardProxy::start(Rules { credentials: None, refuse_tunnels: true });
    let (status, stdout, _) =
        fetch(out.path(), &["AR", "-v", "-s", &front.url(), "--cacert", &ca, "--proxy", &closed.url(None)]);
    assert_eq!(status, 1, "{stdout}");
    let expected = format!("proxy http://{} refused the tunnel to {target}: 403 Forbidden", closed.addr);
    assert!(stdout.contains(&expected), "{stdout}");
}

#[test]
fn servers_carry_their_proxy_in_the_configuration() {
    let (server, proxy) = (clean_server(), ForwardProxy::start(Rules::default()));
    let dir = tempfile::tempdir().unwrap();
    let config = |proxy_url: &str| {
        format!(
            "[servers]\nmirror = {{ url = \"{}\", proxy = \"{proxy_url}\", no_proxy = \"\" }}\n\
             [[batch]]\nname = \"b\"\ncodes = [\"BR\", \"AR\"]\nserver = \"mirror\"\n",
            server.url()
        )
    };
    write_file(dir.path(), "flagsd.toml", &config(&proxy.url(None)));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[("NO_PROXY", "*")]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(assert_only_complete_flags(&dir.path().join("downloaded/b")), 2);
    assert_eq!(proxy.forwarded(), 2, "the key's empty no_proxy overrides NO_PROXY=*");

    write_file(dir.path(), "flagsd.toml", &config("socks5://user:pw@127.0.0.1:1080"));
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    let expected = "flagsd.toml:2:58: servers.mirror.proxy: 'socks5://***@127.0.0.1:1080': only http:// and https:// \
                    proxies are supported, not socks5://";
    assert!(stderr.starts_with(expected), "{stderr}");
}

#[test]
fn a_bad_proxy_is_a_usage_error_and_a_bad_environment_proxy_a_fatal_one() {
    let out = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = fetch(out.path(), &["BR", "-s", "http://127.0.0.1:9/flags", "--proxy", "ftp://h:1"]);
    assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
    assert!(
        stderr.starts_with("*** Usage error: --proxy: 'ftp://h:1': only http:// and https:// proxies are supported"),
        "{stderr}"
    );
    let (status, stdout, stderr) = flagsd_in(
        out.path(),
        &["fetch", "BR", "-s", "http://127.0.0.1:9/flags"],
        &[("http_proxy", "http://user:pw@bad host:1")],
    );
    assert_ne!(status, 0, "{stdout}{stderr}");
    assert!(stderr.contains("cannot set up the proxy: http_proxy: 'http://***@bad host:1' is not"), "{stderr}");
    assert!(!stderr.contains("pw"), "{stderr}");
}

#[test]
fn a_proxys_credentials_file_is_sent_and_never_shown() {
    let (server, proxy) =
        (clean_server(), ForwardProxy::start(Rules { credentials: Some("ann:pa#ss w"), refuse_tunnels: false }));
    let dir = tempfile::tempdir().unwrap();
    let credentials = write_file(dir.path(), "proxy-credentials", "ann:pa#ss w\n");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = format!(
        "[servers]\nmirror = {{ url = \"{}\", proxy = \"{}\", proxy_credentials_file = \"proxy-credentials\" }}\n\
         [[batch]]\nname = \"b\"\ncodes = [\"BR\", \"AR\"]\nserver = \"mirror\"\n",
        server.url(),
        proxy.url(None)
    );
    write_file(dir.path(), "flagsd.toml", &config);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml", "--json"], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(proxy.forwarded(), 2);
    assert!(!stdout.contains("pa#ss") && !stderr.contains("pa#ss"), "{stdout}{stderr}");
    write_file(dir.path(), "flagsd.toml", &config.replace(&proxy.url(None), &proxy.url(Some("x:y"))));
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("servers.mirror.proxy_credentials_file: the URL carries credentials too"), "{stderr}");
}
