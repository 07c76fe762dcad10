//! HTTPS with a private CA made at test time (rcgen): a CA, a server
//! certificate for 127.0.0.1 and a client certificate, and a TLS front
//! that terminates TLS (asking for a client certificate if told to) and
//! relays to the plain test server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::helpers::*;

/// A CA, a server certificate and a client certificate, their PEM files
/// written to a directory.
pub struct Pki {
    /// Holds `ca.pem`, `client.pem` and `client.key` (what a client needs),
    /// `ca.key`, `server.pem` and `server.key`.
    pub dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, Vec<u8>),
}

impl Pki {
    /// A new CA and its certificates.
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "flagsd test CA");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str, purpose| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(vec![name.to_owned()]).expect("parameters");
            params.extended_key_usages = vec![purpose];
            (params.signed_by(&key, &issuer).expect("a certificate"), key)
        };
        let (server, server_key) = leaf("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
        let (client, client_key) = leaf("flagsd-client", ExtendedKeyUsagePurpose::ClientAuth);
        let dir = tempfile::tempdir().expect("a directory");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("written");
        std::fs::write(dir.path().join("ca.key"), ca_key_pem).expect("written");
        std::fs::write(dir.path().join("server.pem"), server.pem()).expect("written");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("written");
        std::fs::write(dir.path().join("client.pem"), client.pem()).expect("written");
        std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).expect("written");
        Self { dir, ca: ca.der().clone(), server: (server.der().clone(), server_key.serialize_der()) }
    }

    /// A file of this PKI's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server configuration with the server certificate, asking for a
    /// client certificate from this CA if `client_auth`.
    fn server_config(&self, client_auth: bool, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.clone()).expect("the CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server.1.clone()));
        let mut config = builder.with_single_cert(vec![self.server.0.clone()], key).expect("a server configuration");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A TLS front on a free loopback port, relaying each connection to
/// `backend` (it lives as long as the test process).
pub struct TlsFront {
    addr: SocketAddr,
}

impl TlsFront {
    /// Terminates TLS with `pki`'s server certificate (and, if
    /// `client_auth`, a client certificate of its CA) in front of `backend`.
    pub fn start(backend: SocketAddr, pki: &Pki, client_auth: bool) -> Self {
        Self::start_offering(backend, pki, client_auth, &[])
    }

    /// As [`start`](Self::start), offering the ALPN protocols `alpn`
    /// (`h2` lets clients speak HTTP/2; the backend must understand it).
    pub fn start_offering(backend: SocketAddr, pki: &Pki, client_auth: bool, alpn: &[&[u8]]) -> Self {
        Self::start_inner(backend, pki, client_auth, alpn, false)
    }

    /// As [`start`](Self::start), but handshakes finish unevenly, as on a
    /// busy server: the n-th connection waits (n mod 4) × 40 ms first.
    pub fn start_staggered(backend: SocketAddr, pki: &Pki) -> Self {
        Self::start_inner(backend, pki, false, &[], true)
    }

    fn start_inner(backend: SocketAddr, pki: &Pki, client_auth: bool, alpn: &[&[u8]], staggered: bool) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(client_auth, alpn));
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let addr = tcp_server(move |tcp| {
            let acceptor = acceptor.clone();
            let n = accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                if staggered {
                    tokio::time::sleep(std::time::Duration::from_millis(n % 4 * 40)).await;
                }
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        });
        Self { addr }
    }

    /// `https://127.0.0.1:PORT/flags`.
    pub fn url(&self) -> String {
        format!("https://{}/flags", self.addr)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn a_private_ca_is_trusted_with_cacert_and_its_absence_explained() {
    let (server, pki) = (clean_server(), Pki::new());
    let front = TlsFront::start(server.addr(), &pki, false);
    let out = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(out.path(), &["BR", "-v", "-s", &front.url()]);
    assert_eq!(status, 1, "{stdout}");
    assert!(
        stdout.contains(
            "invalid peer certificate: UnknownIssuer; for a private CA, use --cacert or the server's ca_file"
        ),
        "{stdout}"
    );
    let (status, stdout, _) =
        fetch(out.path(), &["BR", "AR", "-s", &front.url(), "--cacert", path(&pki.file("ca.pem"))]);
    assert_eq!((status, final_counts(&stdout)), (0, (2, 0, 0)), "{stdout}");
    assert_eq!(assert_only_complete_flags(out.path()), 2);
}

#[test]
fn a_bad_cacert_is_a_usage_error_naming_the_file() {
    let pki = Pki::new();
    let out = tempfile::tempdir().unwrap();
    let text = write_file(pki.dir.path(), "text.pem", "not a certificate\n");
    for (file, message) in [
        (
            "/nonexistent/ca.pem".to_owned(),
            "--cacert: cannot read '/nonexistent/ca.pem': No such file or directory".to_owned(),
        ),
        (path(&text).to_owned(), format!("--cacert: '{}' holds no PEM certificate", text.display())),
    ] {
        let (status, stdout, stderr) = fetch(out.path(), &["BR", "-s", "https://127.0.0.1:9/flags", "--cacert", &file]);
        assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
        assert!(stderr.starts_with(&format!("*** Usage error: {message}")), "{stderr}");
    }
}

#[test]
fn a_server_that_asks_for_a_client_certificate_gets_it() {
    let (server, pki) = (clean_server(), Pki::new());
    let front = TlsFront::start(server.addr(), &pki, true);
    let out = tempfile::tempdir().unwrap();
    let ca = path(&pki.file("ca.pem")).to_owned();
    let (status, stdout, _) = fetch(out.path(), &["BR", "-v", "-s", &front.url(), "--cacert", &ca]);
    assert_eq!(status, 1, "refused without a client certificate: {stdout}");
    let (cert, key) = (pki.file("client.pem"), pki.file("client.key"));
    let args = ["BR", "-s", &front.url(), "--cacert", &ca, "--cert", path(&cert), "--key", path(&key)];
    let (status, stdout, _) = fetch(out.path(), &args);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}");
    let (status, _, stderr) = fetch(out.path(), &["BR", "-s", &front.url(), "--cert", path(&cert)]);
    assert_eq!(status, 2, "--cert needs --key: {stderr}");
}

#[test]
fn servers_carry_their_tls_files_in_the_configuration() {
    let (server, pki) = (clean_server(), Pki::new());
    let front = TlsFront::start(server.addr(), &pki, true);
    let dir = tempfile::tempdir().unwrap();
    let entry = |ca: &Path| {
        format!(
            "[servers]\ninternal = {{ url = \"{}\", ca_file = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}\n\
             [[batch]]\nname = \"b\"\ncodes = [\"BR\"]\nserver = \"internal\"\n",
            front.url(),
            ca.display(),
            pki.file("client.pem").display(),
            pki.file("client.key").display()
        )
    };
    write_file(dir.path(), "flagsd.toml", &entry(&pki.file("ca.pem")));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(assert_only_complete_flags(&dir.path().join("downloaded/b")), 1);
    write_file(dir.path(), "flagsd.toml", &entry(Path::new("/nonexistent/ca.pem")));
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.starts_with("flagsd.toml:2:63: servers.internal.ca_file: cannot read '/nonexistent/ca.pem'"),
        "{stderr}"
    );
}

/// The lines of base64 of the PEM file `path`, for looking for any of them
/// where a key must not show.
pub fn base64_lines(path: &Path) -> Vec<String> {
    let pem = std::fs::read_to_string(path).expect("a PEM file");
    pem.lines().filter(|l| !l.starts_with("-----") && !l.is_empty()).map(str::to_owned).collect()
}

/// Asserts that nothing of the key whose base64 lines are `lines` shows in
/// `text`: no 8 characters of it, and not its bytes written as numbers.
pub fn assert_no_key_in(lines: &[String], text: &str) {
    for line in lines {
        for piece in line.as_bytes().chunks_exact(8) {
            let piece = std::str::from_utf8(piece).expect("base64 is ASCII");
            assert!(!text.contains(piece), "'{piece}' of the key shows in:\n{text}");
        }
        let bytes = format!("{:?}", &line.as_bytes()[..6]);
        assert!(!text.contains(bytes.trim_matches(['[', ']'])), "the key's bytes show in:\n{text}");
    }
}

#[test]
fn a_key_flattened_onto_one_line_is_refused_without_a_byte_of_it() {
    let pki = Pki::new();
    let key = pki.file("client.key");
    let lines = base64_lines(&key);
    let flat = write_file(pki.dir.path(), "flat.key", &std::fs::read_to_string(&key).unwrap().replace('\n', " "));
    let (cert, flat_text) = (path(&pki.file("client.pem")).to_owned(), path(&flat).to_owned());
    let out = tempfile::tempdir().unwrap();
    let args = ["BR", "-s", "https://127.0.0.1:9/flags", "--cert", &cert, "--key", &flat_text];
    let (status, stdout, stderr) = fetch(out.path(), &args);
    assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with(&format!("*** Usage error: --key: '{flat_text}' holds a PEM key whose")), "{stderr}");
    assert!(stderr.contains("flattened onto one line"), "{stderr}");
    assert_no_key_in(&lines, &stderr);

    let config = format!(
        "[servers]\ninternal = {{ url = \"https://127.0.0.1:9/flags\", client_cert = \"{cert}\", client_key = \"{flat_text}\" }}\n\
         [[batch]]\nname = \"b\"\ncodes = [\"BR\"]\nserver = \"internal\"\n"
    );
    write_file(out.path(), "flagsd.toml", &config);
    let column = config.lines().nth(1).and_then(|line| line.find("client_key = ")).unwrap() + "client_key = ".len() + 1;
    for command in ["run", "serve"] {
        let (status, stdout, stderr) = flagsd_in(out.path(), &[command, "--config", "flagsd.toml"], &[]);
        assert_eq!(status, 2, "{command}: {stdout}{stderr}");
        let expected =
            format!("flagsd.toml:2:{column}: servers.internal.client_key: '{flat_text}' holds a PEM key whose");
        assert!(stderr.contains(&expected), "{command}: {stderr}");
        assert_no_key_in(&lines, &format!("{stdout}{stderr}"));
    }
}

/// `openssl s_server` serving the files under `root` (`-WWW`) on a free
/// loopback port with `pki`'s server certificate, requiring a client
/// certificate of `pki`'s CA; killed when dropped.
struct OpensslServer {
    child: std::process::Child,
    port: u16,
}

impl OpensslServer {
    fn start(openssl: &Path, pki: &Pki, root: &Path) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(openssl)
            .current_dir(root)
            .args(["s_server", "-accept", "127.0.0.1:0", "-WWW", "-Verify", "1", "-cert"])
            .args([pki.file("server.pem"), "-key".into(), pki.file("server.key"), "-CAfile".into(), pki.file("ca.pem")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("its output"));
        let port = stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("ACCEPT 127.0.0.1:").and_then(|p| p.trim().parse().ok()))
            .expect("openssl s_server says where it listens");
        Self { child, port }
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_version_1_client_certificate_is_presented() {
    let Some(openssl) = tool("openssl") else { return };
    let pki = Pki::new();
    let openssl_in = |args: &[&str]| {
        let out = std::process::Command::new(&openssl).current_dir(pki.dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A certificate request signed without extensions: X.509 version 1.
    let curve = "ec_paramgen_curve:P-256";
    let subject = "/CN=flagsd-v1";
    let key_out = ["-keyout", "v1.key", "-subj", subject, "-out", "v1.csr"];
    openssl_in(&[&["req", "-new", "-newkey", "ec", "-pkeyopt", curve, "-nodes"][..], &key_out].concat());
    openssl_in(&["x509", "-req", "-in", "v1.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "1", "-out", "v1.pem"]);
    if !openssl_in(&["x509", "-in", "v1.pem", "-noout", "-text"]).contains("Version: 1 (0x0)") {
        println!("skipped: this openssl makes version 3 certificates with x509 -req");
        return;
    }
    let root = flag_root(&["br"]);
    std::fs::create_dir(root.path().join("flags")).unwrap();
    std::fs::rename(root.path().join("br"), root.path().join("flags/br")).unwrap();
    let server = OpensslServer::start(&openssl, &pki, root.path());
    let out = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}/flags", server.port);
    let (ca, cert, key) = (pki.file("ca.pem"), pki.file("v1.pem"), pki.file("v1.key"));
    let args = ["BR", "-v", "-s", &url, "--cacert", path(&ca), "--cert", path(&cert), "--key", path(&key)];
    let (status, stdout, stderr) = fetch(out.path(), &args);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}{stderr}");
    assert_eq!(assert_only_complete_flags(out.path()), 1);
}
