//! The console's sessions: signing in exchanges the token for a random
//! session id in a cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`,
//! expiring), and each session has a CSRF token of its own that the page
//! sends with every state-changing request (the synchronizer pattern).
//!
//! The daemon keeps only the SHA-256 of each session id, in memory: a
//! restart ends every session, and reading the daemon's memory gives no
//! cookie that works. At most [`MAX_SESSIONS`] live at once; a new one
//! beyond that ends the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::model::digest::hex;

/// The cookie's name.
pub const COOKIE: &str = "flagsd_session";

/// How long a session lasts after signing in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The most sessions at once.
pub const MAX_SESSIONS: usize = 64;

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session, as the daemon keeps it.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    started: Instant,
    expires: Instant,
}

/// A request's session: what the handlers of a signed-in request see.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The SHA-256 of the session id.
    key: [u8; 32],
    /// The session's CSRF token.
    pub csrf: String,
}

impl SignedIn {
    /// Whether `headers` carry this session's CSRF token.
    pub fn csrf_matches(&self, headers: &HeaderMap) -> bool {
        headers.get(CSRF_HEADER).is_some_and(|given| given.as_bytes().ct_eq(self.csrf.as_bytes()).into())
    }
}

/// The sessions of one daemon.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

/// A new session: the id for the cookie, and its CSRF token.
#[derive(Debug)]
pub struct Opened {
    /// The session id (the cookie's value).
    pub id: String,
    /// The CSRF token.
    pub csrf: String,
}

impl Sessions {
    /// Opens a session at `now`; `None` when the system has no randomness
    /// to draw it from.
    pub fn open(&self, now: Instant) -> Option<Opened> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut live = self.lock();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.started).map(|(key, _)| *key)
        {
            live.remove(&oldest);
        }
        live.insert(key_of(&id), Session { csrf: csrf.clone(), started: now, expires: now + LIFETIME });
        Some(Opened { id, csrf })
    }

    /// The live session whose id `headers` carry in the cookie, at `now`.
    pub fn of(&self, headers: &HeaderMap, now: Instant) -> Option<SignedIn> {
        let id = cookie(headers)?;
        let key = key_of(id);
        let live = self.lock();
        let session = live.get(&key).filter(|s| s.expires > now)?;
        Some(SignedIn { key, csrf: session.csrf.clone() })
    }

    /// Ends `session`.
    pub fn end(&self, session: &SignedIn) {
        self.lock().remove(&session.key);
    }

    /// Forgets the sessions expired at `now`.
    pub fn forget_expired(&self, now: Instant) {
        self.lock().retain(|_, s| s.expires > now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock leaves the map as it was.
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many sessions are live (tests).
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().len()
    }
}

/// The `Set-Cookie` value that gives the browser session `id`; `secure`
/// when the page is served over TLS.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", LIFETIME.as_secs())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session id in the `Cookie` headers, if there is one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')))
        .filter(|id| !id.is_empty())
}

/// The key a session id is kept under.
fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes in hex.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_ends() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let opened = sessions.open(now).expect("randomness");
        let headers = with_cookie(&format!("theme=dark; {COOKIE}={}; other=1", opened.id));
        let found = sessions.of(&headers, now).expect("the session");
        assert_eq!(found.csrf, opened.csrf);
        assert!(sessions.of(&with_cookie(&format!("{COOKIE}={}x", opened.id)), now).is_none());
        assert!(sessions.of(&with_cookie(&format!("{COOKIE}=")), now).is_none());
        assert!(sessions.of(&headers, now + LIFETIME).is_none(), "expired");
        sessions.end(&found);
        assert!(sessions.of(&headers, now).is_none(), "ended");
    }

    #[test]
    fn the_csrf_token_must_be_the_sessions_own() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (a, b) = (sessions.open(now).unwrap(), sessions.open(now).unwrap());
        let found = sessions.of(&with_cookie(&format!("{COOKIE}={}", a.id)), now).unwrap();
        let mut headers = HeaderMap::new();
        assert!(!found.csrf_matches(&headers));
        headers.insert(header::HeaderName::from_static(CSRF_HEADER), HeaderValue::from_str(&b.csrf).unwrap());
        assert!(!found.csrf_matches(&headers));
        headers.insert(header::HeaderName::from_static(CSRF_HEADER), HeaderValue::from_str(&a.csrf).unwrap());
        assert!(found.csrf_matches(&headers));
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes_first() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let first = sessions.open(start).unwrap();
        for i in 1..=MAX_SESSIONS {
            sessions.open(start + Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(sessions.count(), MAX_SESSIONS);
        assert!(sessions.of(&with_cookie(&format!("{COOKIE}={}", first.id)), start).is_none());
        sessions.forget_expired(start + LIFETIME + Duration::from_secs(1));
        assert_eq!(sessions.count(), 0);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_expiring() {
        let cookie = set_cookie("abc", false);
        assert_eq!(cookie, "flagsd_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=28800");
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
