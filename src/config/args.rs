//! The raw arguments of the commands that read a configuration (`fetch`,
//! `run`, `serve`, `status`, `check-config`), as clap parses them.
//!
//! Values that flagsd checks with its own messages (`--limit`, `--max-req`,
//! `--server`, durations, sizes, the codes) are taken as text here and
//! checked in [`super::fetch`] and [`super::source`], so every usage error
//! reads `*** Usage error: …` and exits with status 2 before any request.
//! Defaults come from [`super::defaults`].

use std::path::PathBuf;

use clap::Args;

use super::defaults;

/// The exit statuses, as a literal so that help texts can `concat!` it.
macro_rules! exit_status_help {
    () => {
        "Exit status:
  0    every code downloaded, unchanged or not found
  1    at least one code ended in an error
  2    usage or configuration error (nothing was downloaded)
  3    fatal runtime error (output directory not writable, state database unusable,
       server could not bind, --failed file not written, the daemon unreachable, the
       batch running already for trigger and run --exclusive, ...)
  130  interrupted (Ctrl-C); the final report for what finished is still printed
  143  terminated (SIGTERM); as for 130"
    };
}

/// The exit statuses of every command, for `--help`.
pub const EXIT_STATUS_HELP: &str = exit_status_help!();

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

/// The value name of every argument that takes a batch name: the shell
/// completions offer the configured batches' names for each of them, so a
/// new command that takes batch names needs only this as its value name.
pub const BATCH: &str = "BATCH";

/// `flagsd status`: the batches' last and next runs.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Configuration file [default: /etc/flagsd/flagsd.toml when present]
    #[arg(short, long, env = "FLAGSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Batches to show, by name, each with its last run's failed codes
    /// [default: all, without them]
    #[arg(value_name = BATCH)]
    pub batches: Vec<String>,

    /// Print one JSON document (what the table shows) instead of the table
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    /// The configuration arguments, without overrides.
    pub fn config_args(&self) -> ConfigArgs {
        ConfigArgs { config: self.config.clone(), max_req: None, output: None, verbose: false }
    }
}

/// `flagsd cancel`: cancel a batch's run in progress.
#[derive(Debug, Args)]
#[command(after_help = CANCEL_AFTER_HELP)]
pub struct CancelArgs {
    /// Configuration file [default: /etc/flagsd/flagsd.toml when present]
    #[arg(short, long, env = "FLAGSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The batch whose run to cancel
    #[arg(value_name = BATCH)]
    pub batch: String,
}

impl CancelArgs {
    /// The configuration arguments, without overrides.
    pub fn config_args(&self) -> ConfigArgs {
        ConfigArgs { config: self.config.clone(), max_req: None, output: None, verbose: false }
    }
}

/// `flagsd trigger`: start a batch's run now, in the daemon or the fleet.
#[derive(Debug, Args)]
#[command(after_help = TRIGGER_AFTER_HELP)]
pub struct TriggerArgs {
    /// Configuration file [default: /etc/flagsd/flagsd.toml when present]
    #[arg(short, long, env = "FLAGSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The batch to run
    #[arg(value_name = BATCH)]
    pub batch: String,

    /// Wait for the run to end, print its report and exit with its status
    #[arg(short, long)]
    pub wait: bool,
}

impl TriggerArgs {
    /// The configuration arguments, without overrides.
    pub fn config_args(&self) -> ConfigArgs {
        ConfigArgs { config: self.config.clone(), max_req: None, output: None, verbose: false }
    }
}

const TRIGGER_AFTER_HELP: &str = "\
Starts the run in the fleet ([fleet]), else in the daemon (through its admin
endpoint: POST /batches/NAME/run, signed with the token), and prints its id.
With --wait, it then prints the report flagsd run prints for the run; Ctrl-C
stops the waiting, not the run (flagsd cancel stops that).

Exit status:
  0    the run started (with --wait: the run's own status, 0, 1, 3, 130 or 143)
  2    usage or configuration error (no such batch, here or in the daemon)
  3    the batch is running already (nothing was started), or the daemon or
       NATS cannot be reached";

const CANCEL_AFTER_HELP: &str = "\
Cancels the batch's run in the fleet ([fleet]), else in the daemon (through
its admin endpoint). Queued codes are dropped, codes in flight finish, the
run's record says cancelled, and the batch can start again at once.

Exit status:
  0    a run was cancelled
  1    the batch had no run in progress
  2    usage or configuration error (no such batch)
  3    the daemon or NATS cannot be reached";

/// `flagsd reload`: ask the daemon to reload its configuration, through its
/// admin endpoint, or by signalling its process.
#[derive(Debug, Args)]
#[command(after_help = RELOAD_AFTER_HELP)]
pub struct ReloadArgs {
    /// Configuration and overrides, as given to `serve`.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The daemon's process id (`$MAINPID` in a unit's `ExecReload=`): check the file here, then send it
    /// SIGHUP [default: ask the daemon through its admin endpoint]
    #[arg(value_name = "PID")]
    pub pid: Option<u32>,
}

const RELOAD_AFTER_HELP: &str = "\
Without PID, it finds the daemon of the file through its admin endpoint
([admin] listen; POST /reload, signed with the token) and prints its answer:
the batches it now runs, or the problems that kept the previous
configuration. With PID, it checks the file, makes sure the process is
flagsd serve of that file, and sends it SIGHUP.

Exit status:
  0    reloaded (with PID: the signal was sent)
  2    usage or configuration error: the file has problems (nothing was sent), or
       the daemon found problems and kept its previous configuration
  3    no admin endpoint is configured, or no daemon answers (use PID); with PID,
       the process is not the daemon of the file, or cannot be signalled";

/// `flagsd generate`: files made from the command-line definitions, so
/// that they never drift from `--help`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[command(subcommand)]
    pub what: Generated,
}

/// What `flagsd generate` writes.
#[derive(Debug, clap::Subcommand)]
pub enum Generated {
    /// Print a man page (flagsd.1 unless PAGE says), or write every page into DIR.
    #[command(after_help = MAN_AFTER_HELP)]
    Man {
        /// The page: flagsd.1, flagsd-COMMAND.1 or flagsd.toml.5 [default: flagsd.1, or with --output every page]
        #[arg(value_name = "PAGE")]
        page: Option<String>,

        /// Write the pages into DIR (created if missing) instead of stdout
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Print the completion script of SHELL, or write it into DIR.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: CompletionShell,

        /// Write the script into DIR (created if missing) instead of stdout
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

/// The shells `flagsd generate completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// Bash: `flagsd.bash`.
    Bash,
    /// Zsh: `_flagsd`.
    Zsh,
    /// Fish: `flagsd.fish`.
    Fish,
    /// Elvish: `flagsd.elv`.
    Elvish,
    /// PowerShell: `_flagsd.ps1`.
    Powershell,
}

const MAN_AFTER_HELP: &str = "\
Examples:
  flagsd generate man | man -l -
  flagsd generate man flagsd.toml.5 | man -l -
  flagsd generate man --output target/man        # flagsd.1, flagsd-fetch.1, ..., flagsd.toml.5";

const COMPLETIONS_AFTER_HELP: &str = "\
The script asks flagsd itself for what to offer: options and their values,
the server labels of the configuration after -s, and its batch names after
run, status, trigger and cancel. It calls flagsd as this command was called (by name
when on PATH).

Examples:
  source <(flagsd generate completions bash)      # in ~/.bashrc
  flagsd generate completions zsh --output ~/.zfunc
  flagsd generate completions fish > ~/.config/fish/completions/flagsd.fish";

/// `flagsd run`: configured batches, once.
#[derive(Debug, Args)]
#[command(after_help = RUN_AFTER_HELP)]
pub struct RunArgs {
    /// Configuration and overrides.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Batches to run, by name [default: all]
    #[arg(value_name = BATCH)]
    pub batches: Vec<String>,

    /// Print one JSON document (every batch's counts and per-code outcomes) instead of the reports
    #[arg(long)]
    pub json: bool,

    /// Print no report: the exit status says how it went (a batch's fatal error is still said on stderr)
    #[arg(short, long, conflicts_with_all = ["json", "verbose"])]
    pub quiet: bool,

    /// Refuse to run (status 3, nothing downloaded) when the daemon of the configuration is running one of the
    /// batches, instead of warning
    #[arg(long)]
    pub exclusive: bool,
}

const RUN_AFTER_HELP: &str = "\
Before it starts, it asks the daemon of the configuration (through its admin
endpoint, [admin] listen) whether it is running one of the batches: two runs
would write the same directory at once. It warns on stderr, or with
--exclusive refuses; a daemon that does not answer is taken for none.

Exit status: the worst of the batches
  0    every code of every batch downloaded, unchanged or not found
  1    at least one code ended in an error
  2    configuration error (nothing was downloaded)
  3    fatal runtime error in at least one batch (output directory, state database, ...);
       with --exclusive, the daemon is running one of the batches (nothing was downloaded)
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
        default_value_t = defaults::MAX_REQ.to_string(),
        allow_negative_numbers = true
    )]
    pub max_req: String,

    /// Server: LOCAL, REMOTE, DELAY, ERROR, DEMO (any case) or an http(s):// base URL
    #[arg(short, long, value_name = "LABEL|URL", default_value = defaults::SERVER)]
    pub server: String,

    /// Print one line per country instead of the progress bar
    #[arg(short, long)]
    pub verbose: bool,

    /// Print nothing, no progress bar, no report: the exit status says how it went (an error that stops
    /// flagsd, or an interruption, is still said on stderr)
    #[arg(short, long, conflicts_with_all = ["verbose", "json"])]
    pub quiet: bool,

    /// Skip files that have not changed: ask for each {CC}.gif already in the output directory only if
    /// the server's is newer (If-Modified-Since, from the file's time; wget -N); saved files get the
    /// server's Last-Modified as their time
    #[arg(short = 'N', long)]
    pub timestamping: bool,

    /// Limit for establishing a connection (humantime: 500ms, 5s, 1m)
    #[arg(long, value_name = "DURATION", default_value_t = defaults::duration_text(defaults::TIMEOUTS.connect))]
    pub connect_timeout: String,

    /// Limit for any single read of a response (a stalled server)
    #[arg(long, value_name = "DURATION", default_value_t = defaults::duration_text(defaults::TIMEOUTS.read))]
    pub read_timeout: String,

    /// Limit for a whole request, body included
    #[arg(long, value_name = "DURATION", default_value_t = defaults::duration_text(defaults::TIMEOUTS.total))]
    pub timeout: String,

    /// Further attempts for connection errors, timeouts, 408, 429, 500, 502, 503, 504
    #[arg(long, value_name = "N", default_value_t = defaults::FETCH_RETRIES.to_string(), allow_negative_numbers = true)]
    pub retries: String,

    /// Backoff before the first retry; it doubles each time, with full jitter
    #[arg(long, value_name = "DURATION", default_value_t = defaults::duration_text(defaults::RETRY_BASE))]
    pub retry_base: String,

    /// Longest backoff between two attempts
    #[arg(long, value_name = "DURATION", default_value_t = defaults::duration_text(defaults::RETRY_CAP))]
    pub retry_cap: String,

    /// Longest wait a server's Retry-After header can ask for
    #[arg(long, value_name = "DURATION", default_value_t = defaults::duration_text(defaults::RETRY_AFTER_CAP))]
    pub retry_after_cap: String,

    /// Largest body saved: bytes, or with a unit (512KiB, 10MB)
    #[arg(long, value_name = "SIZE", default_value_t = defaults::size_text(defaults::MAX_SIZE))]
    pub max_size: String,

    /// Most requests to the server per second, minute or hour (50/s, 100/m)
    #[arg(long, value_name = "N/UNIT")]
    pub rate: Option<String>,

    /// Trust the certificate authorities in FILE (PEM) besides the system's
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Present this client certificate (PEM) to servers that ask for one
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The client certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Send requests through this HTTP(S) proxy ('' for none), over the
    /// http_proxy, https_proxy and all_proxy environment variables
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,

    /// Hosts that bypass the proxy, comma-separated: '*', domains, IP
    /// addresses or CIDR blocks; over the no_proxy environment variable
    #[arg(long, value_name = "LIST")]
    pub noproxy: Option<String>,

    /// Speak HTTP/2 without negotiating it (h2c to an http:// server)
    #[arg(long)]
    pub http2_prior_knowledge: bool,

    /// Follow redirects to more internal addresses (private, loopback,
    /// link-local) than the server that sent them
    #[arg(long)]
    pub allow_internal_redirects: bool,

    /// Most threads the workers run on, the coordinator's included [default: one per core]
    #[arg(long, value_name = "N")]
    pub threads: Option<String>,

    /// Configuration file whose [servers] labels apply
    /// [default: $FLAGSD_CONFIG, else /etc/flagsd/flagsd.toml when present]
    #[arg(short, long, env = "FLAGSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the downloaded files (created if missing)
    #[arg(short, long, value_name = "DIR", default_value = defaults::OUTPUT)]
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// The arguments as commands of their own.
    #[derive(Parser)]
    enum Commands {
        Fetch(Box<FetchArgs>),
        Serve(ConfigArgs),
    }

    #[test]
    fn help_shows_the_defaults_of_config_defaults() {
        let mut command = Commands::command();
        for name in ["fetch", "serve"] {
            let sub = command.find_subcommand_mut(name).expect("a subcommand");
            let help = sub.render_help().to_string();
            assert!(help.contains(defaults::CONFIG_PATH), "{help}");
        }
        let fetch = command.find_subcommand_mut("fetch").expect("fetch").render_help().to_string();
        for shown in [
            format!("[default: {}]", defaults::MAX_REQ),
            format!("[default: {}]", defaults::OUTPUT),
            format!("[default: {}]", defaults::SERVER),
            format!("[default: {}]", defaults::duration_text(defaults::TIMEOUTS.connect)),
            format!("[default: {}]", defaults::size_text(defaults::MAX_SIZE)),
        ] {
            assert!(fetch.contains(&shown), "{shown} not in\n{fetch}");
        }
    }
}
