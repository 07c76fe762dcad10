//! Redirects into internal networks (server-side request forgery): a
//! redirect may not lead to an address more internal than the server that
//! sent it. This machine has only loopback, the most internal class; so a
//! "public" server is reached through a proxy that plays the internet
//! (flagsd asks it for `http://203.0.113.7/…`, a documentation address,
//! and the proxy hands that to a hostile server on loopback), and the
//! internal target is a loopback address written in the `Location`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::hostile::{Hostile, flag, response};

/// The public address the proxy plays.
const PUBLIC: &str = "203.0.113.7";

/// A forward proxy for `http://` URLs in absolute form that sends requests
/// for [`PUBLIC`] to `public`, and those for `127.0.0.1` where they say.
fn internet(public: SocketAddr) -> String {
    let addr = tcp_server(move |mut client| async move {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if client.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut words = head.split(' ');
        let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
        let Some(rest) = target.strip_prefix("http://") else { return };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let upstream = if authority == PUBLIC { public.to_string() } else { authority.to_owned() };
        if !upstream.starts_with("127.0.0.1:") {
            return;
        }
        let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
        let request = format!("{method} /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        if server.write_all(request.as_bytes()).await.is_ok() {
            let _ = tokio::io::copy(&mut server, &mut client).await;
        }
    });
    format!("http://{addr}")
}

/// A loopback service that must stay out of reach (an admin endpoint),
/// counting the requests it gets.
fn secret_service() -> (Hostile, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let service = Hostile::start(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        response("200 OK", &["Content-Type: application/json".to_owned()], b"{\"secret\": \"admin data\"}")
    });
    (service, asked)
}

/// A "public" server that redirects every request to `target`.
fn redirecting_to(target: String) -> Hostile {
    Hostile::start(move |_| response("302 Found", &[format!("Location: {target}")], b""))
}

fn addr_of(server: &Hostile) -> SocketAddr {
    server.url().trim_start_matches("http://").trim_end_matches("/flags").parse().expect("an address")
}

#[test]
fn a_public_server_cannot_redirect_to_a_loopback_service() {
    let (service, asked) = secret_service();
    let secret = format!("http://user:s3cret@{}/metrics", addr_of(&service));
    let public = redirecting_to(secret);
    let proxy = internet(addr_of(&public));
    let out = tempfile::tempdir().unwrap();
    let base = format!("http://{PUBLIC}/flags");
    let (status, stdout, stderr) = fetch(out.path(), &["BR", "-v", "-s", &base, "--proxy", &proxy]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    let expected = format!(
        "*** Error for BR: Connection error (redirect to http://***@{}/metrics refused: 127.0.0.1 is a local \
         (loopback, link-local or unspecified) address, more internal than the public server that sent it \
         (allow_internal_redirects follows it))",
        addr_of(&service)
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the loopback service was asked");
    assert!(files_in(out.path()).is_empty(), "{:?}", files_in(out.path()));

    // Those who need it can follow it: the service's answer is saved.
    let args = ["BR", "-v", "-s", &base, "--proxy", &proxy, "--allow-internal-redirects"];
    let (status, stdout, _) = fetch(out.path(), &args);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[test]
fn a_servers_allow_internal_redirects_key_follows_them() {
    let (service, asked) = secret_service();
    let public = redirecting_to(format!("http://{}/flags/br/br.gif", addr_of(&service)));
    let proxy = internet(addr_of(&public));
    let dir = tempfile::tempdir().unwrap();
    let config = |allow: bool| {
        format!(
            "[servers]\nmirror = {{ url = \"http://{PUBLIC}/flags\", proxy = \"{proxy}\", allow_internal_redirects = {allow} }}\n\
             [[batch]]\nname = \"b\"\ncodes = [\"BR\"]\nserver = \"mirror\"\nverbose = true\n[defaults]\nretries = 0\n"
        )
    };
    write_file(dir.path(), "flagsd.toml", &config(false));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.contains("refused: 127.0.0.1 is a local"), "{stdout}");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    write_file(dir.path(), "flagsd.toml", &config(true));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[test]
fn a_redirect_to_another_loopback_address_is_followed() {
    let Ok(second) = flagsd::testserver::TestServer::spawn(
        SocketAddr::from(([127, 0, 0, 2], 0)),
        flagsd::testserver::TestServerOptions::default(),
    ) else {
        println!("skipped: cannot listen on 127.0.0.2");
        return;
    };
    let first = redirecting_to(format!("{}/br/br.gif", second.url()));
    let out = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(out.path(), &["BR", "-v", "-s", &first.url()]);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}");
    assert_eq!(std::fs::read(out.path().join("BR.gif")).unwrap(), flag("br"));
}

#[test]
fn credentials_are_not_sent_to_another_host() {
    use std::io::{BufRead as _, Write as _};
    let Ok(listener) = std::net::TcpListener::bind(("127.0.0.2", 0)) else {
        println!("skipped: cannot listen on 127.0.0.2");
        return;
    };
    let other = listener.local_addr().unwrap();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut head = String::new();
            let mut reader = std::io::BufReader::new(&stream);
            while reader.read_line(&mut head).unwrap_or(0) > 2 {}
            seen.lock().unwrap().push(head.to_ascii_lowercase());
            let body = flag("br");
            let _ = (&stream).write_all(&response("200 OK", &[], &body));
        }
    });
    let first = redirecting_to(format!("http://{other}/flags/br/br.gif"));
    let url = first.url().replace("http://", "http://alice:s3cret@");
    let out = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(out.path(), &["BR", "-v", "-s", &url]);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}");
    assert!(first.seen()[0].header("Authorization").is_some(), "the server itself gets them");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1);
    assert!(!heads[0].contains("authorization"), "{}", heads[0]);
}
