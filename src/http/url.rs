//! The URLs of flags, and URLs as reports and logs show them.
//!
//! A URL the operator typed (a server's base URL, a proxy, the fleet's NATS
//! servers) may carry credentials, and a password may hold any character:
//! `http://user:pa#ss@host`, `http://user:1234/x@host`. A URL parser reads
//! those as a fragment or a path, and the password ends up in the host or
//! the path, shown by every later message. So a typed URL is split before
//! anything parses it ([`split_credentials`]): everything between `://` and
//! the **last** `@` is the user information, as typed. The same split masks
//! it for messages ([`redact_credentials`]) and gives the credentials to
//! the client ([`parse_typed`]). The price: a base URL whose path holds a
//! `@` must write it `%40`.
//!
//! A URL that came from a server (a redirect's `Location`) is parsed as a
//! URL parser parses it, since that is where a request would go; it is
//! shown with [`shown`].

use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;

use crate::model::codes::CountryCode;

/// The user information of a typed URL, as typed (percent-escapes kept).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// What comes before the first `:`.
    pub user: &'a str,
    /// What comes after the first `:`, if there is one.
    pub password: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials<'_> {
    /// `text` with its percent-escapes decoded, as a server receives it.
    pub fn decode(text: &str) -> String {
        percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
    }
}

/// `url` as typed, split into the URL without its credentials and the
/// credentials: everything between `scheme://` (or the start, when the
/// scheme was left out, as `user:password@proxy:3128` may be) and the last
/// `@`. Without an `@` there are none.
pub fn split_credentials(url: &str) -> (String, Option<Credentials<'_>>) {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return (url.to_owned(), None) };
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => Credentials { user, password: Some(password) },
        None => Credentials { user: userinfo, password: None },
    };
    let bare = match scheme {
        Some(scheme) => format!("{scheme}://{host}"),
        None => host.to_owned(),
    };
    (bare, Some(credentials))
}

/// `url` (as typed) with its credentials replaced by `***`, so that they
/// never reach a report, a log or a problem: `http://***@host/flags`.
pub fn redact_credentials(url: &str) -> String {
    let (bare, credentials) = split_credentials(url);
    match (credentials, bare.split_once("://")) {
        (None, _) => bare,
        (Some(_), Some((scheme, host))) => format!("{scheme}://***@{host}"),
        (Some(_), None) => format!("***@{bare}"),
    }
}

/// Why a typed URL cannot be parsed; the message shows it masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{shown}' is not valid: {reason}")]
pub struct TypedUrlError {
    /// The URL, credentials masked.
    pub shown: String,
    /// What the parser said (it never saw the credentials).
    pub reason: String,
}

/// Parses `url` as typed: the URL without its credentials is parsed, then
/// the credentials (split as [`split_credentials`] says) are set on it,
/// percent-encoded where they must be, so that the client sends them as
/// typed.
pub fn parse_typed(url: &str) -> Result<Url, TypedUrlError> {
    let (bare, credentials) = split_credentials(url);
    let fail = |reason: String| TypedUrlError { shown: redact_credentials(url), reason };
    let mut parsed = Url::parse(&bare).map_err(|e| fail(e.to_string()))?;
    if let Some(Credentials { user, password }) = credentials {
        let cannot = || fail("it cannot carry a user name or password".to_owned());
        parsed.set_username(user).map_err(|()| cannot())?;
        parsed.set_password(password).map_err(|()| cannot())?;
    }
    Ok(parsed)
}

/// A parsed URL as messages show it: its user name and password, if any,
/// replaced by `***`.
pub fn shown(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut masked = url.clone();
    // A URL with credentials has a host, so both calls succeed.
    let _ = masked.set_password(None);
    let _ = masked.set_username("***");
    masked.to_string()
}

/// A user name and password read from a file (a server's
/// `credentials_file`, its `proxy_credentials_file`), so that they need not
/// be written in a configuration every user can read.
#[derive(Clone, PartialEq, Eq)]
pub struct FileCredentials {
    /// The user name.
    pub user: String,
    /// The password, if the file gives one.
    pub password: Option<String>,
}

impl std::fmt::Debug for FileCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileCredentials(***)")
    }
}

/// Why a credentials file cannot be used: the file and the kind of
/// problem, never what it holds.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    /// It cannot be read.
    #[error("cannot read '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// It is not one short line of text with a user name.
    #[error("'{}' does not hold user:password on one line of text", path.display())]
    NotCredentials {
        /// The file.
        path: PathBuf,
    },
}

/// The largest credentials file read, in bytes.
const MAX_CREDENTIALS_FILE: u64 = 4096;

/// Reads `user:password` (or a user name alone) from the file at `path`:
/// one line of UTF-8 text, surrounding whitespace ignored, split at its
/// first `:`, taken as it is (no percent-escapes).
pub fn read_credentials_file(path: &Path) -> Result<FileCredentials, CredentialsFileError> {
    use std::io::Read as _;
    let read = |source| CredentialsFileError::Read { path: path.to_owned(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_CREDENTIALS_FILE + 1).read_to_end(&mut bytes)).map_err(read)?;
    let not_credentials = || CredentialsFileError::NotCredentials { path: path.to_owned() };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_credentials())?.trim();
    if bytes.len() as u64 > MAX_CREDENTIALS_FILE || text.is_empty() || text.contains(['\n', '\r']) {
        return Err(not_credentials());
    }
    let (user, password) = match text.split_once(':') {
        Some((user, password)) => (user, Some(password.to_owned())),
        None => (text, None),
    };
    if user.is_empty() {
        return Err(not_credentials());
    }
    Ok(FileCredentials { user: user.to_owned(), password })
}

/// Every byte but the unreserved ones (RFC 3986), escaped: what a user
/// name or password read as is becomes in a URL.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A URL that cannot carry a user name and password (it has no host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the URL cannot carry a user name and password")]
pub struct NoCredentialsHere;

/// Sets `credentials` as `url`'s user name and password, escaped so that
/// the server receives them as they were read.
pub fn set_credentials(url: &mut Url, credentials: &FileCredentials) -> Result<(), NoCredentialsHere> {
    url.set_username(&utf8_percent_encode(&credentials.user, USERINFO).to_string()).map_err(|()| NoCredentialsHere)?;
    let password = credentials.password.as_deref().map(|p| utf8_percent_encode(p, USERINFO).to_string());
    url.set_password(password.as_deref()).map_err(|()| NoCredentialsHere)
}

/// The URL of `code`'s flag under the base URL `base` (one trailing slash
/// of `base` is ignored): `{base}/{cc}/{cc}.gif`, `cc` in lower case.
pub fn flag_url(base: &str, code: CountryCode) -> String {
    let base = base.strip_suffix('/').unwrap_or(base);
    let cc = code.lower();
    // Built by hand: this runs for every outcome, and `format!` costs more.
    let mut url = String::with_capacity(base.len() + 10);
    for part in [base, "/", &cc, "/", &cc, ".gif"] {
        url.push_str(part);
    }
    url
}

/// Whether `url` is [`flag_url`]`(base, code)`, found without building it:
/// this runs for every code whose validators are checked.
pub fn is_flag_url(url: &str, base: &str, code: CountryCode) -> bool {
    let base = base.strip_suffix('/').unwrap_or(base);
    let [first, second] = code.as_str().as_bytes() else { return false };
    let (a, b) = (first.to_ascii_lowercase(), second.to_ascii_lowercase());
    url.strip_prefix(base).is_some_and(|rest| rest.as_bytes() == [b'/', a, b, b'/', a, b, b'.', b'g', b'i', b'f'])
}

/// `base` with the path segments `{cc}/{file}` added (one trailing slash of
/// `base` is ignored), `cc` in lower case: what [`flag_url`] gives, without
/// parsing a URL again for every request. `base` must be an `http(s)` URL
/// (checked once, when the job is prepared); any other is returned as is.
pub fn url_under(base: &Url, code: CountryCode, file: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push(&code.lower()).push(file);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked() {
        assert_eq!(redact_credentials("https://user:pw@host/flags"), "https://***@host/flags");
        assert_eq!(redact_credentials("https://user@host/flags"), "https://***@host/flags");
        assert_eq!(redact_credentials("http://host/flags"), "http://host/flags");
        assert_eq!(redact_credentials("not a url"), "not a url");
        assert_eq!(redact_credentials("user:pw@proxy:3128"), "***@proxy:3128");
        // A password may hold '#', '?', '/' and '@': the last '@' ends it.
        assert_eq!(redact_credentials("http://u:pw@bad host:1/a@b"), "http://***@b");
        for typed in ["http://user:pa#ss@h:1/x", "http://user:pa?ss@h:1/x", "http://user:1234/x@h:1/x"] {
            assert_eq!(redact_credentials(typed), "http://***@h:1/x", "{typed}");
        }
        let br = CountryCode::new(b'B', b'R').expect("a code");
        assert_eq!(flag_url("http://h/flags/", br), "http://h/flags/br/br.gif");
        assert_eq!(flag_url("http://h/flags", br), "http://h/flags/br/br.gif");
    }

    #[test]
    fn typed_credentials_are_sent_as_typed_and_shown_masked() {
        for (typed, user, password) in [
            ("http://user:pa#ss@127.0.0.1:1/flags", "user", "pa#ss"),
            ("http://user:1234/x@127.0.0.1:1/flags", "user", "1234/x"),
            ("https://user:pa?ss@127.0.0.1:1/flags", "user", "pa?ss"),
            ("http://ann:pa%20ss@127.0.0.1:1/flags", "ann", "pa ss"),
            ("http://a@b:c:d@127.0.0.1:1/flags", "a@b", "c:d"),
        ] {
            let url = parse_typed(typed).expect("a URL");
            assert_eq!(url.host_str(), Some("127.0.0.1"), "{typed}");
            assert_eq!((url.port(), url.path()), (Some(1), "/flags"), "{typed}");
            assert_eq!(Credentials::decode(url.username()), user, "{typed}");
            assert_eq!(Credentials::decode(url.password().unwrap_or_default()), password, "{typed}");
            let masked = shown(&url);
            assert!(masked.starts_with(url.scheme()) && masked.contains("://***@127.0.0.1:1/flags"), "{masked}");
            assert!(!masked.contains(password), "{masked}");
        }
        assert_eq!(shown(&parse_typed("http://h/flags").expect("a URL")), "http://h/flags");
        let error = parse_typed("http://user:s3cret@bad host/flags").expect_err("a space in the host");
        assert!(error.to_string().starts_with("'http://***@bad host/flags' is not valid: "), "{error}");
        assert!(!format!("{error:?}").contains("s3cret"));
        let (bare, credentials) = split_credentials("nats://tok%40en@h:4222");
        assert_eq!(bare, "nats://h:4222");
        assert_eq!(credentials.map(|c| Credentials::decode(c.user)), Some("tok@en".to_owned()));
        assert_eq!(format!("{credentials:?}"), "Some(Credentials(***))");
    }

    #[test]
    fn credentials_files_hold_one_line_and_are_sent_as_read() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = |name: &str, text: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("written");
            path
        };
        let good = file("good", b"  ann:p%41 #?/@:x \n");
        let credentials = read_credentials_file(&good).expect("credentials");
        assert_eq!((credentials.user.as_str(), credentials.password.as_deref()), ("ann", Some("p%41 #?/@:x")));
        assert_eq!(format!("{credentials:?}"), "FileCredentials(***)");
        let mut url = Url::parse("http://h:1/flags").expect("a URL");
        set_credentials(&mut url, &credentials).expect("a host");
        assert_eq!(url.host_str(), Some("h"));
        assert_eq!(Credentials::decode(url.password().unwrap_or_default()), "p%41 #?/@:x");
        assert_eq!(shown(&url), "http://***@h:1/flags");
        let user_only = read_credentials_file(&file("user", b"token\n")).expect("a user");
        assert_eq!((user_only.user.as_str(), user_only.password), ("token", None));
        for (name, text) in [
            ("empty", &b" \n"[..]),
            ("lines", b"a:b\nc:d"),
            ("binary", b"a:\xff"),
            ("nouser", b":pw"),
            ("big", &[b'a'; 5000]),
        ] {
            let error = read_credentials_file(&file(name, text)).expect_err(name).to_string();
            assert!(error.ends_with("does not hold user:password on one line of text"), "{name}: {error}");
            assert!(!error.contains("pw") && !error.contains("c:d"), "{error}");
        }
        let missing = read_credentials_file(&dir.path().join("missing")).expect_err("missing").to_string();
        assert!(missing.starts_with("cannot read '") && missing.contains("No such file"), "{missing}");
    }

    #[test]
    fn flag_urls_are_recognised_as_built() {
        let br = CountryCode::new(b'B', b'R').expect("a code");
        let ar = CountryCode::new(b'A', b'R').expect("a code");
        for base in ["http://h/flags/", "http://h/flags", "DEMO", "https://***@h:8443"] {
            assert!(is_flag_url(&flag_url(base, br), base, br), "{base}");
            assert!(!is_flag_url(&flag_url(base, ar), base, br), "{base}");
        }
        for other in
            ["http://h/flags/br/br.gif/", "http://h/flags/BR/BR.gif", "http://h/flags/br/br.gi", "http://h/br/br.gif"]
        {
            assert!(!is_flag_url(other, "http://h/flags", br), "{other}");
        }
    }

    #[test]
    fn urls_under_a_parsed_base_are_the_flag_urls() {
        let br = CountryCode::new(b'B', b'R').expect("a code");
        for base in ["http://h/flags/", "http://h/flags", "https://u:p@h:8443", "http://h/", "http://h/a%20b/c"] {
            let parsed = Url::parse(base).expect("a URL");
            assert_eq!(url_under(&parsed, br, "br.gif").as_str(), flag_url(base, br), "{base}");
        }
        let parsed = Url::parse("http://h/flags").expect("a URL");
        assert_eq!(url_under(&parsed, br, "metadata.json").as_str(), "http://h/flags/br/metadata.json");
    }
}
