//! The client side of the daemon's admin endpoint, as `flagsd status` and
//! `flagsd cancel` use it.
//!
//! Whatever listens on the port may not be the daemon (the port is free
//! while it is down): with a token, the endpoint must first prove it holds
//! it (`/proof`, an HMAC of a fresh random challenge) before the token is
//! sent; and no answer is read beyond [`MAX_ANSWER`].

use std::time::Duration;

use reqwest::{Method, StatusCode};
use subtle::ConstantTimeEq as _;

use crate::config::AdminSettings;
use crate::model::digest::hex;
use crate::present::api::{ApiError, Proof, proof_of};

/// How long a request to the admin endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read from the admin endpoint.
const MAX_ANSWER: usize = 4 << 20;

/// Why the admin endpoint gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing answered, or not as the daemon would.
    #[error("the admin endpoint {url}: {why}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// Why.
        why: String,
    },
    /// The daemon answered with an error status.
    #[error("the daemon at {url} answered HTTP {status}: {message}")]
    Refused {
        /// The endpoint.
        url: String,
        /// The status.
        status: StatusCode,
        /// The daemon's message.
        message: String,
    },
}

/// A client of one daemon's admin endpoint.
pub struct AdminClient {
    url: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl AdminClient {
    /// A client of the endpoint `admin` configures (its token read now).
    pub fn new(admin: &AdminSettings) -> Result<Self, AdminError> {
        let url = format!("http://{}", admin.connect_address());
        let unreachable = |why: String| AdminError::Unreachable { url: url.clone(), why };
        let token = admin.token().map_err(unreachable)?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(TIMEOUT)
            .tls_certs_only(Vec::new())
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self { url, token, client })
    }

    /// The endpoint's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `method path` with the token (once the endpoint proved it holds
    /// it), and its JSON answer.
    pub async fn call<T: serde::de::DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, AdminError> {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            self.proven(token).await?;
            request = request.bearer_auth(token);
        }
        self.json(request).await
    }

    /// Checks that the endpoint holds `token`, without sending it.
    async fn proven(&self, token: &str) -> Result<(), AdminError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| self.unreachable(format!("no random challenge ({e})")))?;
        let challenge = hex(&random);
        let answer: Proof = self.json(self.client.get(format!("{}/proof?challenge={challenge}", self.url))).await?;
        let proven: bool = answer.proof.as_bytes().ct_eq(proof_of(token, &challenge).as_bytes()).into();
        if proven {
            Ok(())
        } else {
            Err(self.unreachable("it could not prove it holds the token, which was not sent".to_owned()))
        }
    }

    fn unreachable(&self, why: String) -> AdminError {
        AdminError::Unreachable { url: self.url.clone(), why }
    }

    /// Sends `request` and reads its JSON answer, at most [`MAX_ANSWER`] bytes.
    async fn json<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, AdminError> {
        let mut response = request.send().await.map_err(|e| self.unreachable(format!("not reachable ({e})")))?;
        let status = response.status();
        let too_large = || self.unreachable(format!("answer larger than {MAX_ANSWER} bytes"));
        if response.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| self.unreachable(format!("answer cut short ({e})")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&body).map(|e| e.error).unwrap_or_default();
            let message = crate::model::text::terminal_safe(&message, 300);
            return Err(AdminError::Refused { url: self.url.clone(), status, message });
        }
        serde_json::from_slice(&body).map_err(|e| self.unreachable(format!("unexpected answer ({e})")))
    }
}
