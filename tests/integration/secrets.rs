//! Secrets never show: passwords in URLs (whatever characters they hold),
//! tokens and keys, in any message of any output channel.

use crate::helpers::*;

/// A password with every character that once ended the user information
/// early for a URL parser, leaving the password in the host or the path.
const PASSWORD: &str = "pa#ss/w?rd";

/// Asserts that none of `texts` holds `secret` or the part of it before or
/// after its first special character (what a wrong split would leave).
fn assert_hidden(secret: &str, texts: &[&str]) {
    let pieces: Vec<&str> = secret.split(['#', '/', '?']).filter(|p| p.len() >= 2).collect();
    for text in texts {
        assert!(!text.contains(secret), "the secret shows in:\n{text}");
        for piece in &pieces {
            assert!(
                !text.contains(&format!("{piece}@")) && !text.contains(&format!(":{piece}")),
                "{piece} in:\n{text}"
            );
        }
    }
}

#[test]
fn passwords_with_a_hash_a_slash_or_a_question_mark_are_masked_and_used_as_typed() {
    let server = clean_server();
    let closed = closed_port_url();
    let closed_authority = closed.trim_start_matches("http://").trim_end_matches("/flags").to_owned();
    let out = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["fetch", "BR", "-v", "-o", "out"];
        all.extend_from_slice(args);
        flagsd_in(out.path(), &all, env)
    };

    let proxy = format!("http://user:{PASSWORD}@{closed_authority}");
    let (status, stdout, stderr) = run(&["-s", &server.url(), "--proxy", &proxy], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    let expected = format!("cannot reach proxy http://***@{closed_authority}: connection refused");
    assert!(stdout.contains(&expected), "{stdout}{stderr}");
    assert_hidden(PASSWORD, &[&stdout, &stderr]);

    let (status, stdout, stderr) = run(&["-s", "https://127.0.0.1:9/flags", "--json"], &[("https_proxy", &proxy)]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("cannot reach proxy http://***@{closed_authority}")), "{stdout}{stderr}");
    assert_hidden(PASSWORD, &[&stdout, &stderr]);

    let typed = format!("http://user:{PASSWORD}@{closed_authority}/flags");
    let (status, stdout, stderr) = run(&["-s", &typed], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with(&format!("CUSTOM site: http://***@{closed_authority}/flags\n")), "{stdout}");
    assert_hidden(PASSWORD, &[&stdout, &stderr]);

    // `user:1234/x` is the user information, not the host `user` with a
    // path: the request goes to the host after the last '@'.
    let typed = format!("http://user:1234/x@{}", server.url().trim_start_matches("http://"));
    let (status, stdout, stderr) = run(&["-s", &typed], &[]);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}{stderr}");
    assert!(!stdout.contains("1234") && !stdout.contains("user"), "{stdout}");
}

/// Sets the mode of `path`.
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn secret_files_that_others_can_read_are_warned_of() {
    let pki = crate::tls::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let token = write_file(dir.path(), "admin-token", "s3cret-token\n");
    let key = dir.path().join("client.key");
    std::fs::copy(pki.file("client.key"), &key).unwrap();
    let config = format!(
        "[admin]\nlisten = \"0\"\ntoken_file = \"admin-token\"\n\
         [servers]\nmirror = {{ url = \"https://127.0.0.1:9/flags\", client_cert = \"{}\", client_key = \"client.key\" }}\n\
         [[batch]]\nname = \"b\"\ncodes = [\"BR\"]\nserver = \"mirror\"\n",
        pki.file("client.pem").display()
    );
    write_file(dir.path(), "flagsd.toml", &config);
    let check = || flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    let here = dir.path().canonicalize().unwrap();
    let key_column = config.lines().nth(4).and_then(|line| line.find("\"client.key\"")).unwrap() + 1;
    for (mode, who) in [(0o644, Some("every user")), (0o640, Some("its group")), (0o600, None)] {
        chmod(&token, mode);
        chmod(&key, mode);
        let (status, stdout, stderr) = check();
        assert_eq!(status, 0, "a warning is no error: {stderr}");
        assert!(stdout.starts_with("flagsd.toml: OK (1 batch,"), "{stdout}");
        match who {
            Some(who) => {
                // Relative paths in the file start from its directory.
                let token_warning = format!(
                    "flagsd.toml:3:14: admin.token_file: warning: '{}' can be read by {who} (mode 0{mode:o}): \
                     keep it to its owner (chmod 600), or hand it to the service with LoadCredential=",
                    here.join("admin-token").display()
                );
                assert!(stderr.contains(&token_warning), "{stderr}");
                let key_warning = format!(
                    "flagsd.toml:5:{key_column}: servers.mirror.client_key: warning: '{}'",
                    here.join("client.key").display()
                );
                assert!(stderr.contains(&key_warning), "{stderr}");
            }
            None => assert_eq!(stderr, "", "mode {mode:o}"),
        }
        assert!(!stderr.contains("s3cret-token"), "{stderr}");
    }
    // In a directory only its owner enters (as systemd's credentials
    // directory), a file of mode 0644 is still private.
    let private = dir.path().join("credentials");
    std::fs::create_dir(&private).unwrap();
    std::fs::rename(&token, private.join("admin-token")).unwrap();
    chmod(&private.join("admin-token"), 0o644);
    chmod(&private, 0o700);
    write_file(dir.path(), "flagsd.toml", &config.replace("\"admin-token\"", "\"credentials/admin-token\""));
    let (status, _, stderr) = check();
    assert!(status == 0 && !stderr.contains("admin.token_file"), "{stderr}");

    // fetch --key says it too, and serve logs it at start.
    chmod(&key, 0o644);
    let (cert, key_text) = (pki.file("client.pem"), key.to_str().unwrap().to_owned());
    let args = ["BR", "-s", "https://127.0.0.1:9/flags", "--cert", cert.to_str().unwrap(), "--key", &key_text];
    let (_, _, stderr) = fetch(dir.path(), &args);
    assert!(stderr.contains(&format!("warning: '{key_text}' can be read by every user (mode 0644)")), "{stderr}");
    let daemon = Daemon::start(dir.path(), &[]);
    let logged = format!("warning: '{}' can be read by every user (mode 0644)", here.join("client.key").display());
    assert!(wait_until(LONG, || daemon.log().contains(&logged)), "{}", daemon.log());
}

/// A server under `/flags` that wants `user:password` in Basic
/// authentication, and says 401 otherwise.
fn guarded_server(user_password: &'static str) -> crate::hostile::Hostile {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password));
    crate::hostile::Hostile::start(move |seen| {
        let last = &seen[seen.len() - 1];
        match last.header("Authorization") {
            Some(given) if given == expected => crate::hostile::response("200 OK", &[], &crate::hostile::flag("br")),
            _ => crate::hostile::response("401 Unauthorized", &["WWW-Authenticate: Basic".to_owned()], b""),
        }
    })
}

#[test]
fn a_servers_credentials_file_is_sent_and_never_shown() {
    let server = guarded_server("ann:pa#ss:w/rd");
    let dir = tempfile::tempdir().unwrap();
    let credentials = write_file(dir.path(), "mirror-credentials", "ann:pa#ss:w/rd\n");
    chmod(&credentials, 0o600);
    let config = |extra: &str| {
        format!(
            "[servers]\nmirror = {{ url = \"{}\", credentials_file = \"mirror-credentials\" }}\n\
             [[batch]]\nname = \"b\"\ncodes = [\"BR\"]\nserver = \"mirror\"\nverbose = true\n{extra}",
            server.url()
        )
    };
    write_file(dir.path(), "flagsd.toml", &config(""));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}{stderr}");
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["fetch", "BR", "-s", "mirror", "-c", "flagsd.toml", "--json"], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_hidden("pa#ss:w/rd", &[&stdout, &stderr]);

    std::fs::remove_file(&credentials).unwrap();
    let (status, _, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    // A relative path in the file starts from the file's directory.
    let expected = format!(
        "flagsd.toml:2:69: servers.mirror.credentials_file: cannot read '{}'",
        dir.path().canonicalize().unwrap().join("mirror-credentials").display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");

    let twice = config("").replace(&server.url(), &server.url().replace("http://", "http://bob:pw@"));
    write_file(dir.path(), "flagsd.toml", &twice);
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("servers.mirror.credentials_file: the URL carries credentials too"), "{stderr}");
}

/// What a notify socket received so far (systemd's `READY=1`, `STATUS=…`).
fn notified(socket: &std::os::unix::net::UnixDatagram) -> String {
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buffer) {
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        text.push('\n');
    }
    text
}

/// The admin endpoint's address, as a log (or the journal) says it.
fn admin_address(log: &str) -> Option<String> {
    let marker = "admin endpoint listening address=";
    let rest = &log[log.find(marker)? + marker.len()..];
    rest.split_whitespace().next().map(str::to_owned)
}

#[test]
fn a_secret_given_everywhere_shows_in_no_output_channel() {
    use crate::fleetctl::{FLEET, FLEET_WAIT, Node, finish, submit};
    use crate::tls::{Pki, TlsFront, assert_no_key_in, base64_lines};
    let Some(nats) = crate::natsd::NatsServer::start_with_user("flagsd", PASSWORD) else { return };
    let (flags, pki) = (clean_server(), Pki::new());
    let front = TlsFront::start(flags.addr(), &pki, true);
    let key_lines = base64_lines(&pki.file("client.key"));
    let closed = closed_port_url();
    let closed = closed.trim_start_matches("http://").trim_end_matches("/flags");
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "admin-token", &format!("{PASSWORD}\n"));
    chmod(&token, 0o600);
    let server_url = flags.url().replace("http://", &format!("http://user:{PASSWORD}@"));
    let text = format!(
        "[fleet]\nnats = \"nats://flagsd:{PASSWORD}@127.0.0.1:{}\"\nname = \"{FLEET}\"\nack_wait = \"3s\"\n\
         [admin]\nlisten = \"0\"\ntoken_file = \"admin-token\"\n\
         [defaults]\noutput = \"out\"\nretries = 0\ntimeout = \"2s\"\nconnect_timeout = \"1s\"\n\
         [servers]\nproxied = {{ url = \"{server_url}\", proxy = \"http://user:{PASSWORD}@{closed}\" }}\n\
         tls = {{ url = \"{}\", ca_file = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}\n\
         [[batch]]\nname = \"proxied\"\ncodes = [\"BR\", \"AR\"]\nserver = \"proxied\"\nverbose = true\n\
         [[batch]]\nname = \"tls\"\ncodes = [\"BR\"]\nserver = \"tls\"\nverbose = true\n",
        nats.port(),
        front.url(),
        pki.file("ca.pem").display(),
        pki.file("client.pem").display(),
        pki.file("client.key").display(),
    );
    let config = write_file(dir.path(), "flagsd.toml", &text);
    let notify = |name: &str| {
        let path = dir.path().join(format!("{name}.notify"));
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        (path, socket)
    };
    let ((notify_a, socket_a), (notify_b, socket_b)) = (notify("a"), notify("b"));
    // Node a logs everything, debug included, on stderr; node b to the journal.
    let a = Node::start(&config, "a", &[("FLAGSD_LOG", "debug"), ("NOTIFY_SOCKET", notify_a.to_str().unwrap())]);
    let journal = FakeJournal::start();
    let journal_env = journal.env(&write_file(dir.path(), "b.log", ""));
    let mut env: Vec<(&str, &str)> = journal_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("NOTIFY_SOCKET", notify_b.to_str().unwrap()));
    let b = Node::start(&config, "b", &env);
    a.wait_joined();
    assert!(wait_until(FLEET_WAIT, || journal.text().contains("MESSAGE=lane open")), "{}", journal.text());

    let (status, document) = finish(submit(&config));
    assert_eq!(status, 1, "the proxied batch fails, the TLS one downloads: {document}");
    let (_, status_out, status_err) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]);
    let fetch_args = ["fetch", "BR", "-v", "--json", "-c", "flagsd.toml", "-o", "fetched", "-s"];
    let (_, proxied_out, proxied_err) = flagsd_in(dir.path(), &[&fetch_args[..], &["proxied"]].concat(), &[]);
    let (_, tls_out, tls_err) = flagsd_in(dir.path(), &[&fetch_args[..], &["tls"]].concat(), &[]);
    let (_, check_out, check_err) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    let endpoints: Vec<String> = [admin_address(&a.log()), admin_address(&journal.text())]
        .into_iter()
        .map(|addr| addr.expect("an admin endpoint"))
        .flat_map(|addr| {
            ["/readyz", "/metrics", "/batches", "/runs"].map(|path| http(&addr, "GET", path, Some(PASSWORD)).1)
        })
        .collect();
    drop(b);
    let (notified_a, notified_b) = (notified(&socket_a), notified(&socket_b));

    // The channels did say something, where the secrets were (whichever
    // node fetched the proxied batch's codes says why they failed).
    let logs = format!("{}{}", a.log(), journal.text());
    assert!(logs.contains("cannot reach proxy http://***@"), "{logs}");
    for log in [a.log(), journal.text()] {
        assert!(log.contains(&format!("nats=nats://***@127.0.0.1:{}", nats.port())), "{log}");
    }
    assert!(notified_a.contains("STATUS=") && notified_b.contains("nats://***@127.0.0.1"), "{notified_b}");
    assert!(status_out.contains(&format!("nats://***@127.0.0.1:{}", nats.port())), "{status_out}{status_err}");
    let document = document.to_string();
    assert!(
        document.contains(&format!("\"url\":\"http://***@{}/br/br.gif\"", flags.url().trim_start_matches("http://"))),
        "{document}"
    );
    let texts = [
        a.log(),
        journal.text(),
        notified_a,
        notified_b,
        document,
        status_out,
        status_err,
        proxied_out,
        proxied_err,
        tls_out,
        tls_err,
        check_out,
        check_err,
    ];
    let all: Vec<&str> = texts.iter().chain(&endpoints).map(String::as_str).collect();
    assert_hidden(PASSWORD, &all);
    for text in &all {
        assert_no_key_in(&key_lines, text);
    }
}
