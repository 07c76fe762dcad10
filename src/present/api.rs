//! The admin endpoint's API as types: what `GET /batches`, `GET /runs` and
//! `POST /batches/{name}/run` answer, serialized by the daemon and read back
//! by `flagsd status`. Field names are a stable interface (see
//! `docs/daemon.md`).

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
        }
    }
}

/// `POST /batches/{name}/run` started a run (`202 Accepted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The new run's id.
    pub run_id: i64,
    /// The batch.
    pub batch: String,
}

/// `GET /proof?challenge=HEX`: the daemon proves it knows the token
/// without sending it, so that `flagsd status` sends the token only to the
/// daemon, never to another process that took the port while it was down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// [`proof_of`] the token for the challenge, lower-case hex.
    pub proof: String,
}

/// Accepted challenges: 32 to 128 hex digits.
pub fn valid_challenge(challenge: &str) -> bool {
    (32..=128).contains(&challenge.len()) && challenge.bytes().all(|b| b.is_ascii_hexdigit())
}

/// HMAC-SHA256 of `challenge` under `token`, lower-case hex: what only a
/// holder of the token can compute.
pub fn proof_of(token: &str, challenge: &str) -> String {
    use hmac::{KeyInit as _, Mac as _};
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()) else { return String::new() };
    mac.update(b"flagsd admin proof\n");
    mac.update(challenge.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The body of every error answer (but `/readyz`'s, which is text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

impl ApiError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { error: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_token_and_challenge() {
        let challenge = "ab".repeat(32);
        let proof = proof_of("s3cret", &challenge);
        assert_eq!(proof.len(), 64);
        assert!(proof.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(proof, proof_of("s3cret", &challenge));
        assert_ne!(proof, proof_of("s3cres", &challenge));
        assert_ne!(proof, proof_of("s3cret", &"ab".repeat(31)));
        assert!(valid_challenge(&challenge) && !valid_challenge("ab") && !valid_challenge(&"zz".repeat(32)));
        assert!(!valid_challenge(&"a".repeat(129)));
    }
}
