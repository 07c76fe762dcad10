//! `[fleet]`, checked: which NATS servers, which fleet, which node.
//!
//! The fleet's name is the namespace of its streams, buckets and subjects,
//! and the node's name a key in its buckets, so both are restricted to
//! letters, digits, `-` and `_`. Nothing here talks to NATS: `check-config`
//! checks the section whether or not NATS is up.
//!
//! Credentials in a URL (`nats://user:password@host`, `nats://token@host`)
//! are taken out of it as typed, before the URL is parsed (a password may
//! hold `/`, `#`, `?` or `@`), and given to NATS as its options; every URL
//! shown (logs, `STATUS=`, `/readyz`, errors) is the URL without them,
//! with `***@` in their place ([`FleetSettings::display_servers`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults;
use super::file::{RawFleet, RawUrls};
use crate::http::url::{Credentials, redact_credentials, split_credentials};

/// Most JetStream replicas of a stream or bucket.
pub const MAX_REPLICAS: i64 = 5;

/// Credentials given in the NATS URLs.
#[derive(Clone, PartialEq, Eq)]
pub enum UrlAuth {
    /// `nats://user:password@host`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `nats://token@host`.
    Token(String),
}

impl std::fmt::Debug for UrlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlAuth(***)")
    }
}

/// The fleet settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// NATS server URLs (`nats://` or `tls://`), without the credentials
    /// they were given with.
    pub servers: Vec<String>,
    /// The credentials the URLs carried, if any.
    pub url_auth: Option<UrlAuth>,
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
    /// How long a node may hold a code without a sign of life.
    pub ack_wait: Duration,
    /// How long the streams remember a message id.
    pub duplicate_window: Duration,
}

/// The shortest `ack_wait`: a node sends a sign of life every third of it.
const MIN_ACK_WAIT: Duration = Duration::from_secs(1);

/// The longest `ack_wait` and `duplicate_window`.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

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
    let mut servers = Vec::new();
    let mut auths = Vec::new();
    for (i, url) in urls.iter().enumerate().filter(|(_, u)| !u.is_empty()) {
        let (bare, auth) = take_credentials(url);
        match check_url(&bare, url) {
            Ok(()) => servers.push(bare),
            Err(message) => problem(&format!("nats[{i}]"), message),
        }
        auths.extend(auth);
    }
    auths.dedup();
    let url_auth = match auths.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        _ => {
            problem("nats", "the URLs carry different credentials: give them once, in every URL alike".into());
            None
        }
    };
    if url_auth.is_some() && (raw.creds_file.is_some() || raw.token_file.is_some()) {
        problem("nats", "credentials in the URL and in creds_file or token_file: give them one way".into());
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
    let ack_wait = raw.ack_wait.unwrap_or(defaults::FLEET_ACK_WAIT);
    if !(MIN_ACK_WAIT..=MAX_WINDOW).contains(&ack_wait) {
        problem("ack_wait", format!("must be from 1s to 24h (got {})", defaults::duration_text(ack_wait)));
    }
    let duplicate_window = raw.duplicate_window.unwrap_or(defaults::FLEET_DUPLICATE_WINDOW);
    if !(Duration::from_secs(1)..=MAX_WINDOW).contains(&duplicate_window) {
        let got = defaults::duration_text(duplicate_window);
        problem("duplicate_window", format!("must be from 1s to 24h (got {got})"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(FleetSettings {
        servers,
        url_auth,
        name,
        node,
        replicas: usize::try_from(replicas).unwrap_or(1),
        creds_file: raw.creds_file.clone(),
        token_file: raw.token_file.clone(),
        tls_ca_file: raw.tls_ca_file.clone(),
        ack_wait,
        duplicate_window,
    })
}

/// `url` without its credentials, and the credentials, split as typed by
/// the one rule of every typed URL ([`split_credentials`]: everything
/// between the scheme and the last `@`), percent-escapes decoded.
pub fn take_credentials(url: &str) -> (String, Option<UrlAuth>) {
    let (bare, credentials) = split_credentials(url);
    let auth = credentials.map(|Credentials { user, password }| match password {
        Some(password) => {
            UrlAuth::UserPassword { user: Credentials::decode(user), password: Credentials::decode(password) }
        }
        None => UrlAuth::Token(Credentials::decode(user)),
    });
    (bare, auth)
}

/// A NATS URL (`bare`, without credentials): `nats://` or `tls://`, with a
/// host. Messages show `typed` masked.
fn check_url(bare: &str, typed: &str) -> Result<(), String> {
    let shown = redact_credentials(typed);
    let url = reqwest::Url::parse(bare).map_err(|e| format!("'{shown}' is not a URL ({e})"))?;
    if !matches!(url.scheme(), "nats" | "tls") {
        return Err(format!("'{shown}' must start with nats:// or tls://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{shown}' has no host"));
    }
    Ok(())
}

impl FleetSettings {
    /// The servers as messages show them: comma-separated, with `***@`
    /// where credentials were given.
    pub fn display_servers(&self) -> String {
        let mask = |url: &String| match &self.url_auth {
            Some(_) => url.replacen("://", "://***@", 1),
            None => url.clone(),
        };
        self.servers.iter().map(mask).collect::<Vec<_>>().join(", ")
    }

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
            ack_wait: Some(Duration::from_millis(10)),
            duplicate_window: None,
        };
        let problems = keys(check(&bad));
        let expected = [
            "fleet.nats[0]: 'http://a:4222' must start with nats:// or tls://",
            "fleet.nats[1]: 'nats://' has no host",
            "fleet.name: 'my.fleet' must be 1 to 32 letters, digits, '-' or '_'",
            "fleet.node: 'host a' must be 1 to 64 letters, digits, '-' or '_'",
            "fleet.replicas: must be from 1 to 5 (got 7)",
            "fleet.token_file: set creds_file or token_file, not both",
            "fleet.ack_wait: must be from 1s to 24h (got 10ms)",
        ];
        assert_eq!(problems, expected);
        assert!(keys(check(&RawFleet::default()))[0].starts_with("fleet.nats: missing"));
        assert!(keys(check(&raw(" , ")))[0].starts_with("fleet.nats: is empty"));
    }

    #[test]
    fn credentials_come_out_of_the_urls_as_typed_and_never_show() {
        for (typed, user, password) in [
            ("nats://alice:pa#ss@h:4222", "alice", "pa#ss"),
            ("nats://alice:1234/x@127.0.0.1:1", "alice", "1234/x"),
            ("nats://alice:p%40ss?w@h:1", "alice", "p@ss?w"),
            ("tls://bob:a@b@h:1", "bob:a@b", ""),
        ] {
            let (bare, auth) = take_credentials(typed);
            assert!(!bare.contains('@'), "{bare}");
            match auth {
                Some(UrlAuth::UserPassword { user: u, password: p }) if password.is_empty() => {
                    // `bob:a@b`: the last `@` ends the credentials.
                    assert_eq!((u.as_str(), p.as_str()), ("bob", "a@b"), "{typed}");
                }
                Some(UrlAuth::UserPassword { user: u, password: p }) => {
                    assert_eq!((u.as_str(), p.as_str()), (user, password), "{typed}");
                }
                other => panic!("{typed}: {other:?}"),
            }
        }
        assert_eq!(take_credentials("nats://s3cret@h:1").1, Some(UrlAuth::Token("s3cret".into())));
        let fleet = check(&raw("nats://alice:pa/ss@h:4222, nats://alice:pa/ss@g:4222")).expect("valid");
        assert_eq!(fleet.servers, ["nats://h:4222", "nats://g:4222"]);
        assert_eq!(fleet.display_servers(), "nats://***@h:4222, nats://***@g:4222");
        assert!(!format!("{fleet:?}").contains("pa/ss"));
        let problems = keys(check(&raw("nats://alice:one@h:1, nats://alice:two@g:1")));
        assert!(problems[0].contains("different credentials"), "{problems:?}");
        assert!(problems.iter().all(|p| !p.contains("one") && !p.contains("two")), "{problems:?}");
        let bad = keys(check(&raw("http://alice:s3cret@h:1")));
        assert_eq!(bad, ["fleet.nats[0]: 'http://***@h:1' must start with nats:// or tls://"]);
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
