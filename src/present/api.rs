//! The admin endpoint's API as types: what `GET /batches`, `GET /runs`,
//! `POST /batches/{name}/run` and `POST /reload` answer, serialized by the
//! daemon and read back by `flagsd status`, `trigger` and `reload`. Field names are a stable interface (see
//! `docs/daemon.md`). Also the signed requests' scheme, which the daemon
//! checks and flagsd's own clients (`status`, `trigger`, `cancel`,
//! `reload`, `run`) use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::file::Naming;
use crate::config::{BatchConfig, ServerTarget};
use crate::http::url::redact_credentials;
use crate::model::digest::hex;
pub use crate::model::run::RunRecord;

/// One batch as the admin endpoint and `flagsd status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchView {
    /// The batch name.
    pub name: String,
    /// The server label.
    pub server: String,
    /// The base URL (credentials masked; `null` for `DEMO`).
    pub url: Option<String>,
    /// The codes asked for.
    pub codes: Vec<String>,
    /// The output directory.
    pub output: String,
    /// Workers in the pool.
    pub connections: usize,
    /// `code` or `country`.
    pub naming: Naming,
    /// The schedule interval (`"6h"`), or `null` for an on-demand batch.
    pub every: Option<String>,
    /// A run is in progress (`null` when not known: read from the state database).
    pub running: Option<bool>,
    /// When the next scheduled run starts, RFC 3339 (`null`: not scheduled, or not known).
    pub next_run: Option<String>,
    /// The newest run in the history, if any.
    pub last_run: Option<RunRecord>,
    /// How far the run in progress has come (`null` when none runs, or
    /// when the daemon cannot tell).
    #[serde(default)]
    pub progress: Option<Progress>,
}

/// How far a run in progress has come.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Codes with an outcome.
    pub done: usize,
    /// Codes in the run.
    pub total: usize,
    /// Codes with an outcome per second since the run started.
    pub rate: f64,
}

impl Progress {
    /// `done` of `total` codes, `elapsed` after the run started.
    pub fn of(done: usize, total: usize, elapsed: std::time::Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { done as f64 / seconds } else { 0.0 };
        Self { done: done.min(total), total, rate: (rate * 10.0).round() / 10.0 }
    }
}

impl BatchView {
    /// The view of `batch` without the daemon's live facts.
    pub fn of(batch: &BatchConfig, last_run: Option<RunRecord>) -> Self {
        let job = &batch.job;
        Self {
            name: batch.name.clone(),
            server: job.server.label.clone(),
            url: match &job.server.target {
                ServerTarget::Url(url) => Some(redact_credentials(url)),
                ServerTarget::Demo => None,
            },
            codes: job.codes.iter().map(ToString::to_string).collect(),
            output: job.output.display().to_string(),
            connections: job.pool_size,
            naming: job.naming,
            every: batch.every.map(|every| humantime::format_duration(every).to_string()),
            running: None,
            next_run: None,
            last_run,
            progress: None,
        }
    }
}

#[cfg(test)]
impl BatchView {
    /// A view of a `DEMO` batch `name` of one code, never run, for tests.
    pub fn sample(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            server: "DEMO".to_owned(),
            url: None,
            codes: vec!["BR".to_owned()],
            output: "downloaded/x".to_owned(),
            connections: 1,
            naming: Naming::Code,
            every: None,
            running: Some(false),
            next_run: None,
            last_run: None,
            progress: None,
        }
    }
}

/// `GET /about`: which flagsd this is and what it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct About {
    /// flagsd's version.
    pub version: String,
    /// The configuration file, as the daemon's messages name it.
    pub config: String,
    /// When the configuration in force was loaded, RFC 3339 UTC.
    pub loaded_at: String,
    /// The batches configured.
    pub batches: usize,
    /// The fleet's name, for a node of a fleet; `null` otherwise.
    pub fleet: Option<String>,
    /// Whether the daemon can take work (`/readyz`).
    pub ready: bool,
    /// Why not, when it cannot.
    pub reason: Option<String>,
    /// Whether the endpoint needs a token.
    pub token_required: bool,
}

/// A node of a fleet, as `GET /fleet` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// The node's name.
    pub node: String,
    /// When it joined, RFC 3339 UTC.
    pub joined_at: String,
    /// When it last said it was alive, RFC 3339 UTC.
    pub heartbeat_at: String,
    /// Codes it is fetching right now.
    pub in_flight: u64,
}

/// `GET /fleet`: the fleet's live nodes, and its codes queued and in flight
/// by batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetView {
    /// The fleet's name.
    pub name: String,
    /// The node that answered.
    pub node: String,
    /// Nodes with a live heartbeat.
    pub nodes: Vec<NodeView>,
    /// Codes queued and not yet handed out, by batch.
    pub queued: std::collections::BTreeMap<String, u64>,
    /// Codes handed out and not yet settled, by batch.
    pub in_flight: std::collections::BTreeMap<String, u64>,
}

/// `POST /batches/{name}/run` started a run (`202 Accepted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The new run's id.
    pub run_id: i64,
    /// The batch.
    pub batch: String,
}

/// The path of `POST /reload`.
pub const RELOAD_PATH: &str = "/reload";

/// `POST /reload` reloaded the configuration (`200 OK`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// The file the daemon read, as it names it.
    pub config: String,
    /// The names of its batches, in file order.
    pub batches: Vec<String>,
    /// What the reload could not change until the next start.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The path of the endpoint that hands out nonces for signed requests.
pub const NONCE_PATH: &str = "/nonce";

/// The `Authorization` scheme of a signed request.
pub const SIGNED_SCHEME: &str = "flagsd-hmac";

/// How long a nonce can be used, from when the daemon issued it.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(30);

/// The length of a nonce, in hex digits.
pub const NONCE_LEN: usize = 64;

/// An HMAC-SHA256, as bytes.
pub type Mac = [u8; 32];

/// `GET /nonce`: a nonce the daemon will accept once, for one signed
/// request, within [`NONCE_LIFETIME`].
///
/// Why signed requests: flagsd's own clients (`flagsd status`, `cancel`,
/// …) must never send the token itself, since whatever listens on the
/// admin port may not be the daemon (it may have taken the port while the daemon was down) and
/// may relay anything it gets to a real daemon. A signature over a nonce
/// the daemon issued, the method and the path proves the client holds the
/// token without revealing it, and is good for that one request once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceAnswer {
    /// [`NONCE_LEN`] lower-case hex digits.
    pub nonce: String,
    /// Seconds it stays usable.
    pub expires_in: u64,
}

/// Whether `nonce` has the form of a nonce: [`NONCE_LEN`] lower-case hex
/// digits (a client checks it before it signs and sends it back).
pub fn valid_nonce(nonce: &str) -> bool {
    nonce.len() == NONCE_LEN && nonce.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An HMAC-SHA256 under a key derived from `token`, of `parts`, each
/// followed by a line break (no part holds one: nonces and digests are hex,
/// methods are tokens, request targets cannot hold a line break).
fn mac_of(token: &str, parts: &[&[u8]]) -> Mac {
    use hmac::{KeyInit as _, Mac as _};
    use sha2::Digest as _;
    // A block-sized key (SHA-256 of the token, zero-padded, as HMAC itself
    // pads), so that the infallible constructor applies.
    let mut key = [0u8; 64];
    key[..32]
        .copy_from_slice(&sha2::Sha256::new().chain_update(b"flagsd-admin key v1\n").chain_update(token).finalize());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new(&key.into());
    for part in parts {
        mac.update(part);
        mac.update(b"\n");
    }
    mac.finalize().into_bytes().into()
}

/// The signature of a request: HMAC-SHA256 under the token of the nonce,
/// the method, the request target as sent (path and query) and the SHA-256
/// of the body (flagsd's signed requests have none).
pub fn request_mac(token: &str, nonce: &str, method: &str, target: &str, body: &[u8]) -> Mac {
    use sha2::Digest as _;
    let body = hex(&sha2::Sha256::digest(body));
    mac_of(
        token,
        &[b"flagsd-admin request v1", nonce.as_bytes(), method.as_bytes(), target.as_bytes(), body.as_bytes()],
    )
}

/// The signature of the answer to the request signed `request`: under the
/// token, of that signature, the status code and the SHA-256 of the body.
/// It proves to the client that a holder of the token answered this very
/// request (an impostor on the port cannot make one up).
pub fn response_mac(token: &str, request: &Mac, status: u16, body: &[u8]) -> Mac {
    use sha2::Digest as _;
    let body = hex(&sha2::Sha256::digest(body));
    let (request, status) = (hex(request), status.to_string());
    mac_of(token, &[b"flagsd-admin response v1", request.as_bytes(), status.as_bytes(), body.as_bytes()])
}

/// The credentials of a signed request:
/// `Authorization: flagsd-hmac nonce="<nonce>", mac="<64 hex digits>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAuthorization {
    /// The nonce from `GET /nonce`.
    pub nonce: String,
    /// [`request_mac`] of the request.
    pub mac: Mac,
}

impl SignedAuthorization {
    /// The value of the `Authorization` header.
    pub fn header_value(&self) -> String {
        format!("{SIGNED_SCHEME} nonce=\"{}\", mac=\"{}\"", self.nonce, hex(&self.mac))
    }

    /// Reads an `Authorization` value of the [`SIGNED_SCHEME`] (the scheme
    /// and the parameter names in any case, each parameter once, in any
    /// order); `None` for anything else.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let value = std::str::from_utf8(value).ok()?;
        let (scheme, params) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case(SIGNED_SCHEME) {
            return None;
        }
        let (mut nonce, mut mac) = (None, None);
        for param in params.split(',') {
            let (name, quoted) = param.trim().split_once('=')?;
            let text = quoted.trim().strip_prefix('"')?.strip_suffix('"')?;
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "nonce" => &mut nonce,
                "mac" => &mut mac,
                _ => return None,
            };
            if slot.replace(text).is_some() {
                return None;
            }
        }
        let nonce = nonce.filter(|n| valid_nonce(n))?.to_owned();
        Some(Self { nonce, mac: mac_from_hex(mac?)? })
    }
}

/// The value of the `Authentication-Info` header of a signed answer:
/// `mac="<64 hex digits>"`.
pub fn authentication_info(mac: &Mac) -> String {
    format!("mac=\"{}\"", hex(mac))
}

/// The signature in an `Authentication-Info` value, if it is one.
pub fn parse_authentication_info(value: &[u8]) -> Option<Mac> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (name, quoted) = value.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("mac") {
        return None;
    }
    mac_from_hex(quoted.trim().strip_prefix('"')?.strip_suffix('"')?)
}

/// 64 hex digits (any case) as a [`Mac`].
fn mac_from_hex(text: &str) -> Option<Mac> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut mac = [0u8; 32];
    for (byte, pair) in mac.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(mac)
}

/// The body of every error answer (but `/readyz`'s, which is text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// The problems behind it, one a line (a reload's: the configuration's
    /// problems); left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl ApiError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { error: message.into(), problems: Vec::new() }
    }

    /// An error saying `message`, with the `problems` behind it.
    pub fn with_problems(message: impl Into<String>, problems: Vec<String>) -> Self {
        Self { error: message.into(), problems }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_part_of_the_request() {
        let nonce = "0a".repeat(32);
        let mac = request_mac("s3cret", &nonce, "GET", "/runs?limit=1", b"");
        assert_eq!(mac, request_mac("s3cret", &nonce, "GET", "/runs?limit=1", b""));
        let others = [
            request_mac("s3cres", &nonce, "GET", "/runs?limit=1", b""),
            request_mac("s3cret", &"0b".repeat(32), "GET", "/runs?limit=1", b""),
            request_mac("s3cret", &nonce, "POST", "/runs?limit=1", b""),
            request_mac("s3cret", &nonce, "GET", "/runs?limit=2", b""),
            request_mac("s3cret", &nonce, "GET", "/runs", b""),
            request_mac("s3cret", &nonce, "GET", "/runs?limit=1", b"x"),
        ];
        assert!(others.iter().all(|other| *other != mac));
        let answer = response_mac("s3cret", &mac, 200, b"[]");
        assert_ne!(answer, mac, "an answer's signature is no request's");
        assert_ne!(answer, response_mac("s3cret", &mac, 401, b"[]"));
        assert_ne!(answer, response_mac("s3cret", &mac, 200, b"[ ]"));
        assert_ne!(answer, response_mac("s3cret", &others[0], 200, b"[]"));
        assert_ne!(answer, response_mac("s3cres", &mac, 200, b"[]"));
    }

    #[test]
    fn signed_credentials_are_read_back_strictly() {
        let signed = SignedAuthorization { nonce: "0a".repeat(32), mac: [0xab; 32] };
        let value = signed.header_value();
        assert_eq!(value, format!("flagsd-hmac nonce=\"{}\", mac=\"{}\"", "0a".repeat(32), "ab".repeat(32)));
        assert_eq!(SignedAuthorization::parse(value.as_bytes()), Some(signed.clone()));
        let swapped = format!("FLAGSD-HMAC MAC=\"{}\",nonce=\"{}\"", "AB".repeat(32), "0a".repeat(32));
        assert_eq!(SignedAuthorization::parse(swapped.as_bytes()), Some(signed));
        let nonce = "0a".repeat(32);
        let mac = "ab".repeat(32);
        for bad in [
            format!("Bearer nonce=\"{nonce}\", mac=\"{mac}\""),
            format!("flagsd-hmac nonce=\"{nonce}\""),
            format!("flagsd-hmac nonce=\"{nonce}\", mac=\"{mac}\", mac=\"{mac}\""),
            format!("flagsd-hmac nonce=\"{nonce}\", mac=\"{mac}\", extra=\"1\""),
            format!("flagsd-hmac nonce={nonce}, mac=\"{mac}\""),
            format!("flagsd-hmac nonce=\"{}\", mac=\"{mac}\"", "0A".repeat(32)),
            format!("flagsd-hmac nonce=\"{}\", mac=\"{mac}\"", "0a".repeat(31)),
            format!("flagsd-hmac nonce=\"{nonce}\", mac=\"{}\"", "zz".repeat(32)),
            format!("flagsd-hmac nonce=\"{nonce}\", mac=\"{}\"", "ab".repeat(31)),
            "flagsd-hmac".to_owned(),
            String::new(),
        ] {
            assert_eq!(SignedAuthorization::parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(SignedAuthorization::parse(b"flagsd-hmac nonce=\"\xff\""), None);
    }

    #[test]
    fn authentication_info_carries_the_answers_signature() {
        let mac = [7u8; 32];
        assert_eq!(parse_authentication_info(authentication_info(&mac).as_bytes()), Some(mac));
        assert_eq!(parse_authentication_info(b"mac=0707"), None);
        assert_eq!(parse_authentication_info(b"nextnonce=\"x\""), None);
        assert!(valid_nonce(&"0f".repeat(32)) && !valid_nonce(&"0F".repeat(32)) && !valid_nonce("0f"));
    }
}
