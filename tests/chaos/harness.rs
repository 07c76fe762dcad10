//! The processes and places of a chaos case: `flagsd serve` nodes that can
//! be killed, paused and started again (each launch appended to one log),
//! a node's output directory on a tiny tmpfs (the full disk), libfaketime
//! (the clock offset), the case's configuration, and `flagsd run`
//! submissions whose output goes to files, so that a long JSON document
//! never blocks a child that nobody reads yet.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::flagsd_child;
use crate::schedule::{ACK_WAIT, DUPLICATE_WINDOW};

/// The fleet's name in every case (each case has its own nats-server).
pub const FLEET: &str = "test";

/// libfaketime as Debian's `faketime` package installs it.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The size of the full disk's tmpfs.
const SMALL_DISK: &str = "size=64k";

/// Polls `condition` every `step` until it holds or `limit` has passed;
/// whether it held. For conditions that cost a request, unlike
/// `helpers::wait_until`'s 20 ms.
pub fn eventually(limit: Duration, step: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// Whether this process runs as root (mounting a tmpfs needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether missing tools must fail the test rather than skip a fault
/// (`FLAGSD_REQUIRE_TOOLS=1`, as in CI).
pub fn require_tools() -> bool {
    std::env::var("FLAGSD_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Sends `signal` to process `pid`; whether it was delivered.
fn signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill has no memory preconditions; `pid` is a child of ours
    // that has not been reaped, so it cannot name another process.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// The case's configuration: the fleet on `nats` with the short ack wait
/// and de-duplication window, the batch `world` of `codes` (a keyword)
/// from `url`, files under `dir/out`, and with `tick` a batch of four codes
/// every 2 s (ticks are what clocks decide).
pub fn write_config(dir: &Path, nats: &str, url: &str, codes: &str, tick: bool) -> PathBuf {
    let mut text = format!(
        "[fleet]\nnats = \"{nats}\"\nname = \"{FLEET}\"\nack_wait = \"{}s\"\nduplicate_window = \"{}s\"\n\n\
         [defaults]\noutput = \"{}\"\nmax_req = 10\ntimeout = \"2s\"\nconnect_timeout = \"1s\"\n\
         read_timeout = \"2s\"\nretries = 1\nretry_base = \"200ms\"\n\n\
         [daemon]\nshutdown_timeout = \"3s\"\n\n\
         [[batch]]\nname = \"world\"\ncodes = \"{codes}\"\nserver = \"{url}\"\n",
        ACK_WAIT.as_secs(),
        DUPLICATE_WINDOW.as_secs(),
        dir.join("out").display()
    );
    if tick {
        text += &format!(
            "\n[[batch]]\nname = \"tick\"\ncodes = [\"BR\", \"AR\", \"CL\", \"ZZ\"]\nserver = \"{url}\"\nevery = \"2s\"\n"
        );
    }
    let path = dir.join("flagsd.toml");
    std::fs::write(&path, text).expect("write the case's configuration");
    path
}

/// A `flagsd serve` node: killed, paused, started again as the schedule
/// says. Its launches append to one log, each after a `--- chaos:` line.
pub struct Node {
    /// Its name in the fleet.
    pub name: String,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Where the current launch's lines start in the log.
    offset: usize,
    launches: u32,
    paused: bool,
    /// The process ids this harness killed with SIGKILL: their temporary
    /// files may stay behind (a later lane removes them after 10 minutes).
    pub killed: Vec<u32>,
}

impl Node {
    /// Node `name` for `config`, launched at once with `env` on top of a
    /// clean environment (and its admin endpoint on a free port).
    pub fn start(config: &Path, name: &str, env: Vec<(String, String)>) -> Self {
        let log = config.with_file_name(format!("{name}.log"));
        let config = config.to_owned();
        let mut node = Self {
            name: name.to_owned(),
            config,
            env,
            log,
            child: None,
            offset: 0,
            launches: 0,
            paused: false,
            killed: Vec::new(),
        };
        node.launch();
        node
    }

    /// Starts the process (when none runs: never launched, killed, or
    /// exited by itself).
    pub fn launch(&mut self) {
        if self.running() {
            return;
        }
        self.launches += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log).expect("the node's log");
        writeln!(log, "--- chaos: launch {} of node {}", self.launches, self.name).expect("write the node's log");
        self.offset = self.log().len();
        let mut cmd = flagsd_child();
        cmd.current_dir(self.config.parent().expect("the case's directory"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("FLAGSD_FLEET__NODE", &self.name)
            .env("FLAGSD_ADMIN__LISTEN", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("flagsd serve starts"));
        self.paused = false;
    }

    /// Everything every launch logged.
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// What the current launch logged.
    fn current_log(&self) -> String {
        let log = self.log();
        log.get(self.offset..).unwrap_or_default().to_owned()
    }

    /// Whether the current launch has joined and opened its lanes.
    pub fn joined(&self) -> bool {
        self.child.is_some() && self.current_log().contains("lane open")
    }

    /// The current launch's admin endpoint, once it has logged it.
    pub fn admin_addr(&self) -> Option<String> {
        let log = self.current_log();
        let marker = "admin endpoint listening address=";
        let at = log.find(marker)? + marker.len();
        log[at..].split_whitespace().next().map(str::to_owned)
    }

    /// SIGKILL, and the process reaped (nothing if none runs).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.killed.push(child.id());
            let _ = child.kill(); // an error means that it exited already
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            self.paused = signal(child.id(), libc::SIGSTOP);
        }
    }

    /// SIGCONT (nothing unless paused).
    pub fn resume(&mut self) {
        if let Some(child) = self.child.as_ref().filter(|_| self.paused) {
            signal(child.id(), libc::SIGCONT);
        }
        self.paused = false;
    }

    /// Whether the process runs (launched, and not exited on its own).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tmpfs of 64 KiB mounted on a directory of the case (root only), the
/// output directory of one node; unmounted (lazily, so that a node's open
/// files do not keep it) when released or dropped.
pub struct SmallDisk {
    mount: PathBuf,
    mounted: bool,
}

impl SmallDisk {
    /// Mounts it on `mount` (made if missing); why not, when it cannot.
    pub fn mount(mount: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(mount).map_err(|e| format!("cannot make {}: {e}", mount.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", SMALL_DISK, "tmpfs"])
            .arg(mount)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self { mount: mount.to_owned(), mounted: true })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Fills what is left of it with one file, to the last byte.
    pub fn fill(&self) {
        let Ok(mut filler) = std::fs::File::create(self.mount.join("filler")) else { return };
        let block = [0u8; 4096];
        while filler.write_all(&block).is_ok() {}
        let _ = filler.write_all(&[0]);
    }

    /// Unmounts it: the node then writes to the directory underneath.
    pub fn release(&mut self) {
        if std::mem::take(&mut self.mounted) {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        self.release();
    }
}

/// The environment that runs a node with its clock `offset` seconds off
/// (monotonic time untouched, as it is on a host whose clock is wrong).
pub fn faketime_env(offset: i64) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".to_owned(), LIBFAKETIME.to_owned()),
        ("FAKETIME".to_owned(), format!("{offset:+}s")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
    ]
}

/// A `flagsd run --json` of a batch, its output going to files.
pub struct Submission {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    /// When it was started.
    pub started: Instant,
}

/// How a submission ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// The exit status; `None` when it did not exit in time (killed then).
    pub status: Option<i32>,
    /// What it printed.
    pub stdout: String,
    /// What it said on stderr.
    pub stderr: String,
}

impl Submission {
    /// Starts `flagsd run --json --config CONFIG BATCH`; `tag` names its files.
    pub fn start(config: &Path, batch: &str, tag: &str) -> Self {
        let dir = config.parent().expect("the case's directory");
        let (stdout, stderr) = (dir.join(format!("{tag}.json")), dir.join(format!("{tag}.err")));
        let child = flagsd_child()
            .current_dir(dir)
            .args(["run", "--json", "--config"])
            .arg(config)
            .arg(batch)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("a file for stdout"))
            .stderr(std::fs::File::create(&stderr).expect("a file for stderr"))
            .spawn()
            .expect("flagsd run starts");
        Self { child, stdout, stderr, started: Instant::now() }
    }

    /// Waits up to `limit` for the exit (then kills it).
    pub fn finish(mut self, limit: Duration) -> Exit {
        let mut status = None;
        eventually(limit, Duration::from_millis(50), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let read = |path: &Path| std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned());
        Exit {
            status: status.map(|s| s.code().unwrap_or(-1)),
            stdout: read(&self.stdout).unwrap_or_default(),
            stderr: read(&self.stderr).unwrap_or_default(),
        }
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
