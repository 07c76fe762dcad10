//! The `flagsd` binary: parse, set up logging, run a command, exit with its status.

use clap::Parser as _;
use flagsd::cli::{Cli, Command, TestServerArgs};
use flagsd::config::{ConfigSource, FetchConfig};
use flagsd::exit::{ExitStatus, FatalError};
use flagsd::testserver::{Faults, TestServerOptions, serve_forever};

const FETCH_USAGE: &str =
    "usage: flagsd fetch [-a | -e] [-l N] [-m N] [-s LABEL|URL] [-v] [-o DIR] [CC ...]  (see flagsd fetch --help)";

fn main() {
    let cli = Cli::parse();
    let fetching = matches!(cli.command, Command::Fetch(_));
    let status = run(cli).unwrap_or_else(|error| {
        match &error {
            FatalError::Usage(usage) => {
                eprintln!("*** Usage error: {usage}");
                if fetching {
                    eprintln!("{FETCH_USAGE}");
                }
            }
            FatalError::Config(problems) => eprintln!("{problems}"),
            other => eprintln!("*** Error: {other}"),
        }
        error.exit_status()
    });
    std::process::exit(status.code());
}

fn run(cli: Cli) -> Result<ExitStatus, FatalError> {
    // actix-web's own start/stop lines are noise in a daemon's log.
    let default_level =
        if matches!(cli.command, Command::Serve(_)) { "info,actix_server=warn,actix_web=warn" } else { "warn" };
    flagsd::logging::init(cli.log_level.as_deref(), default_level, cli.log_format)?;
    // The system (and with it every abandoned download and its temporary
    // file) is dropped before `main` exits.
    let system = actix_rt::System::new();
    match cli.command {
        Command::Fetch(args) => {
            let config = FetchConfig::from_args(&args)?;
            system.block_on(flagsd::fetch::run(config))
        }
        Command::Run(args) => {
            let settings = ConfigSource::from_args(&args.config)?.load()?;
            system.block_on(flagsd::run::run(settings, &args.batches))
        }
        Command::Serve(args) => system.block_on(flagsd::daemon::serve(ConfigSource::from_args(&args)?)),
        Command::CheckConfig(args) => check_config(&ConfigSource::from_args(&args)?),
        Command::Testserver(args) => system.block_on(testserver(args)),
    }
}

/// `flagsd check-config`: every problem on its own line, status 0 or 2.
fn check_config(source: &ConfigSource) -> Result<ExitStatus, FatalError> {
    let settings = source.load_checked()?;
    let scheduled = settings.batches.iter().filter(|b| b.every.is_some()).count();
    println!("{}: OK ({} batches, {scheduled} scheduled)", source.origin(), settings.batches.len());
    Ok(ExitStatus::Success)
}

async fn testserver(args: TestServerArgs) -> Result<ExitStatus, FatalError> {
    let options = TestServerOptions {
        root: args.root,
        delay: args.delay,
        faults: Faults {
            hang_rate: args.hang_rate,
            unavailable_rate: args.unavailable_rate,
            retry_after: args.retry_after,
            status_rate: args.status_rate,
            status: args.status,
            error_rate: args.error_rate,
            flap_rate: args.flap_rate,
            flap_failures: args.flap_failures,
            reset_rate: args.reset_rate,
            truncate_rate: args.truncate_rate,
            slow_rate: args.slow_rate,
            slow_interval: args.slow_interval,
        },
        seed: args.seed,
        workers: usize::from(args.workers),
        record: false,
    };
    serve_forever(args.bind, options).await?;
    Ok(ExitStatus::Success)
}
