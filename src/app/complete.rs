//! Shell completions, through clap_complete's dynamic mechanism: the
//! script that `flagsd generate completions SHELL` prints (clap_complete
//! calls it the registration) runs `COMPLETE=SHELL flagsd -- WORDS…` at each
//! Tab, and flagsd answers from its own command tree, so the completions
//! never drift from the options. On top of what clap knows, it offers what
//! the configuration names:
//!
//! - the server labels (built-in and `[servers]`, with their URLs) for
//!   every argument whose id is `server` (`fetch -s`);
//! - the batch names (with their schedules) for every argument whose value
//!   name is [`BATCH`]: `run`, `status`, `trigger`, `cancel`, and any command added
//!   with that value name.
//!
//! The configuration is the file that the words being completed name with
//! `-c FILE`, `-cFILE`, `--config FILE` or `--config=FILE`, else
//! `$FLAGSD_CONFIG`, else the default path when it exists. It is read only
//! when a name is asked for, offline, leniently (see
//! [`crate::config::names`]): a missing or broken file offers the built-in
//! labels and no batch, and says nothing.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter, CompletionCandidate};
use clap_complete::env::{CompleteEnv, EnvCompleter, Shells};

use crate::config::ConfigSource;
use crate::config::args::{BATCH, CompletionShell};
use crate::config::names::{ConfiguredNames, Named, configured_names};

/// The environment variable that asks flagsd to complete (clap_complete's).
pub const VAR: &str = "COMPLETE";

/// The binary's name, as shells know it.
const BIN: &str = "flagsd";

/// When `COMPLETE` is set, answers the shell (the candidates for the words
/// after `--`, or with no words the registration script) and exits;
/// otherwise returns at once.
pub fn answer_if_asked() {
    let words: Vec<OsString> = std::env::args_os().skip_while(|a| a != "--").skip(1).collect();
    let config = named_config(&words);
    CompleteEnv::with_factory(move || completing(crate::cli::command(), config.clone())).var(VAR).bin(BIN).complete();
}

/// The script that registers the completions of `shell`: it calls flagsd
/// as `completer` (how this process was called: a name found on `PATH`, or
/// a path).
pub fn registration(shell: CompletionShell, completer: &str) -> std::io::Result<Vec<u8>> {
    let name = match shell {
        CompletionShell::Bash => "bash",
        CompletionShell::Zsh => "zsh",
        CompletionShell::Fish => "fish",
        CompletionShell::Elvish => "elvish",
        CompletionShell::Powershell => "powershell",
    };
    let shells = Shells::builtins();
    let writer: &dyn EnvCompleter =
        shells.completer(name).ok_or_else(|| std::io::Error::other(format!("clap_complete knows no shell {name}")))?;
    let mut script = Vec::new();
    writer.write_registration(VAR, BIN, BIN, completer, &mut script)?;
    Ok(script)
}

/// The configuration file the words being completed name, if any
/// (`-c FILE`, `-cFILE`, `--config FILE`, `--config=FILE`; the last wins).
fn named_config(words: &[OsString]) -> Option<PathBuf> {
    let mut named = None;
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let text = word.to_string_lossy();
        if text == "--" {
            break;
        } else if text == "-c" || text == "--config" {
            named = words.next().map(PathBuf::from);
        } else if let Some(path) = text.strip_prefix("--config=") {
            named = Some(PathBuf::from(path));
        } else if let Some(path) = text.strip_prefix("-c").filter(|p| !p.is_empty() && !text.starts_with("--")) {
            named = Some(PathBuf::from(path));
        }
    }
    named
}

/// `command` with the configuration's names offered where they belong;
/// `config` is the file the command line names, if any.
pub fn completing(command: clap::Command, config: Option<PathBuf>) -> clap::Command {
    let names: Arc<OnceLock<ConfiguredNames>> = Arc::default();
    let read = move || {
        let path =
            config.clone().or_else(|| std::env::var_os("FLAGSD_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from));
        configured_names(ConfigSource::file_or_default(path).as_deref())
    };
    let read: Arc<dyn Fn() -> ConfiguredNames + Send + Sync> = Arc::new(read);
    let batches = {
        let (names, read) = (Arc::clone(&names), Arc::clone(&read));
        ArgValueCandidates::new(move || candidates(&names.get_or_init(|| read()).batches))
    };
    let servers = ArgValueCompleter::new(move |current: &OsStr| {
        let typed = current.to_string_lossy().to_ascii_uppercase();
        let known = &names.get_or_init(|| read()).servers;
        candidates(known)
            .into_iter()
            .filter(|c| c.get_value().to_string_lossy().to_ascii_uppercase().starts_with(&typed))
            .collect()
    });
    with_completers(command, &batches, &servers)
}

/// `command` and its subcommands, each batch argument completed by
/// `batches` and each server argument by `servers`.
fn with_completers(command: clap::Command, batches: &ArgValueCandidates, servers: &ArgValueCompleter) -> clap::Command {
    let ids: Vec<(clap::Id, bool)> = command
        .get_arguments()
        .filter_map(|arg| {
            let batch = arg.get_value_names().is_some_and(|names| names.iter().any(|n| n.as_str() == BATCH));
            (batch || arg.get_id() == "server").then(|| (arg.get_id().clone(), batch))
        })
        .collect();
    let mut command = command;
    for (id, batch) in ids {
        command = command.mut_arg(id, |arg| if batch { arg.add(batches.clone()) } else { arg.add(servers.clone()) });
    }
    command.mut_subcommands(|sub| with_completers(sub, batches, servers))
}

/// `named` as completion candidates, each with its description.
fn candidates(named: &[Named]) -> Vec<CompletionCandidate> {
    named.iter().map(|n| CompletionCandidate::new(n.name.clone()).help(n.about.clone().map(Into::into))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<OsString> {
        text.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn the_config_file_is_found_however_it_is_written() {
        for line in [
            "flagsd run -c a.toml x",
            "flagsd run --config a.toml",
            "flagsd -ca.toml run",
            "flagsd run --config=a.toml",
        ] {
            assert_eq!(named_config(&words(line)), Some(PathBuf::from("a.toml")), "{line}");
        }
        assert_eq!(named_config(&words("flagsd run -c a.toml -c b.toml")), Some(PathBuf::from("b.toml")));
        assert_eq!(named_config(&words("flagsd run -- -c a.toml")), None);
        assert_eq!(named_config(&words("flagsd run --cacert x")), None);
    }

    #[test]
    fn batch_arguments_are_found_by_their_value_name() {
        let mut command = completing(crate::cli::command(), None);
        command.build();
        let completed: Vec<String> = command
            .get_subcommands()
            .flat_map(|sub| {
                sub.get_arguments()
                    .filter(|a| a.get::<ArgValueCandidates>().is_some())
                    .map(|a| format!("{} {}", sub.get_name(), a.get_id()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(completed, ["run batches", "status batches", "trigger batch", "cancel batch"]);
    }
}
