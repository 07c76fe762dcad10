//! `flagsd generate`: the man pages ([`super::manual`]) and the shell
//! completions ([`super::complete`]), made from the command-line
//! definitions so that they never drift from `--help`.
//!
//! Like `rg --generate`, each prints to stdout by default (`flagsd generate
//! man | man -l -`, `source <(flagsd generate completions bash)`); with
//! `--output DIR` it writes files into DIR, creating it if needed, and
//! prints their paths. The Debian package runs it at build time
//! (`packaging/build-deb`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::complete::registration;
use super::manual::{Page, pages};
use crate::config::UsageError;
use crate::config::args::{CompletionShell, Generated};
use crate::job::FatalError;
use crate::model::exit::ExitStatus;

/// Writes what `what` asks for, made from `command` (the whole command line).
pub fn generate(command: clap::Command, what: &Generated) -> Result<ExitStatus, FatalError> {
    match what {
        Generated::Man { page, output } => man(command, page.as_deref(), output.as_deref()),
        Generated::Completions { shell, output } => completions(*shell, output.as_deref()),
    }
}

/// The page named `page` (all of them with an output directory and no
/// name; `flagsd.1` on stdout), to stdout or into `output`.
fn man(command: clap::Command, page: Option<&str>, output: Option<&Path>) -> Result<ExitStatus, FatalError> {
    let mut all = pages(command);
    let chosen: Vec<Page> = match (page, output) {
        (None, Some(_)) => all,
        (name, _) => {
            let name = name.unwrap_or("flagsd.1");
            let Some(at) = all.iter().position(|p| p.name == name) else {
                let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
                return Err(UsageError(format!("no man page '{name}' (pages: {})", names.join(", "))).into());
            };
            vec![all.swap_remove(at)]
        }
    };
    let files: Vec<(String, Vec<u8>)> = chosen.into_iter().map(|p| (p.name, p.text.into_bytes())).collect();
    emit(output, files)
}

/// The completion script of `shell`, to stdout or into `output`.
fn completions(shell: CompletionShell, output: Option<&Path>) -> Result<ExitStatus, FatalError> {
    let file = match shell {
        CompletionShell::Bash => "flagsd.bash",
        CompletionShell::Zsh => "_flagsd",
        CompletionShell::Fish => "flagsd.fish",
        CompletionShell::Elvish => "flagsd.elv",
        CompletionShell::Powershell => "_flagsd.ps1",
    };
    let script = registration(shell, &completer()).map_err(|source| FatalError::Generate {
        path: output.map_or_else(|| PathBuf::from("-"), |dir| dir.join(file)),
        source,
    })?;
    emit(output, vec![(file.to_owned(), script)])
}

/// How the scripts call flagsd: as this process was called, a bare name
/// (found on `PATH`) as it is, a relative path made absolute.
fn completer() -> String {
    let called = std::env::args_os().next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("flagsd"));
    let path = if called.components().count() > 1 && called.is_relative() {
        std::env::current_dir().map(|dir| dir.join(&called)).unwrap_or(called)
    } else {
        called
    };
    path.to_string_lossy().into_owned()
}

/// Writes `files` (name, contents) to stdout, or into `output` (created if
/// missing), printing each path written.
fn emit(output: Option<&Path>, files: Vec<(String, Vec<u8>)>) -> Result<ExitStatus, FatalError> {
    let Some(dir) = output else {
        let mut stdout = std::io::stdout().lock();
        for (_, contents) in &files {
            stdout
                .write_all(contents)
                .and_then(|()| stdout.flush())
                .map_err(|source| FatalError::Generate { path: PathBuf::from("-"), source })?;
        }
        return Ok(ExitStatus::Success);
    };
    std::fs::create_dir_all(dir).map_err(|source| FatalError::Generate { path: dir.to_owned(), source })?;
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| FatalError::Generate { path: path.clone(), source })?;
        println!("{}", path.display());
    }
    Ok(ExitStatus::Success)
}
