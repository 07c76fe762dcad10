//! `flagsd check-config`: reads the configuration as `serve` would and
//! reports every problem, or a one-line summary, after any warning; with
//! `-v`, the path of every file and directory it names, resolved.

use std::path::Path;

use crate::config::{ConfigSource, Settings, UsageError, defaults};
use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::model::text::terminal_safe_lines;

/// Checks the configuration of `source`: every problem on its own line
/// (status 2), else the warnings (secret files others can read) and a note
/// for a file that sets nothing on stderr, and `FILE: OK (N batches, M
/// scheduled)` (status 0), followed with `-v` by the paths. With no file to
/// check (none named, and no default file), a usage error (status 2).
pub fn check_config(source: &ConfigSource) -> Result<ExitStatus, FatalError> {
    if source.path.is_none() {
        return Err(UsageError(format!(
            "no configuration file to check: give --config FILE or set FLAGSD_CONFIG (the default, {}, does not \
             exist)",
            defaults::CONFIG_PATH
        ))
        .into());
    }
    let settings = source.load_checked()?;
    let origin = source.origin();
    for warning in settings.secret_warnings(&origin, &[]) {
        eprintln!("{}", terminal_safe_lines(&warning.to_string()));
    }
    if !settings.places.any_in_file() {
        eprintln!(
            "{}",
            terminal_safe_lines(&format!(
                "{origin}: note: the file sets nothing (it is empty, or only comments): the built-in defaults \
                 apply, and there are no batches"
            ))
        );
    }
    let scheduled = settings.batches.iter().filter(|b| b.every.is_some()).count();
    println!("{}", terminal_safe_lines(&format!("{origin}: OK ({}, {scheduled} scheduled)", settings.batch_count())));
    if source.overrides.verbose {
        for line in path_lines(&settings, &origin) {
            println!("  {}", terminal_safe_lines(&line));
        }
    }
    Ok(ExitStatus::Success)
}

/// One line per path the configuration names: its key, the path made
/// absolute, and where it was set (`default` when nowhere).
fn path_lines(settings: &Settings, origin: &str) -> Vec<String> {
    settings
        .paths()
        .into_iter()
        .map(|(key, path)| {
            let set =
                settings.places.exactly(&key).map_or_else(|| "default".to_owned(), |place| place.describe(origin));
            let from = if path.is_relative() { ", from the working directory" } else { "" };
            format!("{key}: {} ({set}{from})", absolute(path).display())
        })
        .collect()
}

/// `path` made absolute from the working directory, as it will be used.
fn absolute(path: &Path) -> std::borrow::Cow<'_, Path> {
    std::path::absolute(path).map_or(std::borrow::Cow::Borrowed(path), std::borrow::Cow::Owned)
}
