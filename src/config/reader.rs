//! The configuration tree read into a [`RawConfig`]: each key checked for
//! the exact type it takes, unknown keys refused (with the key meant, when
//! one is close), relative paths resolved, and where each value was set
//! recorded.
//!
//! TOML has types, and the file's are taken at their word: `verbose =
//! "yes"` is a string, not a boolean, and `max_req = 2.5` is a float, not
//! an integer. An environment variable is text, so its value is parsed as
//! the key's type: an integer in decimal, a boolean as `true`, `false`,
//! `yes`, `no`, `on`, `off`, `1` or `0` (any case). Every problem is
//! collected, not only the first, each said where the value was set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::Problem;
use super::file::{
    Naming, RawAdmin, RawBatch, RawCodes, RawConfig, RawDaemon, RawDefaults, RawFleet, RawServer, RawSize, RawState,
    RawUrls,
};
use super::place::{Place, Places, problem_at};
use super::suggest::{unknown_key, unknown_value};
use super::tree::{Entry, Node, Value};
use super::validate;

/// The sections of a file: its top-level keys.
const SECTIONS: [&str; 7] = ["servers", "defaults", "daemon", "state", "admin", "fleet", "batch"];

/// What reads the tree: the problems found and the places seen so far.
pub struct Reader {
    origin: String,
    dir: PathBuf,
    problems: Vec<Problem>,
    places: Places,
}

/// The keys of one table, as they are read: each key asked for is known,
/// and the entries no one asked for are unknown keys.
struct Fields<'a> {
    path: String,
    entries: &'a [Entry],
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(path: &str, entries: &'a [Entry]) -> Self {
        Self { path: path.to_owned(), entries, known: Vec::new() }
    }

    /// The key path of `key` in this table.
    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// The value of `key`, if set, with its key path (its place recorded).
    fn get(&mut self, reader: &mut Reader, key: &'static str) -> Option<(String, &'a Node)> {
        self.known.push(key);
        let entry = self.entries.iter().find(|e| e.key == key)?;
        let path = self.path_of(key);
        reader.places.insert(&path, entry.node.place.clone());
        Some((path, &entry.node))
    }

    /// The value of `key`, if set, read as `read` reads it.
    fn read<T>(
        &mut self,
        reader: &mut Reader,
        key: &'static str,
        read: impl FnOnce(&mut Reader, &str, &Node) -> Option<T>,
    ) -> Option<T> {
        let (path, node) = self.get(reader, key)?;
        read(reader, &path, node)
    }

    /// The value of `key`, which the table at `place` must set, read as
    /// `read` reads it.
    fn required<T>(
        &mut self,
        reader: &mut Reader,
        key: &'static str,
        place: &Place,
        read: impl FnOnce(&mut Reader, &str, &Node) -> Option<T>,
    ) -> Option<T> {
        if !self.entries.iter().any(|e| e.key == key) {
            self.known.push(key);
            reader.problem(place, Some(&self.path), format!("missing key {key}"));
            return None;
        }
        self.read(reader, key, read)
    }

    /// Refuses the keys no one asked for: each at the table's key path, or
    /// at the variable that names it.
    fn finish(self, reader: &mut Reader) {
        let within = (!self.path.is_empty()).then_some(self.path.as_str());
        for entry in self.entries.iter().filter(|e| !self.known.contains(&e.key.as_str())) {
            let key = if entry.place.is_environment() { None } else { within };
            reader.problem(&entry.place, key, unknown_key(&entry.key, &self.known));
        }
    }
}

/// How a value is shown in a message: its type and, for a short one, the
/// value (a variable's text in quotes).
fn found(node: &Node) -> String {
    let quoted = |text: &str| {
        let short: String = text.chars().take(40).collect();
        let more = if short.len() < text.len() { "…" } else { "" };
        format!("{short:?}{more}")
    };
    match &node.value {
        Value::String(text) if node.place.is_environment() => quoted(text),
        Value::String(text) => format!("a string ({})", quoted(text)),
        Value::Integer { text, .. } => format!("an integer ({text})"),
        Value::Float(text) => format!("a float ({text})"),
        Value::Boolean(b) => format!("a boolean ({b})"),
        Value::Datetime(text) => format!("a date-time ({text})"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

impl Reader {
    /// A reader of the configuration from `origin` (a file name, for
    /// messages), whose relative paths start from `dir`.
    pub fn new(origin: &str, dir: PathBuf) -> Self {
        Self { origin: origin.to_owned(), dir, problems: Vec::new(), places: Places::default() }
    }

    /// Reads the tree `root`: the raw configuration (with the places of its
    /// values), else every problem found.
    pub fn read(mut self, root: &[Entry]) -> Result<RawConfig, Vec<Problem>> {
        let mut raw = RawConfig::default();
        let mut top = Fields::new("", root);
        for section in SECTIONS {
            let Some((path, node)) = top.get(&mut self, section) else { continue };
            match section {
                "servers" => raw.servers = self.servers(&path, node),
                "defaults" => raw.defaults = self.defaults(&path, node),
                "daemon" => raw.daemon = self.daemon(&path, node),
                "state" => raw.state = self.state(&path, node),
                "admin" => raw.admin = self.admin(&path, node),
                "fleet" => raw.fleet = Some(self.fleet(&path, node)),
                _ => raw.batch = self.batches(&path, node),
            }
        }
        top.finish(&mut self);
        raw.places = self.places;
        if self.problems.is_empty() { Ok(raw) } else { Err(self.problems) }
    }

    fn problem(&mut self, place: &Place, key: Option<&str>, message: impl Into<String>) {
        self.problems.push(problem_at(&self.origin, Some(place), key, message));
    }

    /// Says that `node` at `path` is not `what` it should be.
    fn expected<T>(&mut self, path: &str, node: &Node, what: &str) -> Option<T> {
        self.problem(&node.place, Some(path), format!("expected {what}, found {}", found(node)));
        None
    }

    /// The keys of the table `node`, else a problem (`what`: the table as a
    /// file writes it).
    fn fields<'a>(&mut self, path: &str, node: &'a Node, what: &str) -> Option<Fields<'a>> {
        match &node.value {
            Value::Table(entries) => Some(Fields::new(path, entries)),
            _ => self.expected(path, node, &format!("a table ({what})")),
        }
    }

    fn string(&mut self, path: &str, node: &Node) -> Option<String> {
        match &node.value {
            Value::String(text) => Some(text.clone()),
            _ => self.expected(path, node, "a string"),
        }
    }

    fn integer(&mut self, path: &str, node: &Node) -> Option<i64> {
        match &node.value {
            Value::Integer { value: Some(n), .. } => Some(*n),
            Value::Integer { value: None, text } => {
                let message = format!("{text} is out of range: an integer is from {} to {}", i64::MIN, i64::MAX);
                self.problem(&node.place, Some(path), message);
                None
            }
            Value::String(text) if node.place.is_environment() => match text.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => self.expected(path, node, "an integer"),
            },
            _ => self.expected(path, node, "an integer"),
        }
    }

    fn boolean(&mut self, path: &str, node: &Node) -> Option<bool> {
        match &node.value {
            Value::Boolean(b) => Some(*b),
            Value::String(text) if node.place.is_environment() => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => self.expected(path, node, "a boolean (true, false, yes, no, on, off, 1 or 0)"),
            },
            _ => self.expected(path, node, "a boolean (true or false)"),
        }
    }

    fn duration(&mut self, path: &str, node: &Node) -> Option<Duration> {
        match &node.value {
            Value::String(text) => {
                validate::parse_duration(text).map_err(|message| self.problem(&node.place, Some(path), message)).ok()
            }
            Value::Integer { text, .. } | Value::Float(text) => {
                self.expected(path, node, &format!("a duration: a string with a unit, such as \"{text}s\""))
            }
            _ => self.expected(path, node, "a duration: a string with a unit, such as \"5s\""),
        }
    }

    /// A path as written (a batch's `output` is relative to
    /// `defaults.output`, not to the file).
    fn path_as_written(&mut self, path: &str, node: &Node) -> Option<PathBuf> {
        let text = self.string(path, node)?;
        if text.is_empty() {
            self.problem(&node.place, Some(path), "is empty: give a path (\".\" for the directory itself)");
            return None;
        }
        Some(PathBuf::from(text))
    }

    /// A path; a relative one written in the file starts from the file's
    /// directory (one from a variable, from the working directory).
    fn path(&mut self, path: &str, node: &Node) -> Option<PathBuf> {
        let written = self.path_as_written(path, node)?;
        Some(if node.place.is_file() { self.dir.join(written) } else { written })
    }

    fn size(&mut self, path: &str, node: &Node) -> Option<RawSize> {
        match &node.value {
            Value::Integer { value: Some(n), .. } if *n >= 1 => u64::try_from(*n).ok().map(RawSize::Bytes),
            Value::Integer { value: Some(_), .. } => {
                self.problem(&node.place, Some(path), "must be >= 1");
                None
            }
            Value::String(text) => Some(RawSize::Text(text.clone())),
            _ => self.expected(path, node, "a number of bytes or a size with a unit, such as \"10MiB\""),
        }
    }

    /// A list of strings, each element's place recorded.
    fn strings(&mut self, path: &str, items: &[Node]) -> Option<Vec<String>> {
        let mut list = Vec::new();
        let mut good = true;
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            self.places.insert(&item_path, item.place.clone());
            match self.string(&item_path, item) {
                Some(text) => list.push(text),
                None => good = false,
            }
        }
        good.then_some(list)
    }

    fn servers(&mut self, path: &str, node: &Node) -> BTreeMap<String, RawServer> {
        let mut servers = BTreeMap::new();
        let Value::Table(entries) = &node.value else {
            return self.expected(path, node, "a table ([servers])").unwrap_or_default();
        };
        for entry in entries {
            let key = format!("{path}.{}", entry.key);
            self.places.insert(&key, entry.node.place.clone());
            if let Some(same) = servers.keys().find(|label: &&String| label.eq_ignore_ascii_case(&entry.key)) {
                let message = format!("the same label as {path}.{same} (labels are compared without regard to case)");
                self.problem(&entry.place, Some(&key), message);
                continue;
            }
            if let Some(server) = self.server(&key, &entry.node) {
                servers.insert(entry.key.clone(), server);
            }
        }
        servers
    }

    fn server(&mut self, path: &str, node: &Node) -> Option<RawServer> {
        let entries = match &node.value {
            Value::String(url) => return Some(RawServer::Url(url.clone())),
            Value::Table(entries) => entries,
            _ => return self.expected(path, node, "a URL string, or a table such as { url = \"…\", rate = \"50/s\" }"),
        };
        let mut f = Fields::new(path, entries);
        let url = f.required(self, "url", &node.place, Self::string);
        let rate = f.read(self, "rate", Self::string);
        let ca_file = f.read(self, "ca_file", Self::path);
        let client_cert = f.read(self, "client_cert", Self::path);
        let client_key = f.read(self, "client_key", Self::path);
        let proxy = f.read(self, "proxy", Self::string);
        let no_proxy = f.read(self, "no_proxy", Self::string);
        let http2_prior_knowledge = f.read(self, "http2_prior_knowledge", Self::boolean).unwrap_or(false);
        let allow_internal_redirects = f.read(self, "allow_internal_redirects", Self::boolean).unwrap_or(false);
        let credentials_file = f.read(self, "credentials_file", Self::path);
        let proxy_credentials_file = f.read(self, "proxy_credentials_file", Self::path);
        f.finish(self);
        Some(RawServer::Table {
            url: url?,
            rate,
            ca_file,
            client_cert,
            client_key,
            proxy,
            no_proxy,
            http2_prior_knowledge,
            allow_internal_redirects,
            credentials_file,
            proxy_credentials_file,
        })
    }

    fn defaults(&mut self, path: &str, node: &Node) -> RawDefaults {
        let mut d = RawDefaults::default();
        let Some(mut f) = self.fields(path, node, "[defaults]") else { return d };
        d.max_req = f.read(self, "max_req", Self::integer).unwrap_or(d.max_req);
        d.output = f.read(self, "output", Self::path).unwrap_or(d.output);
        d.verbose = f.read(self, "verbose", Self::boolean).unwrap_or(d.verbose);
        d.connect_timeout = f.read(self, "connect_timeout", Self::duration).unwrap_or(d.connect_timeout);
        d.read_timeout = f.read(self, "read_timeout", Self::duration).unwrap_or(d.read_timeout);
        d.timeout = f.read(self, "timeout", Self::duration).unwrap_or(d.timeout);
        d.retries = f.read(self, "retries", Self::integer).unwrap_or(d.retries);
        d.retry_base = f.read(self, "retry_base", Self::duration).unwrap_or(d.retry_base);
        d.retry_cap = f.read(self, "retry_cap", Self::duration).unwrap_or(d.retry_cap);
        d.retry_after_cap = f.read(self, "retry_after_cap", Self::duration).unwrap_or(d.retry_after_cap);
        d.max_size = f.read(self, "max_size", Self::size).unwrap_or(d.max_size);
        d.threads = f.read(self, "threads", Self::integer);
        f.finish(self);
        d
    }

    fn daemon(&mut self, path: &str, node: &Node) -> RawDaemon {
        let mut d = RawDaemon::default();
        let Some(mut f) = self.fields(path, node, "[daemon]") else { return d };
        d.shutdown_timeout = f.read(self, "shutdown_timeout", Self::duration).unwrap_or(d.shutdown_timeout);
        f.finish(self);
        d
    }

    fn state(&mut self, path: &str, node: &Node) -> RawState {
        let mut s = RawState::default();
        let Some(mut f) = self.fields(path, node, "[state]") else { return s };
        s.dir = f.read(self, "dir", Self::path).unwrap_or(s.dir);
        f.finish(self);
        s
    }

    /// `listen` is a string; an integer is a port (`listen = 9090`).
    fn listen(&mut self, path: &str, node: &Node) -> Option<String> {
        match &node.value {
            Value::Integer { value: Some(port), .. } => Some(port.to_string()),
            Value::String(text) => Some(text.clone()),
            _ => self.expected(path, node, "a port (9090) or an address (\"127.0.0.1:9090\")"),
        }
    }

    fn admin(&mut self, path: &str, node: &Node) -> RawAdmin {
        let mut a = RawAdmin::default();
        let Some(mut f) = self.fields(path, node, "[admin]") else { return a };
        a.listen = f.read(self, "listen", Self::listen);
        a.token_file = f.read(self, "token_file", Self::path);
        a.hosts = f.read(self, "hosts", Self::host_names).unwrap_or_default();
        f.finish(self);
        a
    }

    fn host_names(&mut self, path: &str, node: &Node) -> Option<Vec<String>> {
        match &node.value {
            Value::Array(items) => self.strings(path, items),
            _ => self.expected(path, node, "a list of host names, such as [\"flagsd.example\"]"),
        }
    }

    fn urls(&mut self, path: &str, node: &Node) -> Option<RawUrls> {
        match &node.value {
            Value::String(text) => Some(RawUrls::One(text.clone())),
            Value::Array(items) => self.strings(path, items).map(RawUrls::Many),
            _ => self.expected(path, node, "a URL string, or a list of them"),
        }
    }

    fn fleet(&mut self, path: &str, node: &Node) -> RawFleet {
        let mut fleet = RawFleet::default();
        let Some(mut f) = self.fields(path, node, "[fleet]") else { return fleet };
        fleet.nats = f.read(self, "nats", Self::urls);
        fleet.name = f.read(self, "name", Self::string);
        fleet.node = f.read(self, "node", Self::string);
        fleet.replicas = f.read(self, "replicas", Self::integer);
        fleet.creds_file = f.read(self, "creds_file", Self::path);
        fleet.token_file = f.read(self, "token_file", Self::path);
        fleet.tls_ca_file = f.read(self, "tls_ca_file", Self::path);
        fleet.ack_wait = f.read(self, "ack_wait", Self::duration);
        fleet.duplicate_window = f.read(self, "duplicate_window", Self::duration);
        f.finish(self);
        fleet
    }

    fn codes(&mut self, path: &str, node: &Node) -> Option<RawCodes> {
        match &node.value {
            Value::String(text) => Some(RawCodes::Keyword(text.clone())),
            Value::Array(items) => self.strings(path, items).map(RawCodes::List),
            _ => self.expected(path, node, "a list of codes (such as [\"BR\", \"c\"]), \"all\" or \"every\""),
        }
    }

    fn naming(&mut self, path: &str, node: &Node) -> Option<Naming> {
        let text = match &node.value {
            Value::String(text) => text,
            _ => return self.expected(path, node, "\"code\" or \"country\""),
        };
        match text.as_str() {
            "code" => Some(Naming::Code),
            "country" => Some(Naming::Country),
            _ => {
                self.problem(&node.place, Some(path), unknown_value(text, &["code", "country"]));
                None
            }
        }
    }

    fn batches(&mut self, path: &str, node: &Node) -> Vec<RawBatch> {
        let Value::Array(items) = &node.value else {
            return self.expected(path, node, "a list of tables ([[batch]])").unwrap_or_default();
        };
        let mut batches = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            self.places.insert(&item_path, item.place.clone());
            if let Some(batch) = self.batch(&item_path, item) {
                batches.push(batch);
            }
        }
        batches
    }

    fn batch(&mut self, path: &str, node: &Node) -> Option<RawBatch> {
        let mut f = self.fields(path, node, "[[batch]]")?;
        let name = f.required(self, "name", &node.place, Self::string);
        let batch = RawBatch {
            name: name.unwrap_or_default(),
            codes: f.read(self, "codes", Self::codes),
            limit: f.read(self, "limit", Self::integer),
            server: f.read(self, "server", Self::string),
            output: f.read(self, "output", Self::path_as_written),
            max_req: f.read(self, "max_req", Self::integer),
            every: f.read(self, "every", Self::duration),
            naming: f.read(self, "naming", Self::naming).unwrap_or_default(),
            verbose: f.read(self, "verbose", Self::boolean),
        };
        f.finish(self);
        Some(batch)
    }
}

/// The directory a file's relative paths start from: the one that holds
/// it as named (a symbolic link to the file is not followed), as an
/// absolute path without `.` or `..`.
pub fn directory_of(file: &Path) -> PathBuf {
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    parent.canonicalize().or_else(|_| std::path::absolute(parent)).unwrap_or_else(|_| parent.to_owned())
}
