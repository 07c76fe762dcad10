//! The client side of the daemon's admin endpoint, as `flagsd status`,
//! `cancel`, `trigger`, `reload` and `run` use it.
//!
//! Whatever listens on the port may not be the daemon: another process may
//! have taken the port while the daemon was down, and may relay what it
//! gets to a real daemon that has the same token. So with a token the
//! client never sends it: it asks `GET /nonce`, signs the request with the
//! token ([`request_mac`]: the nonce, the method, the path and query, the
//! empty body's digest), and believes only an answer signed in turn for
//! that request ([`response_mac`]). What an impostor can do with what it
//! receives is pass that one request on, once, within the nonce's 30 s.
//! No answer is read beyond [`MAX_ANSWER`].

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderName};
use reqwest::{Method, StatusCode, Url};
use subtle::ConstantTimeEq as _;

use crate::config::AdminSettings;
use crate::present::api::{
    ApiError, BatchView, Mac, NONCE_PATH, NonceAnswer, SignedAuthorization, parse_authentication_info, request_mac,
    response_mac, valid_nonce,
};

/// How long a request to the admin endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read from the admin endpoint.
const MAX_ANSWER: usize = 4 << 20;

/// The most characters of a problem the daemon lists that are shown.
const MAX_PROBLEM: usize = 1000;

/// The header of a signed answer's signature.
const AUTHENTICATION_INFO: HeaderName = HeaderName::from_static("authentication-info");

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
        /// The problems behind it, one a line (a refused reload's).
        problems: Vec<String>,
    },
}

/// A batch the daemon is running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    /// The batch.
    pub batch: String,
    /// Its run in progress, when the daemon's history shows it.
    pub run: Option<i64>,
}

/// What an answer must be signed for: the token and the request's own
/// signature.
struct Expect<'a> {
    token: &'a str,
    request: Mac,
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
        // A new connection for each request: under a flood the endpoint
        // closes idle connections oldest first, and a pooled one waiting
        // between `/nonce` and the request would be among the oldest.
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
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

    /// `method path`, signed when a token is configured, and its JSON
    /// answer (signed for this request, when the request was).
    pub async fn call<T: serde::de::DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, AdminError> {
        let url = Url::parse(&format!("{}{path}", self.url)).map_err(|e| self.unreachable(format!("bad URL ({e})")))?;
        let Some(token) = &self.token else {
            return self.json(self.client.request(method, url), None).await;
        };
        let nonce = self.nonce().await?;
        // The request target as it goes on the wire: the URL's path and query.
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let mac = request_mac(token, &nonce, method.as_str(), &target, b"");
        let credentials = SignedAuthorization { nonce, mac }.header_value();
        let request = self.client.request(method, url).header(AUTHORIZATION, credentials);
        self.json(request, Some(Expect { token, request: mac })).await
    }

    /// Those of the batches named `names` that the daemon is running now
    /// (`GET /batches`), in its order.
    pub async fn running(&self, names: &[&str]) -> Result<Vec<InProgress>, AdminError> {
        let views = self.call::<Vec<BatchView>>(Method::GET, "/batches").await?;
        Ok(views
            .into_iter()
            .filter(|view| view.running == Some(true) && names.contains(&view.name.as_str()))
            .map(|view| InProgress {
                run: view.last_run.filter(|run| run.is_running()).map(|run| run.id),
                batch: view.name,
            })
            .collect())
    }

    /// A nonce from the endpoint, checked for its form (it goes back in a
    /// header).
    async fn nonce(&self) -> Result<String, AdminError> {
        let answer: NonceAnswer = self.json(self.client.get(format!("{}{NONCE_PATH}", self.url)), None).await?;
        if valid_nonce(&answer.nonce) {
            Ok(answer.nonce)
        } else {
            Err(self.unreachable("its nonce is not one (64 lower-case hex digits)".to_owned()))
        }
    }

    fn unreachable(&self, why: String) -> AdminError {
        AdminError::Unreachable { url: self.url.clone(), why }
    }

    /// Sends `request` and reads its JSON answer, at most [`MAX_ANSWER`]
    /// bytes; with `expect`, only an answer signed for that request counts,
    /// whatever its status.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        expect: Option<Expect<'_>>,
    ) -> Result<T, AdminError> {
        let mut response = request.send().await.map_err(|e| self.unreachable(format!("not reachable ({e})")))?;
        let status = response.status();
        let too_large = || self.unreachable(format!("answer larger than {MAX_ANSWER} bytes"));
        if response.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(too_large());
        }
        let signature =
            response.headers().get(AUTHENTICATION_INFO).and_then(|v| parse_authentication_info(v.as_bytes()));
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| self.unreachable(format!("answer cut short ({e})")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let error = || serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| ApiError::new(""));
        let message = || crate::model::text::terminal_safe(&error().error, 300);
        if let Some(Expect { token, request }) = expect {
            let expected = response_mac(token, &request, status.as_u16(), &body);
            if !signature.is_some_and(|given| bool::from(given.ct_eq(&expected))) {
                return Err(self.unreachable(format!(
                    "its answer (HTTP {status}: {}) is not signed with the token: it may not be the daemon, or \
                     holds another token",
                    message()
                )));
            }
        }
        if !status.is_success() {
            let problems = error().problems.iter().map(|p| crate::model::text::terminal_safe(p, MAX_PROBLEM)).collect();
            return Err(AdminError::Refused { url: self.url.clone(), status, message: message(), problems });
        }
        serde_json::from_slice(&body).map_err(|e| self.unreachable(format!("unexpected answer ({e})")))
    }
}
