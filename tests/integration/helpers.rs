//! Shared fixtures: a test server per test, the binary with a clean
//! environment, and readers for its report.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use flagsd::testserver::{Faults, TestServer, TestServerOptions};

/// Starts a test server on a free loopback port.
pub fn server(options: TestServerOptions) -> TestServer {
    TestServer::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options).expect("test server starts")
}

/// A test server injecting `faults`.
pub fn faulty(faults: Faults) -> TestServer {
    server(TestServerOptions { faults, ..TestServerOptions::default() })
}

/// A test server serving the bundled data set, without faults.
pub fn clean_server() -> TestServer {
    server(TestServerOptions::default())
}

/// A base URL on which nothing listens.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}/flags")
}

/// Variables of the caller's environment that would change what flagsd
/// does: its own settings, proxies, systemd's, and the shells' completion
/// requests.
pub fn leaked_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| {
            let lower = k.to_ascii_lowercase();
            k.starts_with("FLAGSD_")
                || lower.ends_with("_proxy")
                || ["JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "COMPLETE"]
                    .contains(&k.as_str())
        })
        .collect()
}

/// The binary, with none of [`leaked_vars`] inherited from the caller.
pub fn flagsd() -> Command {
    let mut cmd = Command::cargo_bin("flagsd").expect("binary built");
    for var in leaked_vars() {
        cmd.env_remove(var);
    }
    cmd
}

/// The binary as a `std` command (for children that run in the
/// background), with a clean environment like [`flagsd`].
pub fn flagsd_child() -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("flagsd"));
    for var in leaked_vars() {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `flagsd fetch ARGS -o DIR` and returns (status, stdout, stderr).
pub fn fetch(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = flagsd().arg("fetch").args(args).arg("-o").arg(dir).output().expect("flagsd runs");
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The report's lines with the elapsed time blanked out.
pub fn report_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| if l.starts_with("Elapsed time: ") { "Elapsed time: *".to_owned() } else { l.to_owned() })
        .collect()
}

/// The verbose lines keyed by country code (`BR OK` → `BR`,
/// `*** Error for BR: …` → `BR`), each code with all of its lines.
pub fn verbose_lines(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_code: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stdout.lines() {
        let code = if let Some(rest) = line.strip_prefix("*** Error for ") {
            rest.split(':').next()
        } else if line.len() >= 3 && line.as_bytes()[2] == b' ' && line[..2].bytes().all(|b| b.is_ascii_uppercase()) {
            Some(&line[..2])
        } else {
            None
        };
        if let Some(code) = code {
            by_code.entry(code.to_owned()).or_default().push(line.to_owned());
        }
    }
    by_code
}

/// The number in a final-report line such as ` 17 flags downloaded.`.
pub fn count(stdout: &str, suffix: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim_start().split_once(' ')?;
            rest.starts_with(suffix).then(|| n.parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// The (downloaded, not found, errors) counts of a final report.
pub fn final_counts(stdout: &str) -> (usize, usize, usize) {
    (count(stdout, "flag"), count(stdout, "not found."), count(stdout, "error"))
}

/// Names of the files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Asserts that `dir` holds only complete `{CC}.gif` files, each identical
/// to the bundled data set, and no temporary file.
pub fn assert_only_complete_flags(dir: &Path) -> usize {
    let names = files_in(dir);
    for name in &names {
        let cc = name.strip_suffix(".gif").unwrap_or_else(|| panic!("unexpected file {name}"));
        assert!(cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase()), "unexpected file {name}");
        let lower = cc.to_ascii_lowercase();
        let expected = flagsd::testserver::dataset::get(&format!("flags/{lower}/{lower}.gif")).expect("a known flag");
        let saved = std::fs::read(dir.join(name)).expect("read saved flag");
        assert!(saved == expected, "{name} differs from the data set");
    }
    names.len()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Writes `text` as `name` in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Runs `flagsd ARGS` in `cwd` with extra environment; returns (status, stdout, stderr).
pub fn flagsd_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = flagsd();
    cmd.current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("flagsd runs");
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Spawns `cmd` (a verbose fetch) with stdout piped, waits for its first
/// finished code (by then others are in flight), calls `midway` with the
/// child, then reads the rest; returns (status, stdout).
pub fn act_after_first_outcome(
    mut cmd: std::process::Command,
    midway: impl FnOnce(&std::process::Child),
) -> (Option<i32>, String) {
    use std::io::{BufRead as _, Read as _};
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("flagsd starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    while !(seen.contains(" OK\n") || seen.contains(" not found: ")) {
        assert_ne!(stdout.read_line(&mut seen).expect("read stdout"), 0, "flagsd ended early: {seen}");
    }
    midway(&child);
    stdout.read_to_string(&mut seen).expect("read stdout");
    (child.wait().expect("wait for flagsd").code(), seen)
}

/// Sends `signal` (`-INT`, `-TERM`, …) to `child`.
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

/// A `[[batch]]` table for `serve`: `codes` is TOML (`["BR"]` or `"every"`).
pub fn batch(name: &str, codes: &str, url: &str, every: &str) -> String {
    format!("[[batch]]\nname = \"{name}\"\ncodes = {codes}\nserver = \"{url}\"\nevery = \"{every}\"\n")
}

/// How long a daemon test waits for anything.
pub const LONG: Duration = Duration::from_secs(20);

/// A running `flagsd serve`, its log going to a file.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `flagsd serve --config flagsd.toml` in `dir` with extra environment.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, env, |_| {})
    }

    /// [`start`](Self::start) with a hard and soft open-files limit of
    /// `limit`.
    pub fn start_with_open_files(dir: &Path, limit: u64) -> Self {
        Self::spawn(dir, &[], |cmd| {
            use std::os::unix::process::CommandExt as _;
            let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            // SAFETY: setrlimit is async-signal-safe and `rlimit` is a
            // valid value copied into the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        })
    }

    fn spawn(dir: &Path, env: &[(&str, &str)], configure: impl FnOnce(&mut std::process::Command)) -> Self {
        let log = dir.join("daemon.log");
        let mut cmd = flagsd_child();
        cmd.current_dir(dir)
            .args(["serve", "--config", "flagsd.toml"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        configure(&mut cmd);
        Self { child: cmd.spawn().unwrap(), log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it the signal `name` (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status =
            StdCommand::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// The admin endpoint's address, once the daemon has logged it.
    pub fn admin_addr(&self) -> String {
        let marker = "admin endpoint listening address=";
        assert!(wait_until(LONG, || self.log().contains(marker)), "{}", self.log());
        let log = self.log();
        let rest = &log[log.find(marker).unwrap_or_default() + marker.len()..];
        rest.split_whitespace().next().unwrap_or_default().to_owned()
    }

    /// Waits for the exit; `None` if it takes longer than `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.map(|s| s.code().unwrap_or(-1))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer as received: status line, headers (names lower-cased) and body.
pub struct RawAnswer {
    /// The status line without its line break (`HTTP/1.1 200 OK`).
    pub status: String,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, as received.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The status code.
    pub fn code(&self) -> u16 {
        self.status.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// The value of the only `name` header, if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next();
        assert!(values.next().is_none(), "more than one {name} header: {:?}", self.headers);
        first
    }
}

/// Sends `METHOD path` with `extra` headers to `addr` (loopback), with no
/// proxy and no redirect followed, and reads the whole answer.
pub fn raw_request(addr: &str, method: &str, path: &str, extra: &[(&str, &str)]) -> RawAnswer {
    assert!(addr.starts_with("127.0.0.1:"), "tests talk to 127.0.0.1 only, not {addr}");
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(LONG)
        .build()
        .expect("an HTTP client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = client.request(method, format!("http://{addr}{path}"));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().expect("an answer");
    let status = format!("{:?} {}", response.version(), response.status());
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = response.bytes().expect("the whole body").to_vec();
    RawAnswer { status, headers, body }
}

/// Sends one request to the admin endpoint at `addr`, with a bearer
/// `token` if given; returns the status and the body as text.
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let answer = raw_request(addr, method, path, &headers);
    (answer.code(), String::from_utf8_lossy(&answer.body).into_owned())
}

/// A `--root` directory holding the bundled flags and metadata of `codes`
/// (lower case), for tests that change a file on the server.
pub fn flag_root(codes: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    for cc in codes {
        let dir = root.path().join(cc);
        std::fs::create_dir(&dir).expect("create dir");
        for name in [format!("{cc}.gif"), "metadata.json".to_owned()] {
            let bytes = flagsd::testserver::dataset::get(&format!("flags/{cc}/{name}")).expect("a bundled file");
            std::fs::write(dir.join(name), bytes).expect("write file");
        }
    }
    root
}

/// The path of the program `name` on `PATH`. Without it the test is
/// skipped (`None`, with `skipped: …` printed), unless
/// `FLAGSD_REQUIRE_TOOLS=1` (as in CI), where that is a failure.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var("FLAGSD_REQUIRE_TOOLS").as_deref() != Ok("1"), "{name} is required but not installed");
        println!("skipped: {name} is not installed (bash .ci/install-tools installs it)");
    }
    found
}

/// A TCP server on a free loopback port: each connection is handed to
/// `handle` on a runtime of the server's own thread, which lives as long as
/// the test process. Returns the address.
pub fn tcp_server<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream));
            }
        });
    });
    addr
}

/// A tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs {
    /// The mount point.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount(8) syntax); `None`, with the reason
    /// printed, where mounting is not allowed.
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self { path, _dir: dir }),
            Ok(out) => {
                println!("skipped: cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim());
                None
            }
            Err(e) => {
                println!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    /// Makes the file system read-only.
    pub fn remount_read_only(&self) {
        let status = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(&self.path).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A data-set root where each code's metadata names the given country.
pub fn country_root(countries: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (cc, country) in countries {
        let dir = root.path().join(cc);
        std::fs::create_dir(&dir).unwrap();
        let gif = flagsd::testserver::dataset::get(&format!("flags/{cc}/{cc}.gif")).unwrap();
        std::fs::write(dir.join(format!("{cc}.gif")), gif).unwrap();
        let json = format!("{{\"iso_cc\": \"{}\", \"country\": {country}}}", cc.to_uppercase());
        std::fs::write(dir.join("metadata.json"), json).unwrap();
    }
    root
}

/// A fake journald: a datagram socket that `flagsd`'s journal layer sends
/// to (`FLAGSD_JOURNAL_SOCKET`), read by a thread of its own as entries
/// come (a sender blocks when a few datagrams wait unread).
pub struct FakeJournal {
    path: PathBuf,
    entries: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    _dir: tempfile::TempDir,
}

impl FakeJournal {
    /// Binds the socket and starts reading it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("journal.socket");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("a fake journald");
        let entries: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = std::sync::Arc::default();
        let kept = std::sync::Arc::clone(&entries);
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 20];
            while let Ok(n) = socket.recv(&mut buffer) {
                if n > 0 {
                    kept.lock().expect("lock").push(buffer[..n].to_vec());
                }
            }
        });
        Self { path, entries, _dir: dir }
    }

    /// The environment that makes a process whose stderr is the file
    /// `stderr` (already created) log here: `JOURNAL_STREAM` names that
    /// file as systemd names the journal's stream.
    pub fn env(&self, stderr: &Path) -> [(String, String); 2] {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(stderr).expect("the stderr file");
        [
            ("JOURNAL_STREAM".to_owned(), format!("{}:{}", meta.dev(), meta.ino())),
            ("FLAGSD_JOURNAL_SOCKET".to_owned(), self.path.display().to_string()),
        ]
    }

    /// The entries received so far, each as sent.
    pub fn entries(&self) -> Vec<Vec<u8>> {
        self.entries.lock().expect("lock").clone()
    }

    /// The entries received so far as text (binary field values lossily).
    pub fn text(&self) -> String {
        self.entries().iter().map(|e| String::from_utf8_lossy(e).into_owned()).collect::<Vec<_>>().join("\n")
    }
}
