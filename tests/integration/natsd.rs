//! Real `nats-server` processes for the fleet tests: one JetStream server
//! ([`NatsServer`]) or a three-node JetStream cluster ([`NatsCluster`]), on
//! free loopback ports, each server with its store in a temporary directory
//! of its own, so that tests can run in parallel.
//!
//! The binary is `$FLAGSD_NATS_SERVER`, else `nats-server` on `PATH`, and
//! must be 2.10 or later (`bash .ci/install-nats` installs one). Without
//! one, `start()` prints `skipped: …` and gives `None`, and the test returns;
//! with `FLAGSD_REQUIRE_NATS=1` (set by `.ci/run`) it panics instead, so that
//! CI cannot skip the fleet tests silently.
//!
//! A server is ready when its monitor port answers `/healthz` with 200, and
//! `/varz` shows that the answer comes from the server we started (not from
//! another test's server that took the port first); a cluster member also
//! needs a meta leader in `/jsz` (`/healthz?js-enabled-only=true` turns 200
//! before there is one). The monitor is polled with reqwest's blocking client
//! on a thread of its own, so these methods may also be called from inside an
//! async runtime (they block it while they wait).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a single server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster (or a restarted member) may take: starts and a meta-leader election.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two readiness probes.
const POLL: Duration = Duration::from_millis(20);
/// How many sets of ports `start()` tries when a port is taken at start.
const PORT_ATTEMPTS: u32 = 5;
/// How long `stop()` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The oldest server with what flagsd uses (key-value buckets).
const MIN_VERSION: (u32, u32) = (2, 10);
/// Lines of a server's log quoted in a panic message.
const LOG_TAIL: usize = 120;

/// Whether the NATS tests must run rather than skip: `FLAGSD_REQUIRE_NATS=1`,
/// which `.ci/run` sets.
pub fn require_nats() -> bool {
    std::env::var("FLAGSD_REQUIRE_NATS").is_ok_and(|v| v == "1")
}

/// The binary, or why there is none.
fn find_binary() -> &'static Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let (path, origin) = match std::env::var_os("FLAGSD_NATS_SERVER").filter(|v| !v.is_empty()) {
            Some(path) => (PathBuf::from(path), "FLAGSD_NATS_SERVER"),
            None => (on_path("nats-server").ok_or_else(|| "no nats-server on PATH".to_owned())?, "PATH"),
        };
        check_version(&path).map_err(|why| format!("{} (from {origin}): {why}", path.display()))?;
        Ok(path)
    })
}

/// The first executable file `name` in the directories of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(name))
        .find(|path| fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Ok when `path --version` reports [`MIN_VERSION`] or later.
fn check_version(path: &Path) -> Result<(), String> {
    let out = Command::new(path).arg("--version").output().map_err(|e| format!("cannot run it: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match parse_version(&text) {
        Some((major, minor, _)) if (major, minor) >= MIN_VERSION => Ok(()),
        Some((major, minor, patch)) => Err(format!("it is v{major}.{minor}.{patch}, and 2.10 or later is needed")),
        None => Err(format!("unexpected `--version` output {:?}", text.trim())),
    }
}

/// `nats-server: v2.15.1` (possibly with a suffix such as `-RC.1`) -> (2, 15, 1).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let version = text.lines().next()?.trim().strip_prefix("nats-server:")?.trim().strip_prefix('v')?;
    let mut parts = version.split(['.', '-', '+']);
    let mut next = || parts.next()?.parse::<u32>().ok();
    Some((next()?, next()?, next()?))
}

/// The binary; otherwise prints why the test is skipped and gives `None`, or
/// panics when NATS is required.
fn binary_or_skip() -> Option<PathBuf> {
    match find_binary() {
        Ok(path) => Some(path.clone()),
        Err(why) if require_nats() => panic!(
            "FLAGSD_REQUIRE_NATS=1 but there is no usable nats-server >= 2.10: {why}; \
             set FLAGSD_NATS_SERVER to one, or run bash .ci/install-nats"
        ),
        Err(why) => {
            println!("skipped: no nats-server >= 2.10 on PATH (set FLAGSD_NATS_SERVER, or run bash .ci/run)");
            println!("  ({why})");
            None
        }
    }
}

/// `N` distinct free loopback ports: all bound at once, read, then released.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port"));
    listeners.map(|l| l.local_addr().expect("local address of a bound port").port())
}

/// A name no other server or cluster of any test process uses.
fn unique_name(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("flagsd-{kind}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Why a launch failed.
#[derive(Debug)]
enum Failure {
    /// A port was taken by someone else: new ports may succeed.
    PortTaken(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::PortTaken(why) => write!(f, "a port was taken: {why}"),
            Failure::Other(why) => f.write_str(why),
        }
    }
}

/// How a cluster member finds its peers.
#[derive(Clone, Debug)]
struct Membership {
    cluster_name: String,
    cluster_port: u16,
    routes: Vec<u16>,
}

/// One `nats-server -js` child process on loopback ports, with its store and
/// its log (stderr) in a temporary directory that lives as long as the value.
/// Dropping it kills the process (SIGKILL) and removes the directory.
pub struct NatsServer {
    binary: PathBuf,
    name: String,
    port: u16,
    monitor_port: u16,
    membership: Option<Membership>,
    /// The token clients must present, if any.
    token: Option<String>,
    /// The user and password clients must present, if any.
    user: Option<(String, String)>,
    /// A configuration file's text (its listen address and store directory
    /// are overridden by the command line's).
    config: Option<String>,
    dir: tempfile::TempDir,
    /// The running (or exited but not yet reaped) process.
    child: Option<Child>,
    launches: u32,
}

impl NatsServer {
    /// A JetStream server on free ports, ready (`/healthz` 200). `None`,
    /// after printing `skipped: …`, when there is no nats-server >= 2.10 and
    /// `FLAGSD_REQUIRE_NATS` is not 1; panics when it is, or when the server
    /// does not become ready within 20 s (the panic quotes its log).
    pub fn start() -> Option<NatsServer> {
        NatsServer::start_with_token(None)
    }

    /// [`NatsServer::start`], with clients required to present `token`
    /// (`--auth`) when one is given.
    pub fn start_with_token(token: Option<&str>) -> Option<NatsServer> {
        NatsServer::start_with(|server| server.token = token.map(str::to_owned))
    }

    /// [`NatsServer::start`], with clients required to present `user` and
    /// `password` (`--user`, `--pass`).
    pub fn start_with_user(user: &str, password: &str) -> Option<NatsServer> {
        NatsServer::start_with(|server| server.user = Some((user.to_owned(), password.to_owned())))
    }

    /// [`NatsServer::start`] with the configuration file `text` (accounts,
    /// users, permissions; the ports and the store are the harness's).
    pub fn start_with_config(text: &str) -> Option<NatsServer> {
        NatsServer::start_with(|server| server.config = Some(text.to_owned()))
    }

    /// [`NatsServer::start`], its options set by `set` first.
    fn start_with(set: impl Fn(&mut NatsServer)) -> Option<NatsServer> {
        let binary = binary_or_skip()?;
        let mut attempt = 1;
        loop {
            let mut server = NatsServer::single(binary.clone());
            set(&mut server);
            match server.try_launch() {
                Ok(()) => return Some(server),
                Err(Failure::PortTaken(_)) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(failure) => panic!("{}", server.report(&failure.to_string())),
            }
        }
    }

    /// Like [`NatsServer::start`], but only picks the ports and the store
    /// directory: nothing listens on [`NatsServer::url`] until
    /// [`NatsServer::launch`] (for a client that starts before its server).
    pub fn reserve() -> Option<NatsServer> {
        binary_or_skip().map(NatsServer::single)
    }

    /// A stand-alone server on new free ports, not launched.
    fn single(binary: PathBuf) -> NatsServer {
        let [port, monitor_port] = free_ports();
        NatsServer::new(binary, unique_name("nats"), port, monitor_port, None)
    }

    fn new(binary: PathBuf, name: String, port: u16, monitor_port: u16, membership: Option<Membership>) -> NatsServer {
        let dir =
            tempfile::Builder::new().prefix("flagsd-nats-").tempdir().expect("a temporary directory for nats-server");
        NatsServer {
            binary,
            name,
            port,
            monitor_port,
            membership,
            token: None,
            user: None,
            config: None,
            dir,
            child: None,
            launches: 0,
        }
    }

    /// Starts the process on the ports and store chosen before, and waits
    /// until it is ready. Panics, quoting the log, if it was already running,
    /// exits, or is not ready within 20 s (30 s for a cluster member).
    pub fn launch(&mut self) {
        if let Err(failure) = self.try_launch() {
            panic!("{}", self.report(&failure.to_string()));
        }
    }

    /// Stops the process (SIGTERM) if it runs, and launches it again on the
    /// same ports with the same store, waiting until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops the process, throws its store away, and launches it again on
    /// the same ports with an empty store: NATS as it comes back after
    /// losing its disk.
    pub fn restart_empty(&mut self) {
        self.stop();
        self.empty_store();
        self.launch();
    }

    /// Removes everything the server stored, so that the next
    /// [`NatsServer::launch`] starts like a server that lost its disk.
    /// Panics if the server runs: its store is in use.
    pub fn empty_store(&mut self) {
        assert!(!self.is_running(), "the store of nats-server {} is emptied while it runs", self.name);
        let store = self.store_dir();
        if let Err(e) = fs::remove_dir_all(&store)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            panic!("cannot empty the store {}: {e}", store.display());
        }
    }

    /// Kills the process with SIGKILL and reaps it (nothing if none runs).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // an error means that it has exited already
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM and reaps it; SIGKILL if it has not
    /// exited after 10 s. Nothing if none runs.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the process has been launched and has not exited (nor been killed).
    pub fn is_running(&self) -> bool {
        let Some(child) = &self.child else { return false };
        // The child is not reaped, so its pid is still its own; a zombie (Z) has exited.
        fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    }

    /// The process id while [`NatsServer::is_running`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id).filter(|_| self.is_running())
    }

    /// The resident set size of the running process in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store directory (`-sd`); JetStream keeps its files in `jetstream/` below it.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Everything the server wrote to stderr, over all its launches (each
    /// begins with a `--- harness: launch N: …` line).
    pub fn log(&self) -> String {
        fs::read(self.log_path()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// The status of `GET /healthz` now, or `None` when the monitor port does not answer.
    pub fn healthz(&self) -> Option<u16> {
        off_runtime(|| http_get(self.monitor_port, "/healthz").ok().map(|(status, _)| status))
    }

    /// The JetStream meta leader's server name according to this server's
    /// `/jsz` (`None` if it does not answer or knows none).
    pub fn meta_leader(&self) -> Option<String> {
        off_runtime(|| self.meta_leader_off_runtime())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn args(&self) -> Vec<String> {
        let (port, monitor_port, store) = (self.port.to_string(), self.monitor_port.to_string(), self.store_dir());
        let mut args: Vec<String> = vec!["-a", "127.0.0.1", "-p", &port, "-m", &monitor_port, "-n", &self.name, "-js"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.extend(["-sd".to_owned(), store.display().to_string()]);
        if let Some(m) = &self.membership {
            let routes: Vec<String> = m.routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
            args.extend(["--cluster_name".to_owned(), m.cluster_name.clone()]);
            args.extend(["--cluster".to_owned(), format!("nats://127.0.0.1:{}", m.cluster_port)]);
            args.extend(["--routes".to_owned(), routes.join(",")]);
        }
        if let Some(token) = &self.token {
            args.extend(["--auth".to_owned(), token.clone()]);
        }
        if let Some((user, password)) = &self.user {
            args.extend(["--user".to_owned(), user.clone(), "--pass".to_owned(), password.clone()]);
        }
        if self.config.is_some() {
            args.extend(["-c".to_owned(), self.dir.path().join("nats.conf").display().to_string()]);
        }
        args
    }

    fn try_launch(&mut self) -> Result<(), Failure> {
        self.spawn().map_err(Failure::Other)?;
        let timeout = if self.membership.is_some() { CLUSTER_READY_TIMEOUT } else { READY_TIMEOUT };
        self.wait_ready(Instant::now() + timeout)
    }

    /// Starts the process, its stderr appended to the log.
    fn spawn(&mut self) -> Result<(), String> {
        if self.is_running() {
            return Err(format!("launched while already running (pid {:?})", self.pid()));
        }
        self.kill(); // reaps a process that exited on its own
        self.launches += 1;
        if let Some(text) = &self.config {
            fs::write(self.dir.path().join("nats.conf"), text)
                .map_err(|e| format!("cannot write the configuration: {e}"))?;
        }
        let args = self.args();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the log file: {e}"))?;
        writeln!(log, "--- harness: launch {}: {} {}", self.launches, self.binary.display(), args.join(" "))
            .map_err(|e| format!("cannot write the log file: {e}"))?;
        let child = Command::new(&self.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls the monitor port until the server is ready, it exits, or `deadline`.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), Failure> {
        off_runtime(|| {
            loop {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    self.child = None; // reaped: its pid is no longer ours
                    let why = format!("it exited at start ({status})");
                    let taken = self.log().contains("address already in use");
                    return Err(if taken { Failure::PortTaken(why) } else { Failure::Other(why) });
                }
                let why = match self.probe() {
                    Ok(()) => return Ok(()),
                    Err(Failure::Other(why)) => why,
                    Err(taken) => return Err(taken),
                };
                if Instant::now() >= deadline {
                    return Err(Failure::Other(format!("not ready in time; last probe: {why}")));
                }
                std::thread::sleep(POLL);
            }
        })
    }

    /// One readiness probe: an error says why the server is not ready (or
    /// that its monitor port is another's). Call it off the async runtime.
    fn probe(&self) -> Result<(), Failure> {
        let (status, body) = http_get(self.monitor_port, "/healthz").map_err(Failure::Other)?;
        if status != 200 {
            return Err(Failure::Other(format!("/healthz {status}: {}", body.trim())));
        }
        let varz = http_json(self.monitor_port, "/varz").map_err(Failure::Other)?;
        if varz["server_name"] != self.name.as_str() || varz["port"] != self.port {
            let (name, port) = (&varz["server_name"], &varz["port"]);
            return Err(Failure::PortTaken(format!("the monitor port answers for server {name} on port {port}")));
        }
        if self.membership.is_some() && self.meta_leader_off_runtime().is_none() {
            return Err(Failure::Other("no meta leader in /jsz yet".to_owned()));
        }
        Ok(())
    }

    /// [`NatsServer::meta_leader`], on the calling thread.
    fn meta_leader_off_runtime(&self) -> Option<String> {
        let jsz = http_json(self.monitor_port, "/jsz").ok()?;
        jsz["meta_cluster"]["leader"].as_str().filter(|leader| !leader.is_empty()).map(str::to_owned)
    }

    /// What went wrong, with where the server was and the end of its log.
    fn report(&self, what: &str) -> String {
        // Each probe that fails logs a warning; the readiness poll makes many.
        let log = self.log();
        let (warnings, lines): (Vec<&str>, Vec<&str>) =
            log.lines().partition(|l| l.contains("[WRN] Healthcheck failed"));
        let mut tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
        if let Some(last) = warnings.last() {
            tail += &format!("\n({} `Healthcheck failed` warnings left out above; the last: {last})", warnings.len());
        }
        format!(
            "nats-server {} (client port {}, monitor port {}, store {}): {what}\n--- end of its log ---\n{tail}",
            self.name,
            self.port,
            self.monitor_port,
            self.store_dir().display()
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three JetStream servers `n1`, `n2`, `n3` routed to each other in a
/// cluster with a name of its own, on free loopback ports.
pub struct NatsCluster {
    name: String,
    servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// A cluster, ready: every member answers `/healthz` with 200 and knows
    /// the meta leader. `None` (after `skipped: …`) or a panic as for
    /// [`NatsServer::start`]; the panic quotes the three logs.
    pub fn start() -> Option<NatsCluster> {
        let binary = binary_or_skip()?;
        let mut attempt = 1;
        loop {
            let mut cluster = NatsCluster::new(&binary);
            match cluster.try_launch() {
                Ok(()) => return Some(cluster),
                Err((_, Failure::PortTaken(_))) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err((i, failure)) => panic!("{}", cluster.report(&format!("member {i} (n{}): {failure}", i + 1))),
            }
        }
    }

    fn new(binary: &Path) -> NatsCluster {
        let name = unique_name("cluster");
        let ports: [u16; 9] = free_ports();
        let cluster_ports = &ports[6..];
        let servers = (0..3)
            .map(|i| {
                let routes = cluster_ports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect();
                let membership = Membership { cluster_name: name.clone(), cluster_port: cluster_ports[i], routes };
                NatsServer::new(binary.to_owned(), format!("n{}", i + 1), ports[i], ports[3 + i], Some(membership))
            })
            .collect();
        NatsCluster { name, servers }
    }

    fn try_launch(&mut self) -> Result<(), (usize, Failure)> {
        for (i, server) in self.servers.iter_mut().enumerate() {
            server.spawn().map_err(|why| (i, Failure::Other(why)))?;
        }
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        for (i, server) in self.servers.iter_mut().enumerate() {
            server.wait_ready(deadline).map_err(|failure| (i, failure))?;
        }
        Ok(())
    }

    /// What went wrong, with each member's whereabouts and the end of its log.
    fn report(&self, what: &str) -> String {
        let mut text = format!("nats cluster {}: {what}", self.name);
        for server in &self.servers {
            text += &format!("\n\n{}", server.report(if server.is_running() { "running" } else { "not running" }));
        }
        text
    }

    /// The client URLs of the three members, in order, running or not.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// The three members, in order (`n1`, `n2`, `n3`).
    pub fn servers(&self) -> &[NatsServer] {
        &self.servers
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Launches member `i` again on its ports with its store (stopping it
    /// first if it runs), and waits until it answers `/healthz` with 200 and
    /// knows the meta leader.
    pub fn restart(&mut self, i: usize) {
        self.servers[i].restart();
    }

    /// The index of the meta leader, as the first running member that knows
    /// one reports it. Right after the leader is killed, the others still
    /// name it for about 2 s: see [`NatsCluster::wait_for_leader`].
    pub fn leader(&self) -> Option<usize> {
        let leader = self.servers.iter().filter(|s| s.is_running()).find_map(NatsServer::meta_leader)?;
        self.servers.iter().position(|s| s.name == leader)
    }

    /// Waits until every running member answers `/healthz` with 200 and
    /// names the same meta leader, a running member, and gives its index.
    /// When the leader is killed, the others go on answering 200 and naming
    /// it for about 2 s, then answer 503 until they elect another (about 5 s
    /// in all). Panics, quoting the logs, after 30 s.
    pub fn wait_for_leader(&self) -> usize {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        loop {
            let views = off_runtime(|| self.views());
            let healthy = views.iter().all(|(_, health, _)| *health == Some(200));
            let leader = views.first().and_then(|(_, _, leader)| leader.clone());
            let agreed = leader.filter(|leader| views.iter().all(|(_, _, l)| l.as_ref() == Some(leader)));
            let index = agreed.and_then(|leader| self.servers.iter().position(|s| s.name == leader && s.is_running()));
            if let Some(i) = index.filter(|_| healthy) {
                return i;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.report(&format!("no agreed meta leader in time: (member, /healthz, leader) {views:?}"))
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// (name, `/healthz` status, meta leader) of each running member. Call it off the async runtime.
    fn views(&self) -> Vec<(String, Option<u16>, Option<String>)> {
        let running = self.servers.iter().filter(|s| s.is_running());
        running
            .map(|s| {
                let health = http_get(s.monitor_port, "/healthz").ok().map(|(status, _)| status);
                (s.name.clone(), health, s.meta_leader_off_runtime())
            })
            .collect()
    }
}

/// Runs `f` on a thread of its own: reqwest's blocking client panics on a
/// thread that runs an async runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

/// `GET http://127.0.0.1:PORT/PATH`: (status, body). Call it off the async runtime.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client for nats-server's monitor port")
    });
    let url = format!("http://127.0.0.1:{port}{path}");
    let response = client.get(&url).send().map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = response.text().map_err(|e| format!("GET {url}: reading the body: {}", error_chain(&e)))?;
    Ok((status, body))
}

/// `GET` a monitoring endpoint that answers 200 with JSON.
fn http_json(port: u16, path: &str) -> Result<Value, String> {
    match http_get(port, path)? {
        (200, body) => serde_json::from_str(&body).map_err(|e| format!("{path}: not JSON ({e}): {body}")),
        (status, body) => Err(format!("{path} {status}: {}", body.trim())),
    }
}

/// An error and its sources, `: `-separated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

#[test]
fn versions_are_read_from_the_version_line() {
    assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15, 1)));
    assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11, 0)));
    assert_eq!(parse_version("nats-server version 2.9"), None);
}

#[test]
fn a_server_starts_dies_and_comes_back_on_its_port() {
    let connects = |port: u16| std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok();
    let Some(mut reserved) = NatsServer::reserve() else { return }; // printed `skipped: …`
    assert!(!reserved.is_running() && reserved.pid().is_none(), "reserve() started a process");
    reserved.launch();
    assert!(connects(reserved.port()), "{}", reserved.log());
    drop(reserved);

    let mut server = NatsServer::start().expect("a nats-server, since reserve() found one");
    let port = server.port();
    assert!(connects(port), "{}", server.log());
    assert!(server.rss_kib().is_some_and(|kib| kib > 1000), "{:?}", server.rss_kib());
    assert_eq!(server.healthz(), Some(200), "{}", server.log());
    server.kill();
    assert!(!server.is_running() && server.pid().is_none(), "still running after kill()");
    assert!(!connects(port), "the client port still accepts after kill()");
    server.restart();
    assert!(server.is_running() && connects(port), "{}", server.log());
    assert_eq!((server.port(), server.url()), (port, format!("nats://127.0.0.1:{port}")));
    assert_eq!(server.log().matches("--- harness: launch").count(), 2, "{}", server.log());
}

#[test]
fn a_cluster_elects_a_leader_and_survives_a_member() {
    let Some(mut cluster) = NatsCluster::start() else { return }; // printed `skipped: …`
    assert!(cluster.leader().is_some(), "start() returned before there was a meta leader");
    cluster.wait_for_leader(); // at once
    cluster.kill(0);
    assert!(!cluster.servers()[0].is_running() && cluster.servers()[0].healthz().is_none(), "n1 survived kill(0)");
    // n2 and n3 answer /healthz with 200 and agree on a leader among them
    // (after an election of about 5 s if n1 led).
    assert_ne!(cluster.wait_for_leader(), 0);
    cluster.restart(0);
    assert!(cluster.servers()[0].is_running());
    cluster.wait_for_leader(); // now with n1 too
}

#[test]
fn a_server_comes_back_with_an_empty_store() {
    let Some(mut server) = NatsServer::start() else { return }; // printed `skipped: …`
    assert!(server.store_dir().exists(), "no store at {}", server.store_dir().display());
    server.stop();
    server.empty_store();
    assert!(!server.store_dir().exists(), "the store is still there");
    server.launch();
    assert_eq!(server.healthz(), Some(200), "{}", server.log());
    assert_eq!(server.log().matches("--- harness: launch").count(), 2, "{}", server.log());
}
