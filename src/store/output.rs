//! The output directory: where flags land, and how they land safely.
//!
//! Every body is written to a temporary file beside its target and renamed
//! over it when complete. Temporary files are named
//! `.{CC}.gif.{random}.{pid}.flagsd-tmp`: a dot file (hidden from `ls` and
//! globs), and carrying the process id so that a later run can tell the
//! leftovers of a killed process (removed at start) from the live files of a
//! concurrent one (kept). A temporary file is deleted when dropped, so a
//! download abandoned at any point (error, timeout, Ctrl-C) leaves nothing.
//!
//! A leftover is removed only when its process is gone *and* it has not been
//! written for [`STALE_AFTER`]: under systemd's `ProtectProc=invisible` one
//! unit cannot see another's processes, so a live download elsewhere could
//! look orphaned; it cannot look idle that long, since the read timeout ends
//! any download that stops writing.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::NamedTempFile;

use crate::model::codes::CountryCode;

/// Suffix that marks flagsd's temporary files.
const TEMP_SUFFIX: &str = ".flagsd-tmp";

/// How long a leftover temporary file must have been idle to be removed.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// The output directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to output directory '{}': {source}", path.display())]
pub struct OutputDirError {
    /// The directory as given.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: io::Error,
}

/// A checked, writable output directory.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    /// `path` made absolute once, for temporary files: given a relative
    /// directory, `tempfile` would ask for the working directory (a
    /// `getcwd` call) on every file.
    temp_dir: PathBuf,
    temp_suffix: String,
}

impl OutputDir {
    /// Creates `path` if missing, proves it writable by creating and removing
    /// a temporary file, and removes temporary files left by dead processes.
    pub fn prepare(path: &Path) -> Result<Self, OutputDirError> {
        let fail = |source| OutputDirError { path: path.to_owned(), source };
        fs::create_dir_all(path).map_err(fail)?;
        let dir = Self {
            path: path.to_owned(),
            temp_dir: std::path::absolute(path).map_err(fail)?,
            temp_suffix: format!(".{}{TEMP_SUFFIX}", std::process::id()),
        };
        drop(dir.new_temp(".probe.").map_err(fail)?);
        dir.remove_stale_temp_files();
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the flag of `code` is saved: `{CC}.gif`.
    pub fn target_path(&self, code: CountryCode) -> PathBuf {
        self.path.join(format!("{code}.gif"))
    }

    /// A new temporary file for `code`'s body, deleted unless persisted.
    pub fn temp_file(&self, code: CountryCode) -> io::Result<NamedTempFile> {
        self.new_temp(&format!(".{code}.gif."))
    }

    fn new_temp(&self, prefix: &str) -> io::Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix(prefix)
            .suffix(&self.temp_suffix)
            // Final files get the usual 0666 & !umask, not tempfile's 0600.
            .permissions(fs::Permissions::from_mode(0o666))
            .tempfile_in(&self.temp_dir)
    }

    /// Removes temporary files whose process is gone. Best effort: a file
    /// that cannot be removed is logged and left.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(temp_file_pid) else {
                continue;
            };
            let idle = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if process_alive(pid) || idle.is_none_or(|idle| idle < STALE_AFTER) {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a stale temporary file"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale temporary file")
                }
            }
        }
    }
}

/// The process id in a temporary file name, if `name` is one of ours.
fn temp_file_pid(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    stem.rsplit_once('.')?.1.parse().ok()
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn temp_file_names_carry_the_pid() {
        assert_eq!(temp_file_pid(".BR.gif.abc123.4242.flagsd-tmp"), Some(4242));
        assert_eq!(temp_file_pid("BR.gif"), None);
        assert_eq!(temp_file_pid(".BR.gif.abc.flagsd-tmp.x"), None);
        assert_eq!(temp_file_pid(".BR.gif.abc.notapid.flagsd-tmp"), None);
    }

    #[test]
    fn stale_temp_files_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that cannot be alive (beyond the kernel's pid_max) and our own.
        let stale = dir.path().join(".BR.gif.xyz.4294967295.flagsd-tmp");
        let recent = dir.path().join(".CL.gif.xyz.4294967295.flagsd-tmp");
        let live = dir.path().join(format!(".AR.gif.xyz.{}.flagsd-tmp", std::process::id()));
        let other = dir.path().join("notes.txt");
        let long_ago = SystemTime::now() - STALE_AFTER - Duration::from_secs(60);
        for p in [&stale, &recent, &live, &other] {
            fs::write(p, b"x").unwrap();
            if p != &recent {
                fs::File::options().write(true).open(p).unwrap().set_modified(long_ago).unwrap();
            }
        }
        OutputDir::prepare(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(recent.exists(), "a recently written file may belong to a live process");
        assert!(live.exists());
        assert!(other.exists());
    }

    #[test]
    fn dropped_temp_files_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(dir.path()).unwrap();
        let code = CountryCode::new(b'B', b'R').unwrap();
        let temp = out.temp_file(code).unwrap();
        assert!(temp.path().exists());
        drop(temp);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_relative_directory_keeps_its_name_and_gets_temp_files_beside_its_flags() {
        // A directory under the working directory, named relatively.
        let dir = tempfile::Builder::new().prefix(".output-test").tempdir_in(".").unwrap();
        let relative = Path::new(dir.path().file_name().unwrap());
        let out = OutputDir::prepare(relative).unwrap();
        let code = CountryCode::new(b'B', b'R').unwrap();
        assert_eq!(out.target_path(code), relative.join("BR.gif"), "paths in reports stay as given");
        let temp = out.temp_file(code).unwrap();
        let beside = std::path::absolute(relative).unwrap();
        assert_eq!(temp.path().parent(), Some(beside.as_path()));
    }

    #[test]
    fn a_path_under_a_file_is_not_usable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = OutputDir::prepare(&file.join("sub")).unwrap_err();
        assert!(err.to_string().starts_with("cannot write to output directory '"), "{err}");
    }
}
