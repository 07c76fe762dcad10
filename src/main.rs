//! The `flagsd` binary: parse, set up logging, run a command, exit with its status.

use clap::Parser as _;
use flagsd::cli::{Cli, Command, FetchArgs, TestServerArgs};
use flagsd::config::FetchConfig;
use flagsd::exit::{ExitStatus, FatalError};
use flagsd::testserver::{TestServerOptions, serve_forever};

const FETCH_USAGE: &str = "usage: flagsd fetch [-a | -e] [-l N] [-m N] [-s LABEL|URL] [-v] [-o DIR] [CC ...]  (see flagsd fetch --help)";

fn main() {
    let cli = Cli::parse();
    let status = run(cli).unwrap_or_else(|error| {
        match &error {
            FatalError::Usage(usage) => {
                eprintln!("*** Usage error: {usage}");
                eprintln!("{FETCH_USAGE}");
            }
            other => eprintln!("*** Error: {other}"),
        }
        error.exit_status()
    });
    std::process::exit(status.code());
}

fn run(cli: Cli) -> Result<ExitStatus, FatalError> {
    flagsd::logging::init(cli.log_level.as_deref())?;
    // The system (and with it every abandoned download and its temporary
    // file) is dropped before `main` exits.
    let system = actix_rt::System::new();
    match cli.command {
        Command::Fetch(args) => system.block_on(fetch(args)),
        Command::Testserver(args) => system.block_on(testserver(args)),
    }
}

async fn fetch(args: FetchArgs) -> Result<ExitStatus, FatalError> {
    let config = FetchConfig::from_args(&args)?;
    flagsd::fetch::run(config).await
}

async fn testserver(args: TestServerArgs) -> Result<ExitStatus, FatalError> {
    let options = TestServerOptions {
        root: args.root,
        delay: args.delay,
        error_rate: args.error_rate,
        truncate_rate: args.truncate_rate,
        seed: args.seed,
        workers: usize::from(args.workers),
    };
    serve_forever(args.bind, options).await?;
    Ok(ExitStatus::Success)
}
