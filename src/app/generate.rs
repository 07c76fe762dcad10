//! `flagsd generate`: the man pages and shell completions, made from the
//! command-line definitions so that they never drift from `--help`. The
//! Debian package runs it at build time (`packaging/build-deb`).

use std::path::{Path, PathBuf};

use clap_complete::Shell;

use crate::config::args::Generated;
use crate::job::FatalError;
use crate::model::exit::ExitStatus;

/// Writes `what` for `command` (the whole command line) into `dir`, and
/// prints the path of what was written.
pub fn generate(mut command: clap::Command, what: Generated, dir: &Path) -> Result<ExitStatus, FatalError> {
    let written: std::io::Result<PathBuf> = match what {
        Generated::Man => clap_mangen::generate_to(command, dir).map(|()| dir.to_owned()),
        Generated::Bash => clap_complete::generate_to(Shell::Bash, &mut command, "flagsd", dir),
        Generated::Zsh => clap_complete::generate_to(Shell::Zsh, &mut command, "flagsd", dir),
        Generated::Fish => clap_complete::generate_to(Shell::Fish, &mut command, "flagsd", dir),
    };
    let path = written.map_err(|source| FatalError::Generate { path: dir.to_owned(), source })?;
    println!("{}", path.display());
    Ok(ExitStatus::Success)
}
