//! Disk faults: a full file system, one turned read-only mid-run, and the
//! output directory removed mid-run. Each affected code is an I/O error;
//! nothing panics, and no partial or temporary file is left.
//!
//! These mount a small tmpfs, which needs root (or CAP_SYS_ADMIN); where
//! that is not possible they print why and return.

use std::path::Path;

use flagsd::testserver::TestServerOptions;

use crate::helpers::*;

/// Runs a verbose `fetch -a` against a slow server into `out`, calling
/// `midway` once the first flag is saved; returns (status, stdout).
fn fetch_with_midway_fault(out: &Path, midway: impl FnOnce()) -> (Option<i32>, String) {
    let server =
        server(TestServerOptions { delay: Some("0.05..0.3".parse().unwrap()), ..TestServerOptions::default() });
    let mut cmd = flagsd_child();
    cmd.args(["fetch", "-a", "-v", "-m", "4", "-s", &server.url(), "-o"]).arg(out);
    act_after_first_outcome(cmd, |_| midway())
}

/// Every verbose line is `OK` or an I/O error containing `os_message`,
/// with at least one of each; the saved files are complete.
fn assert_ok_then_io_errors(stdout: &str, os_message: &str, dir: &Path) {
    let lines = verbose_lines(stdout);
    assert_eq!(lines.len(), 194, "{stdout}");
    let errors: Vec<&String> = lines.values().map(|l| &l[0]).filter(|l| !l.ends_with(" OK")).collect();
    assert!(!errors.is_empty(), "no I/O error: {stdout}");
    for line in &errors {
        assert!(line.contains(": I/O error (") && line.contains(os_message), "{line}");
    }
    let (ok, _, err) = final_counts(stdout);
    assert_eq!((ok, err), (194 - errors.len(), errors.len()));
    if dir.exists() {
        assert_eq!(assert_only_complete_flags(dir), ok);
    }
}

#[test]
fn a_full_disk_is_an_io_error_for_the_codes_that_do_not_fit() {
    let Some(tmpfs) = Tmpfs::mount("256k") else { return };
    let (status, stdout, _) = fetch(&tmpfs.path, &["-a", "-v", "-s", "DEMO"]);
    assert_eq!(status, 1, "{stdout}");
    assert_ok_then_io_errors(&stdout, "No space left on device", &tmpfs.path);
}

#[test]
fn a_file_system_turned_read_only_mid_run_is_an_io_error() {
    let Some(tmpfs) = Tmpfs::mount("16m") else { return };
    let (status, stdout) = fetch_with_midway_fault(&tmpfs.path, || tmpfs.remount_read_only());
    assert_eq!(status, Some(1), "{stdout}");
    assert_ok_then_io_errors(&stdout, "Read-only file system", &tmpfs.path);
}

#[test]
fn an_output_directory_removed_mid_run_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (status, stdout) = fetch_with_midway_fault(&out, || std::fs::remove_dir_all(&out).unwrap());
    assert_eq!(status, Some(1), "{stdout}");
    assert_ok_then_io_errors(&stdout, "No such file or directory", &out);
}
