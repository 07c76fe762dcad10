//! The checked configuration of `run`, `serve` and `check-config`.
//!
//! [`Settings::check`] turns a [`RawConfig`] into typed settings, collecting
//! every problem it finds (not only the first), each naming its key path
//! and said where the value was set: `flagsd.toml:14:11: batch[2].max_req:
//! must be >= 1`. Batch indices count from 0.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::{
    Checker, check_codes, check_server, check_servers, exposed_secrets, problems, transport_secret_problems,
    writable_or_creatable,
};
use super::error::{ConfigError, Problem};
use super::file::{RawAdmin, RawConfig, RawSize};
use super::fleet::{self, FleetSettings};
use super::job::{JobConfig, pool_size};
use super::place::{Place, Places};
use super::server::Server;
use super::{defaults, validate};
use crate::engine::retry::RetryPolicy;
use crate::http::client::Timeouts;

/// One batch, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Unique name.
    pub name: String,
    /// What to download.
    pub job: JobConfig,
    /// Schedule interval for `serve`; `None`: on demand only.
    pub every: Option<Duration>,
    /// Per-country lines or warnings.
    pub verbose: bool,
}

/// The whole checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Batches in file order.
    pub batches: Vec<BatchConfig>,
    /// Grace period for in-flight downloads after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Where run state is kept.
    pub state_dir: PathBuf,
    /// The admin endpoint of `serve`, when `admin.listen` is set.
    pub admin: Option<AdminSettings>,
    /// The fleet this process joins, when `[fleet]` is set.
    pub fleet: Option<FleetSettings>,
    /// Most threads the batches' workers run on.
    pub threads: usize,
    /// Where each value was set, to say a problem found later there.
    pub places: Places,
}

/// The admin endpoint's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The file holding its bearer token, if requests need one.
    pub token_file: Option<PathBuf>,
    /// Host names it answers for besides `localhost` and IP addresses.
    pub hosts: Vec<String>,
}

impl AdminSettings {
    /// The bearer token, read from `token_file` (`None` without one).
    pub fn token(&self) -> Result<Option<String>, String> {
        self.token_file.as_deref().map(validate::read_token_file).transpose()
    }

    /// Where a client on this machine reaches the endpoint: the listen
    /// address, with a wildcard address replaced by loopback.
    pub fn connect_address(&self) -> SocketAddr {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }
}

/// Checks `[admin]`: a listen address, and a token file unless it is loopback.
fn check_admin(checker: &mut Checker, raw: &RawAdmin) -> Option<AdminSettings> {
    let text = raw.listen.as_deref()?;
    match validate::parse_listen(text) {
        Ok(listen) if raw.token_file.is_none() && !validate::is_loopback(&listen) => {
            checker.problem(
                "admin.listen".into(),
                format!("'{text}' is not a loopback address: set admin.token_file so that requests need a token"),
            );
            None
        }
        Ok(listen) => {
            let hosts: Vec<String> = raw.hosts.iter().map(|h| h.trim().trim_end_matches('.').to_owned()).collect();
            for host in hosts.iter().filter(|h| !validate::is_host_name(h)) {
                checker.problem("admin.hosts".into(), format!("'{host}' is not a host name"));
            }
            Some(AdminSettings { listen, token_file: raw.token_file.clone(), hosts })
        }
        Err(e) => {
            checker.problem("admin.listen".into(), e);
            None
        }
    }
}

/// The places of `raw`'s values, with the output directory of each batch
/// that does not set one where `defaults.output` was set: a problem with
/// `{defaults.output}/{name}` is one with `defaults.output`.
fn with_batch_outputs(raw: &RawConfig) -> Places {
    let mut places = raw.places.clone();
    let base: Option<Place> = raw.places.exactly("defaults.output").cloned();
    for (i, batch) in raw.batch.iter().enumerate() {
        if let (None, Some(base)) = (&batch.output, &base) {
            places.insert(&format!("batch[{i}].output"), base.clone());
        }
    }
    places
}

/// The shortest schedule interval.
const MIN_EVERY: Duration = Duration::from_secs(1);

impl Settings {
    /// The workers of every batch together: what the process runs at most
    /// at once.
    pub fn workload(&self) -> usize {
        self.batches.iter().map(|b| b.job.pool_size).sum()
    }

    /// Checks `raw`, read from `origin` (a file name, for messages).
    pub fn check(raw: &RawConfig, origin: &str) -> Result<Self, ConfigError> {
        let places = with_batch_outputs(raw);
        let mut checker = Checker::new(origin, &places);
        let servers = check_servers(&mut checker, &raw.servers);
        let d = &raw.defaults;
        let default_max_req = checker.at_least_one("defaults.max_req".into(), d.max_req);
        let threads = d.threads.map_or_else(defaults::threads, |n| {
            validate::threads(n, defaults::MAX_THREADS).unwrap_or_else(|message| {
                checker.problem("defaults.threads".into(), message);
                1
            })
        });
        checker.positive_duration("defaults.connect_timeout", d.connect_timeout);
        checker.positive_duration("defaults.read_timeout", d.read_timeout);
        checker.positive_duration("defaults.timeout", d.timeout);
        checker.positive_duration("daemon.shutdown_timeout", raw.daemon.shutdown_timeout);
        let timeouts = Timeouts { connect: d.connect_timeout, read: d.read_timeout, total: d.timeout };
        let retries = u32::try_from(d.retries).unwrap_or_else(|_| {
            checker.problem("defaults.retries".into(), "must be from 0 to 4294967295");
            0
        });
        checker.positive_duration("defaults.retry_base", d.retry_base);
        checker.positive_duration("defaults.retry_cap", d.retry_cap);
        checker.bounded_duration("defaults.retry_after_cap", d.retry_after_cap);
        let retry = RetryPolicy { retries, base: d.retry_base, cap: d.retry_cap, retry_after_cap: d.retry_after_cap };
        let max_size = match &d.max_size {
            RawSize::Bytes(0) => {
                checker.problem("defaults.max_size".into(), "must be >= 1");
                1
            }
            RawSize::Bytes(n) => *n,
            RawSize::Text(text) => validate::parse_size(text).unwrap_or_else(|e| {
                checker.problem("defaults.max_size".into(), e);
                1
            }),
        };

        let admin = check_admin(&mut checker, &raw.admin);
        let fleet = raw.fleet.as_ref().and_then(|raw| match fleet::check(raw) {
            Ok(fleet) => Some(fleet),
            Err(problems) => {
                for (key, message) in problems {
                    checker.problem(key, message);
                }
                None
            }
        });
        let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut batches = Vec::new();
        for (i, batch) in raw.batch.iter().enumerate() {
            let key = |field: &str| format!("batch[{i}].{field}");
            if let Err(message) = validate::batch_name(&batch.name) {
                checker.problem(key("name"), message);
            }
            if let Some(first) = first_index.insert(&batch.name, i) {
                checker.problem(key("name"), format!("duplicate batch name '{}' (also batch[{first}])", batch.name));
            }
            let codes = check_codes(&mut checker, &key("codes"), batch);
            let max_req = batch.max_req.map_or(default_max_req, |n| checker.at_least_one(key("max_req"), n));
            let server_key = key("server");
            let server =
                check_server(&mut checker, &server_key, batch.server.as_deref().unwrap_or(defaults::SERVER), &servers);
            if batch.every.is_some_and(|every| every < MIN_EVERY) {
                checker.problem(key("every"), "must be at least 1s");
            } else if let Some(every) = batch.every {
                checker.bounded_duration(&key("every"), every);
            }
            let output = match &batch.output {
                Some(dir) => d.output.join(dir),
                None => d.output.join(&batch.name),
            };
            if let Some(server) = server {
                let job = JobConfig {
                    pool_size: pool_size(max_req, codes.len()),
                    codes,
                    server,
                    output,
                    timeouts,
                    retry,
                    max_size,
                    naming: batch.naming,
                };
                batches.push(BatchConfig {
                    name: batch.name.clone(),
                    job,
                    every: batch.every,
                    verbose: batch.verbose.unwrap_or(d.verbose),
                });
            }
        }
        checker.finish(Self {
            batches,
            shutdown_timeout: raw.daemon.shutdown_timeout,
            state_dir: raw.state.dir.clone(),
            admin,
            fleet,
            threads,
            places: places.clone(),
        })
    }

    /// The number of batches, in words: `1 batch`, `3 batches`.
    pub fn batch_count(&self) -> String {
        match self.batches.len() {
            1 => "1 batch".to_owned(),
            n => format!("{n} batches"),
        }
    }

    /// Every file and directory the configuration names, each with its
    /// key, as it will be used: the batches' output directories, the state
    /// directory (without a fleet), the admin token, the fleet's files, and
    /// the files of the servers the batches use. A relative path is
    /// relative to the working directory: one written in the file was
    /// resolved from the file's directory when it was read.
    pub fn paths(&self) -> Vec<(String, &Path)> {
        let mut paths: Vec<(String, &Path)> = self
            .batches
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("batch[{i}].output"), b.job.output.as_path()))
            .collect();
        if self.fleet.is_none() {
            paths.push(("state.dir".to_owned(), &self.state_dir));
        }
        let admin = self.admin.as_ref().and_then(|a| a.token_file.as_deref());
        paths.extend(admin.map(|path| ("admin.token_file".to_owned(), path)));
        if let Some(fleet) = &self.fleet {
            let files = [
                ("creds_file", &fleet.creds_file),
                ("token_file", &fleet.token_file),
                ("tls_ca_file", &fleet.tls_ca_file),
            ];
            paths.extend(files.into_iter().filter_map(|(key, path)| Some((format!("fleet.{key}"), path.as_deref()?))));
        }
        for (key, server) in self.servers(&[]) {
            let transport = &server.transport;
            let files = [
                ("ca_file", &transport.tls.ca_file),
                ("client_cert", &transport.tls.client_cert),
                ("client_key", &transport.tls.client_key),
                ("credentials_file", &transport.credentials_file),
                ("proxy_credentials_file", &transport.proxy.credentials_file),
            ];
            paths
                .extend(files.into_iter().filter_map(|(name, path)| Some((format!("{key}.{name}"), path.as_deref()?))));
        }
        paths
    }

    /// The batches named in `names` (all when empty), in file order; an
    /// unknown name is an error.
    pub fn select(&self, names: &[String]) -> Result<Vec<&BatchConfig>, String> {
        if let Some(unknown) = names.iter().find(|n| !self.batches.iter().any(|b| &b.name == *n)) {
            let known: Vec<&str> = self.batches.iter().map(|b| b.name.as_str()).collect();
            return Err(format!("no batch named '{unknown}' (configured: {})", known.join(", ")));
        }
        Ok(self.batches.iter().filter(|b| names.is_empty() || names.contains(&b.name)).collect())
    }

    /// Problems with the paths the configuration names: each output
    /// directory and the state directory must be writable, or creatable
    /// below a writable ancestor (nothing is created), and the fleet's CA
    /// file readable.
    ///
    /// Secrets (the admin token, the fleet's credentials) are not read here:
    /// under systemd only the running service can read them (credentials are
    /// not handed to `ExecReload=`), so the service checks them as it starts
    /// ([`Settings::check_secrets`]).
    pub fn check_paths(&self, origin: &str) -> Result<(), ConfigError> {
        let outputs = self.batches.iter().enumerate().map(|(i, b)| (format!("batch[{i}].output"), &b.job.output));
        // A fleet node keeps its run state in the fleet, not in `state.dir`.
        let state = self.fleet.is_none().then(|| ("state.dir".to_owned(), &self.state_dir));
        let dirs = outputs
            .chain(state)
            .filter_map(|(key, dir)| writable_or_creatable(dir).err().map(|message| (key, message)));
        let fleet_files = self.fleet.iter().flat_map(FleetSettings::check_files);
        problems(origin, &self.places, dirs.chain(fleet_files))
    }

    /// Problems with the secrets: the admin token file must hold a token,
    /// the fleet's credentials or token file must be readable.
    pub fn check_secrets(&self, origin: &str) -> Result<(), ConfigError> {
        let token = self.admin.as_ref().and_then(|admin| admin.token().err());
        let admin = token.map(|message| ("admin.token_file".to_owned(), message)).into_iter();
        let fleet = self.fleet.iter().flat_map(FleetSettings::check_secrets);
        problems(origin, &self.places, admin.chain(fleet).chain(self.server_secret_problems(&[])))
    }

    /// Problems with the secrets of the servers of the batches named in
    /// `names` (all when empty; unknown names are left to
    /// [`select`](Self::select)): a client key is read and paired with its
    /// certificate, a credentials file read. What `run` checks before its
    /// first request, and `serve` with the other secrets.
    pub fn check_client_keys(&self, origin: &str, names: &[String]) -> Result<(), ConfigError> {
        problems(origin, &self.places, self.server_secret_problems(names))
    }

    /// The servers of the batches named in `names` (all when empty), each
    /// once, with the key of its `[servers]` entry.
    fn servers<'a>(&'a self, names: &'a [String]) -> impl Iterator<Item = (String, &'a Server)> {
        let mut seen = std::collections::BTreeSet::new();
        self.batches
            .iter()
            .filter(move |b| names.is_empty() || names.contains(&b.name))
            .map(|b| &b.job.server)
            .filter(move |s| seen.insert(s.label.clone()))
            .map(|s| (format!("servers.{}", s.label.to_ascii_lowercase()), s))
    }

    fn server_secret_problems(&self, names: &[String]) -> impl Iterator<Item = (String, String)> {
        let servers = self.servers(names);
        let found: Vec<_> = servers.flat_map(|(key, s)| transport_secret_problems(&key, &s.transport)).collect();
        found.into_iter()
    }

    /// Warnings, one a secret file that others than its owner can read
    /// (the admin token, the fleet's credentials, the keys and credentials
    /// files of the servers of the batches named in `names`, all when
    /// empty): told by `check-config`, logged by `run` and `serve`, none an
    /// error. Only permissions are read, never a secret.
    pub fn secret_warnings(&self, origin: &str, names: &[String]) -> Vec<Problem> {
        let admin = self.admin.iter().filter_map(|a| Some(("admin.token_file".to_owned(), a.token_file.as_deref()?)));
        let fleet = self.fleet.iter().flat_map(|f| {
            [("fleet.creds_file", &f.creds_file), ("fleet.token_file", &f.token_file)]
                .into_iter()
                .filter_map(|(key, path)| Some((key.to_owned(), path.as_deref()?)))
        });
        let servers = self.servers(names).flat_map(|(key, s)| {
            s.transport.secret_files().into_iter().map(move |(name, path)| (format!("{key}.{name}"), path))
        });
        let files: Vec<(String, &std::path::Path)> = admin.chain(fleet).chain(servers).collect();
        exposed_secrets(files).into_iter().map(|(key, message)| self.places.problem(origin, &key, message)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerTarget;
    use crate::config::file::{RawBatch, RawCodes, RawServer};

    use crate::config::file::Naming;

    fn batch(name: &str) -> RawBatch {
        RawBatch {
            name: name.to_owned(),
            codes: None,
            limit: None,
            server: None,
            output: None,
            max_req: None,
            every: None,
            naming: Naming::Code,
            verbose: None,
        }
    }

    fn raw(batches: Vec<RawBatch>) -> RawConfig {
        RawConfig { batch: batches, ..RawConfig::default() }
    }

    fn messages(raw: &RawConfig) -> Vec<String> {
        Settings::check(raw, "flagsd.toml").unwrap_err().problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn batches_inherit_defaults() {
        let mut r = raw(vec![batch("pop")]);
        r.defaults.max_req = 7;
        r.defaults.verbose = true;
        let s = Settings::check(&r, "f").unwrap();
        let b = &s.batches[0];
        assert_eq!((b.job.pool_size, b.job.codes.len(), b.verbose), (7, 20, true));
        assert_eq!(b.job.output, PathBuf::from("downloaded/pop"));
        assert_eq!(b.job.server.label, "LOCAL");
        assert_eq!(b.every, None);
    }

    #[test]
    fn servers_override_and_extend_labels() {
        let mut r = raw(vec![batch("a"), batch("b")]);
        r.servers.insert("local".into(), RawServer::Url("http://127.0.0.1:9/flags".into()));
        let mirror = RawServer::Table {
            url: "https://mirror.example/flags".into(),
            rate: Some("5/s".into()),
            ca_file: None,
            client_cert: None,
            client_key: None,
            proxy: None,
            no_proxy: None,
            http2_prior_knowledge: false,
            allow_internal_redirects: false,
            credentials_file: None,
            proxy_credentials_file: None,
        };
        r.servers.insert("Mirror".into(), mirror);
        r.batch[1].server = Some("mirror".into());
        let s = Settings::check(&r, "f").unwrap();
        assert_eq!(s.batches[0].job.server.target, ServerTarget::Url("http://127.0.0.1:9/flags".into()));
        assert_eq!(s.batches[1].job.server.label, "MIRROR");
        assert_eq!(s.batches[1].job.server.rate, "5/s".parse().ok());
        assert_eq!(s.batches[0].job.retry.retries, 2);
        assert_eq!(s.batches[1].job.server.rate, "5/s".parse().ok());
        assert_eq!(s.batches[0].job.retry.retries, 2);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut r = raw(vec![batch("a"), batch("a"), batch("../x")]);
        r.batch[0].max_req = Some(0);
        r.batch[0].codes = Some(RawCodes::List(vec!["BR".into(), "BRA".into()]));
        r.batch[1].server = Some("NOWHERE".into());
        r.batch[1].limit = Some(0);
        r.batch[2].codes = Some(RawCodes::Keyword("most".into()));
        r.batch[2].every = Some(Duration::from_secs(500_000_000_000 * 31_557_600));
        r.defaults.retry_after_cap = Duration::from_secs(400 * 86_400);
        r.servers.insert("demo".into(), RawServer::Url("http://x/flags".into()));
        r.servers.insert("query".into(), RawServer::Url("http://x/flags?a=b".into()));
        let m = messages(&r);
        let expected_prefixes = [
            "flagsd.toml: servers.demo: 'demo' is reserved",
            "flagsd.toml: servers.query: 'http://x/flags?a=b' has a query string ('?a=b')",
            "flagsd.toml: defaults.retry_after_cap: must be at most 366days",
            "flagsd.toml: batch[2].every: must be at most 366days",
            "flagsd.toml: batch[0].codes[1]: 'BRA': each CC argument",
            "flagsd.toml: batch[0].max_req: must be >= 1",
            "flagsd.toml: batch[1].name: duplicate batch name 'a' (also batch[0])",
            "flagsd.toml: batch[1].limit: must be >= 1",
            "flagsd.toml: batch[1].server: unknown server label 'NOWHERE'",
            "flagsd.toml: batch[2].name: '../x' must be",
            "flagsd.toml: batch[2].codes: unknown value \"most\"; expected \"all\", \"every\" or a list of codes",
        ];
        assert_eq!(m.len(), expected_prefixes.len(), "{m:#?}");
        for prefix in expected_prefixes {
            assert!(m.iter().any(|l| l.starts_with(prefix)), "no {prefix:?} in {m:#?}");
        }
    }

    #[test]
    fn problems_are_said_where_their_values_were_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flagsd.toml");
        let load = |text: &str, env: &[(&str, &str)]| {
            std::fs::write(&path, text).unwrap();
            let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
            crate::config::layers::load(Some(&path), env, &Default::default()).unwrap()
        };
        let text = "[defaults]\noutput = \"out\"\n[[batch]]\nname = \"a\"\nserver = \"DEMO\"\n\
                    [[batch]]\nname = \"b\"\nserver = \"DEMO\"\n";
        let raw = load(&format!("{text}max_req = 0\n"), &[("FLAGSD_DEFAULTS__RETRIES", "-1")]);
        let error = Settings::check(&raw, "flagsd.toml").unwrap_err();
        let lines: Vec<String> = error.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "flagsd.toml:9:11: batch[1].max_req: must be >= 1",
                "environment variable FLAGSD_DEFAULTS__RETRIES: must be from 0 to 4294967295",
            ]
        );
        // A batch without an output directory of its own writes under
        // defaults.output: a problem with it is said where that was set.
        let settings = Settings::check(&load(text, &[]), "flagsd.toml").unwrap();
        let said = |key: &str| settings.places.problem("flagsd.toml", key, "m").to_string();
        assert_eq!(said("batch[0].output"), "flagsd.toml:2:10: batch[0].output: m");
        assert_eq!(said("batch[1].name"), "flagsd.toml:7:8: batch[1].name: m");
    }

    #[test]
    fn batches_are_counted_in_words() {
        let count = |n: usize| {
            let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
            Settings::check(&raw(names.iter().map(|n| batch(n)).collect()), "f").unwrap().batch_count()
        };
        assert_eq!([count(0), count(1), count(2)], ["0 batches", "1 batch", "2 batches"]);
    }

    #[test]
    fn selecting_unknown_batches_fails() {
        let s = Settings::check(&raw(vec![batch("a"), batch("b")]), "f").unwrap();
        assert_eq!(s.select(&[]).unwrap().len(), 2);
        assert_eq!(s.select(&["b".into()]).unwrap()[0].name, "b");
        assert_eq!(s.select(&["c".into()]).unwrap_err(), "no batch named 'c' (configured: a, b)");
    }

    #[test]
    fn output_dirs_below_a_file_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let mut r = raw(vec![batch("ok"), batch("bad")]);
        r.defaults.output = dir.path().to_owned();
        r.batch[1].output = Some(file.join("sub"));
        let s = Settings::check(&r, "f").unwrap();
        let err = s.check_paths("f").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.to_string().starts_with("f: batch[1].output: '"), "{err}");
    }
}
