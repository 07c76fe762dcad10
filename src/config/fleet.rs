//! `[fleet]`, checked: which NATS servers, which fleet, which node.
//!
//! The fleet's name is the namespace of its streams, buckets and subjects,
//! and the node's name a key in its buckets, so both are restricted to
//! letters, digits, `-` and `_`. Nothing here talks to NATS: `check-config`
//! checks the section whether or not NATS is up.

use std::path::{Path, PathBuf};

use super::defaults;
use super::file::{RawFleet, RawUrls};

/// Most JetStream replicas of a stream or bucket.
pub const MAX_REPLICAS: i64 = 5;

/// The fleet settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// NATS server URLs (`nats://` or `tls://`), as given.
    pub servers: Vec<String>,
    /// Namespace of the fleet's streams, buckets and subjects.
    pub name: String,
    /// This node's name.
    pub node: String,
    /// JetStream replicas of the fleet's streams and buckets.
    pub replicas: usize,
    /// A NATS credentials file.
    pub creds_file: Option<PathBuf>,
    /// A file holding a NATS token.
    pub token_file: Option<PathBuf>,
    /// CA certificates for the NATS servers (PEM).
    pub tls_ca_file: Option<PathBuf>,
}

/// Whether `name` is 1 to `max` letters, digits, `-` or `_`.
fn is_plain_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// This host's name, made a valid node name (other characters become `-`).
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String =
        raw.trim().chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    if name.is_empty() { "node".to_owned() } else { name }
}

/// Checks `[fleet]`; each problem is a key (under `fleet.`) and a message.
pub fn check(raw: &RawFleet) -> Result<FleetSettings, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| problems.push((format!("fleet.{key}"), message));
    let urls: Vec<String> = match &raw.nats {
        None => {
            problem("nats", "missing: give the NATS server URL, or a list of them (\"nats://HOST:4222\")".into());
            Vec::new()
        }
        Some(RawUrls::One(text)) => text.split(',').map(|u| u.trim().to_owned()).collect(),
        Some(RawUrls::Many(list)) => list.iter().map(|u| u.trim().to_owned()).collect(),
    };
    if raw.nats.is_some() && urls.iter().all(String::is_empty) {
        problem("nats", "is empty: give at least one NATS server URL".into());
    }
    for (i, url) in urls.iter().enumerate().filter(|(_, u)| !u.is_empty()) {
        if let Err(message) = check_url(url) {
            problem(&format!("nats[{i}]"), message);
        }
    }
    let name = raw.name.clone().unwrap_or_else(|| defaults::FLEET_NAME.to_owned());
    if !is_plain_name(&name, 32) {
        problem("name", format!("'{name}' must be 1 to 32 letters, digits, '-' or '_'"));
    }
    let node = raw.node.clone().unwrap_or_else(host_name);
    if !is_plain_name(&node, 64) {
        problem("node", format!("'{node}' must be 1 to 64 letters, digits, '-' or '_'"));
    }
    let replicas = raw.replicas.unwrap_or(defaults::FLEET_REPLICAS);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        problem("replicas", format!("must be from 1 to {MAX_REPLICAS} (got {replicas})"));
    }
    if raw.creds_file.is_some() && raw.token_file.is_some() {
        problem("token_file", "set creds_file or token_file, not both".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(FleetSettings {
        servers: urls.into_iter().filter(|u| !u.is_empty()).collect(),
        name,
        node,
        replicas: usize::try_from(replicas).unwrap_or(1),
        creds_file: raw.creds_file.clone(),
        token_file: raw.token_file.clone(),
        tls_ca_file: raw.tls_ca_file.clone(),
    })
}

/// A NATS URL: `nats://` or `tls://`, with a host.
fn check_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("'{text}' is not a URL ({e})"))?;
    if !matches!(url.scheme(), "nats" | "tls") {
        return Err(format!("'{text}' must start with nats:// or tls://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{text}' has no host"));
    }
    Ok(())
}

impl FleetSettings {
    /// The files that are not secret and must be readable (the CA
    /// certificates), with their keys: problems are `(key, message)`.
    pub fn check_files(&self) -> Vec<(String, String)> {
        Self::readable_files([("tls_ca_file", &self.tls_ca_file)])
    }

    /// The secrets (the credentials or token file) that only the service
    /// itself may be able to read: checked when it starts, not by
    /// `check-config` nor by a reload.
    pub fn check_secrets(&self) -> Vec<(String, String)> {
        Self::readable_files([("creds_file", &self.creds_file), ("token_file", &self.token_file)])
    }

    fn readable_files<const N: usize>(files: [(&str, &Option<PathBuf>); N]) -> Vec<(String, String)> {
        files
            .into_iter()
            .filter_map(|(key, path)| {
                let path = path.as_deref()?;
                readable(path).err().map(|message| (format!("fleet.{key}"), message))
            })
            .collect()
    }
}

/// `Ok` if `path` is a file this process can read, and not empty.
fn readable(path: &Path) -> Result<(), String> {
    let content = std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    if content.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("'{}' is empty", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(nats: &str) -> RawFleet {
        RawFleet { nats: Some(RawUrls::One(nats.to_owned())), ..RawFleet::default() }
    }

    fn keys(result: Result<FleetSettings, Vec<(String, String)>>) -> Vec<String> {
        result.expect_err("problems").into_iter().map(|(key, message)| format!("{key}: {message}")).collect()
    }

    #[test]
    fn defaults_are_the_flagsd_namespace_this_host_and_one_replica() {
        let fleet = check(&raw("nats://127.0.0.1:4222")).expect("valid");
        assert_eq!(fleet.servers, ["nats://127.0.0.1:4222"]);
        assert_eq!((fleet.name.as_str(), fleet.replicas), ("flagsd", 1));
        assert_eq!(fleet.node, host_name());
        assert!(is_plain_name(&fleet.node, 64), "{}", fleet.node);
    }

    #[test]
    fn urls_come_one_as_a_list_or_comma_separated() {
        let listed = RawFleet {
            nats: Some(RawUrls::Many(vec!["nats://a:4222".into(), "tls://b:4222".into()])),
            ..RawFleet::default()
        };
        assert_eq!(check(&listed).expect("valid").servers, ["nats://a:4222", "tls://b:4222"]);
        assert_eq!(check(&raw("nats://a:1, nats://b:2")).expect("valid").servers, ["nats://a:1", "nats://b:2"]);
    }

    #[test]
    fn every_problem_names_its_key() {
        let bad = RawFleet {
            nats: Some(RawUrls::Many(vec!["http://a:4222".into(), "nats://".into(), "nats://ok:1".into()])),
            name: Some("my.fleet".into()),
            node: Some("host a".into()),
            replicas: Some(7),
            creds_file: Some("c".into()),
            token_file: Some("t".into()),
            tls_ca_file: None,
        };
        let problems = keys(check(&bad));
        let expected = [
            "fleet.nats[0]: 'http://a:4222' must start with nats:// or tls://",
            "fleet.nats[1]: 'nats://' has no host",
            "fleet.name: 'my.fleet' must be 1 to 32 letters, digits, '-' or '_'",
            "fleet.node: 'host a' must be 1 to 64 letters, digits, '-' or '_'",
            "fleet.replicas: must be from 1 to 5 (got 7)",
            "fleet.token_file: set creds_file or token_file, not both",
        ];
        assert_eq!(problems, expected);
        assert!(keys(check(&RawFleet::default()))[0].starts_with("fleet.nats: missing"));
        assert!(keys(check(&raw(" , ")))[0].starts_with("fleet.nats: is empty"));
    }

    #[test]
    fn files_must_be_readable_and_not_empty() {
        let dir = tempfile::tempdir().expect("a directory");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").expect("write");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let mut fleet = check(&raw("nats://h:1")).expect("valid");
        fleet.token_file = Some(token);
        assert!(fleet.check_files().is_empty() && fleet.check_secrets().is_empty());
        fleet.tls_ca_file = Some(empty);
        fleet.creds_file = Some(dir.path().join("missing"));
        let keys = |problems: Vec<(String, String)>| -> Vec<String> { problems.into_iter().map(|(k, _)| k).collect() };
        assert_eq!(keys(fleet.check_files()), ["fleet.tls_ca_file"]);
        assert_eq!(keys(fleet.check_secrets()), ["fleet.creds_file"]);
    }
}
