//! `flagsd testserver` as its own process.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use crate::helpers::*;

#[test]
fn serves_the_bundled_flags_until_sigterm() {
    let mut child = flagsd_child()
        .args(["testserver", "--bind", "127.0.0.1:0", "--workers", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("Serving flags at ").unwrap_or_else(|| panic!("{line}")).to_owned();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/flags"), "{url}");

    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-a", "-s", &url]);
    assert_eq!(status, 0, "{stdout}");
    assert_eq!(assert_only_complete_flags(dir.path()), 194);

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
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
