//! `flagsd reload`: asks the daemon of a configuration file to read it
//! again, in one of two ways.
//!
//! **Without a PID**, through the daemon's admin endpoint (`[admin]
//! listen` in the file): `POST /reload`, a signed request with a token,
//! makes the daemon reload the file exactly as SIGHUP does, and answer with
//! what came of it: its batches, or the problems that kept the previous
//! configuration (status 2). The file is read here only to find the
//! endpoint (and its token); the daemon checks it, with its own
//! environment and permissions. No endpoint configured, or no daemon
//! answering, is status 3, with the way to name the process instead.
//!
//! **With a PID**, what a unit's `ExecReload=` runs. It checks the
//! configuration as `check-config` does (every problem on its own line,
//! status 2; secrets are not read, since systemd does not hand a service's
//! credentials to `ExecReload=`), and only a good file is followed by
//! SIGHUP to the daemon, which then reloads it. So `systemctl reload`
//! fails, with the reason in the journal, on a bad file, and the daemon
//! keeps its old configuration. The signal is sent by flagsd itself: a
//! minimal system has no `/bin/kill`.
//!
//! Before it signals, it checks that the process is the daemon of this
//! configuration: a `flagsd` program (`/proc/PID/exe`) running `serve`
//! with the same configuration file (its arguments, else its
//! `FLAGSD_CONFIG`, else the default path; relative to its working
//! directory). Any other process is left alone (status 3), so a stale or
//! mistyped PID never signals something else.
//!
//! The one exception is the PID that systemd itself names in `$MAINPID`,
//! which it sets for a unit's `ExecReload=`: that is the unit's main
//! process by the service manager's own account, and under the unit's
//! `PrivateUsers=` the reload runs in a user namespace of its own, where
//! the daemon's `/proc` entry is hidden (`ProtectProc=invisible` shows only
//! the processes one may trace).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};

use super::admin_client::{AdminClient, AdminError};
use crate::config::ConfigSource;
use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::model::text::terminal_safe;
use crate::present::api::{RELOAD_PATH, Reloaded};
use crate::present::report::emit;
use crate::sys::process::ProcessView;
use crate::sys::signals::send_hangup;

/// The most characters of a name the daemon sends back that are shown.
const MAX_NAME: usize = 200;

/// Asks the daemon of the configuration of `source` to reload it, through
/// its admin endpoint (`POST /reload`), and prints its answer.
pub async fn through_endpoint(source: &ConfigSource) -> Result<ExitStatus, FatalError> {
    let settings = source.load()?;
    let cannot = |why: String| {
        let (of, config) = match &source.path {
            Some(path) => (format!(" of {}", path.display()), format!(" --config {}", path.display())),
            None => (String::new(), String::new()),
        };
        FatalError::Admin(format!(
            "cannot ask the daemon{of} to reload: {why}; to signal its process instead: flagsd reload{config} PID"
        ))
    };
    let Some(admin) = &settings.admin else {
        return Err(cannot("the configuration has no admin endpoint ([admin] listen)".to_owned()));
    };
    let client = AdminClient::new(admin).map_err(|e| cannot(e.to_string()))?;
    match client.call::<Reloaded>(Method::POST, RELOAD_PATH).await {
        Ok(reloaded) => {
            let names: Vec<String> = reloaded.batches.iter().map(|b| terminal_safe(b, MAX_NAME)).collect();
            let count = match names.len() {
                1 => "1 batch".to_owned(),
                n => format!("{n} batches"),
            };
            let listed = if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) };
            let config = terminal_safe(&reloaded.config, MAX_NAME);
            emit(&format!("the daemon at {} reloaded {config}: {count}{listed}\n", client.url()));
            for warning in &reloaded.warnings {
                eprintln!("warning: {}", terminal_safe(warning, MAX_NAME));
            }
            Ok(ExitStatus::Success)
        }
        Err(AdminError::Refused { url, status: StatusCode::UNPROCESSABLE_ENTITY, message, problems }) => {
            eprintln!("the daemon at {url}: {message}:");
            for problem in &problems {
                eprintln!("{problem}");
            }
            Ok(ExitStatus::Usage)
        }
        Err(e) => Err(cannot(e.to_string())),
    }
}

/// Checks the configuration of `source` and that `pid` is its daemon, then
/// sends SIGHUP to `pid`.
pub fn signal(source: &ConfigSource, pid: u32) -> Result<ExitStatus, FatalError> {
    let settings = source.load_checked()?;
    if !named_by_systemd(pid) {
        let view = ProcessView::of(pid)
            .map_err(|e| FatalError::NotTheDaemon { pid, why: format!("cannot inspect it ({e})") })?;
        check_daemon(&view, source.path.as_deref()).map_err(|why| FatalError::NotTheDaemon { pid, why })?;
    }
    send_hangup(pid).map_err(|source| FatalError::Signal { pid, source })?;
    println!("{}: OK ({}); asked flagsd (process {pid}) to reload it", source.origin(), settings.batch_count());
    Ok(ExitStatus::Success)
}

/// Whether systemd runs this process as a control process (`ExecReload=`)
/// of the unit whose main process is `pid`.
fn named_by_systemd(pid: u32) -> bool {
    std::env::var("MAINPID").is_ok_and(|main| main.trim() == pid.to_string())
}

/// Whether `daemon` is `flagsd serve` of the configuration file `ours`
/// (`None`: no file); why not, otherwise.
fn check_daemon(daemon: &ProcessView, ours: Option<&Path>) -> Result<(), String> {
    let me = std::env::current_exe().ok();
    let flagsd = me.as_ref().and_then(|me| me.file_name()).is_some_and(|name| daemon.exe.file_name() == Some(name))
        || me.as_ref().is_some_and(|me| same_file(me, &daemon.exe));
    if !flagsd {
        return Err(format!("it runs {}, not flagsd", daemon.exe.display()));
    }
    let Some(serve_args) = serve_args(&daemon.args) else {
        return Err(format!("it runs {}, not flagsd serve", shown(&daemon.args)));
    };
    let theirs = config_arg(serve_args)
        .or_else(|| daemon.env("FLAGSD_CONFIG").map(PathBuf::from))
        .map(|path| daemon.cwd.join(path));
    let theirs = ConfigSource::file_or_default(theirs);
    let same = match (&theirs, ours) {
        (None, None) => true,
        (Some(theirs), Some(ours)) => same_file(theirs, ours),
        _ => false,
    };
    if !same {
        let name = |path: Option<&Path>| path.map_or("no configuration file".to_owned(), |p| p.display().to_string());
        return Err(format!("it is flagsd serve of {}, not of {}", name(theirs.as_deref()), name(ours)));
    }
    Ok(())
}

/// The arguments after `serve` in a flagsd command line; `None` when it
/// runs another command. The global options before it may take a value.
fn serve_args(args: &[OsString]) -> Option<&[OsString]> {
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        match arg.to_str() {
            Some("serve") => return Some(&args[i + 1..]),
            Some("--log-level" | "--log-format") => i += 2,
            Some(option) if option.starts_with('-') => i += 1,
            _ => return None,
        }
    }
    None
}

/// The configuration file `serve`'s arguments name: `-c FILE`, `-cFILE`,
/// `--config FILE` or `--config=FILE` (the last one wins, as clap reads it).
fn config_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut found = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        if bytes == b"-c" || bytes == b"--config" {
            found = args.next().map(PathBuf::from);
        } else if let Some(value) = bytes.strip_prefix(b"--config=") {
            found = Some(PathBuf::from(OsStr::from_bytes(value)));
        } else if let Some(value) = bytes.strip_prefix(b"-c").filter(|v| !v.is_empty() && !bytes.starts_with(b"--")) {
            found = Some(PathBuf::from(OsStr::from_bytes(value)));
        }
    }
    found
}

/// Whether `a` and `b` name the same file (as the file system resolves
/// them; two paths to a missing file compare as written).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A command line as one line of text.
fn shown(args: &[OsString]) -> String {
    let words: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    crate::model::text::terminal_safe(&words.join(" "), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn the_configuration_file_is_read_from_the_serve_arguments() {
        let cases = [
            ("flagsd serve", None),
            ("flagsd serve -c a.toml", Some("a.toml")),
            ("flagsd serve -ca.toml", Some("a.toml")),
            ("flagsd serve --config a.toml -v", Some("a.toml")),
            ("flagsd --log-level debug serve --config=/etc/b.toml", Some("/etc/b.toml")),
            ("flagsd serve -c a.toml -c b.toml", Some("b.toml")),
        ];
        for (line, expected) in cases {
            let line_args = args(line);
            let serve = serve_args(&line_args).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(config_arg(serve), expected.map(PathBuf::from), "{line}");
        }
        for other in ["flagsd status", "flagsd run serve", "flagsd", "flagsd --log-level serve status"] {
            assert_eq!(serve_args(&args(other)), None, "{other}");
        }
    }
}
