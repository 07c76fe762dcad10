//! Servers: the built-in labels, the configured ones, and what a `--server`
//! value or a batch's `server` key resolves to.

use std::collections::BTreeMap;

use super::error::UsageError;
use crate::http::client::Transport;
use crate::http::rate::Rate;
use crate::http::url::{parse_typed, redact_credentials};

/// The built-in server labels and their base URLs.
pub const SERVER_LABELS: [(&str, &str); 4] = [
    ("LOCAL", "http://localhost:8000/flags"),
    ("REMOTE", "https://www.fluentpython.com/data/flags"),
    ("DELAY", "http://localhost:8001/flags"),
    ("ERROR", "http://localhost:8002/flags"),
];

/// Where the flags come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTarget {
    /// A base URL (`http://…/flags`).
    Url(String),
    /// The built-in server, started in-process on a free loopback port.
    Demo,
}

/// A server as chosen on the command line: its label and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `LOCAL`, `REMOTE`, …, `DEMO`, or `CUSTOM` for a URL.
    pub label: String,
    /// Where requests go.
    pub target: ServerTarget,
    /// Most requests per unit of time to this server, if limited.
    pub rate: Option<Rate>,
    /// How it is reached: TLS files (and more).
    pub transport: Transport,
}

/// Checks an http(s) base URL: it must parse and have a host, and carry
/// neither a query string nor a fragment, since flags are asked for at
/// `{base}/{cc}/{cc}.gif`. The reason names the URL, credentials masked.
pub fn check_base_url(value: &str) -> Result<(), String> {
    let shown = redact_credentials(value);
    let url = parse_typed(value).map_err(|e| e.to_string())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{shown}' has no host"));
    }
    if let Some(query) = url.query() {
        return Err(format!(
            "'{shown}' has a query string ('?{query}'): flags are asked for at BASE/cc/cc.gif, so a base URL cannot carry one"
        ));
    }
    if let Some(fragment) = url.fragment() {
        return Err(format!("'{shown}' has a fragment ('#{fragment}'), which is never sent to a server: remove it"));
    }
    Ok(())
}

impl Server {
    /// Resolves a `--server` value: a built-in label in any case, or an
    /// http(s) URL.
    pub fn parse(value: &str) -> Result<Self, UsageError> {
        let upper = value.to_ascii_uppercase();
        if upper == "DEMO" {
            return Ok(Self { label: upper, target: ServerTarget::Demo, rate: None, transport: Transport::default() });
        }
        if let Some((label, url)) = SERVER_LABELS.iter().find(|(label, _)| *label == upper) {
            let target = ServerTarget::Url((*url).to_owned());
            return Ok(Self { label: (*label).to_owned(), target, rate: None, transport: Transport::default() });
        }
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match check_base_url(value) {
                Ok(()) => Ok(Self {
                    label: "CUSTOM".to_owned(),
                    target: ServerTarget::Url(value.to_owned()),
                    rate: None,
                    transport: Transport::default(),
                }),
                Err(why) => Err(UsageError(format!("--server URL {why}"))),
            };
        }
        let labels: Vec<&str> = SERVER_LABELS.iter().map(|(l, _)| *l).chain(["DEMO"]).collect();
        Err(UsageError(format!(
            "--server LABEL must be one of {}, or an http:// or https:// URL (got '{}')",
            labels.join(", "),
            redact_credentials(value)
        )))
    }
}

/// The server labels in force: the built-in ones, overridden and extended
/// by a configuration's `[servers]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servers {
    /// Base URL, rate limit and transport by label (upper case).
    by_label: BTreeMap<String, (String, Option<Rate>, Transport)>,
}

impl Default for Servers {
    /// The built-in labels, without rate limits.
    fn default() -> Self {
        let by_label = SERVER_LABELS
            .iter()
            .map(|(l, u)| ((*l).to_owned(), ((*u).to_owned(), None, Transport::default())))
            .collect();
        Self { by_label }
    }
}

impl Servers {
    /// Sets (or adds) `label` (any case) to `url` with an optional rate
    /// limit and how it is reached.
    pub fn insert(&mut self, label: &str, url: &str, rate: Option<Rate>, transport: Transport) {
        self.by_label.insert(label.to_ascii_uppercase(), (url.to_owned(), rate, transport));
    }

    /// The labels, upper case, sorted.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.by_label.keys().map(String::as_str)
    }

    /// Resolves a label of this table (any case), else a built-in label or
    /// a URL as [`Server::parse`] does.
    pub fn resolve(&self, value: &str) -> Result<Server, UsageError> {
        let upper = value.to_ascii_uppercase();
        match self.by_label.get(&upper) {
            Some((url, rate, transport)) => Ok(Server {
                label: upper,
                target: ServerTarget::Url(url.clone()),
                rate: *rate,
                transport: transport.clone(),
            }),
            None => Server::parse(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_case_insensitive_and_urls_are_custom() {
        assert_eq!(Server::parse("remote").unwrap().target, ServerTarget::Url(SERVER_LABELS[1].1.to_owned()));
        assert_eq!(Server::parse("Demo").unwrap().target, ServerTarget::Demo);
        let custom = Server::parse("http://127.0.0.1:9/flags/").unwrap();
        assert_eq!(custom.label, "CUSTOM");
        assert_eq!(custom.target, ServerTarget::Url("http://127.0.0.1:9/flags/".to_owned()));
    }

    #[test]
    fn configured_labels_win_over_built_in_ones() {
        let mut servers = Servers::default();
        servers.insert("local", "http://127.0.0.1:9/flags", None, Transport::default());
        servers.insert("Mirror", "https://mirror.example/flags", "5/s".parse().ok(), Transport::default());
        assert_eq!(servers.resolve("LOCAL").unwrap().target, ServerTarget::Url("http://127.0.0.1:9/flags".into()));
        let mirror = servers.resolve("mirror").unwrap();
        assert_eq!((mirror.label.as_str(), mirror.rate), ("MIRROR", "5/s".parse().ok()));
        assert_eq!(servers.resolve("demo").unwrap().target, ServerTarget::Demo);
        assert!(servers.resolve("nowhere").is_err());
        assert_eq!(servers.labels().collect::<Vec<_>>(), ["DELAY", "ERROR", "LOCAL", "MIRROR", "REMOTE"]);
    }
}
