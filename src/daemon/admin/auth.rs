//! Who may use the admin endpoint: a bearer token, or a request signed
//! with it.
//!
//! With a token configured, every request except the open ones
//! ([`OPEN_PATHS`]: the probes, and `/nonce`) needs one of
//!
//! - `Authorization: Bearer <token>`, for curl and Prometheus, compared in
//!   constant time (`subtle`);
//! - `Authorization: flagsd-hmac nonce="…", mac="…"`, what flagsd's own
//!   clients (`status`, `trigger`, `cancel`, `reload`, `run`) send: an HMAC under the token of a nonce from
//!   `GET /nonce`, the method, the path and query, and the body's digest
//!   ([`crate::present::api::request_mac`]). The token itself never leaves
//!   the client, so whatever listens on the port learns nothing it can use:
//!   the signature is good once, for that request, at this daemon, for
//!   [`NONCE_LIFETIME`](crate::present::api::NONCE_LIFETIME) at most
//!   ([`super::nonce`]). Signed requests carry no body.
//!
//! Neither the token nor the `Authorization` header is ever logged.

use std::time::Instant;

use actix_web::HttpResponse;
use actix_web::dev::ServiceRequest;
use actix_web::http::{StatusCode, header};
use subtle::ConstantTimeEq as _;

use super::nonce::{NonceError, Nonces};
use crate::present::api::{ApiError, Mac, NONCE_PATH, SignedAuthorization, request_mac};

/// The challenge of a `401`.
const CHALLENGE: &str = r#"Bearer realm="flagsd""#;

/// Paths open without a token: the probes of a service manager or
/// orchestrator, which tell nothing about the batches, and `/nonce`, which
/// a client asks before it signs.
pub const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", NONCE_PATH];

/// The console's paths that need no token: the page and what it loads, and
/// `/session`, which signs in with the token (or says the request is not
/// signed in); see [`super::console`].
pub const CONSOLE_PATHS: [&str; 4] = ["/", "/console.js", "/console.css", "/session"];

/// The token and the nonces signed requests use.
pub struct Credentials {
    token: String,
    nonces: Nonces,
}

impl std::fmt::Debug for Credentials {
    /// Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// `token`, with the nonces of this daemon.
    pub fn new(token: String, nonces: Nonces) -> Self {
        Self { token, nonces }
    }

    /// The token, to sign answers with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The nonces.
    pub fn nonces(&self) -> &Nonces {
        &self.nonces
    }
}

/// How a request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token is needed: none is configured, or the path is open.
    Open,
    /// With the bearer token.
    Bearer,
    /// Signed with the token; the signature, which the answer's own
    /// signature covers.
    Signed(Mac),
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credentials, or of another scheme.
    #[error("this endpoint needs an Authorization: Bearer token or a signed request")]
    Missing,
    /// A wrong bearer token.
    #[error("the bearer token is not valid")]
    WrongToken,
    /// A `flagsd-hmac` header that does not parse.
    #[error("the flagsd-hmac credentials are malformed")]
    Malformed,
    /// A signed request with a body.
    #[error("a signed request carries no body")]
    Body,
    /// The nonce is not ours, is stale, or was used.
    #[error(transparent)]
    Nonce(#[from] NonceError),
    /// The signature does not match the request.
    #[error("the signature does not match the request")]
    WrongSignature,
}

impl Refusal {
    /// The status of the answer: `503` when signed requests are too many to
    /// remember for now, else `401`.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Nonce(NonceError::Full) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Whether the token received matches the expected one, compared in
/// constant time: the time taken never depends on where the first differing
/// byte is, so timing the answers cannot reveal the token byte by byte.
/// (Tokens of different lengths are rejected at once, which reveals the
/// token's length, not its content.)
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

/// The credentials of an `Authorization: Bearer …` header (the scheme is
/// case-insensitive), if the request has one.
pub fn bearer_token(headers: &header::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, credentials) = value.split_at(space);
    scheme.eq_ignore_ascii_case(b"bearer").then(|| credentials.trim_ascii())
}

/// Whether the request carries the bearer `token` (always, when no token
/// is set).
pub fn carries(headers: &header::HeaderMap, token: Option<&str>) -> bool {
    token.is_none_or(|expected| bearer_token(headers).is_some_and(|given| tokens_match(given, expected.as_bytes())))
}

/// Whether the request announces a body (a length other than 0, or a
/// transfer coding).
fn has_body(headers: &header::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get_all(header::CONTENT_LENGTH).any(|length| length.as_bytes().trim_ascii() != b"0")
}

/// Checks a signed request at `now`: the nonce first (ours, fresh), then
/// the signature, and only then spends the nonce, so that a request not
/// signed with the token changes nothing.
fn signed(value: &[u8], req: &ServiceRequest, credentials: &Credentials, now: Instant) -> Result<Access, Refusal> {
    let signed = SignedAuthorization::parse(value).ok_or(Refusal::Malformed)?;
    if has_body(req.headers()) {
        return Err(Refusal::Body);
    }
    let fresh = credentials.nonces.check(&signed.nonce, now)?;
    let target = req.uri().path_and_query().map_or_else(|| req.path(), |target| target.as_str());
    let expected = request_mac(&credentials.token, &signed.nonce, req.method().as_str(), target, b"");
    if !bool::from(signed.mac.ct_eq(&expected)) {
        return Err(Refusal::WrongSignature);
    }
    credentials.nonces.consume(fresh, now)?;
    Ok(Access::Signed(signed.mac))
}

/// Checks the credentials of a request at `now`.
pub fn authorize(req: &ServiceRequest, credentials: Option<&Credentials>, now: Instant) -> Result<Access, Refusal> {
    let Some(credentials) = credentials else { return Ok(Access::Open) };
    if OPEN_PATHS.contains(&req.path()) || CONSOLE_PATHS.contains(&req.path()) {
        return Ok(Access::Open);
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()) else {
        return Err(Refusal::Missing);
    };
    if let Some(given) = bearer_token(req.headers()) {
        return if tokens_match(given, credentials.token.as_bytes()) {
            Ok(Access::Bearer)
        } else {
            Err(Refusal::WrongToken)
        };
    }
    let scheme = value.split(|b| *b == b' ').next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case(crate::present::api::SIGNED_SCHEME.as_bytes()) {
        signed(value, req, credentials, now)
    } else {
        Err(Refusal::Missing)
    }
}

/// The answer to a refused request.
pub fn refused(refusal: Refusal) -> HttpResponse {
    HttpResponse::build(refusal.status())
        .insert_header((header::WWW_AUTHENTICATE, CHALLENGE))
        .json(ApiError::new(refusal.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(tokens_match(b"", b""));
        assert!(!tokens_match(b"s3cret", b"s3creT"));
        assert!(!tokens_match(b"S3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cre", b"s3cret"));
        assert!(!tokens_match(b"s3cret!", b"s3cret"));
        assert!(!tokens_match(b"", b"s3cret"));
        // Every single-bit difference anywhere is caught.
        let expected = b"abcdefgh";
        for i in 0..expected.len() {
            for bit in 0..8 {
                let mut given = *expected;
                given[i] ^= 1 << bit;
                assert!(!tokens_match(&given, expected), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn bearer_credentials_are_read_in_any_case() {
        let mut headers = header::HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, header::HeaderValue::from_static("bEaReR  abc "));
        assert_eq!(bearer_token(&headers), Some(&b"abc"[..]));
        assert!(carries(&headers, Some("abc")) && !carries(&headers, Some("abd")) && carries(&headers, None));
        headers.insert(header::AUTHORIZATION, header::HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }

    fn credentials() -> (Credentials, Instant) {
        let epoch = Instant::now();
        (Credentials::new("s3cret".to_owned(), Nonces::new([1; 32], epoch)), epoch)
    }

    /// A request of `method` to `target` signed with `token` for `nonce`.
    fn signed_request(token: &str, nonce: &str, method: &str, target: &str) -> TestRequest {
        let mac = request_mac(token, nonce, method, target, b"");
        let value = SignedAuthorization { nonce: nonce.to_owned(), mac }.header_value();
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("a method");
        TestRequest::default().method(method).uri(target).insert_header((header::AUTHORIZATION, value))
    }

    #[test]
    fn a_signed_request_is_let_in_once() {
        let (credentials, now) = credentials();
        let nonce = credentials.nonces.issue(now);
        let request = || signed_request("s3cret", &nonce, "GET", "/runs?limit=1").to_srv_request();
        let mac = request_mac("s3cret", &nonce, "GET", "/runs?limit=1", b"");
        assert_eq!(authorize(&request(), Some(&credentials), now), Ok(Access::Signed(mac)));
        assert_eq!(authorize(&request(), Some(&credentials), now), Err(Refusal::Nonce(NonceError::Used)));
    }

    #[test]
    fn a_signed_request_is_refused_for_anything_it_does_not_sign() {
        let (credentials, now) = credentials();
        let nonce = credentials.nonces.issue(now);
        let cases = [
            // Signed for one request, sent as another.
            signed_request("s3cret", &nonce, "GET", "/batches").method(actix_web::http::Method::POST),
            signed_request("s3cret", &nonce, "GET", "/batches").uri("/runs"),
            signed_request("s3cret", &nonce, "GET", "/batches").uri("/batches?limit=1"),
            // Signed with another token.
            signed_request("s3cres", &nonce, "GET", "/batches"),
        ];
        for request in cases {
            let request = request.to_srv_request();
            assert_eq!(authorize(&request, Some(&credentials), now), Err(Refusal::WrongSignature), "{request:?}");
        }
        // None of them spent the nonce.
        let right = signed_request("s3cret", &nonce, "GET", "/batches").to_srv_request();
        assert!(matches!(authorize(&right, Some(&credentials), now), Ok(Access::Signed(_))));
    }

    #[test]
    fn a_signed_request_needs_a_fresh_nonce_of_this_daemon_and_no_body() {
        let (credentials, now) = credentials();
        let stale = credentials.nonces.issue(now);
        let later = now + Duration::from_secs(31);
        let request = signed_request("s3cret", &stale, "GET", "/batches").to_srv_request();
        assert_eq!(authorize(&request, Some(&credentials), later), Err(Refusal::Nonce(NonceError::Unknown)));
        let theirs = Nonces::new([2; 32], now).issue(now);
        let request = signed_request("s3cret", &theirs, "GET", "/batches").to_srv_request();
        assert_eq!(authorize(&request, Some(&credentials), now), Err(Refusal::Nonce(NonceError::Unknown)));
        let nonce = credentials.nonces.issue(now);
        for (name, value) in [("content-length", "5"), ("transfer-encoding", "chunked")] {
            let request = signed_request("s3cret", &nonce, "POST", "/batches/a/run").insert_header((name, value));
            assert_eq!(authorize(&request.to_srv_request(), Some(&credentials), now), Err(Refusal::Body));
        }
        let empty = signed_request("s3cret", &nonce, "POST", "/batches/a/run").insert_header(("content-length", "0"));
        assert!(matches!(authorize(&empty.to_srv_request(), Some(&credentials), now), Ok(Access::Signed(_))));
    }

    #[test]
    fn other_credentials_are_refused_and_open_paths_need_none() {
        let (credentials, now) = credentials();
        let with = |value: &'static str| {
            TestRequest::get().uri("/batches").insert_header((header::AUTHORIZATION, value)).to_srv_request()
        };
        assert_eq!(authorize(&with("Bearer s3cret"), Some(&credentials), now), Ok(Access::Bearer));
        assert_eq!(authorize(&with("Bearer s3cres"), Some(&credentials), now), Err(Refusal::WrongToken));
        assert_eq!(authorize(&with("Basic s3cret"), Some(&credentials), now), Err(Refusal::Missing));
        assert_eq!(authorize(&with("flagsd-hmac nonce=1"), Some(&credentials), now), Err(Refusal::Malformed));
        let bare = TestRequest::get().uri("/batches").to_srv_request();
        assert_eq!(authorize(&bare, Some(&credentials), now), Err(Refusal::Missing));
        assert_eq!(authorize(&bare, None, now), Ok(Access::Open), "no token configured");
        for path in OPEN_PATHS {
            let open = TestRequest::get().uri(path).to_srv_request();
            assert_eq!(authorize(&open, Some(&credentials), now), Ok(Access::Open), "{path}");
        }
        assert_eq!(refused(Refusal::Missing).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused(Refusal::Nonce(NonceError::Full)).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!format!("{credentials:?}").contains("s3cret"));
    }
}
