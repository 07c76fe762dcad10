//! Configuration files: layering, every kind of bad file, and `flagsd run`.

use std::path::Path;

use flagsd::testserver::Faults;

use crate::helpers::*;

/// A configuration with one batch `b` fetching `codes` from `url`.
fn one_batch(url: &str, extra_defaults: &str) -> String {
    format!(
        "[defaults]\noutput = \"out\"\n{extra_defaults}\n[[batch]]\nname = \"b\"\ncodes = \"every\"\nserver = \"{url}\"\n"
    )
}

/// The "N concurrent connections" figure of the first report in `stdout`.
fn connections(stdout: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_suffix(" concurrent connections will be used.")?.parse().ok())
        .unwrap_or_else(|| panic!("no connections line in {stdout}"))
}

#[test]
fn the_example_configuration_passes_check_config() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/flagsd.toml");
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["check-config", "--config", example.to_str().unwrap()], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.ends_with(": OK (3 batches, 2 scheduled)\n"), "{stdout}");
}

#[test]
fn the_file_is_overridden_by_the_environment_and_both_by_flags() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "flagsd.toml", &one_batch(&server.url(), "max_req = 5"));
    let config = config.to_str().unwrap();
    let env = [("FLAGSD_DEFAULTS__MAX_REQ", "7")];

    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", config], &[]);
    assert_eq!((status, connections(&stdout)), (0, 5), "{stderr}");
    let (status, stdout, _) = flagsd_in(dir.path(), &["run", "--config", config], &env);
    assert_eq!((status, connections(&stdout)), (0, 7));
    let (status, stdout, _) = flagsd_in(dir.path(), &["run", "--config", config, "-m", "9"], &env);
    assert_eq!((status, connections(&stdout)), (0, 9));
}

#[test]
fn flagsd_config_names_the_file_when_no_flag_does() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "via-env.toml", &one_batch(&server.url(), ""));
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["check-config"], &[("FLAGSD_CONFIG", config.to_str().unwrap())]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains("via-env.toml: OK (1 batch, 0 scheduled)"), "{stdout}");
}

/// Asserts that `check-config` and `run` both reject `text` with exit
/// status 2, printing `expected` (after the file name) and sending nothing.
fn assert_rejected(text: &str, expected: &str) {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace("URL", &server.url());
    write_file(dir.path(), "flagsd.toml", &text);
    for command in ["check-config", "run"] {
        let (status, stdout, stderr) = flagsd_in(dir.path(), &[command, "--config", "flagsd.toml"], &[]);
        assert_eq!(status, 2, "{command}: {stderr}");
        assert!(stderr.lines().any(|l| l.starts_with(&format!("flagsd.toml{expected}"))), "{command}: {stderr}");
        assert_eq!(stdout, "", "{command}");
    }
    assert_eq!(server.hits(), 0);
}

#[test]
fn a_missing_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "nope.toml"], &[]);
    assert_eq!(status, 2);
    assert!(stderr.starts_with("nope.toml: cannot read the file: No such file or directory"), "{stderr}");
}

#[test]
fn a_syntax_error_names_its_line() {
    assert_rejected("[defaults]\nmax_req = 3\n\n[[batch]\nname = \"b\"\n", ":4:9: TOML syntax error: ");
}

#[test]
fn an_unknown_key_is_rejected() {
    assert_rejected(
        "[[batch]]\nname = \"b\"\nserver = \"URL\"\ncountries = [\"BR\"]\n",
        ":4:1: batch[0]: unknown key countries; known keys: name, codes, limit, server, output, max_req, every, naming, verbose",
    );
}

#[test]
fn a_wrong_type_is_rejected() {
    assert_rejected("[defaults]\nverbose = \"very\"\n", ":2:11: defaults.verbose: expected a boolean");
    assert_rejected(
        "[[batch]]\nname = \"b\"\nserver = \"URL\"\nevery = \"often\"\n",
        ":4:9: batch[0].every: 'often' is not a duration",
    );
}

#[test]
fn an_out_of_range_value_is_rejected() {
    assert_rejected(
        "[[batch]]\nname = \"a\"\nserver = \"URL\"\n[[batch]]\nname = \"b\"\nserver = \"URL\"\nmax_req = 0\n",
        ":7:11: batch[1].max_req: must be >= 1",
    );
    assert_rejected("[defaults]\nthreads = 0\n", ":2:11: defaults.threads: must be from 1 to 256 (got 0)");
}

#[test]
fn a_duplicate_batch_is_rejected() {
    assert_rejected(
        "[[batch]]\nname = \"a\"\nserver = \"URL\"\n[[batch]]\nname = \"a\"\nserver = \"URL\"\n",
        ":5:8: batch[1].name: duplicate batch name 'a' (also batch[0])",
    );
}

#[test]
fn an_unknown_server_label_is_rejected() {
    assert_rejected(
        "[[batch]]\nname = \"a\"\nserver = \"MIRROR\"\n",
        ":3:10: batch[0].server: unknown server label 'MIRROR'",
    );
}

#[test]
fn an_unwritable_output_directory_is_rejected_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a-file", "x");
    let output = file.join("sub");
    let text = format!("[[batch]]\nname = \"a\"\nserver = \"DEMO\"\noutput = \"{}\"\n", output.display());
    write_file(dir.path(), "flagsd.toml", &text);
    let (status, _, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 2);
    let expected = format!(
        "flagsd.toml:4:10: batch[0].output: '{}' cannot be created: '{}' is not a directory",
        output.display(),
        file.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}

#[test]
fn an_unknown_batch_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", "[[batch]]\nname = \"a\"\nserver = \"DEMO\"\n");
    let (status, _, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml", "zz"], &[]);
    assert_eq!(status, 2);
    assert!(stderr.contains("no batch named 'zz' (configured: a)"), "{stderr}");
}

#[test]
fn run_reports_each_batch_and_exits_with_the_worst_status() {
    let good = clean_server();
    let bad = faulty(Faults { error_rate: 1.0, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[batch]]\nname = \"good\"\ncodes = [\"b\"]\nserver = \"{}\"\n\n\
         [[batch]]\nname = \"bad\"\ncodes = [\"AR\", \"BR\"]\nserver = \"{}\"\nverbose = true\n\n\
         [[batch]]\nname = \"unused\"\nserver = \"{}\"\n",
        good.url(),
        bad.url(),
        good.url()
    );
    write_file(dir.path(), "flagsd.toml", &text);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml", "good", "bad"], &[]);
    assert_eq!(status, 1, "{stderr}");
    let expected = [
        "== batch good ==".to_owned(),
        format!("CUSTOM site: {}", good.url()),
        "Searching for 26 flags: from BA to BZ".to_owned(),
        "26 concurrent connections will be used.".to_owned(),
        "--------------------".to_owned(),
        " 17 flags downloaded.".to_owned(),
        "  9 not found.".to_owned(),
        "Elapsed time: *".to_owned(),
        String::new(),
        "== batch bad ==".to_owned(),
        format!("CUSTOM site: {}", bad.url()),
        "Searching for 2 flags: AR, BR".to_owned(),
        "2 concurrent connections will be used.".to_owned(),
    ];
    let lines = report_lines(&stdout);
    assert_eq!(lines[..expected.len()], expected);
    let mut teapots: Vec<&String> = lines[expected.len()..expected.len() + 2].iter().collect();
    teapots.sort();
    assert_eq!(teapots, ["*** Error for AR: HTTP 418 - I'm a Teapot", "*** Error for BR: HTTP 418 - I'm a Teapot"]);
    assert!(
        stdout.ends_with("  0 flags downloaded.\n  2 errors.\n") || stdout.contains("  2 errors.\nElapsed"),
        "{stdout}"
    );
    assert_eq!(assert_only_complete_flags(&dir.path().join("downloaded/good")), 17);
    assert_eq!(files_in(&dir.path().join("downloaded/bad")), Vec::<String>::new());
    assert!(!dir.path().join("downloaded/unused").exists());
}

/// Internal type names that no message may show.
const INTERNAL_NAMES: [&str; 6] = ["Raw", "Naming", "untagged", "variant constructor", "invalid type", "serde"];

#[test]
fn check_config_names_the_place_the_key_and_the_types_of_every_bad_value() {
    let batch = "[[batch]]\nname = \"a\"\nserver = \"DEMO\"\n";
    let cases: [(String, &str); 12] = [
        (
            "[defaults]\nverbose = \"yes\"\n".into(),
            "flagsd.toml:2:11: defaults.verbose: expected a boolean (true or false), found a string (\"yes\")",
        ),
        (
            "[defaults]\nverbose = 1\n".into(),
            "flagsd.toml:2:11: defaults.verbose: expected a boolean (true or false), found an integer (1)",
        ),
        (
            format!("{batch}limit = \"3\"\n"),
            "flagsd.toml:4:9: batch[0].limit: expected an integer, found a string (\"3\")",
        ),
        (
            "[defaults]\nmax_req = 2.5\n".into(),
            "flagsd.toml:2:11: defaults.max_req: expected an integer, found a float (2.5)",
        ),
        (
            "[defaults]\ntimeout = 5\n".into(),
            "flagsd.toml:2:11: defaults.timeout: expected a duration: a string with a unit, such as \"5s\", found an \
             integer (5)",
        ),
        (
            format!("{batch}codes = 5\n"),
            "flagsd.toml:4:9: batch[0].codes: expected a list of codes (such as [\"BR\", \"c\"]), \"all\" or \"every\", \
             found an integer (5)",
        ),
        (
            format!("{batch}codes = \"al\"\n"),
            "flagsd.toml:4:9: batch[0].codes: unknown value \"al\"; did you mean \"all\"?",
        ),
        (
            format!("{batch}naming = \"flag\"\n"),
            "flagsd.toml:4:10: batch[0].naming: unknown value \"flag\"; expected one of \"code\", \"country\"",
        ),
        ("[defaults]\nmaxreq = 3\n".into(), "flagsd.toml:2:1: defaults: unknown key maxreq; did you mean max_req?"),
        ("[defaulds]\nmax_req = 3\n".into(), "flagsd.toml:1:2: unknown key defaulds; did you mean defaults?"),
        (
            "[servers]\nMIRROR = { url = \"http://m/flags\", ca_fille = \"ca.pem\" }\n".into(),
            "flagsd.toml:2:36: servers.MIRROR: unknown key ca_fille; did you mean ca_file?",
        ),
        (
            format!("{batch}output = \"/proc/foo\"\n"),
            "flagsd.toml:4:10: batch[0].output: '/proc/foo' cannot be created: no directory can be made in '/proc': ",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in cases {
        write_file(dir.path(), "flagsd.toml", &text);
        let (status, stdout, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[]);
        assert_eq!((status, stdout.as_str()), (2, ""), "{text}");
        assert_eq!(stderr.lines().count(), 1, "{text}: {stderr}");
        assert!(stderr.starts_with(expected), "{text}:\n{stderr}\nexpected {expected}");
        assert!(!INTERNAL_NAMES.iter().any(|name| stderr.contains(name)), "{stderr}");
    }
}

#[test]
fn a_value_from_the_environment_is_named_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", "[defaults]\nmax_req = 5\n");
    for (variable, value, expected) in [
        ("FLAGSD_DEFAULTS__MAXREQ", "5", "unknown key maxreq; did you mean max_req?"),
        ("FLAGSD_DEFAULTS__MAX_REQ", "0", "must be >= 1"),
        ("FLAGSD_DEFAULTS__MAX_REQ", "2.5", "expected an integer, found \"2.5\""),
        (
            "FLAGSD_DEFAULTS__VERBOSE",
            "maybe",
            "expected a boolean (true, false, yes, no, on, off, 1 or 0), found \"maybe\"",
        ),
    ] {
        let (status, _, stderr) =
            flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &[(variable, value)]);
        assert_eq!(status, 2, "{variable}: {stderr}");
        assert_eq!(stderr, format!("environment variable {variable}: {expected}\n"));
    }
    // Variables are text: their values are parsed as the key's type.
    let env = [("FLAGSD_DEFAULTS__VERBOSE", "yes"), ("FLAGSD_DEFAULTS__MAX_REQ", "7")];
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml"], &env);
    assert_eq!((status, stdout.as_str()), (0, "flagsd.toml: OK (0 batches, 0 scheduled)\n"), "{stderr}");
}

#[test]
fn check_config_without_a_file_says_so_and_an_empty_file_gets_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["check-config"], &[]);
    let default = Path::new("/etc/flagsd/flagsd.toml");
    if default.exists() {
        // This machine has the default file: it is the one checked.
        assert!(stdout.contains("/etc/flagsd/flagsd.toml") || stderr.contains("/etc/flagsd/flagsd.toml"), "{stderr}");
    } else {
        assert_eq!((status, stdout.as_str()), (2, ""));
        assert!(
            stderr.starts_with(
                "*** Usage error: no configuration file to check: give --config FILE or set FLAGSD_CONFIG (the \
                 default, /etc/flagsd/flagsd.toml, does not exist)\n"
            ),
            "{stderr}"
        );
    }
    for text in ["", "# only a comment\n\n"] {
        write_file(dir.path(), "empty.toml", text);
        let (status, stdout, stderr) = flagsd_in(dir.path(), &["check-config", "--config", "empty.toml"], &[]);
        assert_eq!((status, stdout.as_str()), (0, "empty.toml: OK (0 batches, 0 scheduled)\n"), "{stderr}");
        assert_eq!(
            stderr,
            "empty.toml: note: the file sets nothing (it is empty, or only comments): the built-in defaults apply, \
             and there are no batches\n"
        );
    }
}

#[test]
fn relative_paths_in_the_file_start_from_its_directory_and_others_from_the_working_directory() {
    let server = clean_server();
    let root = tempfile::tempdir().unwrap();
    let (etc, work) = (root.path().join("etc"), root.path().join("work"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let text = format!(
        "[defaults]\noutput = \"out\"\n[state]\ndir = \"st\"\n[admin]\nlisten = \"0\"\ntoken_file = \"admin-token\"\n\
         [[batch]]\nname = \"a\"\ncodes = [\"BR\"]\nserver = \"{}\"\n[[batch]]\nname = \"b\"\ncodes = [\"CN\"]\n\
         server = \"{}\"\noutput = \"/nonexistent-flagsd-dir/b\"\n",
        server.url(),
        server.url()
    );
    write_file(&etc, "flagsd.toml", &text);
    let config = "../etc/flagsd.toml";
    let (status, stdout, stderr) = flagsd_in(&work, &["check-config", "-v", "--config", config], &[]);
    assert_eq!(status, 0, "{stderr}");
    let etc = etc.canonicalize().unwrap();
    let work = work.canonicalize().unwrap();
    let expected = [
        format!("{config}: OK (2 batches, 0 scheduled)"),
        format!("  batch[0].output: {}/out/a ({config}:2:10)", etc.display()),
        format!("  batch[1].output: /nonexistent-flagsd-dir/b ({config}:16:10)"),
        format!("  state.dir: {}/st ({config}:4:7)", etc.display()),
        format!("  admin.token_file: {}/admin-token ({config}:7:14)", etc.display()),
    ];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stdout}");

    let (status, _, stderr) = flagsd_in(&work, &["run", "--config", config, "a"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(files_in(&etc.join("out/a")), ["BR.gif"]);
    assert!(etc.join("st/flagsd.db").exists());
    assert!(!work.join("out").exists() && !work.join("st").exists());

    // Paths from the environment and the command line start from the working directory.
    let env = [("FLAGSD_STATE__DIR", "env-state")];
    let (status, stdout, stderr) = flagsd_in(&work, &["check-config", "-v", "-o", "flag-out", "-c", config], &env);
    assert_eq!(status, 0, "{stderr}");
    for line in [
        format!("  batch[0].output: {}/flag-out/a (option --output, from the working directory)", work.display()),
        format!(
            "  state.dir: {}/env-state (environment variable FLAGSD_STATE__DIR, from the working directory)",
            work.display()
        ),
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line:?} in\n{stdout}");
    }
}

#[test]
fn a_problem_with_a_value_from_the_command_line_names_the_option() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "flagsd.toml", "[[batch]]\nname = \"a\"\nserver = \"DEMO\"\n");
    let (status, _, stderr) =
        flagsd_in(dir.path(), &["check-config", "--config", "flagsd.toml", "-o", "/proc/flagsd-test"], &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.starts_with(
            "option --output: batch[0].output: '/proc/flagsd-test/a' cannot be created: no directory can be made in \
             '/proc': "
        ),
        "{stderr}"
    );
}
