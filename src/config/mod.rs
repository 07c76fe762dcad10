//! Checked settings: raw arguments in, one typed configuration out.
//!
//! Everything a user controls is checked here, once, before any request:
//! later code never re-parses text. Each failure is a [`UsageError`] whose
//! message names the argument, and the binary exits with status 2.

pub mod file;
pub mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ConfigArgs, FetchArgs};
use crate::engine::retry::RetryPolicy;
use crate::http::download::Timeouts;
use crate::http::rate::Rate;
use crate::model::codes::{CountryCode, Selection, expand_argument};

/// Default body-size cap: 10 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;

/// Largest worker pool, whatever `--max-req` says.
pub const MAX_CONCURRENCY: usize = 1000;

/// The built-in server labels and their base URLs.
pub const SERVER_LABELS: [(&str, &str); 4] = [
    ("LOCAL", "http://localhost:8000/flags"),
    ("REMOTE", "https://www.fluentpython.com/data/flags"),
    ("DELAY", "http://localhost:8001/flags"),
    ("ERROR", "http://localhost:8002/flags"),
];

/// A command-line value that flagsd cannot use; the text is the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Where the flags come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTarget {
    /// A base URL (`http://…/flags`).
    Url(String),
    /// The built-in server, started in-process on a free loopback port.
    Demo,
}

/// A server as chosen on the command line: its label and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `LOCAL`, `REMOTE`, …, `DEMO`, or `CUSTOM` for a URL.
    pub label: String,
    /// Where requests go.
    pub target: ServerTarget,
    /// Most requests per unit of time to this server, if limited.
    pub rate: Option<Rate>,
}

impl Server {
    /// Resolves a `--server` value: a label in any case, or an http(s) URL.
    pub fn parse(value: &str) -> Result<Self, UsageError> {
        let upper = value.to_ascii_uppercase();
        if upper == "DEMO" {
            return Ok(Self { label: upper, target: ServerTarget::Demo, rate: None });
        }
        if let Some((label, url)) = SERVER_LABELS.iter().find(|(label, _)| *label == upper) {
            return Ok(Self { label: (*label).to_owned(), target: ServerTarget::Url((*url).to_owned()), rate: None });
        }
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match reqwest::Url::parse(value) {
                Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {
                    Ok(Self { label: "CUSTOM".to_owned(), target: ServerTarget::Url(value.to_owned()), rate: None })
                }
                Ok(_) => Err(UsageError(format!("--server URL '{value}' has no host"))),
                Err(e) => Err(UsageError(format!("--server URL '{value}' is not valid: {e}"))),
            };
        }
        let labels: Vec<&str> = SERVER_LABELS.iter().map(|(l, _)| *l).chain(["DEMO"]).collect();
        Err(UsageError(format!(
            "--server LABEL must be one of {}, or an http:// or https:// URL (got '{value}')",
            labels.join(", ")
        )))
    }
}

/// One download job: which codes, from where, into where, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    /// The codes to download, sorted, unique, limited.
    pub codes: Vec<CountryCode>,
    /// Number of workers: min(max_req, 1000, number of codes).
    pub pool_size: usize,
    /// Where the flags come from.
    pub server: Server,
    /// Output directory.
    pub output: PathBuf,
    /// HTTP timeouts.
    pub timeouts: Timeouts,
    /// When to try failed codes again.
    pub retry: RetryPolicy,
    /// Largest body saved, in bytes.
    pub max_size: u64,
    /// File naming.
    pub naming: file::Naming,
}

/// Everything `flagsd fetch` needs, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// What to download.
    pub job: JobConfig,
    /// One line per code instead of a progress bar.
    pub verbose: bool,
    /// Print the JSON document instead of the report.
    pub json: bool,
    /// Where to write the codes to try again, if anywhere.
    pub failed: Option<PathBuf>,
    /// The state directory, when state is kept.
    pub state_dir: Option<PathBuf>,
}

/// Reads `--codes-file` (`-` is stdin).
fn read_codes_file(path: &Path) -> Result<Vec<CountryCode>, UsageError> {
    let origin = path.display().to_string();
    let text = if origin == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
        .map_err(|e| UsageError(format!("--codes-file '{origin}': cannot read it: {e}")))?;
    crate::model::codes::parse_code_list(&text, &origin).map_err(|e| UsageError(e.to_string()))
}

/// The configuration file used when neither `--config` nor `FLAGSD_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/flagsd/flagsd.toml";

/// Where a configuration comes from and how to read it again (on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The file, if any: `--config`, `FLAGSD_CONFIG`, or the default path when present.
    pub path: Option<PathBuf>,
    /// Command-line values, the top layer.
    pub overrides: file::Overrides,
}

impl ConfigSource {
    /// The file named by `path`, else the default file when present.
    pub fn file_or_default(path: Option<PathBuf>) -> Option<PathBuf> {
        path.or_else(|| {
            let default = Path::new(DEFAULT_CONFIG_PATH);
            default.exists().then(|| default.to_owned())
        })
    }

    /// The source chosen by the command line.
    pub fn from_args(args: &ConfigArgs) -> Result<Self, UsageError> {
        let max_req = args.max_req.as_deref().map(|m| positive(m, "--max_req CONCURRENT must be >= 1")).transpose()?;
        let path = Self::file_or_default(args.config.clone());
        Ok(Self {
            path,
            overrides: file::Overrides {
                max_req: max_req.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                output: args.output.clone(),
                verbose: args.verbose,
            },
        })
    }

    /// The name problems are reported under.
    pub fn origin(&self) -> String {
        file::origin_name(self.path.as_deref())
    }

    /// The server labels for `fetch`: built-in, overridden by the file's and
    /// the environment's `[servers]`.
    pub fn servers(&self) -> Result<settings::ServerTable, file::ConfigError> {
        let raw = file::load(self.path.as_deref(), std::env::vars(), &self.overrides)?;
        settings::configured_servers(&raw, &self.origin())
    }

    /// Reads, layers and checks the configuration (environment from this process).
    pub fn load(&self) -> Result<settings::Settings, file::ConfigError> {
        let raw = file::load(self.path.as_deref(), std::env::vars(), &self.overrides)?;
        settings::Settings::check(&raw, &self.origin())
    }

    /// [`load`](Self::load), then checks that every output directory is
    /// writable or can be created (as `check-config` and `serve` do).
    pub fn load_checked(&self) -> Result<settings::Settings, file::ConfigError> {
        let settings = self.load()?;
        settings.check_output_dirs(&self.origin())?;
        Ok(settings)
    }
}

/// Parses a size: bytes, or a number with a unit (`512KiB`, `10MB`, `1.5GiB`;
/// `K`/`M`/`G` and `KB`/`MB`/`GB` are powers of 1000, `KiB`/`MiB`/`GiB` of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a size such as 1048576, \"512KiB\" or \"10MB\"");
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses a humantime duration longer than zero; `flag` names it in errors.
fn duration(flag: &str, text: &str) -> Result<Duration, UsageError> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(UsageError(format!("{flag} must be longer than 0s"))),
        Err(e) => Err(UsageError(format!("{flag}: '{text}' is not a duration such as 500ms, 5s or 2m ({e})"))),
    }
}

/// Parses a count that must be at least 1; `message` is the flags2 error.
fn positive(value: &str, message: &str) -> Result<usize, UsageError> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Ok(_) => Err(UsageError(message.to_owned())),
        Err(_) => Err(UsageError(format!("{message} (got '{value}', not a whole number)"))),
    }
}

/// The pool size for a run: at most `max_req`, [`MAX_CONCURRENCY`] and the
/// number of codes, and at least one.
pub fn pool_size(max_req: usize, codes: usize) -> usize {
    max_req.min(MAX_CONCURRENCY).min(codes).max(1)
}

impl FetchConfig {
    /// Checks the `fetch` arguments; `servers` resolves server labels (the
    /// built-in ones, as overridden by the configuration).
    pub fn from_args(args: &FetchArgs, servers: &settings::ServerTable) -> Result<Self, UsageError> {
        let mut explicit = Vec::new();
        for arg in &args.codes {
            let codes = expand_argument(arg).map_err(|e| UsageError(e.to_string()))?;
            explicit.extend(codes);
        }
        let limit = args.limit.as_deref().map(|l| positive(l, "--limit N must be >= 1")).transpose()?;
        let max_req = positive(&args.max_req, "--max_req CONCURRENT must be >= 1")?;
        let mut server = match servers.get(&args.server.to_ascii_uppercase()) {
            Some((url, rate)) => {
                Server { label: args.server.to_ascii_uppercase(), target: ServerTarget::Url(url.clone()), rate: *rate }
            }
            None => Server::parse(&args.server)?,
        };
        if let Some(rate) = &args.rate {
            server.rate = Some(rate.parse().map_err(|e| UsageError(format!("--rate: {e}")))?);
        }
        let timeouts = Timeouts {
            connect: duration("--connect-timeout", &args.connect_timeout)?,
            read: duration("--read-timeout", &args.read_timeout)?,
            total: duration("--timeout", &args.timeout)?,
        };
        let retry =
            RetryPolicy {
                retries: args.retries.trim().parse().map_err(|_| {
                    UsageError(format!("--retries must be a whole number >= 0 (got '{}')", args.retries))
                })?,
                base: duration("--retry-base", &args.retry_base)?,
                cap: duration("--retry-cap", &args.retry_cap)?,
                retry_after_cap: duration("--retry-after-cap", &args.retry_after_cap)?,
            };
        let max_size = parse_size(&args.max_size).map_err(|e| UsageError(format!("--max-size: {e}")))?;
        // A list file is read (and checked) even when -e or -a overrides it.
        let selection = match args.codes_file.as_deref().map(read_codes_file).transpose()? {
            Some(listed) if !(args.every || args.all) => {
                explicit.extend(listed);
                Selection::Exactly(explicit)
            }
            _ => Selection::from_flags(args.every, args.all, explicit),
        };
        let codes = selection.resolve(limit);
        let job = JobConfig {
            pool_size: pool_size(max_req, codes.len()),
            codes,
            server,
            output: args.output.clone(),
            timeouts,
            retry,
            max_size,
            naming: file::Naming::Code,
        };
        Ok(Self {
            job,
            verbose: args.verbose,
            json: args.json,
            failed: args.failed.clone(),
            state_dir: args.state.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(args: &[&str]) -> Result<FetchConfig, UsageError> {
        let argv = ["flagsd", "fetch"].iter().chain(args).copied();
        let Command::Fetch(fetch) = Cli::try_parse_from(argv).unwrap().command else { panic!("not fetch") };
        let servers = ConfigSource { path: None, overrides: file::Overrides::default() }.servers().unwrap();
        FetchConfig::from_args(&fetch, &servers)
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("512KiB"), Ok(524_288));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5 GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("2k"), Ok(2000));
        for bad in ["", "MB", "0", "-1", "10XB", "1e3"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_size_is_clamped_to_1000_and_to_the_codes() {
        assert_eq!(pool_size(5000, 676), 676);
        assert_eq!(pool_size(5000, 5000), 1000);
        assert_eq!(pool_size(30, 676), 30);
        assert_eq!(pool_size(30, 3), 3);
        assert_eq!(pool_size(1, 0), 1);
    }

    #[test]
    fn defaults_are_local_pop20_and_30_requests() {
        let c = config(&[]).unwrap();
        let (c, verbose) = (c.job, c.verbose);
        assert_eq!(c.codes.len(), 20);
        assert_eq!(c.pool_size, 20);
        assert_eq!(c.server.label, "LOCAL");
        assert_eq!(c.output, PathBuf::from("downloaded"));
        assert!(!verbose);
        assert_eq!(c.retry.retries, 0);
        assert_eq!(c.max_size, DEFAULT_MAX_SIZE);
        assert_eq!(c.timeouts, Timeouts::default());
    }

    #[test]
    fn every_beats_all_beats_codes_and_limit_cuts() {
        assert_eq!(config(&["-e", "-a", "BR"]).unwrap().job.codes.len(), 676);
        assert_eq!(config(&["-a", "BR"]).unwrap().job.codes.len(), 194);
        let c = config(&["-e", "-l", "30", "-m", "100"]).unwrap().job;
        assert_eq!(c.codes.len(), 30);
        assert_eq!(c.pool_size, 30);
    }

    #[test]
    fn labels_are_case_insensitive_and_urls_are_custom() {
        assert_eq!(Server::parse("remote").unwrap().target, ServerTarget::Url(SERVER_LABELS[1].1.to_owned()));
        assert_eq!(Server::parse("Demo").unwrap().target, ServerTarget::Demo);
        let custom = Server::parse("http://127.0.0.1:9/flags/").unwrap();
        assert_eq!(custom.label, "CUSTOM");
        assert_eq!(custom.target, ServerTarget::Url("http://127.0.0.1:9/flags/".to_owned()));
    }

    #[test]
    fn bad_values_have_the_flags2_messages() {
        let message = |args: &[&str]| config(args).unwrap_err().0;
        assert_eq!(message(&["ABC"]), "each CC argument must be A to Z or AA to ZZ.");
        assert_eq!(message(&["-l", "0"]), "--limit N must be >= 1");
        assert_eq!(message(&["-l", "-3"]), "--limit N must be >= 1");
        assert_eq!(message(&["-m", "0"]), "--max_req CONCURRENT must be >= 1");
        assert!(message(&["-m", "lots"]).starts_with("--max_req CONCURRENT must be >= 1 (got 'lots'"));
        assert!(message(&["-s", "NOWHERE"]).starts_with("--server LABEL must be one of LOCAL"));
        assert!(message(&["-s", "ftp://x/flags"]).starts_with("--server LABEL must be one of"));
        assert!(message(&["-s", "http://"]).contains("is not valid"));
        assert!(message(&["--timeout", "soon"]).starts_with("--timeout: 'soon' is not a duration"));
        assert_eq!(message(&["--read-timeout", "0s"]), "--read-timeout must be longer than 0s");
        assert!(message(&["--retries", "-1"]).starts_with("--retries must be a whole number >= 0"));
        assert!(message(&["--max-size", "big"]).starts_with("--max-size: 'big' is not a size"));
        assert!(message(&["--rate", "fast"]).starts_with("--rate: 'fast' is not a rate"));
    }
}
