//! What this process uses, read from `/proc` (Linux): CPU time, resident
//! memory, open descriptors and their limit, and when it started. The
//! daemon exports them as Prometheus' standard `process_*` metrics. And a
//! process's [`Stamp`], which tells later whether that very process still
//! runs, and a [`ProcessView`] of what another process runs.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

/// One reading of this process's resources.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// Descriptors open now.
    pub open_fds: u64,
    /// The soft limit on open descriptors.
    pub max_fds: u64,
    /// When the process started, in UNIX seconds.
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads this process's figures from `/proc/self` (an error elsewhere
    /// than on Linux).
    pub fn read() -> io::Result<Self> {
        let ticks = clock_ticks_per_second()?;
        let page = page_size()?;
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let fields = StatFields::parse(&stat)?;
        let boot_time = boot_time()?;
        let (max_fds, _) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
        Ok(Self {
            cpu_seconds: (fields.utime + fields.stime) as f64 / ticks as f64,
            resident_bytes: fields.rss_pages.saturating_mul(page),
            virtual_bytes: fields.vsize,
            open_fds: count_entries(Path::new("/proc/self/fd"))?,
            max_fds,
            start_time_seconds: boot_time + fields.start_ticks as f64 / ticks as f64,
        })
    }
}

/// What identifies a process across time: the boot it ran in, its id, and
/// its start time (a later process may reuse the id, not all three).
/// Written as `BOOT_ID/PID/START_TICKS`; the boot id is empty where it
/// cannot be read (a service with `ProcSubset=pid` sees no `/proc/sys`),
/// and is then not compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    boot: Option<String>,
    pid: u32,
    start_ticks: u64,
}

impl Stamp {
    /// This process's stamp.
    pub fn current() -> io::Result<Self> {
        let pid = std::process::id();
        let start_ticks = start_ticks_of(pid)?.ok_or_else(|| io::Error::other("/proc/self/stat is missing"))?;
        Ok(Self { boot: boot_id().ok(), pid, start_ticks })
    }

    /// Reads a stamp written by [`Display`](std::fmt::Display); `None` when
    /// `text` is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('/');
        let (boot, pid, start) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let boot = Some(boot.to_owned()).filter(|b| !b.is_empty());
        Some(Self { boot, pid: pid.parse().ok()?, start_ticks: start.parse().ok()? })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process of this stamp still runs: `Some(false)` when the
    /// machine booted since or no process with its id and start time
    /// exists, `None` when that cannot be told (no `/proc`).
    pub fn is_running(&self) -> Option<bool> {
        if let (Some(then), Ok(now)) = (&self.boot, boot_id())
            && *then != now
        {
            return Some(false);
        }
        match start_ticks_of(self.pid) {
            Ok(Some(start)) => Some(start == self.start_ticks),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.boot.as_deref().unwrap_or_default(), self.pid, self.start_ticks)
    }
}

/// What another process runs, read from `/proc/PID`: its program, its
/// arguments, its working directory and its environment. Reading them
/// takes the right to inspect it (the same user, or root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessView {
    /// The program's path (`/proc/PID/exe`), without the ` (deleted)` the
    /// kernel adds when the file was replaced since (an upgrade).
    pub exe: PathBuf,
    /// Its arguments, the program's name first.
    pub args: Vec<OsString>,
    /// Its working directory.
    pub cwd: PathBuf,
    environ: Vec<OsString>,
}

impl ProcessView {
    /// Reads process `pid`; an error names the file that could not be read.
    pub fn of(pid: u32) -> io::Result<Self> {
        let path = |name: &str| PathBuf::from(format!("/proc/{pid}/{name}"));
        let named = |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let link = |name: &str| {
            let path = path(name);
            std::fs::read_link(&path).map_err(|e| named(&path, e))
        };
        let strings = |name: &str| {
            let path = path(name);
            std::fs::read(&path).map(|bytes| nul_separated(&bytes)).map_err(|e| named(&path, e))
        };
        let exe = link("exe")?;
        let exe = match exe.to_str().and_then(|text| text.strip_suffix(" (deleted)")) {
            Some(kept) => PathBuf::from(kept),
            None => exe,
        };
        Ok(Self { exe, cwd: link("cwd")?, args: strings("cmdline")?, environ: strings("environ")? })
    }

    /// The value of environment variable `name` in the process.
    pub fn env(&self, name: &str) -> Option<OsString> {
        let prefix = format!("{name}=");
        self.environ.iter().find_map(|entry| {
            let bytes = entry.as_bytes().strip_prefix(prefix.as_bytes())?;
            Some(OsString::from_vec(bytes.to_vec()))
        })
    }
}

/// The strings of a NUL-separated `/proc` file.
fn nul_separated(bytes: &[u8]) -> Vec<OsString> {
    bytes.split(|b| *b == 0).filter(|part| !part.is_empty()).map(|part| OsString::from_vec(part.to_vec())).collect()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?.trim().to_owned())
}

/// When process `pid` started, in clock ticks after boot; `None` when there
/// is no such process.
fn start_ticks_of(pid: u32) -> io::Result<Option<u64>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => Ok(Some(StatFields::parse(&stat)?.start_ticks)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The fields of `/proc/PID/stat` this module reads (proc(5) numbers them
/// from 1).
#[derive(Debug, PartialEq)]
struct StatFields {
    /// Field 14, in clock ticks.
    utime: u64,
    /// Field 15, in clock ticks.
    stime: u64,
    /// Field 22, clock ticks after boot.
    start_ticks: u64,
    /// Field 23, in bytes.
    vsize: u64,
    /// Field 24, in pages.
    rss_pages: u64,
}

impl StatFields {
    /// Parses a `/proc/PID/stat` line. The command name (field 2) is in
    /// parentheses and may hold spaces and parentheses itself, so the
    /// fields are counted from the last `)`.
    fn parse(stat: &str) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/PID/stat: {what}"));
        let after_name = stat.rfind(')').map(|at| &stat[at + 1..]).ok_or_else(|| bad("no command name"))?;
        // The first field after the name is field 3 (the state).
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |number: usize| -> io::Result<u64> {
            let text = fields.get(number - 3).ok_or_else(|| bad(&format!("no field {number}")))?;
            text.parse().map_err(|_| bad(&format!("field {number} is not a number: {text:?}")))
        };
        Ok(Self {
            utime: field(14)?,
            stime: field(15)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// When the machine booted, in UNIX seconds: the wall clock less the time
/// since boot (`CLOCK_BOOTTIME`), which needs no file of `/proc` (a service
/// with `ProcSubset=pid` cannot read `/proc/stat`).
fn boot_time() -> io::Result<f64> {
    let mut since_boot = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut since_boot) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(io::Error::other)?;
    Ok(now.as_secs_f64() - (since_boot.tv_sec as f64 + since_boot.tv_nsec as f64 / 1e9))
}

/// How many entries `dir` holds.
fn count_entries(dir: &Path) -> io::Result<u64> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks_per_second() -> io::Result<u64> {
    sysconf(libc::_SC_CLK_TCK)
}

/// The memory page size in bytes (`sysconf(_SC_PAGESIZE)`).
fn page_size() -> io::Result<u64> {
    sysconf(libc::_SC_PAGESIZE)
}

fn sysconf(name: libc::c_int) -> io::Result<u64> {
    // SAFETY: sysconf takes a plain integer and touches no memory of ours.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|v| *v > 0).ok_or_else(io::Error::last_os_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as a process may
        // name itself; the numbers are those of fields 3 to 24.
        let line = "4242 (a) b)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 987654 104857600 2560 18446744073709551615";
        let fields = StatFields::parse(line).unwrap();
        assert_eq!(
            fields,
            StatFields { utime: 250, stime: 50, start_ticks: 987654, vsize: 104857600, rss_pages: 2560 }
        );
    }

    #[test]
    fn a_short_or_garbled_stat_line_is_an_error_naming_the_field() {
        let err = StatFields::parse("1 (x) S 1 2").unwrap_err();
        assert!(err.to_string().contains("no field 14"), "{err}");
        let err = StatFields::parse("no name at all").unwrap_err();
        assert!(err.to_string().contains("no command name"), "{err}");
        let line = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 ten 5 0 0 20 0 1 0 9 9 9";
        let err = StatFields::parse(line).unwrap_err();
        assert!(err.to_string().contains("field 14 is not a number"), "{err}");
    }

    #[test]
    fn a_stamp_tells_a_running_process_from_an_ended_one() {
        let me = Stamp::current().unwrap();
        assert_eq!(me.pid(), std::process::id());
        assert_eq!(Stamp::parse(&me.to_string()), Some(me.clone()));
        assert_eq!(me.is_running(), Some(true));
        // The same id with another start time: a process that reused it.
        let reused = Stamp { start_ticks: me.start_ticks + 1, ..me.clone() };
        assert_eq!(reused.is_running(), Some(false));
        // Another boot.
        let rebooted = Stamp { boot: Some("another-boot".into()), ..me.clone() };
        assert_eq!(rebooted.is_running(), Some(false));
        // Written where the boot id could not be read: the rest decides.
        let unknown_boot = Stamp { boot: None, ..me.clone() };
        assert_eq!(Stamp::parse(&unknown_boot.to_string()), Some(unknown_boot.clone()));
        assert_eq!(unknown_boot.is_running(), Some(true));
        // A child, while it runs and once it has ended.
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let start_ticks = start_ticks_of(child.id()).unwrap().unwrap();
        let stamp = Stamp { pid: child.id(), start_ticks, ..me.clone() };
        assert_eq!(stamp.is_running(), Some(true));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(stamp.is_running(), Some(false));
        for bad in ["", "x", "b/1", "b/one/2", "b/1/2/3", "/x/2"] {
            assert_eq!(Stamp::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_view_of_a_child_shows_what_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .current_dir(dir.path())
            .env("FLAGSD_VIEW_TEST", "a value")
            .spawn()
            .unwrap();
        // The exec may not have laid out the new arguments yet when spawn
        // returns: wait for them (the kernel reads them from the new image).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut view = ProcessView::of(child.id());
        while view.as_ref().is_ok_and(|v| v.args.is_empty()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
            view = ProcessView::of(child.id());
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let view = view.unwrap();
        assert_eq!(view.exe.file_name().and_then(|n| n.to_str()), Some("sleep"), "{view:?}");
        assert_eq!(view.args, [OsString::from("sleep"), OsString::from("60")]);
        assert_eq!(view.cwd, dir.path().canonicalize().unwrap());
        assert_eq!(view.env("FLAGSD_VIEW_TEST"), Some(OsString::from("a value")));
        assert_eq!(view.env("FLAGSD_VIEW"), None);
        let gone = ProcessView::of(child.id()).unwrap_err();
        assert!(gone.to_string().contains(&format!("/proc/{}/exe", child.id())), "{gone}");
    }

    #[test]
    fn the_boot_time_agrees_with_proc_stat() {
        let btime = std::fs::read_to_string("/proc/stat").unwrap();
        let btime: f64 = btime.lines().find_map(|l| l.strip_prefix("btime ")).unwrap().trim().parse().unwrap();
        let computed = boot_time().unwrap();
        assert!((computed - btime).abs() < 2.0, "{computed} against btime {btime}");
    }

    #[test]
    fn this_process_reads_as_itself() {
        let before = ProcessStats::read().unwrap();
        // Burn CPU until the kernel has counted a tick of it (10 s at most,
        // however loaded the machine), with one more file open.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut after = ProcessStats::read().unwrap();
        while after.cpu_seconds <= before.cpu_seconds && std::time::Instant::now() < deadline {
            let mut x = 0u64;
            for i in 0..100_000u64 {
                x = x.wrapping_add(std::hint::black_box(i));
            }
            std::hint::black_box(x);
            after = ProcessStats::read().unwrap();
        }
        drop(file);
        assert!(after.cpu_seconds > before.cpu_seconds, "{before:?} {after:?}");
        assert!(after.resident_bytes > 1 << 20, "{after:?}");
        assert!(after.virtual_bytes >= after.resident_bytes, "{after:?}");
        assert!(after.open_fds >= 4 && after.open_fds <= after.max_fds, "{after:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(after.start_time_seconds <= now + 1.0 && after.start_time_seconds > now - 3600.0, "{after:?} at {now}");
    }
}
