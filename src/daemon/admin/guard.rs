//! What keeps a web page elsewhere from driving the endpoint through an
//! operator's browser, token or not:
//!
//! - **DNS rebinding**: a request whose `Host` is a name other than
//!   `localhost` or one of `[admin] hosts` is refused. A page that makes its
//!   own name resolve to 127.0.0.1 still sends that name as `Host`; IP
//!   addresses cannot be rebound, so any is accepted.
//! - **Cross-site requests**: a state-changing request (any method but
//!   `GET`, `HEAD`, `OPTIONS`) whose `Origin` is not the endpoint's own, or
//!   whose `Sec-Fetch-Site` says another site sent it, is refused. Requests
//!   without either header (curl, scripts, Prometheus) are not browsers'
//!   and pass as before.
//!
//! Both refusals are `403`.

use std::net::IpAddr;

use actix_web::http::{Method, header};

/// Why a request was refused before its credentials were looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// The `Host` header names a host this endpoint does not answer for.
    #[error("Host {0} is not this endpoint's (a name must be localhost or one of [admin] hosts)")]
    Host(String),
    /// A state-changing request from another origin.
    #[error("a request from {0} may not change anything here")]
    Origin(String),
    /// A state-changing request another site made the browser send.
    #[error("a request that another site made ({0}) may not change anything here")]
    FetchSite(String),
    /// A signed-in request without its session's CSRF token.
    #[error("this request needs the session's CSRF token (X-CSRF-Token)")]
    Csrf,
}

/// Whether `method` changes nothing.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The host part of a `Host` value (`[::1]:9090` → `::1`, `a:1` → `a`).
fn host_part(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Checks a request's `Host` and, for a state-changing request, where it
/// came from; `allowed` are the configured host names.
pub fn screen(method: &Method, headers: &header::HeaderMap, allowed: &[String]) -> Result<(), Forbidden> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(host) = host {
        let name = host_part(host).trim_end_matches('.');
        let known = name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
        if !known {
            return Err(Forbidden::Host(shown(host)));
        }
    }
    if is_safe(method) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Forbidden::FetchSite(shown(site)));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("an unreadable origin");
        let own = host.map(|host| format!("http://{host}"));
        if !own.is_some_and(|own| own.eq_ignore_ascii_case(origin)) {
            return Err(Forbidden::Origin(shown(origin)));
        }
    }
    Ok(())
}

/// A header value as a message quotes it: printable, short.
fn shown(value: &str) -> String {
    crate::model::text::terminal_safe(value, 100)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn addresses_localhost_and_configured_names_are_this_endpoints_hosts() {
        let allowed = vec!["flagsd.example".to_owned()];
        for host in ["127.0.0.1:9090", "[::1]:9090", "10.0.0.5", "localhost:9090", "LOCALHOST", "flagsd.example:9090"] {
            assert_eq!(screen(&Method::GET, &headers(&[("host", host)]), &allowed), Ok(()), "{host}");
        }
        for host in ["evil.example:9090", "127.0.0.1.evil.example", "localhost.evil.example"] {
            let refused = screen(&Method::GET, &headers(&[("host", host)]), &allowed);
            assert!(matches!(refused, Err(Forbidden::Host(_))), "{host}: {refused:?}");
        }
        assert_eq!(screen(&Method::GET, &HeaderMap::new(), &[]), Ok(()), "no Host: not a browser");
    }

    #[test]
    fn only_the_endpoints_own_origin_may_change_anything() {
        let own = [("host", "127.0.0.1:9090"), ("origin", "http://127.0.0.1:9090")];
        assert_eq!(screen(&Method::POST, &headers(&own), &[]), Ok(()));
        assert_eq!(screen(&Method::POST, &headers(&[("host", "127.0.0.1:9090")]), &[]), Ok(()), "curl");
        let other = [("host", "127.0.0.1:9090"), ("origin", "http://evil.example")];
        assert!(matches!(screen(&Method::POST, &headers(&other), &[]), Err(Forbidden::Origin(_))));
        assert_eq!(screen(&Method::GET, &headers(&other), &[]), Ok(()), "reading changes nothing");
        let null = [("host", "127.0.0.1:9090"), ("origin", "null")];
        assert!(matches!(screen(&Method::DELETE, &headers(&null), &[]), Err(Forbidden::Origin(_))));
        let site = [("host", "127.0.0.1:9090"), ("sec-fetch-site", "cross-site")];
        assert!(matches!(screen(&Method::POST, &headers(&site), &[]), Err(Forbidden::FetchSite(_))));
        let same = [("host", "127.0.0.1:9090"), ("sec-fetch-site", "same-origin")];
        assert_eq!(screen(&Method::POST, &headers(&same), &[]), Ok(()));
    }
}
