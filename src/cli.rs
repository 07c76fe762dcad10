//! The command tree (clap): the subcommands and the global options, over
//! the argument structs that [`crate::config::args`] and
//! [`crate::testserver::options`] define. Raw arguments only: they are
//! checked where they are used.

use clap::{Parser, Subcommand};

use crate::config::args::{CancelArgs, ConfigArgs, EXIT_STATUS_HELP, FetchArgs, GenerateArgs, ReloadArgs, RunArgs};
use crate::sys::logging::LogFormat;
use crate::testserver::options::TestServerArgs;

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
    /// Check the configuration and report every problem found (secrets are
    /// not read: the service reads them as it starts).
    CheckConfig(ConfigArgs),
    /// Check the configuration, then ask the daemon with process id PID to
    /// reload it (SIGHUP); for a unit's ExecReload=.
    Reload(ReloadArgs),
    /// Show each batch's last and next run (from the daemon, else the state database).
    Status(ConfigArgs),
    /// Cancel a batch's run in progress (in the fleet, or in the daemon).
    Cancel(CancelArgs),
    /// Serve the bundled flags over HTTP, for tests, demos and benchmarks.
    Testserver(TestServerArgs),
    /// Write the man pages or a shell's completions (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
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
