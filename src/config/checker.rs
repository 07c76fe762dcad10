//! The checks that build [`Settings`](super::settings::Settings) out of a
//! raw configuration: a [`Checker`] that collects every problem with its
//! key, and the checks of `[servers]`, of a server name, of a batch's codes
//! and of a directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, Problem};
use super::file::{RawBatch, RawCodes, RawConfig, RawServer};
use super::place::{Places, in_file_order};
use super::server::{Server, Servers, check_base_url};
use super::suggest::closest;
use super::validate;
use crate::http::client::Transport;
use crate::http::proxy::parse_proxy;
use crate::http::rate::Rate;
use crate::http::tls::TlsFile;
use crate::http::url::{read_credentials_file, redact_credentials, split_credentials};
use crate::model::codes::{CountryCode, Selection, expand_argument};

/// Collects problems while checking, each said where its value was set.
pub(super) struct Checker<'p> {
    origin: String,
    places: &'p Places,
    problems: Vec<Problem>,
}

impl<'p> Checker<'p> {
    /// A checker of the configuration from `origin` (a file name, for
    /// messages) whose values were set at `places`, with no problem yet.
    pub(super) fn new(origin: &str, places: &'p Places) -> Self {
        Self { origin: origin.to_owned(), places, problems: Vec::new() }
    }

    /// `value` when no problem was found, else every problem, in the
    /// file's order.
    pub(super) fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        in_file_order(&mut self.problems);
        if self.problems.is_empty() { Ok(value) } else { Err(ConfigError { problems: self.problems }) }
    }

    pub(super) fn problem(&mut self, key: String, message: impl Into<String>) {
        self.problems.push(self.places.problem(&self.origin, &key, message));
    }

    pub(super) fn at_least_one(&mut self, key: String, value: i64) -> usize {
        validate::at_least_one(value).unwrap_or_else(|message| {
            self.problem(key, message);
            1
        })
    }

    pub(super) fn positive_duration(&mut self, key: &str, value: Duration) {
        if let Err(message) = validate::longer_than_zero(value) {
            self.problem(key.to_owned(), message);
        }
    }

    pub(super) fn bounded_duration(&mut self, key: &str, value: Duration) {
        if let Err(message) = validate::at_most_max(value) {
            self.problem(key.to_owned(), message);
        }
    }
}

/// `Ok`, or the configuration error of `found` problems (key, message),
/// each said where its value was set (`places`).
pub(super) fn problems(
    origin: &str,
    places: &Places,
    found: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut problems: Vec<Problem> = found.map(|(key, message)| places.problem(origin, &key, message)).collect();
    in_file_order(&mut problems);
    if problems.is_empty() { Ok(()) } else { Err(ConfigError { problems }) }
}

/// The built-in labels, overridden and extended by `raw`'s `[servers]`
/// (what `fetch` uses of a configuration).
pub(super) fn configured_servers(raw: &RawConfig, origin: &str) -> Result<Servers, ConfigError> {
    let mut checker = Checker::new(origin, &raw.places);
    let servers = check_servers(&mut checker, &raw.servers);
    checker.finish(servers)
}

pub(super) fn check_servers(checker: &mut Checker, raw: &BTreeMap<String, RawServer>) -> Servers {
    let mut servers = Servers::default();
    for (label, entry) in raw {
        let key = format!("servers.{label}");
        let upper = label.to_ascii_uppercase();
        if upper == "DEMO" || upper == "CUSTOM" {
            checker.problem(key, format!("'{label}' is reserved"));
            continue;
        }
        let url = entry.url();
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            checker.problem(key.clone(), format!("'{}' is not an http:// or https:// URL", redact_credentials(url)));
        } else if let Err(why) = check_base_url(url) {
            checker.problem(key.clone(), why);
        }
        let rate = match entry.rate().map(str::parse::<Rate>) {
            Some(Err(e)) => {
                checker.problem(format!("{key}.rate"), e);
                None
            }
            Some(Ok(rate)) => Some(rate),
            None => None,
        };
        let transport = entry.transport();
        for (file, problem) in transport.tls.check_public() {
            checker.problem(format!("{key}.{}", tls_key(file)), problem.to_string());
        }
        if let Some(Err(why)) = transport.proxy.proxy.as_deref().map(parse_proxy) {
            checker.problem(format!("{key}.proxy"), why);
        }
        let twice = "the URL carries credentials too: give them one way";
        if transport.credentials_file.is_some() && split_credentials(url).1.is_some() {
            checker.problem(format!("{key}.credentials_file"), twice);
        }
        let proxy_credentials = transport.proxy.proxy.as_deref().is_some_and(|p| split_credentials(p).1.is_some());
        if transport.proxy.credentials_file.is_some() && proxy_credentials {
            checker.problem(format!("{key}.proxy_credentials_file"), twice);
        }
        servers.insert(label, url, rate, transport);
    }
    servers
}

/// Problems with the secrets of a server reached as `transport` (its entry
/// in `[servers]` is `key`): its client key, read and paired with its
/// certificate, and its credentials files, read. What `run`, `serve` and
/// `fetch` check before their first request; `check-config` does not read
/// secrets.
pub(super) fn transport_secret_problems(key: &str, transport: &Transport) -> Vec<(String, String)> {
    let mut problems: Vec<(String, String)> = transport
        .tls
        .check()
        .into_iter()
        .map(|(file, p)| (format!("{key}.{}", tls_key(file)), p.to_string()))
        .collect();
    let files = [
        ("credentials_file", &transport.credentials_file),
        ("proxy_credentials_file", &transport.proxy.credentials_file),
    ];
    for (name, path) in files {
        if let Some(Err(problem)) = path.as_deref().map(read_credentials_file) {
            problems.push((format!("{key}.{name}"), problem.to_string()));
        }
    }
    problems
}

/// Warnings about secret files (`files`: each with its key) that others
/// than their owner can read; nothing when a file's permissions cannot be
/// read (it may be the service's alone).
pub(super) fn exposed_secrets<'a>(files: impl IntoIterator<Item = (String, &'a Path)>) -> Vec<(String, String)> {
    files.into_iter().filter_map(|(key, path)| validate::exposed_secret(path).map(|warning| (key, warning))).collect()
}

/// The key of a TLS file in a `[servers]` entry.
pub(super) fn tls_key(file: TlsFile) -> &'static str {
    match file {
        TlsFile::Ca => "ca_file",
        TlsFile::Cert => "client_cert",
        TlsFile::Key => "client_key",
    }
}

pub(super) fn check_server(checker: &mut Checker, key: &str, value: &str, servers: &Servers) -> Option<Server> {
    match servers.resolve(value) {
        Ok(server) => Some(server),
        Err(_) => {
            let labels: Vec<&str> = servers.labels().chain(["DEMO"]).collect();
            checker.problem(
                key.to_owned(),
                format!(
                    "unknown server label '{}' (known: {}; or an http(s):// URL)",
                    redact_credentials(value),
                    labels.join(", ")
                ),
            );
            None
        }
    }
}

pub(super) fn check_codes(checker: &mut Checker, key: &str, batch: &RawBatch) -> Vec<CountryCode> {
    let selection = match &batch.codes {
        None => Selection::Explicit(Vec::new()),
        Some(RawCodes::Keyword(k)) if k.eq_ignore_ascii_case("all") => Selection::All,
        Some(RawCodes::Keyword(k)) if k.eq_ignore_ascii_case("every") => Selection::Every,
        Some(RawCodes::Keyword(k)) => {
            let message = match closest(k, ["all", "every"]) {
                Some(meant) => format!("unknown value {k:?}; did you mean {meant:?}?"),
                None => format!("unknown value {k:?}; expected \"all\", \"every\" or a list of codes"),
            };
            checker.problem(key.to_owned(), message);
            Selection::Explicit(Vec::new())
        }
        Some(RawCodes::List(list)) => {
            let mut codes = Vec::new();
            for (j, arg) in list.iter().enumerate() {
                match expand_argument(arg) {
                    Ok(c) => codes.extend(c),
                    Err(e) => checker.problem(format!("{key}[{j}]"), e.to_string()),
                }
            }
            if list.is_empty() {
                checker.problem(key.to_owned(), "is empty (leave it out for the 20 most populous countries)");
            }
            Selection::Explicit(codes)
        }
    };
    let limit = batch.limit.map(|n| checker.at_least_one(key.replace(".codes", ".limit"), n));
    selection.resolve(limit)
}

/// `Ok` if `dir` is a writable directory, or could be created below its
/// nearest existing ancestor (a probe directory is made there, and
/// removed). A refusal names `dir` and what stands in the way.
pub(super) fn writable_or_creatable(dir: &Path) -> Result<(), String> {
    let mut probe = dir;
    loop {
        if probe.is_dir() {
            return if probe == dir {
                tempfile::tempfile_in(probe).map(drop).map_err(|e| format!("'{}' is not writable: {e}", dir.display()))
            } else {
                can_make_directory_in(probe).map_err(|e| {
                    format!(
                        "'{}' cannot be created: no directory can be made in '{}': {e}",
                        dir.display(),
                        probe.display()
                    )
                })
            };
        }
        if probe.exists() {
            return Err(if probe == dir {
                format!("'{}' is not a directory", dir.display())
            } else {
                format!("'{}' cannot be created: '{}' is not a directory", dir.display(), probe.display())
            });
        }
        match probe.parent() {
            // A relative path ends in the working directory: probe it too.
            Some(parent) if parent.as_os_str().is_empty() => probe = Path::new("."),
            Some(parent) => probe = parent,
            None => return Ok(()),
        }
    }
}

/// Whether a directory can be made in `parent`: one is made, and removed.
fn can_make_directory_in(parent: &Path) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let probe = parent.join(format!(".flagsd-check-{}-{nanos}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => std::fs::remove_dir(&probe),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
