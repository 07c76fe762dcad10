//! The command tree (clap): the subcommands and the global options, over
//! the argument structs that [`crate::config::args`] and
//! [`crate::testserver::options`] define. Raw arguments only: they are
//! checked where they are used.
//!
//! [`command`] is the tree the binary parses and documents (help, man
//! pages, completions): [`Cli`]'s, with each command's own default of
//! `--log-level` in its help, from [`log_default`], the one place that
//! says what each command logs.

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::config::args::{
    CancelArgs, ConfigArgs, EXIT_STATUS_HELP, FetchArgs, GenerateArgs, ReloadArgs, RunArgs, StatusArgs, TriggerArgs,
};
use crate::sys::logging::LogFormat;
use crate::testserver::options::TestServerArgs;

/// What flagsd is, in a line: the first line of `--help` and the man page's
/// NAME.
pub const ABOUT: &str = "Download country flags by two-letter code, concurrently, once or as a daemon";

/// The help of `--log-level`, before its default.
const LOG_LEVEL_HELP: &str = "Diagnostics level on stderr, as an EnvFilter (`debug`, `flagsd=trace`, ...)";

/// flagsd: downloads country flags by two-letter code, concurrently.
#[derive(Debug, Parser)]
#[command(name = "flagsd", version, about = ABOUT, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// Diagnostics level on stderr, as an EnvFilter (`debug`, `flagsd=trace`, ...)
    #[arg(long, global = true, env = "FLAGSD_LOG", value_name = "FILTER", display_order = 900)]
    pub log_level: Option<String>,

    /// Diagnostics format: human-readable lines, or one JSON object per line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, display_order = 901)]
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
    /// Ask the daemon to reload its configuration: through its admin endpoint,
    /// or (with PID, for a unit's ExecReload=) by SIGHUP once the file checks.
    Reload(ReloadArgs),
    /// Show each batch's last and next run (from the daemon, else the state database).
    Status(StatusArgs),
    /// Start a batch's run now (in the fleet, or in the daemon), and wait for it if asked.
    Trigger(TriggerArgs),
    /// Cancel a batch's run in progress (in the fleet, or in the daemon).
    Cancel(CancelArgs),
    /// Serve the bundled flags over HTTP, for tests, demos and benchmarks.
    Testserver(TestServerArgs),
    /// Write the man pages, or a shell's completions, to stdout or into a directory.
    Generate(GenerateArgs),
}

/// What a command logs when neither `--log-level` nor `FLAGSD_LOG` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDefault {
    /// The level, as `--help` shows it.
    pub level: &'static str,
    /// The filter installed: the level, less the noise of the libraries the
    /// command runs.
    pub filter: &'static str,
}

/// The default diagnostics of the command named `command`: `info` for
/// `serve` (without actix's start and stop lines), `warn` elsewhere (for
/// `testserver`, without the errors of the faults it injects).
pub fn log_default(command: &str) -> LogDefault {
    match command {
        "serve" => LogDefault { level: "info", filter: "info,actix_server=warn,actix_web=warn,async_nats=warn" },
        "testserver" => LogDefault { level: "warn", filter: "warn,actix_http=off" },
        _ => LogDefault { level: "warn", filter: "warn" },
    }
}

/// The command tree the binary parses: [`Cli`]'s, with `--log-level`'s
/// default in each command's help, and `check-config`'s `-v` described as
/// what it does there (print the resolved paths).
pub fn command() -> clap::Command {
    let root = Cli::command();
    let Some(log_level) = root.get_arguments().find(|a| a.get_id() == "log_level").cloned() else {
        return root;
    };
    let mut others: Vec<String> = Vec::new();
    let root = root.mut_subcommands(|sub| {
        let default = log_default(sub.get_name());
        if default.level != log_default("").level {
            others.push(format!("{} for {}", default.level, sub.get_name()));
        }
        // A command's own copy of a global argument is kept as it is when
        // clap hands the global one down.
        let sub = sub.arg(log_level.clone().help(format!("{LOG_LEVEL_HELP} [default: {}]", default.level)));
        if sub.get_name() == "check-config" {
            sub.mut_arg("verbose", |arg| {
                arg.help(
                    "Also print every file and directory the configuration names, resolved, and where each was set",
                )
            })
        } else {
            sub
        }
    });
    let mut shown = log_default("").level.to_owned();
    for other in &others {
        shown.push_str("; ");
        shown.push_str(other);
    }
    root.mut_arg("log_level", |arg| arg.help(format!("{LOG_LEVEL_HELP} [default: {shown}]")))
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches as _;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let matches = command().try_get_matches_from(args).unwrap();
        Cli::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn definitions_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn max_req_has_an_underscore_alias() {
        let Command::Fetch(args) = parse(&["flagsd", "fetch", "--max_req", "5"]).command else { panic!("not fetch") };
        assert_eq!(args.max_req, "5");
    }

    #[test]
    fn each_command_shows_its_own_log_default_and_parses_the_level_either_side() {
        let mut command = command();
        for sub in command.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            let default = log_default(sub.get_name());
            assert!(default.filter.starts_with(default.level), "{default:?}");
            assert!(help.contains(&format!("[default: {}]", default.level)), "{}: {help}", sub.get_name());
        }
        assert!(command.render_help().to_string().contains("[default: warn; info for serve]"));
        for args in [["flagsd", "--log-level", "debug", "serve"], ["flagsd", "serve", "--log-level", "debug"]] {
            assert_eq!(parse(&args).log_level.as_deref(), Some("debug"), "{args:?}");
        }
    }
}
