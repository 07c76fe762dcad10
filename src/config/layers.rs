//! The layers of a configuration read into one raw configuration.
//!
//! Layers, lowest first: built-in defaults, the TOML file, environment
//! variables `FLAGSD_{TABLE}__{KEY}` (for example
//! `FLAGSD_DEFAULTS__MAX_REQ=50`), then command-line flags. Only environment
//! variables with a `__` are configuration: `FLAGSD_LOG` and `FLAGSD_CONFIG`
//! are read elsewhere. Environment keys are compared without regard to
//! case; server labels are compared in upper case.
//!
//! The file's values are taken with their TOML types ([`super::reader`]):
//! a string where a number or a boolean belongs is an error, as is every
//! unknown key, with the place that set it (`flagsd.toml:3:11`, or the
//! environment variable). A typo must not be silently ignored in a file
//! that a daemon runs from for months. A relative path written in the file
//! starts from the file's directory.

use std::path::Path;

use super::error::{ConfigError, Problem};
use super::file::{Overrides, RawConfig, origin_name};
use super::place::{Place, in_file_order};
use super::reader::{Reader, directory_of};
use super::tree;

/// Reads and layers the configuration: `path`'s file (if any), the
/// `FLAGSD_…__…` variables of `env`, then `overrides`. Every problem found
/// is returned, each where its value was set.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<RawConfig, ConfigError> {
    let origin = origin_name(path);
    let mut root = Vec::new();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::single(&origin, None, format!("cannot read the file: {e}")))?;
        let document = toml::de::DeTable::parse(&text).map_err(|e| syntax_error(&origin, &text, &e))?;
        root = tree::from_toml(&text, document.get_ref());
    }
    let mut problems = tree::apply_environment(&mut root, env, &origin);
    let dir = path.map(directory_of).unwrap_or_default();
    let mut raw = match Reader::new(&origin, dir).read(&root) {
        Ok(raw) => raw,
        Err(found) => {
            problems.extend(found);
            RawConfig::default()
        }
    };
    if !problems.is_empty() {
        in_file_order(&mut problems);
        return Err(ConfigError { problems });
    }
    if let Some(n) = overrides.max_req {
        raw.defaults.max_req = n;
        raw.places.insert("defaults.max_req", Place::Flag("--max-req"));
    }
    if let Some(dir) = &overrides.output {
        raw.defaults.output.clone_from(dir);
        raw.places.insert("defaults.output", Place::Flag("--output"));
    }
    if overrides.verbose {
        raw.defaults.verbose = true;
        raw.places.insert("defaults.verbose", Place::Flag("--verbose"));
    }
    Ok(raw)
}

/// The problem of a file that is not TOML, at its line and column.
fn syntax_error(origin: &str, text: &str, error: &toml::de::Error) -> ConfigError {
    let (line, column) = match error.span().map(|span| Place::in_text(text, span.start)) {
        Some(Place::File { line, column }) => (Some(line), Some(column)),
        _ => (None, None),
    };
    let message = error.message().trim().to_owned();
    ConfigError {
        problems: vec![Problem {
            origin: origin.to_owned(),
            line,
            column,
            key: None,
            message: format!("TOML syntax error: {message}"),
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::file::{Naming, RawCodes, RawSize, RawUrls};

    /// Loads `text` as `DIR/flagsd.toml`; problems name the file
    /// `flagsd.toml`, and paths start with `DIR` where the file's directory
    /// is.
    fn load_str(text: &str, env: &[(&str, &str)], overrides: &Overrides) -> Result<RawConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flagsd.toml");
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let shown = |p: &Path| p.display().to_string().replace(&dir.path().display().to_string(), "DIR");
        load(Some(&path), env, overrides)
            .map(|mut raw| {
                raw.defaults.output = PathBuf::from(shown(&raw.defaults.output));
                raw.state.dir = PathBuf::from(shown(&raw.state.dir));
                raw
            })
            .map_err(|mut e| {
                for p in &mut e.problems {
                    p.origin = p.origin.replace(&path.display().to_string(), "flagsd.toml");
                }
                e
            })
    }

    fn problems(text: &str, env: &[(&str, &str)]) -> Vec<String> {
        let error = load_str(text, env, &Overrides::default()).unwrap_err();
        error.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn values_of_the_wrong_type_are_refused_with_their_place_and_types() {
        for (text, expected) in [
            (
                "[defaults]\nverbose = \"yes\"\n",
                "flagsd.toml:2:11: defaults.verbose: expected a boolean (true or false), found a string (\"yes\")",
            ),
            (
                "[defaults]\nverbose = 1\n",
                "flagsd.toml:2:11: defaults.verbose: expected a boolean (true or false), found an integer (1)",
            ),
            (
                "[defaults]\nmax_req = 2.5\n",
                "flagsd.toml:2:11: defaults.max_req: expected an integer, found a float (2.5)",
            ),
            (
                "[defaults]\nmax_req = \"3\"\n",
                "flagsd.toml:2:11: defaults.max_req: expected an integer, found a string (\"3\")",
            ),
            (
                "[defaults]\ntimeout = 5\n",
                "flagsd.toml:2:11: defaults.timeout: expected a duration: a string with a unit, such as \"5s\", found an integer (5)",
            ),
            (
                "[defaults]\nthreads = 99999999999999999999\n",
                "flagsd.toml:2:11: defaults.threads: 99999999999999999999 is out of range",
            ),
            (
                "[defaults]\nmax_size = 1.5\n",
                "flagsd.toml:2:12: defaults.max_size: expected a number of bytes or a size with a unit",
            ),
            ("[defaults]\noutput = \"\"\n", "flagsd.toml:2:10: defaults.output: is empty"),
            (
                "[[batch]]\nname = \"a\"\nlimit = \"3\"\n",
                "flagsd.toml:3:9: batch[0].limit: expected an integer, found a string (\"3\")",
            ),
            (
                "[[batch]]\nname = \"a\"\ncodes = 5\n",
                "flagsd.toml:3:9: batch[0].codes: expected a list of codes (such as [\"BR\", \"c\"]), \"all\" or \"every\", found an integer (5)",
            ),
            (
                "[[batch]]\nname = \"a\"\ncodes = [\"BR\", 7]\n",
                "flagsd.toml:3:16: batch[0].codes[1]: expected a string, found an integer (7)",
            ),
            (
                "[[batch]]\nname = \"a\"\nnaming = \"flag\"\n",
                "flagsd.toml:3:10: batch[0].naming: unknown value \"flag\"; expected one of \"code\", \"country\"",
            ),
            (
                "[[batch]]\nname = \"a\"\nnaming = \"Country\"\n",
                "flagsd.toml:3:10: batch[0].naming: unknown value \"Country\"; did you mean \"country\"?",
            ),
            (
                "[[batch]]\nname = \"a\"\nevery = 2024-01-01\n",
                "flagsd.toml:3:9: batch[0].every: expected a duration: a string with a unit, such as \"5s\", found a date-time (2024-01-01)",
            ),
            ("[[batch]]\ncodes = \"all\"\n", "flagsd.toml:1:1: batch[0]: missing key name"),
            ("[batch]\nname = \"a\"\n", "flagsd.toml:1:1: batch: expected a list of tables ([[batch]]), found a table"),
            ("defaults = 3\n", "flagsd.toml:1:12: defaults: expected a table ([defaults]), found an integer (3)"),
            ("[servers]\nMIRROR = 5\n", "flagsd.toml:2:10: servers.MIRROR: expected a URL string, or a table"),
            ("[servers]\nMIRROR = { rate = \"5/s\" }\n", "flagsd.toml:2:10: servers.MIRROR: missing key url"),
            (
                "[fleet]\nnats = [\"nats://a:1\", 2]\n",
                "flagsd.toml:2:23: fleet.nats[1]: expected a string, found an integer (2)",
            ),
            ("[admin]\nlisten = true\n", "flagsd.toml:2:10: admin.listen: expected a port (9090) or an address"),
        ] {
            let found = problems(text, &[]);
            assert_eq!(found.len(), 1, "{text}: {found:#?}");
            assert!(found[0].starts_with(expected), "{text}: {found:#?}");
            assert!(!found[0].contains("Raw") && !found[0].contains("Naming") && !found[0].contains("untagged"));
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_key_meant() {
        for (text, expected) in [
            ("[defaults]\nmaxreq = 3\n", "flagsd.toml:2:1: defaults: unknown key maxreq; did you mean max_req?"),
            ("[defaulds]\n", "flagsd.toml:1:2: unknown key defaulds; did you mean defaults?"),
            (
                "[[batch]]\nname = \"a\"\nNAME = \"b\"\n",
                "flagsd.toml:3:1: batch[0]: unknown key NAME; did you mean name?",
            ),
            ("[state]\nzzz = 1\n", "flagsd.toml:2:1: state: unknown key zzz; known keys: dir"),
            (
                "[servers]\nM = { url = \"http://m/f\", ca_flie = \"x\" }\n",
                "flagsd.toml:2:27: servers.M: unknown key ca_flie; did you mean ca_file?",
            ),
        ] {
            assert_eq!(problems(text, &[]), [expected], "{text}");
        }
    }

    #[test]
    fn every_problem_is_reported_in_the_order_of_the_file() {
        let text = "[defaults]\nmax_req = \"many\"\ntimeout = 5\n[[batch]]\nname = \"a\"\nmax_req = \"x\"\n\
                    [[batch]]\nname = \"b\"\nbogus = 1\n[daemon]\nshutdown_timeout = []\n[extra]\nx = 1\n";
        let env = [("FLAGSD_STATE__DIR", "ok"), ("FLAGSD_ADMIN__LISTEN", "9090"), ("FLAGSD_DEFAULTS__RETRIES", "x")];
        let lines: Vec<String> =
            problems(text, &env).iter().map(|p| p.split(": ").take(2).collect::<Vec<_>>().join(": ")).collect();
        assert_eq!(
            lines,
            [
                "flagsd.toml:2:11: defaults.max_req",
                "flagsd.toml:3:11: defaults.timeout",
                "flagsd.toml:6:11: batch[0].max_req",
                "flagsd.toml:9:1: batch[1]",
                "flagsd.toml:11:20: daemon.shutdown_timeout",
                "flagsd.toml:12:2: unknown key extra; known keys",
                "environment variable FLAGSD_DEFAULTS__RETRIES: expected an integer, found \"x\"",
            ]
        );
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let raw = load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(raw.defaults.max_req, 30);
        assert_eq!(raw.daemon.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(raw.state.dir, PathBuf::from("state"));
        assert!(raw.batch.is_empty());
        assert!(!raw.places.any_in_file());
    }

    #[test]
    fn file_then_env_then_flags() {
        let file = "[defaults]\nmax_req = 5\noutput = \"from-file\"\n";
        let raw = load_str(file, &[], &Overrides::default()).unwrap();
        assert_eq!((raw.defaults.max_req, raw.defaults.output.clone()), (5, PathBuf::from("DIR/from-file")));
        assert_eq!(raw.places.exactly("defaults.max_req"), Some(&Place::File { line: 2, column: 11 }));

        let env = [("FLAGSD_DEFAULTS__MAX_REQ", "7"), ("FLAGSD_LOG", "debug"), ("FLAGSD_CONFIG", "x")];
        let raw = load_str(file, &env, &Overrides::default()).unwrap();
        assert_eq!(raw.defaults.max_req, 7);
        assert!(raw.places.exactly("defaults.max_req").is_some_and(Place::is_environment));

        let bad_env = [("FLAGSD_DEFAULTS__MAX_REQ", "many")];
        let err = load_str(file, &bad_env, &Overrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable FLAGSD_DEFAULTS__MAX_REQ: expected an integer, found \"many\""
        );

        let flags = Overrides { max_req: Some(9), output: Some("from-flag".into()), verbose: true };
        let raw = load_str(file, &env, &flags).unwrap();
        assert_eq!(raw.defaults.max_req, 9);
        assert_eq!(raw.defaults.output, PathBuf::from("from-flag"));
        assert!(raw.defaults.verbose);
        assert_eq!(raw.places.exactly("defaults.output"), Some(&Place::Flag("--output")));
    }

    #[test]
    fn variables_are_text_parsed_as_the_key_s_type() {
        let env = [
            ("FLAGSD_DEFAULTS__VERBOSE", "Yes"),
            ("FLAGSD_DEFAULTS__THREADS", " 4 "),
            ("FLAGSD_DEFAULTS__TIMEOUT", "2m"),
            ("FLAGSD_DEFAULTS__MAX_SIZE", "100"),
            ("FLAGSD_DEFAULTS__OUTPUT", "relative"),
            ("FLAGSD_SERVERS__MIRROR__HTTP2_PRIOR_KNOWLEDGE", "on"),
            ("FLAGSD_FLEET__NATS", "nats://a:1,nats://b:2"),
        ];
        let raw = load_str("[servers]\nMIRROR = \"http://m/flags\"\n", &env, &Overrides::default()).unwrap();
        assert!(raw.defaults.verbose);
        assert_eq!(raw.defaults.threads, Some(4));
        assert_eq!(raw.defaults.timeout, Duration::from_secs(120));
        assert_eq!(raw.defaults.max_size, RawSize::Text("100".into()));
        assert_eq!(raw.defaults.output, PathBuf::from("relative"));
        assert!(raw.servers["MIRROR"].transport().http2_prior_knowledge);
        assert_eq!(raw.servers["MIRROR"].url(), "http://m/flags");
        assert_eq!(raw.fleet.and_then(|f| f.nats), Some(RawUrls::One("nats://a:1,nats://b:2".into())));
        for (name, value, expected) in [
            (
                "FLAGSD_DEFAULTS__VERBOSE",
                "maybe",
                "expected a boolean (true, false, yes, no, on, off, 1 or 0), found \"maybe\"",
            ),
            ("FLAGSD_DEFAULTS__MAX_REQ", "2.5", "expected an integer, found \"2.5\""),
            ("FLAGSD_DEFAULTS__MAXREQ", "5", "unknown key maxreq; did you mean max_req?"),
            ("FLAGSD_DEFAULTZ__MAX_REQ", "5", "unknown key defaultz; did you mean defaults?"),
        ] {
            assert_eq!(problems("", &[(name, value)]), [format!("environment variable {name}: {expected}")]);
        }
    }

    #[test]
    fn relative_paths_in_the_file_start_from_its_directory() {
        let text = "[defaults]\noutput = \"out\"\n[state]\ndir = \"/abs/state\"\n\
                    [admin]\nlisten = 9090\ntoken_file = \"../token\"\n\
                    [servers]\nM = { url = \"http://m/f\", ca_file = \"ca.pem\" }\n\
                    [fleet]\nnats = \"nats://n:1\"\ncreds_file = \"nats.creds\"\n\
                    [[batch]]\nname = \"a\"\noutput = \"sub\"\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flagsd.toml");
        std::fs::write(&path, text).unwrap();
        let raw = load(Some(&path), Vec::new(), &Overrides::default()).unwrap();
        let here = dir.path();
        assert_eq!(raw.defaults.output, here.join("out"));
        assert_eq!(raw.state.dir, PathBuf::from("/abs/state"));
        assert_eq!(raw.admin.token_file, Some(here.join("../token")));
        assert_eq!(raw.admin.listen.as_deref(), Some("9090"));
        assert_eq!(raw.servers["M"].transport().tls.ca_file, Some(here.join("ca.pem")));
        assert_eq!(raw.fleet.and_then(|f| f.creds_file), Some(here.join("nats.creds")));
        // A batch's output is relative to defaults.output.
        assert_eq!(raw.batch[0].output, Some(PathBuf::from("sub")));

        let env = [("FLAGSD_ADMIN__TOKEN_FILE", "token")];
        let raw = load(Some(&path), env.map(|(k, v)| (k.to_owned(), v.to_owned())), &Overrides::default()).unwrap();
        assert_eq!(raw.admin.token_file, Some(PathBuf::from("token")));
    }

    #[test]
    fn batches_parse_with_codes_lists_and_keywords() {
        let file = r#"
            [[batch]]
            name = "a"
            codes = ["BR", "c"]
            every = "6h"
            naming = "country"

            [[batch]]
            name = "b"
            codes = "every"
        "#;
        let raw = load_str(file, &[], &Overrides::default()).unwrap();
        assert_eq!(raw.batch[0].codes, Some(RawCodes::List(vec!["BR".into(), "c".into()])));
        assert_eq!(raw.batch[0].every, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(raw.batch[0].naming, Naming::Country);
        assert_eq!(raw.batch[1].codes, Some(RawCodes::Keyword("every".into())));
        assert_eq!(raw.places.exactly("batch[0].codes[1]"), Some(&Place::File { line: 4, column: 28 }));
    }

    #[test]
    fn syntax_errors_name_the_line_and_column() {
        let err = load_str("[defaults]\nmax_req = \n", &[], &Overrides::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("flagsd.toml:2:"), "{text}");
        assert!(text.contains(": TOML syntax error: "), "{text}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load(Some(Path::new("/nonexistent/flagsd.toml")), Vec::new(), &Overrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/flagsd.toml: cannot read the file: "), "{err}");
    }
}
