//! Run state: conditional downloads, the history, and a damaged database.

use flagsd::testserver::TestServerOptions;

use crate::helpers::*;

/// The B codes that have a flag in the data set.
const B_FLAGS: [&str; 17] =
    ["ba", "bb", "bd", "be", "bf", "bg", "bh", "bi", "bj", "bn", "bo", "br", "bs", "bt", "bw", "by", "bz"];

#[test]
fn unchanged_files_are_not_transferred_again_and_changed_or_lost_ones_are() {
    let root = flag_root(&B_FLAGS);
    let server = server(TestServerOptions { root: Some(root.path().to_owned()), ..TestServerOptions::default() });
    let work = tempfile::tempdir().unwrap();
    let (out, state) = (work.path().join("out"), work.path().join("state"));
    let url = server.url();
    let fetch = || fetch(&out, &["B", "-v", "-s", &url, "--state", state.to_str().unwrap()]);

    let (status, stdout, stderr) = fetch();
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(final_counts(&stdout), (17, 9, 0));
    assert_eq!((server.bodies(), server.not_modified()), (17, 0));

    // Second run: every flag is unchanged, no body is sent.
    let (status, stdout, _) = fetch();
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains(" 17 unchanged.\n") && stdout.contains("BR unchanged\n"), "{stdout}");
    assert_eq!(count(&stdout, "flag"), 0, "{stdout}");
    assert_eq!((server.bodies(), server.not_modified()), (17, 17));
    assert_eq!(assert_only_complete_flags(&out), 17);

    // A flag changed on the server, one deleted and one altered locally.
    let changed = flagsd::testserver::dataset::get("flags/ar/ar.gif").unwrap();
    std::fs::write(root.path().join("br/br.gif"), changed).unwrap();
    std::fs::remove_file(out.join("BE.gif")).unwrap();
    std::fs::write(out.join("BG.gif"), b"GIF89a tampered").unwrap();
    let (status, stdout, _) = fetch();
    assert_eq!(status, 0, "{stdout}");
    let lines = verbose_lines(&stdout);
    for cc in ["BR", "BE", "BG"] {
        assert_eq!(lines[cc], [format!("{cc} OK")], "{stdout}");
    }
    assert!(stdout.contains("  3 flags downloaded.\n 14 unchanged.\n"), "{stdout}");
    assert_eq!((server.bodies(), server.not_modified()), (20, 31));
    assert_eq!(std::fs::read(out.join("BR.gif")).unwrap(), changed);
    assert!(out.join("BE.gif").exists());
}

#[test]
fn without_state_every_request_is_unconditional() {
    let server = clean_server();
    let out = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let (status, stdout, _) = fetch(out.path(), &["BR", "AR", "-s", &server.url()]);
        assert_eq!((status, final_counts(&stdout)), (0, (2, 0, 0)), "{stdout}");
    }
    assert_eq!((server.bodies(), server.not_modified()), (4, 0));
}

#[test]
fn a_demo_batch_is_conditional_although_its_port_changes() {
    let work = tempfile::tempdir().unwrap();
    write_file(
        work.path(),
        "flagsd.toml",
        "[[batch]]\nname = \"demo\"\ncodes = [\"BR\", \"AR\", \"ZZ\"]\nserver = \"DEMO\"\n",
    );
    let run = || flagsd_in(work.path(), &["run", "--config", "flagsd.toml", "--json"], &[]);
    let (first, second) = (run(), run());
    for (status, stdout, stderr) in [&first, &second] {
        assert_eq!(*status, 0, "{stdout}{stderr}");
    }
    let counts = |stdout: &str| {
        let json: serde_json::Value = serde_json::from_str(stdout).unwrap();
        let counts = &json["batches"][0]["counts"];
        (counts["downloaded"].as_u64(), counts["unchanged"].as_u64(), counts["not_found"].as_u64())
    };
    assert_eq!(counts(&first.1), (Some(2), Some(0), Some(1)), "{}", first.1);
    assert_eq!(counts(&second.1), (Some(0), Some(2), Some(1)), "{}", second.1);
    // Reports still show where each request went.
    assert!(second.1.contains("\"url\": \"http://127.0.0.1:"), "{}", second.1);
}

#[test]
fn run_records_each_batch_and_a_second_run_is_unchanged() {
    let server = clean_server();
    let work = tempfile::tempdir().unwrap();
    let config =
        format!("[[batch]]\nname = \"few\"\ncodes = [\"BR\", \"AR\", \"ZZ\"]\nserver = \"{}\"\n", server.url());
    write_file(work.path(), "flagsd.toml", &config);
    let run = || flagsd_in(work.path(), &["run", "--config", "flagsd.toml"], &[]);
    let (status, stdout, stderr) = run();
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(final_counts(&stdout), (2, 1, 0));
    let (status, stdout, _) = run();
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains("  0 flags downloaded.\n  2 unchanged.\n  1 not found.\n"), "{stdout}");
    assert_eq!(server.bodies(), 2);
    assert!(work.path().join("state/flagsd.db").exists());

    // The history, as `status` reads it from the database (no daemon).
    let (status, stdout, _) = flagsd_in(work.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.starts_with("From the state database state/flagsd.db"), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("few ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("exit 0: 0 downloaded, 2 unchanged, 1 not found"), "{row}");
}

#[test]
fn a_corrupt_database_is_a_clear_error_with_status_3() {
    let server = clean_server();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let garbage = b"not a database at all: flagsd must say so and leave it alone. ".repeat(40);
    std::fs::write(state.join("flagsd.db"), &garbage).unwrap();
    let config = format!("[[batch]]\nname = \"a\"\ncodes = [\"BR\"]\nserver = \"{}\"\nevery = \"1h\"\n", server.url());
    write_file(work.path(), "flagsd.toml", &config);

    for args in [
        vec!["run", "--config", "flagsd.toml"],
        vec!["serve", "--config", "flagsd.toml"],
        vec!["fetch", "BR", "-s", &server.url(), "--state", "state", "-o", "out"],
    ] {
        let (status, stdout, stderr) = flagsd_in(work.path(), &args, &[]);
        assert_eq!(status, 3, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("state database 'state/flagsd.db' is corrupt or not an SQLite database"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(server.hits(), 0, "nothing may be requested");
    assert_eq!(std::fs::read(state.join("flagsd.db")).unwrap(), garbage, "the file must be left as it was");
}

#[test]
fn status_without_history_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    write_file(work.path(), "flagsd.toml", "[[batch]]\nname = \"a\"\nserver = \"DEMO\"\nevery = \"1h\"\n");
    let (status, stdout, stderr) = flagsd_in(work.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(stdout.contains("no state database yet"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("a ") && l.contains("never run")), "{stdout}");
    assert_eq!(files_in(work.path()), ["flagsd.toml"], "status must not create a database");
}

#[test]
fn validators_go_only_to_the_server_they_came_from() {
    let (first, second) = (clean_server(), clean_server());
    let work = tempfile::tempdir().unwrap();
    let (out, state) = (work.path().join("out"), work.path().join("state"));
    for (server, expected) in [(&first, (2, 0, 0)), (&second, (2, 0, 0)), (&second, (0, 0, 0))] {
        let (status, stdout, _) = fetch(&out, &["BR", "AR", "-s", &server.url(), "--state", state.to_str().unwrap()]);
        assert_eq!((status, final_counts(&stdout)), (0, expected), "{stdout}");
    }
    // The second server was asked unconditionally once, then conditionally.
    assert_eq!((second.bodies(), second.not_modified()), (2, 2));
    assert_eq!(first.not_modified(), 0);
}
