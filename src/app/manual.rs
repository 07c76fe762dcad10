//! The man pages, in roff: `flagsd.1`, one page per command
//! (`flagsd-fetch.1`, `flagsd-generate-man.1`, …) and `flagsd.toml.5`.
//!
//! What `--help` says (synopses, options, commands) comes from the command
//! tree through clap_mangen, so it never drifts; what `--help` does not say
//! is written here: the configuration keys (one table, [`config_keys`],
//! for both `flagsd.1` and `flagsd.toml.5`, its defaults taken from
//! [`crate::config::defaults`]), the signals, the admin endpoints, the exit
//! statuses, the environment and the files.

use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::config::defaults;

/// One man page: its file name (`flagsd.1`) and its roff text.
pub struct Page {
    /// The file name, with its section (`flagsd-fetch.1`, `flagsd.toml.5`).
    pub name: String,
    /// The page.
    pub text: String,
}

/// Every page of `command` (the whole command line): `flagsd.1` first,
/// then one per visible command, nested ones included, then
/// `flagsd.toml.5`.
pub fn pages(command: clap::Command) -> Vec<Page> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut pages = vec![Page { name: "flagsd.1".to_owned(), text: main_page(&command) }];
    let mut commands: Vec<clap::Command> = command.get_subcommands().filter(|c| !c.is_hide_set()).cloned().collect();
    while let Some(sub) = commands.pop() {
        commands.extend(sub.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        let name = sub.get_display_name().unwrap_or_else(|| sub.get_name()).to_owned();
        pages.push(Page { name: format!("{name}.1"), text: command_page(sub, &name) });
    }
    pages[1..].sort_by(|a, b| a.name.cmp(&b.name));
    pages.push(Page { name: "flagsd.toml.5".to_owned(), text: config_page() });
    pages
}

/// `about` as a NAME line's description: lower case, no final period.
fn summary(about: &str) -> String {
    let mut chars = about.trim().trim_end_matches('.').chars();
    chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// A page being written: roff text, the apostrophe preamble that every
/// rendering starts with kept once, at the top.
struct Writer {
    preamble: String,
    text: String,
}

impl Writer {
    fn new() -> Self {
        let preamble = Roff::new().render();
        Self { text: preamble.clone(), preamble }
    }

    /// Adds what `roff` holds.
    fn add(&mut self, roff: &Roff) {
        self.add_rendered(roff.render());
    }

    /// Adds clap_mangen's rendering of one part of `man`.
    fn add_part(&mut self, man: &Man, part: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>) {
        let mut text = Vec::new();
        // Rendering into memory cannot fail.
        let _ = part(man, &mut text);
        self.add_rendered(String::from_utf8_lossy(&text).into_owned());
    }

    fn add_rendered(&mut self, rendered: String) {
        self.text.push_str(rendered.strip_prefix(self.preamble.as_str()).unwrap_or(&rendered));
    }
}

/// The `.TH` line and the NAME section.
fn head(name: &str, section: &str, about: &str) -> Roff {
    let mut roff = Roff::new();
    let source = format!("flagsd {}", env!("CARGO_PKG_VERSION"));
    roff.control("TH", [name.to_uppercase().as_str(), section, "", source.as_str(), ""]);
    roff.control("SH", ["NAME"]);
    roff.text([roman(format!("{name} - {}", summary(about)))]);
    roff
}

/// `flagsd.1`.
fn main_page(command: &clap::Command) -> String {
    let mut page = Writer::new();
    page.add(&head("flagsd", "1", &command.get_about().map(ToString::to_string).unwrap_or_default()));
    let man = Man::new(command.clone());
    page.add_part(&man, Man::render_synopsis_section);
    let mut roff = Roff::new();
    section(&mut roff, "DESCRIPTION");
    for paragraph in DESCRIPTION {
        roff.control("PP", []).text([roman(*paragraph)]);
    }
    page.add(&roff);
    page.add_part(&man, Man::render_options_section);
    page.add_part(&man, Man::render_subcommands_section);
    let mut roff = Roff::new();
    configuration_summary(&mut roff);
    signals(&mut roff);
    admin_endpoints(&mut roff);
    exit_statuses(&mut roff);
    environment(&mut roff);
    files(&mut roff);
    let mut see_also: Vec<String> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| format!("{}(1)", c.get_display_name().unwrap_or_else(|| c.get_name())))
        .collect();
    see_also.push("flagsd.toml(5)".to_owned());
    see_also.push("systemctl(1)".to_owned());
    section(&mut roff, "SEE ALSO");
    roff.text([roman(format!("{}. The guides: {DOCS}.", see_also.join(", ")))]);
    page.add(&roff);
    page.add_part(&man, Man::render_version_section);
    page.text
}

/// The page of one command, `name` (`flagsd-fetch`).
fn command_page(command: clap::Command, name: &str) -> String {
    let mut page = Writer::new();
    page.add(&head(name, "1", &command.get_about().map(ToString::to_string).unwrap_or_default()));
    let after_help = command.get_after_help().map(ToString::to_string);
    let has_commands = command.get_subcommands().any(|c| !c.is_hide_set());
    let man = Man::new(command);
    page.add_part(&man, Man::render_synopsis_section);
    page.add_part(&man, Man::render_options_section);
    if has_commands {
        page.add_part(&man, Man::render_subcommands_section);
    }
    let mut roff = Roff::new();
    if let Some(after_help) = after_help {
        section(&mut roff, "NOTES");
        preformatted(&mut roff, after_help.lines());
    }
    section(&mut roff, "SEE ALSO");
    roff.text([roman(format!("flagsd(1), flagsd.toml(5). The guides: {DOCS}."))]);
    page.add(&roff);
    page.text
}

/// Where the Debian package puts the guides.
const DOCS: &str = "/usr/share/doc/flagsd/docs/";

const DESCRIPTION: &[&str] = &[
    "flagsd downloads country flag images by two-letter code from an HTTP server, concurrently, and tells what \
     became of each one: the classic flags2 exercise (a pool of downloaders, a progress bar, a count of every \
     outcome), built as an actor system. Each code is asked for as GET {base}/{cc}/{cc}.gif and saved as {CC}.gif.",
    "flagsd fetch downloads a list of flags once. flagsd run runs the batches of a configuration file once, and \
     flagsd serve runs them on their schedules as a systemd service, with an HTTP admin endpoint; several serve \
     processes can share the batches as a fleet, through NATS JetStream. flagsd testserver serves the flags \
     built into the binary, so everything works offline (the server label DEMO starts it in-process).",
];

fn section(roff: &mut Roff, title: &str) {
    roff.control("SH", [title]);
}

/// A term and what it means, as a tagged paragraph.
fn entry(roff: &mut Roff, term: &str, text: &str) {
    roff.control("TP", []).text([bold(term)]).text([roman(text)]);
}

/// `lines` as they are, indented, without filling.
fn preformatted<'a>(roff: &mut Roff, lines: impl Iterator<Item = &'a str>) {
    roff.control("RS", ["4"]).control("nf", []);
    for line in lines {
        roff.text([roman(line)]);
    }
    roff.control("fi", []).control("RE", []);
}

/// One configuration key.
struct Key {
    /// `defaults`, `[servers]`'s `LABEL`, `batch`, …
    table: &'static str,
    /// The key.
    key: &'static str,
    /// What it means.
    meaning: &'static str,
    /// Its default, in words.
    default: String,
}

fn key(table: &'static str, key: &'static str, meaning: &'static str, default: impl Into<String>) -> Key {
    Key { table, key, meaning, default: default.into() }
}

/// The tables of a configuration file, in the order the pages show them,
/// each with a word on what it is for.
const TABLES: &[(&str, &str)] = &[
    (
        "servers",
        "Server labels and how each server is reached. A label maps to a base URL, or to an inline table with these keys.",
    ),
    ("defaults", "Settings every batch inherits unless it sets its own."),
    ("daemon", "Settings of flagsd serve."),
    ("state", "Where the run state is kept (the state database)."),
    ("admin", "The admin endpoint of flagsd serve. Read at start only."),
    ("fleet", "Several flagsd serve nodes sharing the batches through NATS JetStream. Read at start only."),
    ("batch", "One [[batch]] table per batch."),
];

/// Every key of a configuration file, by table.
fn config_keys() -> Vec<Key> {
    let d = |duration| defaults::duration_text(duration);
    vec![
        key(
            "servers",
            "url",
            "The base URL (http:// or https://, no query or fragment); LABEL = \"URL\" is the short form. Labels are any case; LOCAL, REMOTE, DELAY and ERROR can be overridden, DEMO and CUSTOM are reserved.",
            "LOCAL, REMOTE, DELAY, ERROR as built in",
        ),
        key(
            "servers",
            "rate",
            "At most this many requests, N/s, N/m or N/h, shared by every batch that uses the label.",
            "unlimited",
        ),
        key(
            "servers",
            "ca_file",
            "Certificate authorities (PEM) trusted for this server, besides the system's.",
            "none",
        ),
        key(
            "servers",
            "client_cert",
            "A client certificate (PEM) for servers that require one; needs client_key.",
            "none",
        ),
        key("servers", "client_key", "The client certificate's private key (PEM); read by run and serve only.", "none"),
        key(
            "servers",
            "proxy",
            "The proxy for this server (\"\" for none), over http_proxy, https_proxy and all_proxy.",
            "the environment's",
        ),
        key(
            "servers",
            "no_proxy",
            "Hosts that go direct: *, names, IP addresses, CIDR blocks (\"\" clears the environment's).",
            "the environment's",
        ),
        key(
            "servers",
            "http2_prior_knowledge",
            "Speak HTTP/2 without negotiating it (h2c to an http:// server).",
            "false",
        ),
        key(
            "defaults",
            "max_req",
            "Concurrent requests of a batch; the pool is min(max_req, 1000, number of codes).",
            defaults::MAX_REQ.to_string(),
        ),
        key(
            "defaults",
            "threads",
            "Most threads the workers run on, 1 to 256, shared by every batch; read at start.",
            "one per core",
        ),
        key(
            "defaults",
            "output",
            "Base output directory; a relative path starts from the file's directory (left out: in the working \
             directory).",
            defaults::OUTPUT,
        ),
        key("defaults", "verbose", "Per-country lines in run, per-country warnings in serve.", "false"),
        key("defaults", "connect_timeout", "Limit for establishing a connection.", d(defaults::TIMEOUTS.connect)),
        key("defaults", "read_timeout", "Limit for any single read of a response.", d(defaults::TIMEOUTS.read)),
        key("defaults", "timeout", "Limit for a whole request, body included.", d(defaults::TIMEOUTS.total)),
        key(
            "defaults",
            "retries",
            "Further attempts for connection errors, timeouts and the statuses 408, 429, 500, 502, 503, 504.",
            defaults::BATCH_RETRIES.to_string(),
        ),
        key(
            "defaults",
            "retry_base",
            "Backoff before the first retry; it doubles each time, with full jitter.",
            d(defaults::RETRY_BASE),
        ),
        key("defaults", "retry_cap", "Longest backoff between two attempts.", d(defaults::RETRY_CAP)),
        key(
            "defaults",
            "retry_after_cap",
            "Longest wait a server's Retry-After can impose.",
            d(defaults::RETRY_AFTER_CAP),
        ),
        key(
            "defaults",
            "max_size",
            "Largest body saved: bytes, or text with a unit (\"512KiB\", \"10MB\").",
            defaults::size_text(defaults::MAX_SIZE),
        ),
        key(
            "daemon",
            "shutdown_timeout",
            "After SIGTERM, how long in-flight downloads may take before they are abandoned.",
            d(defaults::SHUTDOWN_TIMEOUT),
        ),
        key(
            "state",
            "dir",
            "Directory of the state database flagsd.db; a relative path starts from the file's directory (left out: in \
             the working directory).",
            defaults::STATE_DIR,
        ),
        key(
            "admin",
            "listen",
            "Where serve answers HTTP: PORT (on 127.0.0.1), ADDRESS:PORT or [IPv6]:PORT. A non-loopback address needs token_file.",
            "no endpoint",
        ),
        key(
            "admin",
            "token_file",
            "A file holding the token requests must carry (surrounding white space ignored).",
            "no token",
        ),
        key(
            "admin",
            "hosts",
            "Host names the endpoint answers for besides localhost and IP addresses (a request naming another \
             host is refused: DNS rebinding).",
            "none",
        ),
        key(
            "fleet",
            "nats",
            "Required: the NATS servers, one URL, a list or a comma-separated string (nats:// or tls://).",
            "none",
        ),
        key(
            "fleet",
            "name",
            "The fleet's name, the prefix of its streams, buckets and subjects.",
            defaults::FLEET_NAME,
        ),
        key("fleet", "node", "This node's name, unique in the fleet.", "the host name"),
        key(
            "fleet",
            "replicas",
            "JetStream replicas of the streams and buckets, 1 to 5.",
            defaults::FLEET_REPLICAS.to_string(),
        ),
        key("fleet", "creds_file", "A NATS credentials file (JWT and NKey seed).", "none"),
        key("fleet", "token_file", "A file holding a NATS token; not with creds_file.", "none"),
        key("fleet", "tls_ca_file", "The CA certificates (PEM) of the NATS servers; TLS is then required.", "none"),
        key(
            "fleet",
            "ack_wait",
            "How long a node may hold a code without a sign of life before another node gets it, 1s to 24h.",
            d(defaults::FLEET_ACK_WAIT),
        ),
        key(
            "fleet",
            "duplicate_window",
            "How long the streams remember a message id, to drop a duplicate, 1s to 24h.",
            d(defaults::FLEET_DUPLICATE_WINDOW),
        ),
        key("batch", "name", "Required, unique: letters, digits, '.', '_', '-'.", "none"),
        key(
            "batch",
            "codes",
            "A list of codes and letters ([\"b\", \"CN\"]: B is BA to BZ), \"all\" (194) or \"every\" (676).",
            "the 20 most populous countries",
        ),
        key("batch", "limit", "Keep the first N codes, after sorting.", "all"),
        key(
            "batch",
            "server",
            "A label or an http(s):// URL; DEMO starts the built-in server for the run.",
            defaults::SERVER,
        ),
        key(
            "batch",
            "output",
            "Output directory, relative to defaults.output or absolute.",
            "{defaults.output}/{name}",
        ),
        key("batch", "max_req", "Concurrent requests of this batch.", "defaults.max_req"),
        key("batch", "verbose", "Per-country lines or warnings for this batch.", "defaults.verbose"),
        key(
            "batch",
            "every",
            "Interval for serve (\"6h\", at least 1s); absent: the batch runs only on demand.",
            "on demand",
        ),
        key(
            "batch",
            "naming",
            "\"code\": {CC}.gif; \"country\": named by the country field of the server's {cc}/metadata.json.",
            "code",
        ),
    ]
}

/// The table's heading as a file writes it.
fn heading(table: &str) -> String {
    if table == "batch" { "[[batch]]".to_owned() } else { format!("[{table}]") }
}

/// `flagsd.1`'s CONFIGURATION section: the keys of each table.
fn configuration_summary(roff: &mut Roff) {
    section(roff, "CONFIGURATION");
    roff.text([
        roman(
            "run, serve, status, trigger, cancel, check-config and reload read a TOML file: --config FILE, else \
             $FLAGSD_CONFIG, \
         else /etc/flagsd/flagsd.toml when it exists (fetch reads its [servers] only). Environment variables \
         FLAGSD_TABLE__KEY override it, and the flags -m, -o and -v override both. Unknown keys are errors. Its \
         keys, described in ",
        ),
        italic("flagsd.toml"),
        roman("(5):"),
    ]);
    let keys = config_keys();
    for (table, _) in TABLES {
        let names: Vec<&str> = keys.iter().filter(|k| k.table == *table).map(|k| k.key).collect();
        let shown = if *table == "servers" {
            format!("LABEL = \"URL\" or {{ {} }}", names.join(", "))
        } else {
            names.join(", ")
        };
        entry(roff, &heading(table), &shown);
    }
}

fn signals(roff: &mut Roff) {
    section(roff, "SIGNALS");
    entry(
        roff,
        "SIGINT, SIGTERM (fetch, run)",
        "Stop dispatching, abandon the downloads in flight (their temporary files are deleted), print the report \
         of what finished, and exit with status 130 (SIGINT) or 143 (SIGTERM).",
    );
    entry(
        roff,
        "SIGHUP (serve)",
        "Reload the configuration (flagsd reload PID checks it first, then sends SIGHUP; POST /reload, which \
         flagsd reload without a PID sends, does the same). A bad file is logged and the running configuration \
         stays; runs in progress finish under their old settings. [state], [admin] and [fleet] changes wait for a \
         restart.",
    );
    entry(
        roff,
        "SIGTERM, SIGINT (serve)",
        "Stop scheduling, give the downloads in flight daemon.shutdown_timeout, then abandon them and exit 0.",
    );
    entry(roff, "SIGINT, SIGTERM (testserver)", "Stop, after at most 1 s for the requests in flight.");
}

fn admin_endpoints(roff: &mut Roff) {
    section(roff, "ADMIN ENDPOINTS");
    roff.text([roman(
        "With [admin] listen set, flagsd serve answers HTTP on that address. With admin.token_file, every request \
         but /healthz and /readyz must prove it holds the token (see the daemon guide for how). Errors are JSON \
         {\"error\": \"...\"}.",
    )]);
    for (request, answer) in [
        ("GET /healthz", "200 ok once the daemon's loop answers."),
        ("GET /readyz", "200 ready when the state directory and database are writable, else 503 with the reason."),
        ("GET /metrics", "Prometheus text format."),
        ("GET /", "The operator console: a web page of the batches, their runs, the fleet and the health."),
        ("GET /batches", "The configured batches, with their last and next runs (JSON)."),
        ("GET /batches/NAME", "One batch, as in GET /batches; 404 for a name not configured."),
        ("GET /runs?batch=NAME&limit=N&before=ID", "Runs, newest first, a page at a time (JSON)."),
        ("GET /runs/ID", "One run, with each code's outcome (JSON); 404 for an unknown run."),
        ("POST /batches/NAME/run", "Start a run of the batch now: 202 with its run_id; 409 while one is in progress."),
        ("POST /batches/NAME/cancel", "Cancel the batch's run in progress: 200 with the run; 409 when none is."),
        ("GET /about", "The version, the configuration file, when it was loaded, readiness (JSON)."),
        ("GET /fleet", "A fleet's live nodes and its codes queued and in flight (JSON); 404 outside a fleet."),
        ("GET /events", "Server-Sent Events: the batches, runs started, progressing and finished, fleet nodes."),
        ("POST /session, GET /session, DELETE /session", "The console's sign-in, its state, and sign-out."),
        (
            "POST /reload",
            "Reload the configuration as SIGHUP does: 200 with its batches, or 422 with the problems that kept the \
             previous one.",
        ),
    ] {
        entry(roff, request, answer);
    }
}

fn exit_statuses(roff: &mut Roff) {
    section(roff, "EXIT STATUS");
    for (status, meaning) in [
        (
            "0",
            "Every code downloaded, unchanged or not found (serve: stopped by a signal; cancel: a run was cancelled).",
        ),
        (
            "1",
            "At least one code ended in an error (cancel: the batch had no run in progress; trigger --wait: the \
             run's).",
        ),
        (
            "2",
            "Usage or configuration error: a bad argument or file, named on stderr; nothing was requested (reload: \
             the daemon found problems in the file and kept its configuration; trigger: the daemon has no such \
             batch). A bare flagsd prints its help with this status too.",
        ),
        (
            "3",
            "Fatal runtime error: output directory not writable, state database unusable, address in use, client \
             set-up failed, the --failed list not written, the daemon or NATS unreachable (trigger, cancel, reload; \
             status in a fleet), the batch running already (trigger, run --exclusive: nothing was started).",
        ),
        ("130", "Interrupted by SIGINT; the report of what finished is still printed."),
        ("143", "Terminated by SIGTERM; as for 130."),
    ] {
        entry(roff, status, meaning);
    }
    roff.control("PP", []).text([roman("run exits with the worst status of its batches.")]);
}

fn environment(roff: &mut Roff) {
    section(roff, "ENVIRONMENT");
    for (name, meaning) in [
        ("FLAGSD_CONFIG", "The configuration file, when --config names none."),
        ("FLAGSD_LOG", "The diagnostics filter, when --log-level gives none."),
        (
            "FLAGSD_TABLE__KEY",
            "A configuration key (FLAGSD_DEFAULTS__MAX_REQ=50, FLAGSD_SERVERS__MIRROR=URL), over the file.",
        ),
        (
            "http_proxy, https_proxy, all_proxy, no_proxy",
            "Proxies, as curl reads them (upper case too; HTTP_PROXY is ignored under CGI).",
        ),
        ("SSL_CERT_FILE, SSL_CERT_DIR", "The certificate authorities trusted instead of the system's."),
        ("JOURNAL_STREAM", "Set by systemd: diagnostics go to the journal, with their fields."),
        ("NOTIFY_SOCKET, WATCHDOG_USEC", "Set by systemd: serve says READY=1, STATUS= and WATCHDOG=1."),
        ("COMPLETE", "Set by the completion scripts: flagsd answers a shell's completion request instead of running."),
    ] {
        entry(roff, name, meaning);
    }
}

fn files(roff: &mut Roff) {
    section(roff, "FILES");
    for (path, meaning) in [
        (defaults::CONFIG_PATH, "The configuration, when neither --config nor FLAGSD_CONFIG names one."),
        (
            "downloaded/",
            "Where fetch saves flags ({CC}.gif), and the base of the batches' directories (defaults.output).",
        ),
        (
            ".{CC}.gif.RANDOM.PID.flagsd-tmp",
            "A download on its way, renamed over {CC}.gif once complete; one left by a killed flagsd is removed by the next run.",
        ),
        (
            "state/flagsd.db",
            "The state database (SQLite): run history, and what each batch saved, for conditional requests ([state] dir, fetch --state DIR).",
        ),
        ("/var/lib/flagsd/", "Under systemd, the service's only writable directory: downloaded/ and state/."),
        (
            "/usr/lib/systemd/system/flagsd.service",
            "The daemon's unit; flagsd-batch@.service and flagsd-batch@.timer run one batch on a timer.",
        ),
        (DOCS, "The guides: fetching, configuration, the daemon, the fleet, state, results."),
    ] {
        entry(roff, path, meaning);
    }
}

/// `flagsd.toml.5`.
fn config_page() -> String {
    let mut page = Writer::new();
    page.add(&head("flagsd.toml", "5", "configuration file of flagsd"));
    let mut roff = Roff::new();
    section(&mut roff, "SYNOPSIS");
    roff.text([roman(format!("{}, or the file that --config or FLAGSD_CONFIG names", defaults::CONFIG_PATH))]);
    section(&mut roff, "DESCRIPTION");
    for paragraph in [
        "A TOML file of batches, the named download jobs of flagsd run and flagsd serve, and of the settings they \
         share. flagsd run, serve, status, trigger, cancel, check-config and reload read it; flagsd fetch reads its \
         [servers] table only. flagsd check-config checks all of it and names the file, line, column and key of \
         each problem (or the environment variable or option that set the value), with the key meant for an \
         unknown one.",
        "Layers, lowest first, each overriding the ones before: built-in defaults; the file; environment \
         variables FLAGSD_TABLE__KEY (FLAGSD_DEFAULTS__MAX_REQ=50); the flags -m/--max-req, -o/--output and \
         -v/--verbose of the command. Unknown keys are errors: a typo is never silently ignored.",
    ] {
        roff.control("PP", []).text([roman(paragraph)]);
    }
    let keys = config_keys();
    for (table, about) in TABLES {
        section(&mut roff, &heading(table).to_uppercase());
        roff.text([roman(*about)]);
        for key in keys.iter().filter(|k| k.table == *table) {
            entry(&mut roff, key.key, &format!("{} Default: {}.", key.meaning, key.default));
        }
    }
    section(&mut roff, "VALUES");
    entry(&mut roff, "Durations", "A number and a unit: 500ms, 5s, 2m, 6h, 1day, 1h30m; at most 366days.");
    entry(
        &mut roff,
        "Sizes",
        "Bytes, or a number and a unit: 512KiB, 10MiB, 1GiB (powers of 1024), KB, MB, GB (powers of 1000).",
    );
    entry(&mut roff, "Codes", "Two letters are one code, any case; a single letter X is the 26 codes XA to XZ.");
    entry(
        &mut roff,
        "Types",
        "Each key takes the TOML type its description gives, and nothing else: \"yes\" is not a boolean, \"3\" and \
         2.5 are not integers, 5 is not a duration (\"5s\" is). An environment variable's text is read as its key's \
         type: decimal integers; true, false, yes, no, on, off, 1 or 0 for booleans.",
    );
    entry(
        &mut roff,
        "Paths",
        "A relative path written in the file starts from the file's directory (a batch's output, from \
         defaults.output); one from an environment variable or an option, or a default, from the working \
         directory. flagsd check-config -v prints them all, resolved.",
    );
    section(&mut roff, "EXAMPLE");
    preformatted(&mut roff, EXAMPLE.lines());
    section(&mut roff, "SEE ALSO");
    roff.text([roman(format!("flagsd(1), flagsd-check-config(1). The configuration guide: {DOCS}configuration.md."))]);
    page.add(&roff);
    page.text
}

const EXAMPLE: &str = r#"[servers]
MIRROR = { url = "https://mirror.example/flags", rate = "50/s" }

[defaults]
max_req = 20
output = "/var/lib/flagsd/downloaded"

[admin]
listen = "9090"

[[batch]]
name = "world"
codes = "all"
server = "MIRROR"
every = "1day""#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::Overrides;
    use crate::config::layers::load;

    /// The fields a table of the configuration accepts, as the parser's
    /// refusal of an unknown one lists them.
    fn accepted(table: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flagsd.toml");
        let text = if table == "batch" {
            "[[batch]]\nname = \"x\"\nzzz = 1\n".to_owned()
        } else {
            format!("[{table}]\nzzz = 1\n")
        };
        std::fs::write(&path, text).unwrap();
        let error = load(Some(&path), std::iter::empty(), &Overrides::default()).unwrap_err().to_string();
        // "unknown key zzz; known keys: a, b, c"
        let listed = error.split("known keys: ").nth(1).unwrap_or_else(|| panic!("{error}"));
        listed.trim().split(", ").map(str::to_owned).collect()
    }

    #[test]
    fn the_pages_list_every_key_of_every_table_and_no_other() {
        let keys = config_keys();
        for (table, _) in TABLES.iter().filter(|(t, _)| *t != "servers") {
            let mut listed: Vec<String> = keys.iter().filter(|k| k.table == *table).map(|k| k.key.to_owned()).collect();
            let mut known = accepted(table);
            listed.sort();
            known.sort();
            assert_eq!(listed, known, "[{table}]");
        }
        assert!(keys.iter().all(|k| TABLES.iter().any(|(t, _)| *t == k.table)));
    }

    #[test]
    fn name_lines_are_lower_case_sentences() {
        assert_eq!(summary("Download flags, as flags2 does."), "download flags, as flags2 does");
        let name = head("flagsd", "1", crate::cli::ABOUT).to_roff();
        assert!(name.contains("flagsd \\- download country flags by two\\-letter code"), "{name}");
    }
}
