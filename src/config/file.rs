//! The configuration file format: the raw configuration, as the file and
//! the environment give it, before its values are checked
//! ([`super::settings`]); the built-in defaults are the `Default`s below,
//! and the layers are read in [`super::layers`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults;
use super::place::Places;
use crate::http::client::Transport;
use crate::http::proxy::ProxySettings;
use crate::http::tls::TlsFiles;

/// The whole file, as written.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    /// Labels to base URLs, overriding or adding to the built-in labels.
    pub servers: BTreeMap<String, RawServer>,
    /// Settings every batch inherits.
    pub defaults: RawDefaults,
    /// Settings of `flagsd serve`.
    pub daemon: RawDaemon,
    /// Where run state is kept.
    pub state: RawState,
    /// The admin endpoint of `flagsd serve`.
    pub admin: RawAdmin,
    /// The fleet this process joins, if any.
    pub fleet: Option<RawFleet>,
    /// The batches.
    pub batch: Vec<RawBatch>,
    /// Where each value was set (the file's line and column, a variable,
    /// an option); a value not set anywhere is a built-in default.
    pub places: Places,
}

/// A `[servers]` entry: `LABEL = "URL"`, or `LABEL = { url = "URL", rate = "50/s" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawServer {
    /// Just the base URL.
    Url(String),
    /// The base URL, a politeness limit, and how the server is reached.
    Table {
        /// Base URL.
        url: String,
        /// Most requests per second/minute/hour (`"50/s"`), shared by every batch.
        rate: Option<String>,
        /// Certificate authorities (PEM) to trust besides the system's.
        ca_file: Option<PathBuf>,
        /// A client certificate (PEM) for servers that require one.
        client_cert: Option<PathBuf>,
        /// The client certificate's private key (PEM).
        client_key: Option<PathBuf>,
        /// The proxy for this server (`""` for none), over the environment.
        proxy: Option<String>,
        /// Hosts that bypass the proxy, over the environment's `no_proxy`.
        no_proxy: Option<String>,
        /// Speak HTTP/2 without negotiating it (h2c for `http://`).
        http2_prior_knowledge: bool,
        /// Follow redirects to more internal addresses than the server
        /// that sent them (`http::redirect`).
        allow_internal_redirects: bool,
        /// A file holding `user:password` for the server (a secret).
        credentials_file: Option<PathBuf>,
        /// A file holding `user:password` for the proxy (a secret).
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// With a unit.
    Text(String),
}

/// `[defaults]`.
#[derive(Debug, Clone)]
pub struct RawDefaults {
    /// Concurrent requests of a batch.
    pub max_req: i64,
    /// Base output directory: a batch writes to `{output}/{name}` unless it
    /// sets its own `output` (relative to this one, or absolute).
    pub output: PathBuf,
    /// Per-country lines (`run`) or per-country warnings (`serve`).
    pub verbose: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle-read timeout.
    pub read_timeout: Duration,
    /// Total per-request deadline.
    pub timeout: Duration,
    /// Further attempts for transient failures.
    pub retries: i64,
    /// Backoff before the first retry.
    pub retry_base: Duration,
    /// Longest backoff.
    pub retry_cap: Duration,
    /// Longest `Retry-After` honoured.
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
#[derive(Debug, Clone)]
pub struct RawDaemon {
    /// How long in-flight downloads may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self { shutdown_timeout: defaults::SHUTDOWN_TIMEOUT }
    }
}

/// `[state]`.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone, Default)]
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
    pub ack_wait: Option<Duration>,
    /// How long the streams remember a message id to drop a duplicate.
    pub duplicate_window: Option<Duration>,
}

/// `nats = "URL"` or `nats = ["URL", ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawUrls {
    /// One URL, or several separated by commas.
    One(String),
    /// A list.
    Many(Vec<String>),
}

/// `codes = [...]`, `codes = "all"` or `codes = "every"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCodes {
    /// Codes and single letters, as on the `fetch` command line.
    List(Vec<String>),
    /// `"all"` or `"every"`.
    Keyword(String),
}

/// How saved files are named (in the admin API's JSON too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// `{CC}.gif`, as flags2.
    #[default]
    Code,
    /// `{country}.gif`, from the server's `{cc}/metadata.json`, as flags3.
    Country,
}

/// One `[[batch]]`.
#[derive(Debug, Clone)]
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
    pub every: Option<Duration>,
    /// File naming.
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
