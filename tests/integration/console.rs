//! The operator console over plain HTTP, as a browser and an attacker's
//! page would reach it: the page and its policy, signing in and out, the
//! CSRF token, cross-site and rebound requests, the event stream. The
//! page itself, in a real browser, is tests/integration/browser.rs.

use std::io::Read as _;

use crate::helpers::*;

const TOKEN: &str = "console-t0ken";

/// A daemon with the on-demand batches `a` and `b` (the built-in server),
/// and a token unless `token` is false: its directory, the daemon, the
/// endpoint's address.
fn console_daemon(token: bool) -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = "[state]\ndir = \"state\"\n[admin]\nlisten = \"127.0.0.1:0\"\n".to_owned();
    if token {
        write_file(dir.path(), "token", &format!("{TOKEN}\n"));
        config.push_str("token_file = \"token\"\n");
    }
    for name in ["a", "b"] {
        config.push_str(&format!(
            "[[batch]]\nname = \"{name}\"\ncodes = [\"BR\", \"AR\"]\nserver = \"DEMO\"\noutput = \"out-{name}\"\n"
        ));
    }
    write_file(dir.path(), "flagsd.toml", &config);
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    (dir, daemon, addr)
}

/// A client that keeps nothing between requests: each request says its
/// own cookie and headers.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(LONG)
        .build()
        .unwrap()
}

/// `POST /session` with `token`: the status, the `Set-Cookie` value and
/// the JSON answer.
fn sign_in(addr: &str, token: &str) -> (u16, Option<String>, serde_json::Value) {
    let answer = client()
        .post(format!("http://{addr}/session"))
        .header("Content-Type", "application/json")
        .header("Origin", format!("http://{addr}"))
        .body(serde_json::json!({ "token": token }).to_string())
        .send()
        .unwrap();
    let status = answer.status().as_u16();
    let cookie = answer.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    let body = answer.text().unwrap_or_default();
    (status, cookie, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

/// The `name=value` part of a `Set-Cookie` value.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

#[test]
fn the_page_is_served_with_a_strict_policy_and_no_inline_script() {
    let (_dir, _daemon, addr) = console_daemon(true);
    let page = raw_request(&addr, "GET", "/", &[]);
    assert_eq!(page.code(), 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let policy = page.header("content-security-policy").unwrap_or_default().to_owned();
    for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let html = String::from_utf8(page.body).unwrap();
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(!scripts.is_empty() && scripts.iter().all(|s| s.starts_with(" src=\"/")), "inline script: {html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "an external resource: {html}");
    let script = raw_request(&addr, "GET", "/console.js", &[]);
    assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
    let script = String::from_utf8(script.body).unwrap();
    for unsafe_sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
        assert!(!script.contains(unsafe_sink), "console.js uses {unsafe_sink}");
    }
    // The API's answers carry the same policy.
    let batches = raw_request(&addr, "GET", "/batches", &[("Authorization", &format!("Bearer {TOKEN}"))]);
    assert_eq!(batches.header("content-security-policy"), Some(policy.as_str()));
}

#[test]
fn signing_in_gives_a_strict_cookie_and_each_change_needs_the_csrf_token() {
    let (_dir, mut daemon, addr) = console_daemon(true);
    let (status, cookie, _) = sign_in(&addr, "wrong");
    assert_eq!((status, cookie), (401, None));

    let (status, cookie, answer) = sign_in(&addr, TOKEN);
    assert_eq!(status, 200, "{answer}");
    let cookie = cookie.expect("a cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let csrf = answer["csrf"].as_str().expect("a CSRF token").to_owned();
    let session = pair(&cookie);
    assert!(!session.contains(TOKEN) && !csrf.contains(TOKEN), "the token itself is handed out");

    // The cookie lets the browser read, and with the CSRF token, change.
    let with = |extra: &[(&str, &str)], method: &str, path: &str| {
        let mut headers = vec![("Cookie", session.as_str())];
        headers.extend_from_slice(extra);
        raw_request(&addr, method, path, &headers)
    };
    assert_eq!(with(&[], "GET", "/batches").code(), 200);
    let session_status: serde_json::Value = serde_json::from_slice(&with(&[], "GET", "/session").body).unwrap();
    assert_eq!(
        (session_status["signed_in"].as_bool(), session_status["csrf"].as_str()),
        (Some(true), Some(csrf.as_str()))
    );
    let refused = with(&[], "POST", "/batches/a/run");
    assert_eq!(refused.code(), 403, "a change without the CSRF token");
    assert!(String::from_utf8_lossy(&refused.body).contains("CSRF"));
    assert_eq!(with(&[("X-CSRF-Token", "0123")], "POST", "/batches/a/run").code(), 403);
    assert!(!daemon.log().contains("run started"), "{}", daemon.log());
    assert_eq!(with(&[("X-CSRF-Token", &csrf)], "POST", "/batches/a/run").code(), 202);

    // Signing out ends the session: the same cookie gets nothing.
    assert_eq!(with(&[], "DELETE", "/session").code(), 403, "signing out is a change too");
    let out = with(&[("X-CSRF-Token", &csrf)], "DELETE", "/session");
    assert_eq!(out.code(), 200);
    assert!(out.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(with(&[], "GET", "/batches").code(), 401);
    // Without the cookie or the token: refused.
    assert_eq!(raw_request(&addr, "POST", "/batches/b/run", &[]).code(), 401);
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0), "{}", daemon.log());
}

#[test]
fn a_restart_ends_every_session() {
    let (dir, mut daemon, addr) = console_daemon(true);
    let (_, cookie, _) = sign_in(&addr, TOKEN);
    let session = pair(&cookie.expect("a cookie"));
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
    let again = Daemon::start(dir.path(), &[("FLAGSD_ADMIN__LISTEN", &addr)]);
    assert!(wait_until(LONG, || again.log().contains("admin endpoint listening")), "{}", again.log());
    assert_eq!(raw_request(&addr, "GET", "/batches", &[("Cookie", &session)]).code(), 401);
}

#[test]
fn other_sites_cannot_drive_the_endpoint_through_a_browser() {
    for token in [false, true] {
        let (_dir, daemon, addr) = console_daemon(token);
        let bearer = format!("Bearer {TOKEN}");
        let auth: Vec<(&str, &str)> = if token { vec![("Authorization", bearer.as_str())] } else { Vec::new() };
        let post = |extra: &[(&str, &str)]| {
            let mut headers = auth.clone();
            headers.extend_from_slice(extra);
            raw_request(&addr, "POST", "/batches/a/run", &headers).code()
        };
        assert_eq!(post(&[("Origin", "http://evil.example")]), 403, "token {token}");
        assert_eq!(post(&[("Origin", "null")]), 403, "token {token}");
        assert_eq!(post(&[("Sec-Fetch-Site", "cross-site")]), 403, "token {token}");
        assert_eq!(post(&[("Sec-Fetch-Site", "same-site")]), 403, "token {token}");
        assert!(!daemon.log().contains("run started"), "{}", daemon.log());
        // curl and scripts send neither header: as before.
        assert_eq!(post(&[]), 202, "token {token}");

        // DNS rebinding: a page whose name now resolves to 127.0.0.1.
        let port = addr.rsplit(':').next().unwrap();
        let rebound = format!("evil.example:{port}");
        let mut headers = auth.clone();
        headers.push(("Host", rebound.as_str()));
        let answer = raw_request(&addr, "GET", "/batches", &headers);
        assert_eq!(answer.code(), 403, "token {token}");
        assert!(String::from_utf8_lossy(&answer.body).contains("evil.example"));
        let local = format!("localhost:{port}");
        let mut headers = auth.clone();
        headers.push(("Host", local.as_str()));
        assert_eq!(raw_request(&addr, "GET", "/batches", &headers).code(), 200, "token {token}");
    }
}

#[test]
fn a_configured_host_name_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\nhosts = [\"flagsd.example\"]\n";
    write_file(dir.path(), "flagsd.toml", config);
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let port = addr.rsplit(':').next().unwrap();
    let named = format!("flagsd.example:{port}");
    assert_eq!(raw_request(&addr, "GET", "/healthz", &[("Host", &named)]).code(), 200);
    let other = format!("other.example:{port}");
    assert_eq!(raw_request(&addr, "GET", "/healthz", &[("Host", &other)]).code(), 403);
    write_file(dir.path(), "bad.toml", "[admin]\nlisten = \"127.0.0.1:0\"\nhosts = [\"a b\"]\n");
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "-c", "bad.toml"], &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("admin.hosts: 'a b' is not a host name"), "{stderr}");
}

#[test]
fn the_event_stream_sends_the_batches_then_what_changes() {
    let (_dir, _daemon, addr) = console_daemon(false);
    let mut stream = client().get(format!("http://{addr}/events")).send().unwrap();
    assert_eq!(stream.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let mut seen = String::new();
    let start = std::time::Instant::now();
    let mut read_until = |what: &str| {
        let mut buffer = [0u8; 4096];
        while !seen.contains(what) {
            // The stream says something at least every 15 s.
            assert!(start.elapsed() < 3 * LONG, "no {what} in {seen}");
            let n = stream.read(&mut buffer).expect("the stream goes on");
            assert!(n > 0, "the stream ended before {what}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        seen.clone()
    };
    let first = read_until("event: batches\n");
    assert!(first.contains("\"name\":\"a\"") && first.contains("\"name\":\"b\""), "{first}");
    assert_eq!(raw_request(&addr, "POST", "/batches/b/run", &[]).code(), 202);
    let later = read_until("event: run-finished\n");
    assert!(later.contains("event: run-finished\ndata: {\"name\":\"b\""), "{later}");
}

#[test]
fn about_says_which_flagsd_and_which_file_and_fleet_is_for_fleets() {
    let (_dir, _daemon, addr) = console_daemon(true);
    let bearer = format!("Bearer {TOKEN}");
    let about = raw_request(&addr, "GET", "/about", &[("Authorization", &bearer)]);
    assert_eq!(about.code(), 200);
    let about: serde_json::Value = serde_json::from_slice(&about.body).unwrap();
    assert_eq!(about["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(about["config"], "flagsd.toml");
    assert_eq!((about["batches"].as_u64(), about["ready"].as_bool()), (Some(2), Some(true)));
    assert_eq!(about["token_required"], true);
    assert!(humantime::parse_rfc3339(about["loaded_at"].as_str().unwrap_or_default()).is_ok(), "{about}");
    assert_eq!(raw_request(&addr, "GET", "/about", &[]).code(), 401);
    assert_eq!(raw_request(&addr, "GET", "/fleet", &[("Authorization", &bearer)]).code(), 404);
}
