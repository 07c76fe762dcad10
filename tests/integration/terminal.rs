//! Text from outside reaches a terminal escaped, never obeyed: every human
//! output path (verbose lines, error lines, problems of a configuration,
//! the human log format) fed an escape sequence, a carriage return, a bell
//! and a bidi override.

use crate::helpers::*;

/// Characters a terminal obeys rather than shows.
const OBEYED: [char; 6] = ['\u{1b}', '\r', '\u{7}', '\u{202e}', '\u{9b}', '\u{0}'];

/// Asserts that `text` (an output channel) holds none of [`OBEYED`].
fn assert_inert(what: &str, text: &str) {
    for c in OBEYED {
        assert!(!text.contains(c), "{what} holds {c:?}:\n{}", text.escape_debug());
    }
}

/// A proxy on a free loopback port that refuses every tunnel with a status
/// line full of terminal controls.
fn hostile_proxy() -> String {
    let addr = tcp_server(|mut client| async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut head = [0u8; 1024];
        let _ = client.read(&mut head).await;
        let answer = "HTTP/1.1 403 \u{1b}]0;owned\u{7}\u{1b}[2J\rFake\u{202e}txt.exe\r\nContent-Length: 0\r\n\r\n";
        let _ = client.write_all(answer.as_bytes()).await;
    });
    format!("http://{addr}")
}

#[test]
fn a_proxys_status_line_is_escaped_in_verbose_lines_and_logs() {
    let proxy = hostile_proxy();
    let out = tempfile::tempdir().unwrap();
    let args = ["BR", "-v", "-s", "https://127.0.0.1:9/flags", "--proxy", &proxy, "--log-level", "debug"];
    let (status, stdout, stderr) = fetch(out.path(), &args);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.contains("403 \\x1b]0;owned\\x07\\x1b[2J\\x0dFake\\u{202e}txt.exe"), "{}", stdout.escape_debug());
    assert_inert("stdout", &stdout);
    assert_inert("stderr (human log format)", &stderr);
}

#[test]
fn a_proxys_status_line_is_escaped_in_the_daemons_log() {
    let proxy = hostile_proxy();
    let dir = tempfile::tempdir().unwrap();
    let servers = format!("[servers]\nmirror = {{ url = \"https://127.0.0.1:9/flags\", proxy = \"{proxy}\" }}\n");
    let config = format!("{servers}{}verbose = true\n", batch("b", "[\"BR\"]", "mirror", "1h"));
    write_file(dir.path(), "flagsd.toml", &config);
    let daemon = Daemon::start(dir.path(), &[]);
    assert!(wait_until(LONG, || daemon.log().contains("download failed")), "{}", daemon.log());
    assert!(
        daemon.log().contains("403 \\x1b]0;owned\\x07\\x1b[2J\\x0dFake\\u{202e}txt.exe"),
        "{}",
        daemon.log().escape_debug()
    );
    assert_inert("the daemon's log", &daemon.log());
}

/// `text` as a TOML basic string, every character but printable ASCII as
/// a `\UXXXXXXXX` escape.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => quoted.extend(['\\', c]),
            ' '..='~' => quoted.push(c),
            _ => quoted.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    quoted.push('"');
    quoted
}

#[test]
fn error_lines_and_problems_quoting_values_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let nasty = "x\u{1b}]0;owned\u{7}\r\u{202e}";
    let failed = dir.path().join("missing").join(nasty);
    let (status, stdout, stderr) = fetch(dir.path(), &["BR", "-s", "DEMO", "--failed", failed.to_str().unwrap()]);
    assert_eq!(status, 3, "{stdout}{stderr}");
    assert!(stderr.contains("*** Error: cannot write the list of failed codes"), "{}", stderr.escape_debug());
    assert_inert("fetch's error line", &stderr);

    write_file(dir.path(), "flagsd.toml", &format!("[[batch]]\nname = {}\nserver = \"DEMO\"\n", toml_string(nasty)));
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2, "{}", stderr.escape_debug());
    assert!(stderr.starts_with("flagsd.toml:2:8: batch[0].name: 'x\\x1b]0;owned"), "{}", stderr.escape_debug());
    assert_inert("check-config's problems", &stderr);

    let output = toml_string(&format!("/proc/{nasty}"));
    let config = format!("[[batch]]\nname = \"b\"\nserver = \"DEMO\"\ncodes = [\"BR\"]\noutput = {output}\n");
    write_file(dir.path(), "flagsd.toml", &config);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 3, "{stdout}{}", stderr.escape_debug());
    assert!(stderr.contains("*** Error in batch b: "), "{}", stderr.escape_debug());
    assert_inert("run's error line", &stderr);
}
