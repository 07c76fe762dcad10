//! The command line's own behaviour: `status` by batch name, `generate`
//! (man pages, completion scripts), the completions the binary answers,
//! where `run -v` says what it opened, `-q`.

use flagsd::testserver::Faults;

use crate::helpers::*;

/// The batch names in the rows of a `status` table.
fn status_rows(stdout: &str) -> Vec<String> {
    // The table ends at the first empty line (named batches' last runs follow).
    stdout
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn status_shows_the_batches_asked_for_from_the_state_database_and_the_daemon() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let batches: String = ["a", "b", "c"].iter().map(|n| batch(n, "[\"BR\"]", &server.url(), "1h")).collect();
    write_file(dir.path(), "flagsd.toml", &batches);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml", "c", "a"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.starts_with("From the state database"), "{stdout}");
    assert_eq!(status_rows(&stdout), ["a", "c"], "{stdout}");

    // A fixed port, so that `status` finds the daemon from the same file.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write_file(dir.path(), "flagsd.toml", &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n{batches}"));
    let mut daemon = Daemon::start(dir.path(), &[]);
    daemon.admin_addr();
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml", "b"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.starts_with("From the daemon at"), "{stdout}");
    assert_eq!(status_rows(&stdout), ["b"], "{stdout}");
    let (_, stdout, _) = flagsd_in(dir.path(), &["status", "-c", "flagsd.toml"], &[]);
    assert_eq!(status_rows(&stdout), ["a", "b", "c"], "{stdout}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(LONG), Some(0));
}

/// What `flagsd` answers a fish completion request for `words` (the
/// command line up to the cursor, the word being completed last), in `dir`
/// with extra environment: each candidate's value.
fn completions(dir: &std::path::Path, words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut args = vec!["--", "flagsd"];
    args.extend_from_slice(words);
    let mut env = env.to_vec();
    env.push(("COMPLETE", "fish"));
    let (status, stdout, stderr) = flagsd_in(dir, &args, &env);
    assert_eq!((status, stderr.as_str()), (0, ""), "{words:?}");
    stdout.lines().map(|l| l.split('\t').next().unwrap_or_default().to_owned()).collect()
}

/// The candidates that are not options.
fn values(candidates: Vec<String>) -> Vec<String> {
    candidates.into_iter().filter(|c| !c.starts_with('-')).collect()
}

const CONFIG: &str = "[servers]\nmirror = \"http://127.0.0.1:9/flags\"\n[[batch]]\nname = \"world\"\nevery = \"1day\"\n\
                      [[batch]]\nname = \"asia\"\n";

#[test]
fn completions_offer_the_batches_and_labels_of_the_configuration_named() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", CONFIG);
    let path = dir.path().join("flagsd.toml");
    let path = path.to_str().unwrap();
    for command in ["run", "status", "trigger", "cancel"] {
        for named in [vec!["-c", path], vec![&*format!("--config={path}")]] {
            let mut words = vec![command];
            words.extend(named.iter().copied());
            words.push("");
            assert_eq!(values(completions(dir.path(), &words, &[])), ["world", "asia"], "{words:?}");
        }
        assert_eq!(values(completions(dir.path(), &[command, "w"], &[("FLAGSD_CONFIG", path)])), ["world"]);
    }
    // A batch already named is offered again: run takes a name twice as once.
    assert_eq!(values(completions(dir.path(), &["run", "-c", path, "asia", ""], &[])), ["world", "asia"]);
    let labels = completions(dir.path(), &["fetch", "-c", path, "-s", ""], &[]);
    assert_eq!(labels, ["LOCAL", "REMOTE", "DELAY", "ERROR", "DEMO", "mirror"]);
    assert_eq!(completions(dir.path(), &["fetch", "-s", "de"], &[]), ["DELAY", "DEMO"], "any case");
}

#[test]
fn completions_say_nothing_of_a_missing_or_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "broken.toml", "[[batch]\nname = ");
    for file in ["missing.toml", "broken.toml"] {
        assert!(values(completions(dir.path(), &["run", "-c", file, ""], &[])).is_empty(), "{file}");
        let labels = completions(dir.path(), &["fetch", "-c", file, "--server", ""], &[]);
        assert_eq!(labels, ["LOCAL", "REMOTE", "DELAY", "ERROR", "DEMO"], "{file}");
    }
}

/// Runs `script` in bash with `BIN` set to the binary.
fn bash(dir: &std::path::Path, script: &str) -> Option<String> {
    let out = std::process::Command::new("bash")
        .current_dir(dir)
        .env("BIN", assert_cmd::cargo::cargo_bin("flagsd"))
        .env_remove("FLAGSD_CONFIG")
        .args(["--norc", "-c", script])
        .output();
    match out {
        Ok(out) => {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            Some(String::from_utf8(out.stdout).unwrap())
        }
        Err(e) => {
            println!("skipped: cannot run bash ({e})");
            None
        }
    }
}

#[test]
fn the_bash_script_completes_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", CONFIG);
    // What bash does at a Tab after `flagsd cancel -c flagsd.toml a`.
    let script = r#"source <("$BIN" generate completions bash)
        complete -p flagsd
        COMP_WORDS=(flagsd cancel -c flagsd.toml a); COMP_CWORD=4; COMP_TYPE=9
        _clap_complete_flagsd flagsd a flagsd.toml
        printf '<%s>\n' "${COMPREPLY[@]}""#;
    let Some(out) = bash(dir.path(), script) else { return };
    let mut lines = out.lines();
    assert!(lines.next().is_some_and(|l| l.ends_with("-F _clap_complete_flagsd flagsd")), "{out}");
    assert_eq!(lines.collect::<Vec<_>>(), ["<asia>"], "{out}");
}

#[test]
fn generate_prints_to_stdout_or_writes_into_a_directory_it_creates() {
    let dir = tempfile::tempdir().unwrap();
    let (status, script, _) = flagsd_in(dir.path(), &["generate", "completions", "zsh"], &[]);
    assert_eq!(status, 0);
    assert!(script.starts_with("#compdef flagsd\n"), "{script}");
    let (status, man, _) = flagsd_in(dir.path(), &["generate", "man"], &[]);
    assert_eq!(status, 0);
    assert!(man.contains(".TH FLAGSD 1 "), "{man}");

    let out = dir.path().join("a/b");
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["generate", "completions", "zsh", "--output", out.to_str().unwrap()], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, format!("{}\n", out.join("_flagsd").display()));
    assert_eq!(std::fs::read_to_string(out.join("_flagsd")).unwrap(), script);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["generate", "man", "-o", out.to_str().unwrap()], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 14, "{stdout}");
    assert_eq!(std::fs::read_to_string(out.join("flagsd.1")).unwrap(), man);
    for page in ["flagsd-fetch.1", "flagsd-generate-completions.1", "flagsd.toml.5"] {
        assert!(stdout.contains(&format!("{}\n", out.join(page).display())), "{page} not in {stdout}");
    }

    let below_a_file = write_file(dir.path(), "file", "x").join("man");
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["generate", "man", "-o", below_a_file.to_str().unwrap()], &[]);
    assert_eq!((status, stdout.as_str()), (3, ""));
    assert!(stderr.starts_with(&format!("*** Error: cannot write '{}': ", below_a_file.display())), "{stderr}");
}

/// The titles of a man page's sections (`.SH` lines).
fn sections(page: &str) -> Vec<String> {
    page.lines().filter_map(|l| l.strip_prefix(".SH ")).map(|t| t.trim_matches('"').to_owned()).collect()
}

#[test]
fn the_man_pages_have_the_sections_help_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let page = |name: &str| {
        let (status, text, stderr) = flagsd_in(dir.path(), &["generate", "man", name], &[]);
        assert_eq!(status, 0, "{stderr}");
        text
    };
    let main = page("flagsd.1");
    assert_eq!(
        sections(&main),
        [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "SUBCOMMANDS",
            "CONFIGURATION",
            "SIGNALS",
            "ADMIN ENDPOINTS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "SEE ALSO",
            "VERSION"
        ]
    );
    let name = main.lines().skip_while(|l| *l != ".SH NAME").nth(1).unwrap_or_default();
    assert_eq!(name, "flagsd \\- download country flags by two\\-letter code, concurrently, once or as a daemon");
    for needle in ["max_req, threads, output", "SIGHUP (serve)", "POST /batches/NAME/run", "\n.TP\n\\fB143\\fR\n"] {
        assert!(main.contains(needle), "flagsd.1 lacks {needle}");
    }
    let config = page("flagsd.toml.5");
    assert!(config.starts_with(".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH FLAGSD.TOML 5 "), "{config}");
    let expected = ["NAME", "SYNOPSIS", "DESCRIPTION", "[SERVERS]", "[DEFAULTS]", "[DAEMON]", "[STATE]", "[ADMIN]"];
    assert_eq!(sections(&config)[..8], expected);
    assert!(config.contains("\n.TP\n\\fBmax_req\\fR\nConcurrent requests of a batch; the pool is min(max_req, 1000, number of codes). Default: 30.\n"));
    // Each page once through groff, which must find nothing to warn about.
    for name in ["flagsd.1", "flagsd-fetch.1", "flagsd.toml.5"] {
        let text = page(name);
        let groff = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut groff) = groff else {
            println!("skipped: groff is missing");
            return;
        };
        use std::io::Write as _;
        groff.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = groff.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{name}");
    }
}

#[test]
fn a_verbose_batch_says_what_it_opened_on_stderr_after_its_report() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}verbose = true\n", batch("b", "[\"BR\", \"AR\"]", &server.url(), "1h"));
    write_file(dir.path(), "flagsd.toml", &config);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "-c", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains("BR OK\n") && !stdout.contains("opened"), "{stdout}");
    assert_eq!(stderr, "2 connections opened (HTTP/1.1).\n");
    let (_, _, stderr) = flagsd_in(dir.path(), &["run", "-c", "flagsd.toml", "--json"], &[]);
    assert_eq!(stderr, "", "--json says it in the document");
}

#[test]
fn quiet_prints_nothing_and_the_status_says_how_it_went() {
    let (good, bad) = (clean_server(), faulty(Faults { error_rate: 1.0, ..Faults::default() }));
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = fetch(&dir.path().join("a"), &["-q", "-s", &good.url(), "BR", "ZZ"]);
    assert_eq!((status, stdout.as_str(), stderr.as_str()), (0, "", ""));
    assert_only_complete_flags(&dir.path().join("a"));
    assert_eq!(files_in(&dir.path().join("a")), ["BR.gif"]);
    let (status, stdout, stderr) = fetch(&dir.path().join("b"), &["--quiet", "-s", &bad.url(), "BR"]);
    assert_eq!((status, stdout.as_str(), stderr.as_str()), (1, "", ""));
    // An error that stops flagsd is still said.
    let below_a_file = write_file(dir.path(), "file", "x").join("out");
    let (status, stdout, stderr) = fetch(&below_a_file, &["-q", "-s", &good.url(), "BR"]);
    assert_eq!((status, stdout.as_str()), (3, ""));
    assert!(stderr.starts_with("*** Error: cannot write to output directory"), "{stderr}");

    let config =
        format!("{}{}", batch("good", "[\"BR\"]", &good.url(), "1h"), batch("bad", "[\"BR\"]", &bad.url(), "1h"));
    write_file(dir.path(), "flagsd.toml", &format!("{config}verbose = true\n"));
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "-q", "-c", "flagsd.toml"], &[]);
    assert_eq!((status, stdout.as_str(), stderr.as_str()), (1, "", ""));
    assert!(dir.path().join("downloaded/good/BR.gif").exists());
}

#[test]
fn quiet_goes_with_neither_verbose_nor_json() {
    let dir = tempfile::tempdir().unwrap();
    for args in [["fetch", "-q", "-v"], ["fetch", "-q", "--json"], ["run", "--json", "-q"], ["run", "-v", "--quiet"]] {
        let (status, stdout, stderr) = flagsd_in(dir.path(), &args, &[]);
        assert_eq!((status, stdout.as_str()), (2, ""), "{args:?}");
        assert!(stderr.starts_with("*** Usage error: the argument '-"), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{args:?}: {stderr}");
    }
}

/// The modification time of `path`.
fn mtime(path: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).expect("a file's time")
}

#[test]
fn timestamping_asks_with_each_file_s_time_and_fetches_a_changed_or_missing_file_again() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let url = server.url();
    let run = |args: &[&str]| {
        let mut all = vec!["-v", "-s", url.as_str()];
        all.extend_from_slice(args);
        let (status, stdout, stderr) = fetch(&out, &all);
        assert_eq!(status, 0, "{stderr}");
        verbose_lines(&stdout)
    };
    let lines = run(&["--timestamping", "BR", "AR"]);
    assert_eq!((lines["AR"][0].as_str(), lines["BR"][0].as_str()), ("AR OK", "BR OK"));
    // Saved with the server's Last-Modified (the data set's: 2024-01-01).
    let served = httpdate::parse_http_date("Mon, 01 Jan 2024 00:00:00 GMT").unwrap();
    assert_eq!((mtime(&out.join("AR.gif")), mtime(&out.join("BR.gif"))), (served, served));

    let lines = run(&["-N", "BR", "AR"]);
    assert_eq!((lines["AR"][0].as_str(), lines["BR"][0].as_str()), ("AR unchanged", "BR unchanged"));
    assert_eq!((server.bodies(), server.not_modified()), (2, 2), "two conditional requests, no body");

    // A file whose size changed, and a missing one, are fetched again.
    std::fs::OpenOptions::new().write(true).open(out.join("AR.gif")).unwrap().set_len(10).unwrap();
    std::fs::remove_file(out.join("BR.gif")).unwrap();
    let lines = run(&["-N", "BR", "AR"]);
    assert_eq!((lines["AR"][0].as_str(), lines["BR"][0].as_str()), ("AR OK", "BR OK"));
    assert_eq!((server.bodies(), server.not_modified()), (4, 2));
    assert_eq!(assert_only_complete_flags(&out), 2);

    // Without the option nothing is conditional.
    let lines = run(&["BR", "AR"]);
    assert_eq!((lines["AR"][0].as_str(), lines["BR"][0].as_str()), ("AR OK", "BR OK"));
    assert_eq!((server.bodies(), server.not_modified()), (6, 2));
}

#[test]
fn timestamping_fetches_a_flag_the_server_changed_since() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("br")).unwrap();
    let served = root.path().join("br/br.gif");
    std::fs::write(&served, b"GIF89a first").unwrap();
    let server =
        server(flagsd::testserver::TestServerOptions { root: Some(root.path().to_owned()), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let (status, stdout, stderr) = fetch(dir.path(), &["-N", "-v", "-s", &server.url(), "BR"]);
        assert_eq!(status, 0, "{stderr}");
        verbose_lines(&stdout)["BR"][0].clone()
    };
    assert_eq!(run(), "BR OK");
    assert_eq!(run(), "BR unchanged");
    std::fs::write(&served, b"GIF89a second, longer").unwrap();
    let later = mtime(&dir.path().join("BR.gif")) + std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&served).unwrap().set_modified(later).unwrap();
    assert_eq!(run(), "BR OK");
    assert_eq!(std::fs::read(dir.path().join("BR.gif")).unwrap(), b"GIF89a second, longer");
    assert_eq!(run(), "BR unchanged");
}
