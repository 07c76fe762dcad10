//! The `flagsd` binary: answer a shell's completion request, or parse, set
//! up logging, run a command, and exit with its status.
//!
//! Every usage error (clap's own, or a value flagsd checks) is one
//! `*** Usage error: …` line naming the argument, then the usage line of
//! the command it is about, on stderr, and status 2. A bare `flagsd` prints
//! the help on stdout, and status 2 too: it did nothing.

use clap::FromArgMatches as _;
use clap::error::ErrorKind;
use flagsd::app;
use flagsd::cli::{self, Cli, Command};
use flagsd::config::{ConfigSource, FetchConfig, UsageError};
use flagsd::job::FatalError;
use flagsd::model::exit::ExitStatus;
use flagsd::model::text::{log_safe, terminal_safe_lines};

/// The usage line of `fetch`, as flags2 prints it (the shared spec asks for
/// this one-line hint).
const FETCH_USAGE: &str =
    "usage: flagsd fetch [-a | -e] [-l N] [-m N] [-s LABEL|URL] [-v | -q] [-o DIR] [CC ...]  (see flagsd fetch --help)";

/// Error lines quote what servers, fleet nodes, files and arguments hold:
/// each line is made safe for a terminal before it is printed.
fn main() {
    app::complete::answer_if_asked();
    let mut command = cli::command();
    let status = match command.try_get_matches_from_mut(std::env::args_os()) {
        Ok(matches) => {
            let path = subcommand_path(&matches);
            match Cli::from_arg_matches(&matches) {
                Ok(parsed) => {
                    run(parsed, path.first().map_or("", String::as_str)).unwrap_or_else(|error| match &error {
                        FatalError::Usage(usage) => usage_error(&usage.to_string(), &usage_line(&command, &path)),
                        FatalError::Config(problems) => {
                            eprintln!("{}", terminal_safe_lines(&problems.to_string()));
                            error.exit_status()
                        }
                        other => {
                            eprintln!("*** Error: {}", terminal_safe_lines(&other.to_string()));
                            error.exit_status()
                        }
                    })
                }
                Err(e) => clap_error(&command, &e),
            }
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => missing_command(&mut command, &e),
        Err(e) if e.use_stderr() => clap_error(&command, &e),
        // --help and --version: clap prints them and exits 0.
        Err(e) => e.exit(),
    };
    std::process::exit(status.code());
}

/// Says a usage error: the message, then the usage line.
fn usage_error(message: &str, usage: &str) -> ExitStatus {
    eprintln!("*** Usage error: {}", terminal_safe_lines(message));
    eprintln!("{usage}");
    ExitStatus::Usage
}

/// Says a usage error that clap found: its message (with the arguments it
/// lists, such as the missing ones) and the usage line of its command.
fn clap_error(command: &clap::Command, error: &clap::Error) -> ExitStatus {
    let text = error.render().to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    let listed: Vec<&str> = lines.by_ref().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    if !listed.is_empty() {
        message.push(' ');
        message.push_str(&listed.join(", "));
    }
    let usage = match text.lines().find_map(|l| l.strip_prefix("Usage: ")) {
        Some(clap_usage) => described(clap_usage, &usage_path(clap_usage)),
        // Some errors (a missing value) come without a usage line: the
        // command is then the one the words name.
        None => usage_line(command, &named_path(command)),
    };
    usage_error(&message, &usage)
}

/// The subcommands a usage line of clap's names
/// (`flagsd generate man [OPTIONS] [PAGE]`: `generate`, `man`).
fn usage_path(clap_usage: &str) -> Vec<String> {
    clap_usage.split(' ').take_while(|w| !w.starts_with(['[', '<'])).skip(1).map(str::to_owned).collect()
}

/// The subcommands the command line names, as far as it names them.
fn named_path(command: &clap::Command) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = command;
    for word in std::env::args_os().skip(1) {
        if let Some(sub) = word.to_str().and_then(|w| at.find_subcommand(w)) {
            path.push(sub.get_name().to_owned());
            at = sub;
        }
    }
    path
}

/// A command that needs a subcommand was given none: a bare `flagsd`
/// prints the help (on stdout); a bare `flagsd generate` is a usage error
/// that lists the subcommands it takes.
fn missing_command(command: &mut clap::Command, error: &clap::Error) -> ExitStatus {
    let text = error.render().to_string();
    let clap_usage = text.lines().find_map(|l| l.strip_prefix("Usage: ")).unwrap_or_default();
    let path = usage_path(clap_usage);
    let Some(sub) = path.iter().try_fold(command.clone(), |at, name| at.find_subcommand(name).cloned()) else {
        return usage_error(text.lines().next().unwrap_or_default(), &described(clap_usage, &path));
    };
    if path.is_empty() {
        print!("{}", command.render_help());
        return ExitStatus::Usage;
    }
    let names: Vec<&str> = sub
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(clap::Command::get_name)
        .filter(|n| *n != "help")
        .collect();
    usage_error(
        &format!("'flagsd {}' needs a command: {}", path.join(" "), names.join(", ")),
        &described(clap_usage, &path),
    )
}

/// The names of the subcommands `matches` went through (`["generate", "man"]`).
fn subcommand_path(matches: &clap::ArgMatches) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = matches;
    while let Some((name, sub)) = at.subcommand() {
        path.push(name.to_owned());
        at = sub;
    }
    path
}

/// The usage line of the command at `path` (the root when empty).
fn usage_line(command: &clap::Command, path: &[String]) -> String {
    let mut at = command.clone();
    for name in path {
        match at.find_subcommand(name) {
            Some(sub) => at = sub.clone(),
            None => break,
        }
    }
    let usage = at.render_usage().to_string();
    described(usage.strip_prefix("Usage: ").unwrap_or(&usage), path)
}

/// `usage`, the usage line of the command at `path`, as flagsd prints it:
/// `usage: …  (see flagsd COMMAND --help)`; the root's lists the commands,
/// `fetch`'s is flags2's.
fn described(usage: &str, path: &[String]) -> String {
    if path.first().is_some_and(|c| c == "fetch") {
        return FETCH_USAGE.to_owned();
    }
    if path.is_empty() {
        let commands: Vec<String> =
            cli::command().get_subcommands().filter(|c| !c.is_hide_set()).map(|c| c.get_name().to_owned()).collect();
        return format!("usage: flagsd [OPTIONS] <{}> ...  (see flagsd --help)", commands.join("|"));
    }
    format!("usage: {usage}  (see flagsd {} --help)", path.join(" "))
}

/// Runs `cli`'s command, whose name is `name`.
fn run(cli: Cli, name: &str) -> Result<ExitStatus, FatalError> {
    flagsd::sys::logging::init(cli.log_level.as_deref(), cli::log_default(name).filter, cli.log_format, log_safe)
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
            let source = ConfigSource::from_args(&args.config)?;
            let settings = source.load_for_run(&args.batches)?;
            let overlap = app::run::Overlap::new(&source, args.exclusive);
            let printed = match (args.json, args.quiet) {
                (true, _) => app::run::Printed::Json,
                (_, true) => app::run::Printed::Nothing,
                _ => app::run::Printed::Reports,
            };
            system.block_on(app::run::run(settings, &args.batches, printed, &overlap))
        }
        Command::Serve(args) => system.block_on(flagsd::daemon::serve(ConfigSource::from_args(&args)?)),
        Command::CheckConfig(args) => app::check_config::check_config(&ConfigSource::from_args(&args)?),
        Command::Reload(args) => {
            let source = ConfigSource::from_args(&args.config)?;
            match args.pid {
                Some(pid) => app::reload::signal(&source, pid),
                None => system.block_on(app::reload::through_endpoint(&source)),
            }
        }
        Command::Status(args) => {
            let mut settings = ConfigSource::from_args(&args.config_args())?.load()?;
            let shown: Vec<String> =
                settings.select(&args.batches).map_err(UsageError)?.iter().map(|b| b.name.clone()).collect();
            settings.batches.retain(|b| shown.contains(&b.name));
            let shown = app::status::Shown { json: args.json, failures: !args.batches.is_empty() };
            system.block_on(app::status::status(&settings, shown))
        }
        Command::Trigger(args) => {
            let settings = ConfigSource::from_args(&args.config_args())?.load()?;
            system.block_on(app::trigger::trigger(&settings, &args.batch, args.wait))
        }
        Command::Cancel(args) => {
            let settings = ConfigSource::from_args(&args.config_args())?.load()?;
            system.block_on(app::cancel::cancel(&settings, &args.batch))
        }
        Command::Testserver(args) => system.block_on(app::testserver::testserver(args)),
        Command::Generate(args) => app::generate::generate(cli::command(), &args.what),
    }
}
