//! The `flagsd` binary: parse, set up logging, run a command, exit with its status.

use clap::Parser as _;
use flagsd::app;
use flagsd::cli::{Cli, Command};
use flagsd::config::{ConfigSource, FetchConfig, UsageError};
use flagsd::job::FatalError;
use flagsd::model::exit::ExitStatus;
use flagsd::model::text::{log_safe, terminal_safe_lines};

const FETCH_USAGE: &str =
    "usage: flagsd fetch [-a | -e] [-l N] [-m N] [-s LABEL|URL] [-v] [-o DIR] [CC ...]  (see flagsd fetch --help)";
const GENERAL_USAGE: &str =
    "usage: flagsd <fetch|run|serve|status|cancel|check-config|reload|testserver> [OPTIONS]  (see flagsd --help)";

/// Error lines quote what servers, fleet nodes, files and arguments hold:
/// each line is made safe for a terminal before it is printed.
fn main() {
    let fetching = std::env::args().skip(1).any(|a| a == "fetch");
    let usage_error = |message: &str| {
        eprintln!("*** Usage error: {}", terminal_safe_lines(message));
        eprintln!("{}", if fetching { FETCH_USAGE } else { GENERAL_USAGE });
        ExitStatus::Usage
    };
    let status = match Cli::try_parse() {
        Ok(cli) => run(cli).unwrap_or_else(|error| match &error {
            FatalError::Usage(usage) => usage_error(&usage.to_string()),
            FatalError::Config(problems) => {
                eprintln!("{}", terminal_safe_lines(&problems.to_string()));
                error.exit_status()
            }
            other => {
                eprintln!("*** Error: {}", terminal_safe_lines(&other.to_string()));
                error.exit_status()
            }
        }),
        Err(e) if e.use_stderr() => usage_error(clap_message(&e).as_str()),
        // --help and --version: clap prints them and exits 0.
        Err(e) => e.exit(),
    };
    std::process::exit(status.code());
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

fn run(cli: Cli) -> Result<ExitStatus, FatalError> {
    // actix's own lines are noise here: the daemon's server start/stop, and
    // the test server's errors for the faults it injects on purpose.
    let default_level = match cli.command {
        Command::Serve(_) => "info,actix_server=warn,actix_web=warn,async_nats=warn",
        Command::Testserver(_) => "warn,actix_http=off",
        _ => "warn",
    };
    flagsd::sys::logging::init(cli.log_level.as_deref(), default_level, cli.log_format, log_safe)
        .map_err(|e| UsageError(e.to_string()))?;
    // The system (and with it every abandoned download and its temporary
    // file) is dropped before `main` exits.
    let system = actix_rt::System::new();
    match cli.command {
        Command::Fetch(args) => {
            let source = ConfigSource {
                path: ConfigSource::file_or_default(args.config.clone()),
                overrides: Default::default(),
            };
            let config = FetchConfig::from_args(&args, &source.servers()?)?;
            system.block_on(app::fetch::run(config))
        }
        Command::Run(args) => {
            let settings = ConfigSource::from_args(&args.config)?.load_for_run(&args.batches)?;
            system.block_on(app::run::run(settings, &args.batches, args.json))
        }
        Command::Serve(args) => system.block_on(flagsd::daemon::serve(ConfigSource::from_args(&args)?)),
        Command::CheckConfig(args) => app::check_config::check_config(&ConfigSource::from_args(&args)?),
        Command::Reload(args) => app::reload::reload(&ConfigSource::from_args(&args.config)?, args.pid),
        Command::Status(args) => {
            let settings = ConfigSource::from_args(&args)?.load()?;
            system.block_on(app::status::status(&settings))
        }
        Command::Cancel(args) => {
            let settings = ConfigSource::from_args(&args.config_args())?.load()?;
            system.block_on(app::cancel::cancel(&settings, &args.batch))
        }
        Command::Testserver(args) => system.block_on(app::testserver::testserver(args)),
        Command::Generate(args) => {
            use clap::CommandFactory as _;
            app::generate::generate(Cli::command(), args.what, &args.output)
        }
    }
}
