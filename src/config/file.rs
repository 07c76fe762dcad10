//! The configuration file format and its layers (the `config` crate).
//!
//! Layers, lowest first: built-in defaults (serde defaults below), the TOML
//! file, environment variables `FLAGSD_{TABLE}__{KEY}` (for example
//! `FLAGSD_DEFAULTS__MAX_REQ=50`), then command-line flags. Only environment
//! variables with a `__` are configuration: `FLAGSD_LOG` and `FLAGSD_CONFIG`
//! are read elsewhere. Keys are lower case, because the `config` crate
//! lower-cases environment keys; server labels are compared in upper case.
//!
//! Unknown keys are errors (`deny_unknown_fields`): a typo must not be
//! silently ignored in a file that a daemon runs from for months.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::defaults;
use super::error::{ConfigError, Problem};
use super::problems::{Part, every_problem, from_config_error};
use crate::http::client::Transport;
use crate::http::proxy::ProxySettings;
use crate::http::tls::TlsFiles;

/// The whole file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Labels to base URLs, overriding or adding to the built-in labels.
    #[serde(default)]
    pub servers: BTreeMap<String, RawServer>,
    /// Settings every batch inherits.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Settings of `flagsd serve`.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// Where run state is kept.
    #[serde(default)]
    pub state: RawState,
    /// The admin endpoint of `flagsd serve`.
    #[serde(default)]
    pub admin: RawAdmin,
    /// The fleet this process joins, if any.
    #[serde(default)]
    pub fleet: Option<RawFleet>,
    /// The batches.
    #[serde(default)]
    pub batch: Vec<RawBatch>,
}

/// A `[servers]` entry: `LABEL = "URL"`, or `LABEL = { url = "URL", rate = "50/s" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawServer {
    /// Just the base URL.
    Url(String),
    /// The base URL, a politeness limit, and how the server is reached.
    Table {
        /// Base URL.
        url: String,
        /// Most requests per second/minute/hour (`"50/s"`), shared by every batch.
        #[serde(default)]
        rate: Option<String>,
        /// Certificate authorities (PEM) to trust besides the system's.
        #[serde(default)]
        ca_file: Option<PathBuf>,
        /// A client certificate (PEM) for servers that require one.
        #[serde(default)]
        client_cert: Option<PathBuf>,
        /// The client certificate's private key (PEM).
        #[serde(default)]
        client_key: Option<PathBuf>,
        /// The proxy for this server (`""` for none), over the environment.
        #[serde(default)]
        proxy: Option<String>,
        /// Hosts that bypass the proxy, over the environment's `no_proxy`.
        #[serde(default)]
        no_proxy: Option<String>,
        /// Speak HTTP/2 without negotiating it (h2c for `http://`).
        #[serde(default)]
        http2_prior_knowledge: bool,
        /// Follow redirects to more internal addresses than the server
        /// that sent them (`http::redirect`).
        #[serde(default)]
        allow_internal_redirects: bool,
        /// A file holding `user:password` for the server (a secret).
        #[serde(default)]
        credentials_file: Option<PathBuf>,
        /// A file holding `user:password` for the proxy (a secret).
        #[serde(default)]
        proxy_credentials_file: Option<PathBuf>,
    },
}

impl RawServer {
    /// The base URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Url(url) | Self::Table { url, .. } => url,
        }
    }

    /// The rate limit, as written.
    pub fn rate(&self) -> Option<&str> {
        match self {
            Self::Url(_) => None,
            Self::Table { rate, .. } => rate.as_deref(),
        }
    }

    /// How the server is reached (TLS files, proxy, protocol), as written.
    pub fn transport(&self) -> Transport {
        match self {
            Self::Url(_) => Transport::default(),
            Self::Table {
                ca_file,
                client_cert,
                client_key,
                proxy,
                no_proxy,
                http2_prior_knowledge,
                allow_internal_redirects,
                credentials_file,
                proxy_credentials_file,
                ..
            } => Transport {
                tls: TlsFiles {
                    ca_file: ca_file.clone(),
                    client_cert: client_cert.clone(),
                    client_key: client_key.clone(),
                },
                proxy: ProxySettings {
                    proxy: proxy.clone(),
                    no_proxy: no_proxy.clone(),
                    credentials_file: proxy_credentials_file.clone(),
                },
                http2_prior_knowledge: *http2_prior_knowledge,
                allow_internal_redirects: *allow_internal_redirects,
                credentials_file: credentials_file.clone(),
            },
        }
    }
}

/// A size: a number of bytes, or text with a unit (`"512KiB"`, `"10MB"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// With a unit.
    Text(String),
}

/// `[defaults]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDefaults {
    /// Concurrent requests of a batch.
    pub max_req: i64,
    /// Base output directory: a batch writes to `{output}/{name}` unless it
    /// sets its own `output` (relative to this one, or absolute).
    pub output: PathBuf,
    /// Per-country lines (`run`) or per-country warnings (`serve`).
    pub verbose: bool,
    /// Connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Idle-read timeout.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Total per-request deadline.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Further attempts for transient failures.
    pub retries: i64,
    /// Backoff before the first retry.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest backoff.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Longest `Retry-After` honoured.
    #[serde(with = "humantime_serde")]
    pub retry_after_cap: Duration,
    /// Largest body saved.
    pub max_size: RawSize,
    /// Worker threads of the process, shared by every batch (default: one
    /// per core).
    pub threads: Option<i64>,
}

impl Default for RawDefaults {
    fn default() -> Self {
        let timeouts = defaults::TIMEOUTS;
        let retry = defaults::retry_policy(defaults::BATCH_RETRIES);
        Self {
            max_req: i64::try_from(defaults::MAX_REQ).unwrap_or(i64::MAX),
            output: PathBuf::from(defaults::OUTPUT),
            verbose: false,
            connect_timeout: timeouts.connect,
            read_timeout: timeouts.read,
            timeout: timeouts.total,
            retries: i64::from(retry.retries),
            retry_base: retry.base,
            retry_cap: retry.cap,
            retry_after_cap: retry.retry_after_cap,
            max_size: RawSize::Bytes(defaults::MAX_SIZE),
            threads: None,
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDaemon {
    /// How long in-flight downloads may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self { shutdown_timeout: defaults::SHUTDOWN_TIMEOUT }
    }
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    /// The state directory (the database `flagsd.db` lives there).
    pub dir: PathBuf,
}

impl Default for RawState {
    fn default() -> Self {
        Self { dir: PathBuf::from(defaults::STATE_DIR) }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// `PORT` (loopback) or `ADDRESS:PORT`; absent: no admin endpoint.
    pub listen: Option<String>,
    /// A file holding the bearer token the endpoint requires.
    pub token_file: Option<PathBuf>,
    /// Host names (besides `localhost` and IP addresses) the endpoint
    /// answers for, as browsers send them in `Host`.
    pub hosts: Vec<String>,
}

/// `[fleet]`: the NATS servers and the fleet's names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFleet {
    /// One URL, a list, or a comma-separated list (a cluster's seeds).
    pub nats: Option<RawUrls>,
    /// Namespace of the fleet's streams, buckets and subjects.
    pub name: Option<String>,
    /// This node's name, unique in the fleet.
    pub node: Option<String>,
    /// JetStream replicas of the fleet's streams and buckets.
    pub replicas: Option<i64>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// A file holding a NATS authentication token.
    pub token_file: Option<PathBuf>,
    /// A PEM file of CA certificates that sign the NATS servers' certificates.
    pub tls_ca_file: Option<PathBuf>,
    /// How long a node may hold a code without a sign of life before the
    /// fleet hands it to another node.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Option<Duration>,
    /// How long the streams remember a message id to drop a duplicate.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Option<Duration>,
}

/// `nats = "URL"` or `nats = ["URL", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawUrls {
    /// One URL, or several separated by commas.
    One(String),
    /// A list.
    Many(Vec<String>),
}

/// `codes = [...]`, `codes = "all"` or `codes = "every"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawCodes {
    /// Codes and single letters, as on the `fetch` command line.
    List(Vec<String>),
    /// `"all"` or `"every"`.
    Keyword(String),
}

/// How saved files are named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// `{CC}.gif`, as flags2.
    #[default]
    Code,
    /// `{country}.gif`, from the server's `{cc}/metadata.json`, as flags3.
    Country,
}

/// One `[[batch]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Unique name: used in reports, logs and the default output directory.
    pub name: String,
    /// Which codes (default: the 20 most populous countries).
    pub codes: Option<RawCodes>,
    /// Keep only the first N codes.
    pub limit: Option<i64>,
    /// Label or URL (default `LOCAL`).
    pub server: Option<String>,
    /// Output directory (default `{defaults.output}/{name}`).
    pub output: Option<PathBuf>,
    /// Concurrent requests (default `defaults.max_req`).
    pub max_req: Option<i64>,
    /// Schedule interval for `serve`; absent: run only on demand.
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    /// File naming.
    #[serde(default)]
    pub naming: Naming,
    /// Per-country output (default `defaults.verbose`).
    pub verbose: Option<bool>,
}

/// The name a problem in `path` is reported under: the file name as given.
pub fn origin_name(path: Option<&Path>) -> String {
    path.map_or_else(|| "configuration".to_owned(), |p| p.display().to_string())
}

/// Values set on the command line, the top layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--max-req`: `defaults.max_req`.
    pub max_req: Option<i64>,
    /// `--output`: `defaults.output`.
    pub output: Option<PathBuf>,
    /// `--verbose`: `defaults.verbose = true`.
    pub verbose: bool,
}

/// Reads and layers the configuration: `path`'s file (if any), the
/// `FLAGSD_…__…` variables of `env`, then `overrides`.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<RawConfig, ConfigError> {
    let origin = origin_name(path);
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::single(&origin, None, format!("cannot read the file: {e}")))?;
        // Parse once here for a precise syntax message (line and column).
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(syntax_error(&origin, &text, &e));
        }
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    let env_vars: config::Map<String, String> =
        env.into_iter().filter(|(k, _)| k.starts_with("FLAGSD_") && k.contains("__")).collect();
    builder = builder.add_source(
        config::Environment::with_prefix("FLAGSD").prefix_separator("_").separator("__").source(Some(env_vars)),
    );
    let overridden = (|| -> Result<_, config::ConfigError> {
        let mut b = builder;
        if let Some(n) = overrides.max_req {
            b = b.set_override("defaults.max_req", n)?;
        }
        if let Some(dir) = &overrides.output {
            b = b.set_override("defaults.output", dir.display().to_string())?;
        }
        if overrides.verbose {
            b = b.set_override("defaults.verbose", true)?;
        }
        b.build()
    })();
    let config = overridden.map_err(|e| from_config_error(&origin, e))?;
    config.clone().try_deserialize::<RawConfig>().map_err(|first| every_problem(&config, &origin, first, &SECTIONS))
}

/// How each part of a configuration is checked on its own, to report every
/// problem when the whole does not deserialize ([`every_problem`]).
const SECTIONS: [(&str, Part); 7] = [
    ("servers", Part::Table(|v| v.try_deserialize::<BTreeMap<String, RawServer>>().map(drop))),
    ("defaults", Part::Table(|v| v.try_deserialize::<RawDefaults>().map(drop))),
    ("daemon", Part::Table(|v| v.try_deserialize::<RawDaemon>().map(drop))),
    ("state", Part::Table(|v| v.try_deserialize::<RawState>().map(drop))),
    ("admin", Part::Table(|v| v.try_deserialize::<RawAdmin>().map(drop))),
    ("fleet", Part::Table(|v| v.try_deserialize::<RawFleet>().map(drop))),
    ("batch", Part::List(|v| v.try_deserialize::<RawBatch>().map(drop))),
];

fn syntax_error(origin: &str, text: &str, error: &toml::de::Error) -> ConfigError {
    let line = error.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = error.message().trim().to_owned();
    ConfigError {
        problems: vec![Problem {
            origin: origin.to_owned(),
            line,
            key: None,
            message: format!("TOML syntax error: {message}"),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)], overrides: &Overrides) -> Result<RawConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flagsd.toml");
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        load(Some(&path), env, overrides).map_err(|mut e| {
            for p in &mut e.problems {
                p.origin = p.origin.replace(&path.display().to_string(), "flagsd.toml");
            }
            e
        })
    }

    #[test]
    fn every_type_error_is_reported_not_only_the_first() {
        let text = "[defaults]\nmax_req = \"many\"\ntimeout = 5\n[[batch]]\nname = \"a\"\nmax_req = \"x\"\n\
                    [[batch]]\nname = \"b\"\nbogus = 1\n[daemon]\nshutdown_timeout = []\n[extra]\nx = 1\n";
        let env = [("FLAGSD_STATE__DIR", "ok"), ("FLAGSD_ADMIN__LISTEN", "9090")];
        let err = load_str(text, &env, &Overrides::default()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_deref().unwrap_or("-")).collect();
        assert_eq!(
            keys,
            [
                "batch[0].max_req",
                "batch[1]",
                "daemon.shutdown_timeout",
                "defaults.max_req",
                "defaults.timeout",
                "extra"
            ],
            "{err}"
        );
        assert!(err.problems[1].message.starts_with("unknown field `bogus`"), "{err}");
        assert!(err.problems.iter().all(|p| p.origin == "flagsd.toml"), "{err}");
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let raw = load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(raw.defaults.max_req, 30);
        assert_eq!(raw.daemon.shutdown_timeout, Duration::from_secs(10));
        assert!(raw.batch.is_empty());
    }

    #[test]
    fn file_then_env_then_flags() {
        let file = "[defaults]\nmax_req = 5\noutput = \"from-file\"\n";
        let raw = load_str(file, &[], &Overrides::default()).unwrap();
        assert_eq!((raw.defaults.max_req, raw.defaults.output.clone()), (5, PathBuf::from("from-file")));

        let env = [("FLAGSD_DEFAULTS__MAX_REQ", "7"), ("FLAGSD_LOG", "debug"), ("FLAGSD_CONFIG", "x")];
        let raw = load_str(file, &env, &Overrides::default()).unwrap();
        assert_eq!(raw.defaults.max_req, 7);

        let bad_env = [("FLAGSD_DEFAULTS__MAX_REQ", "many")];
        let err = load_str(file, &bad_env, &Overrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment FLAGSD_DEFAULTS__MAX_REQ: defaults.max_req: expected an integer, found string \"many\""
        );

        let flags = Overrides { max_req: Some(9), output: Some("from-flag".into()), verbose: true };
        let raw = load_str(file, &env, &flags).unwrap();
        assert_eq!(raw.defaults.max_req, 9);
        assert_eq!(raw.defaults.output, PathBuf::from("from-flag"));
        assert!(raw.defaults.verbose);
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
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = load_str("[defaults]\nmax_req = \n", &[], &Overrides::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("flagsd.toml:2: TOML syntax error: "), "{text}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_str("[defaults]\nmax_requests = 3\n", &[], &Overrides::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("flagsd.toml: defaults: unknown field `max_requests`"), "{text}");
    }

    #[test]
    fn wrong_types_are_named() {
        let err = load_str("[[batch]]\nname = \"a\"\nmax_req = \"lots\"\n", &[], &Overrides::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("flagsd.toml: batch[0].max_req: "), "{text}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load(Some(Path::new("/nonexistent/flagsd.toml")), Vec::new(), &Overrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/flagsd.toml: cannot read the file: "), "{err}");
    }
}
