//! Command-line definitions (clap): raw arguments only.
//!
//! Values that flags2 checks with its own messages (`--limit`, `--max-req`,
//! `--server`, the codes) are taken as text here and checked in
//! [`crate::config`], so every usage error reads `*** Usage error: …` and
//! exits with status 2 before any request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::testserver::server::{DelayRange, parse_rate};

/// The exit statuses, as a literal so that help texts can `concat!` it.
macro_rules! exit_status_help {
    () => {
        "Exit status:
  0    every code downloaded, unchanged or not found
  1    at least one code ended in an error
  2    usage or configuration error (nothing was downloaded)
  3    fatal runtime error (output directory not writable, state database unusable,
       server could not bind, --failed file not written, ...)
  130  interrupted (Ctrl-C); the final report for what finished is still printed
  143  terminated (SIGTERM); as for 130"
    };
}

const EXIT_STATUS_HELP: &str = exit_status_help!();

/// flagsd: downloads country flags by two-letter code, concurrently.
#[derive(Debug, Parser)]
#[command(name = "flagsd", version, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// Diagnostics level on stderr, as an EnvFilter (`debug`, `flagsd=trace`, ...)
    /// [default: warn]
    #[arg(long, global = true, env = "FLAGSD_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Diagnostics format: human-readable lines, or one JSON object per line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download flags, as flags2 does.
    Fetch(Box<FetchArgs>),
    /// Run configured batches once, each with its own report.
    Run(RunArgs),
    /// Run scheduled batches as a daemon (systemd Type=notify).
    Serve(ConfigArgs),
    /// Check the configuration and report every problem found.
    CheckConfig(ConfigArgs),
    /// Show each batch's last and next run (from the daemon, else the state database).
    Status(ConfigArgs),
    /// Serve the bundled flags over HTTP, for tests, demos and benchmarks.
    Testserver(TestServerArgs),
}

/// Format of the diagnostics on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (no colours or timestamps under the journal).
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where the configuration comes from, and the flags that override it.
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ConfigArgs {
    /// Configuration file [default: /etc/flagsd/flagsd.toml when present]
    #[arg(short, long, env = "FLAGSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override defaults.max_req
    #[arg(short, long = "max-req", alias = "max_req", value_name = "N", allow_negative_numbers = true)]
    pub max_req: Option<String>,

    /// Override defaults.output
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Override defaults.verbose (per-country lines or warnings)
    #[arg(short, long)]
    pub verbose: bool,
}

/// `flagsd run`: configured batches, once.
#[derive(Debug, Args)]
#[command(after_help = RUN_AFTER_HELP)]
pub struct RunArgs {
    /// Configuration and overrides.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Batches to run, by name [default: all]
    #[arg(value_name = "BATCH")]
    pub batches: Vec<String>,

    /// Print one JSON document (every batch's counts and per-code outcomes) instead of the reports
    #[arg(long)]
    pub json: bool,
}

const RUN_AFTER_HELP: &str = "\
Exit status: the worst of the batches
  0    every code of every batch downloaded, unchanged or not found
  1    at least one code ended in an error
  2    configuration error (nothing was downloaded)
  3    fatal runtime error in at least one batch (output directory, state database, ...)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)";

/// `flagsd fetch`: the flags2 command line.
#[derive(Debug, Args)]
#[command(after_help = FETCH_AFTER_HELP, args_override_self = true)]
pub struct FetchArgs {
    /// Country codes: two letters are one code, one letter X is XA to XZ (any case).
    /// Default: the 20 most populous countries
    #[arg(value_name = "CC")]
    pub codes: Vec<String>,

    /// Get all 194 flags of the country list (overrides CC)
    #[arg(short, long)]
    pub all: bool,

    /// Get flags for every code AA to ZZ, 676 requests (overrides --all)
    #[arg(short, long)]
    pub every: bool,

    /// Keep only the first N codes (after sorting)
    #[arg(short, long, value_name = "N", allow_negative_numbers = true)]
    pub limit: Option<String>,

    /// Maximum concurrent requests; the pool is min(N, 1000, number of codes)
    #[arg(
        short,
        long = "max-req",
        alias = "max_req",
        value_name = "N",
        default_value = "30",
        allow_negative_numbers = true
    )]
    pub max_req: String,

    /// Server: LOCAL, REMOTE, DELAY, ERROR, DEMO (any case) or an http(s):// base URL
    #[arg(short, long, value_name = "LABEL|URL", default_value = "LOCAL")]
    pub server: String,

    /// Print one line per country instead of the progress bar
    #[arg(short, long)]
    pub verbose: bool,

    /// Limit for establishing a connection (humantime: 500ms, 5s, 1m)
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub connect_timeout: String,

    /// Limit for any single read of a response (a stalled server)
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub read_timeout: String,

    /// Limit for a whole request, body included
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,

    /// Further attempts for connection errors, timeouts, 408, 429, 500, 502, 503, 504
    #[arg(long, value_name = "N", default_value = "0", allow_negative_numbers = true)]
    pub retries: String,

    /// Backoff before the first retry; it doubles each time, with full jitter
    #[arg(long, value_name = "DURATION", default_value = "250ms")]
    pub retry_base: String,

    /// Longest backoff between two attempts
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub retry_cap: String,

    /// Longest wait a server's Retry-After header can ask for
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub retry_after_cap: String,

    /// Largest body saved: bytes, or with a unit (512KiB, 10MB)
    #[arg(long, value_name = "SIZE", default_value = "10MiB")]
    pub max_size: String,

    /// Most requests to the server per second, minute or hour (50/s, 100/m)
    #[arg(long, value_name = "N/UNIT")]
    pub rate: Option<String>,

    /// Configuration file whose [servers] labels apply
    /// [default: $FLAGSD_CONFIG, else /etc/flagsd/flagsd.toml when present]
    #[arg(short, long, env = "FLAGSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the downloaded files (created if missing)
    #[arg(short, long, value_name = "DIR", default_value = "downloaded")]
    pub output: PathBuf,

    /// Read more codes from FILE ('-' for stdin): codes or letters separated
    /// by spaces, commas or newlines, '#' comments; an empty list fetches nothing
    #[arg(long, value_name = "FILE")]
    pub codes_file: Option<PathBuf>,

    /// Write the codes that ended in an error (or did not finish) to FILE, one a line
    #[arg(long, value_name = "FILE")]
    pub failed: Option<PathBuf>,

    /// Print one JSON document (counts, per-code outcomes) instead of the report
    #[arg(long)]
    pub json: bool,

    /// Keep run state in DIR: history, and conditional requests for files already saved
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

const FETCH_AFTER_HELP: &str = concat!(
    "\
Servers:
  LOCAL   http://localhost:8000/flags
  REMOTE  https://www.fluentpython.com/data/flags
  DELAY   http://localhost:8001/flags
  ERROR   http://localhost:8002/flags
  DEMO    the built-in flag server, started in-process on a free loopback port (works offline)

Each code is requested as GET {base}/{cc}/{cc}.gif and saved as {CC}.gif.

",
    exit_status_help!()
);

/// `flagsd testserver`: the built-in flag server.
#[derive(Debug, Args)]
pub struct TestServerArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// Serve DIR/{cc}/{cc}.gif and DIR/{cc}/metadata.json instead of the bundled data set
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Seconds to wait before each answer: MIN, or MIN..MAX for a uniform random delay
    #[arg(long, value_name = "MIN[..MAX]")]
    pub delay: Option<DelayRange>,

    /// Fraction of requests answered with 418 I'm a Teapot (0 to 1)
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub error_rate: f64,

    /// Fraction of flag bodies cut off half way (the connection closes early)
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub truncate_rate: f64,

    /// Fraction of flag responses reset (RST) right after the headers
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub reset_rate: f64,

    /// Fraction of requests accepted and never answered
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub hang_rate: f64,

    /// Fraction of flag bodies sent in ten pieces, --slow-interval apart
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub slow_rate: f64,

    /// Pause between the pieces of a slow body
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub slow_interval: Duration,

    /// Fraction of requests answered with the fixed --status
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub status_rate: f64,

    /// Status code of --status-rate answers
    #[arg(long, value_name = "CODE", default_value_t = 500, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub status: u16,

    /// Fraction of requests answered 503 with a Retry-After header
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub unavailable_rate: f64,

    /// Seconds in the Retry-After header of --unavailable-rate answers
    #[arg(long, value_name = "SECONDS", default_value_t = 1)]
    pub retry_after: u64,

    /// Fraction of paths that flap: their first --flap-failures requests get 503
    #[arg(long, value_name = "P", default_value = "0", value_parser = parse_rate)]
    pub flap_rate: f64,

    /// Failures of a flapping path before it succeeds
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub flap_failures: u32,

    /// Seed of the random fault and delay generator
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Server threads
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn max_req_has_an_underscore_alias() {
        let cli = Cli::try_parse_from(["flagsd", "fetch", "--max_req", "5"]).unwrap();
        let Command::Fetch(args) = cli.command else { panic!("not fetch") };
        assert_eq!(args.max_req, "5");
    }
}
