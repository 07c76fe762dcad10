//! Bearer tokens: who may use the admin endpoint.
//!
//! With a token configured, every request except `/healthz` and `/readyz`
//! (meant for probes) and `/proof` needs `Authorization: Bearer <token>`. The token is
//! compared in constant time (`subtle`) and is never logged, nor is the
//! `Authorization` header: rejected requests are logged at warn level with
//! their method, path and peer address only.

use actix_web::HttpResponse;
use actix_web::dev::ServiceRequest;
use actix_web::http::header;
use subtle::ConstantTimeEq as _;

use crate::present::api::ApiError;

/// The realm named in `WWW-Authenticate` challenges.
const CHALLENGE: &str = r#"Bearer realm="flagsd""#;

/// Paths open without a token: the probes of a service manager or
/// orchestrator, which tell nothing about the batches.
/// `/proof` is open too: it proves the daemon holds the token, to a client
/// about to send it.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/proof"];

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

/// Whether the request carries `token` (always, when no token is set).
pub fn carries(headers: &header::HeaderMap, token: Option<&str>) -> bool {
    token.is_none_or(|expected| bearer_token(headers).is_some_and(|given| tokens_match(given, expected.as_bytes())))
}

/// Checks the token of a request to a protected path: `Err` holds the
/// reason of the `401`.
pub fn authorize(req: &ServiceRequest, token: Option<&str>) -> Result<(), &'static str> {
    let Some(expected) = token else { return Ok(()) };
    if OPEN_PATHS.contains(&req.path()) {
        return Ok(());
    }
    match bearer_token(req.headers()) {
        None => Err("this endpoint needs an Authorization: Bearer token"),
        Some(given) if tokens_match(given, expected.as_bytes()) => Ok(()),
        Some(_) => Err("the bearer token is not valid"),
    }
}

/// The `401` answer to a request without a valid token, logged.
pub fn unauthorized(req: &ServiceRequest, reason: &'static str) -> HttpResponse {
    // Method, path and peer only: never the token nor the header.
    let peer = req.peer_addr().map_or_else(|| "unknown".to_owned(), |addr| addr.to_string());
    tracing::warn!(method = %req.method(), path = %req.path(), %peer, reason, "admin request rejected");
    HttpResponse::Unauthorized().insert_header((header::WWW_AUTHENTICATE, CHALLENGE)).json(ApiError::new(reason))
}

#[cfg(test)]
mod tests {
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
}
