//! `flagsd fetch` against good, failing and absent servers.

use flagsd::testserver::{Faults, TestServerOptions};

use crate::helpers::*;

#[test]
fn every_code_downloads_194_flags_and_reports_482_not_found() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = fetch(dir.path(), &["-e", "-m", "100", "-s", &server.url()]);
    assert_eq!(status, 0, "{stderr}");
    let expected = [
        format!("CUSTOM site: {}", server.url()),
        "Searching for 676 flags: from AA to ZZ".to_owned(),
        "100 concurrent connections will be used.".to_owned(),
        "--------------------".to_owned(),
        "194 flags downloaded.".to_owned(),
        "482 not found.".to_owned(),
        "Elapsed time: *".to_owned(),
    ];
    assert_eq!(report_lines(&stdout), expected);
    assert_eq!(assert_only_complete_flags(dir.path()), 194);
    assert_eq!(server.hits(), 676);
    // No progress bar or diagnostics when stderr is not a terminal.
    assert_eq!(stderr, "");
}

#[test]
fn elapsed_time_has_two_decimals() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let (_, stdout, _) = fetch(dir.path(), &["BR", "-s", &server.url()]);
    let last = stdout.lines().last().unwrap();
    let seconds = last.strip_prefix("Elapsed time: ").and_then(|s| s.strip_suffix('s')).unwrap();
    assert_eq!(seconds.split_once('.').map(|(_, d)| d.len()), Some(2), "{last}");
}

#[test]
fn demo_server_works_offline_for_all_countries() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = fetch(dir.path(), &["-s", "demo", "-a"]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.starts_with("DEMO site: http://127.0.0.1:"), "{stdout}");
    assert_eq!(count(&stdout, "flags downloaded."), 194);
    assert_eq!(assert_only_complete_flags(dir.path()), 194);
}

#[test]
fn verbose_mode_prints_one_line_per_code() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-v", "BR", "zz", "-s", &server.url()]);
    assert_eq!(status, 0);
    let lines = verbose_lines(&stdout);
    assert_eq!(lines["BR"], ["BR OK"]);
    assert_eq!(lines["ZZ"], [format!("ZZ not found: {}/zz/zz.gif", server.url())]);
    assert_eq!(lines.len(), 2);
}

#[test]
fn a_trailing_slash_on_the_base_url_is_not_doubled() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/", server.url());
    let (status, stdout, _) = fetch(dir.path(), &["-v", "BR", "-s", &url]);
    assert_eq!(status, 0);
    assert!(stdout.contains("BR OK"), "{stdout}");
    assert!(stdout.starts_with(&format!("CUSTOM site: {url}\n")), "{stdout}");
}

#[test]
fn error_rate_one_makes_every_code_a_teapot_error() {
    let server = faulty(Faults { error_rate: 1.0, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-v", "B", "-s", &server.url()]);
    assert_eq!(status, 1);
    let lines = verbose_lines(&stdout);
    assert_eq!(lines.len(), 26);
    for (cc, lines) in &lines {
        assert_eq!(lines, &[format!("*** Error for {cc}: HTTP 418 - I'm a Teapot")]);
    }
    assert_eq!(count(&stdout, "flags downloaded."), 0);
    assert_eq!(count(&stdout, "errors."), 26);
    assert!(!stdout.contains("not found."), "{stdout}");
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

#[test]
fn a_quarter_of_errors_still_adds_up() {
    let server = server(TestServerOptions {
        faults: Faults { error_rate: 0.25, ..Faults::default() },
        seed: 11,
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["-e", "-s", &server.url()]);
    let (ok, nf, err) = final_counts(&stdout);
    assert_eq!(ok + nf + err, 676, "{stdout}");
    assert!(err > 0, "{stdout}");
    assert_eq!(status, 1);
    assert_eq!(assert_only_complete_flags(dir.path()), ok);
}

#[test]
fn a_closed_port_is_a_connection_error_for_every_code() {
    let url = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (status, stdout, _) = fetch(dir.path(), &["-v", "A", "-s", &url]);
    // Refused connections fail at once (no retries by default); a generous
    // bound for a loaded machine, the figure itself is measured by bench/.
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(status, 1);
    let lines = verbose_lines(&stdout);
    assert_eq!(lines.len(), 26);
    for (cc, lines) in &lines {
        assert_eq!(lines, &[format!("*** Error for {cc}: Connection error (connection refused)")]);
    }
    assert_eq!(count(&stdout, "errors."), 26);
}

#[test]
fn accounting_holds_over_mixed_faults_for_several_seeds() {
    for seed in [1, 2, 3, 42] {
        let server = server(TestServerOptions {
            faults: Faults { error_rate: 0.2, truncate_rate: 0.3, ..Faults::default() },
            delay: Some("0..0.005".parse().unwrap()),
            seed,
            workers: 2,
            ..TestServerOptions::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let max_req = ["1", "7", "100", "1000"][seed as usize % 4];
        let (status, stdout, _) = fetch(dir.path(), &["-e", "-v", "-m", max_req, "-s", &server.url()]);
        let lines = verbose_lines(&stdout);
        assert_eq!(lines.len(), 676, "seed {seed}");
        assert!(lines.values().all(|l| l.len() == 1), "seed {seed}: a code with several lines");
        let (ok, nf, err) = final_counts(&stdout);
        assert_eq!(ok + nf + err, 676, "seed {seed}");
        assert_eq!(lines.values().filter(|l| l[0].ends_with(" OK")).count(), ok);
        assert!(lines.values().any(|l| l[0].contains("Connection error")), "seed {seed}: no truncation seen");
        assert_eq!(status, 1, "seed {seed}");
        assert_eq!(assert_only_complete_flags(dir.path()), ok, "seed {seed}");
    }
}

#[test]
fn existing_flags_are_replaced_whole() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("BR.gif"), b"old and shorter").unwrap();
    let (status, _, _) = fetch(dir.path(), &["BR", "-s", &server.url()]);
    assert_eq!(status, 0);
    assert_eq!(assert_only_complete_flags(dir.path()), 1);
}

#[test]
fn server_labels_can_be_overridden_by_configuration() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "flagsd.toml", &format!("[servers]\nlocal = \"{}\"\n", server.url()));
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["fetch", "BR", "-c", config.to_str().unwrap(), "-o", out], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.starts_with(&format!("LOCAL site: {}\n", server.url())), "{stdout}");

    let env = [("FLAGSD_SERVERS__DELAY", server.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, stdout, _) = flagsd_in(dir.path(), &["fetch", "AR", "-s", "delay", "-o", out], &env);
    assert_eq!(status, 0);
    assert!(stdout.starts_with(&format!("DELAY site: {}\n", server.url())), "{stdout}");
    assert_eq!(server.hits(), 2);
}
