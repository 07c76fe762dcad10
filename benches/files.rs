//! How a downloaded flag should reach its name: the system calls that
//! `store::output` could use, timed side by side (issue 16 asked for
//! "`O_TMPFILE` + `linkat`, or a temporary name and a rename, whichever
//! measures faster and keeps the atomic guarantee").
//!
//! Each strategy writes 676 bodies of 10 KB (a flag's median size) into a
//! directory, in rounds that alternate the strategies, once onto fresh
//! names and once over existing files, and prints the median time per
//! file:
//!
//! - `rename`: a temporary name, `write`, `renameat` over the target (what
//!   flagsd does, through `tempfile`);
//! - `tmpfile+proc`: `O_TMPFILE`, `write`, then `linkat` of
//!   `/proc/self/fd/N` to the target. `linkat` cannot replace a file, so
//!   over an existing one it links a temporary name and renames that;
//! - `tmpfile+empty`: the same with `linkat(fd, "", AT_EMPTY_PATH)`, which
//!   Linux allows only with `CAP_DAC_READ_SEARCH` (not flagsd's service
//!   user); skipped without it.
//!
//! `cargo bench --bench files`; `FLAGSD_BENCH_DIR` picks the file system
//! (default `/dev/shm`, as the other benchmarks use tmpfs).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

const FILES: usize = 676;
const BODY: usize = 10 * 1024;
const ROUNDS: usize = 15;

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Rename,
    TmpfileProc,
    TmpfileEmpty,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::Rename => "rename",
            Self::TmpfileProc => "tmpfile+proc",
            Self::TmpfileEmpty => "tmpfile+empty",
        }
    }
}

fn check(result: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if result < 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("{what}: {error}")));
    }
    Ok(result)
}

fn c(text: &str) -> CString {
    CString::new(text).expect("no NUL in a generated name")
}

fn write_all(fd: &OwnedFd, body: &[u8]) -> io::Result<()> {
    // SAFETY: `body` is a live slice and `fd` an open descriptor.
    let written = unsafe { libc::write(fd.as_raw_fd(), body.as_ptr().cast(), body.len()) };
    if usize::try_from(written).ok() != Some(body.len()) {
        return Err(io::Error::other("short write"));
    }
    Ok(())
}

/// Writes `body` to `name` in the directory `dir` by `strategy`.
fn save(dir: &OwnedFd, strategy: Strategy, name: &str, serial: usize, body: &[u8]) -> io::Result<()> {
    let dir = dir.as_raw_fd();
    let target = c(name);
    let temp = c(&format!(".{name}.{serial}.tmp"));
    let flags = libc::O_WRONLY | libc::O_CLOEXEC;
    let fd = if strategy == Strategy::Rename {
        // SAFETY: valid descriptor and NUL-terminated name.
        unsafe { libc::openat(dir, temp.as_ptr(), flags | libc::O_CREAT | libc::O_EXCL, 0o666) }
    } else {
        // SAFETY: as above; O_TMPFILE names the directory itself.
        unsafe { libc::openat(dir, c".".as_ptr(), flags | libc::O_TMPFILE, 0o666) }
    };
    // SAFETY: a descriptor just returned by openat, owned from here on.
    let file = unsafe { OwnedFd::from_raw_fd(check(fd, "openat")?) };
    write_all(&file, body)?;
    // SAFETY (every call below): valid descriptors, NUL-terminated names.
    match strategy {
        Strategy::Rename => {
            check(unsafe { libc::renameat(dir, temp.as_ptr(), dir, target.as_ptr()) }, "renameat")?;
        }
        Strategy::TmpfileProc | Strategy::TmpfileEmpty => {
            let link = |to: &CString| {
                if strategy == Strategy::TmpfileEmpty {
                    unsafe { libc::linkat(file.as_raw_fd(), c"".as_ptr(), dir, to.as_ptr(), libc::AT_EMPTY_PATH) }
                } else {
                    let path = c(&format!("/proc/self/fd/{}", file.as_raw_fd()));
                    unsafe { libc::linkat(libc::AT_FDCWD, path.as_ptr(), dir, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) }
                }
            };
            if link(&target) < 0 {
                if io::Error::last_os_error().kind() != io::ErrorKind::AlreadyExists {
                    check(-1, "linkat")?;
                }
                check(link(&temp), "linkat")?;
                check(unsafe { libc::renameat(dir, temp.as_ptr(), dir, target.as_ptr()) }, "renameat")?;
            }
        }
    }
    Ok(())
}

/// Microseconds per file for one round: `FILES` saves into `dir`.
fn round(dir: &OwnedFd, strategy: Strategy, body: &[u8]) -> io::Result<f64> {
    let started = Instant::now();
    for serial in 0..FILES {
        let name = format!("{}{}.gif", char::from(b'A' + (serial / 26) as u8), char::from(b'A' + (serial % 26) as u8));
        save(dir, strategy, &name, serial, body)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / FILES as f64)
}

fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    let path = c(path.to_str().ok_or_else(|| io::Error::other("a UTF-8 path"))?);
    // SAFETY: a NUL-terminated path.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC) }, "open")?;
    // SAFETY: a descriptor just returned by open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

fn main() -> io::Result<()> {
    let base = std::env::var_os("FLAGSD_BENCH_DIR").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from);
    let body = vec![0x47_u8; BODY];
    let mut strategies = vec![Strategy::Rename, Strategy::TmpfileProc, Strategy::TmpfileEmpty];
    let probe = tempfile::tempdir_in(&base)?;
    if let Err(error) = round(&open_dir(probe.path())?, Strategy::TmpfileEmpty, &body) {
        println!("skipped: tmpfile+empty ({error}; it needs CAP_DAC_READ_SEARCH)");
        strategies.pop();
    }
    println!("{FILES} files of {BODY} bytes in {}, median of {ROUNDS} rounds, µs per file:", base.display());
    println!("{:<14} {:>10} {:>10}", "strategy", "fresh", "overwrite");
    let mut fresh = vec![Vec::new(); strategies.len()];
    let mut overwrite = vec![Vec::new(); strategies.len()];
    for _ in 0..ROUNDS {
        for (i, &strategy) in strategies.iter().enumerate() {
            let dir = tempfile::tempdir_in(&base)?;
            let fd = open_dir(dir.path())?;
            fresh[i].push(round(&fd, strategy, &body)?);
            overwrite[i].push(round(&fd, strategy, &body)?);
        }
    }
    for (i, strategy) in strategies.iter().enumerate() {
        let (f, o) = (median(std::mem::take(&mut fresh[i])), median(std::mem::take(&mut overwrite[i])));
        println!("{:<14} {f:>10.2} {o:>10.2}", strategy.name());
    }
    Ok(())
}
