//! The URLs of flags, and URLs as reports and logs show them.

use crate::model::codes::CountryCode;

/// `url` with any user name and password replaced by `***`, so that
/// credentials never reach a report or a log.
pub fn redact_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL, yet it may carry credentials: mask what lies before
        // the authority's last '@'.
        Err(_) => {
            let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => url.to_owned(),
            }
        }
    }
}

/// The URL of `code`'s flag under the base URL `base` (one trailing slash
/// of `base` is ignored): `{base}/{cc}/{cc}.gif`, `cc` in lower case.
pub fn flag_url(base: &str, code: CountryCode) -> String {
    let base = base.strip_suffix('/').unwrap_or(base);
    let cc = code.lower();
    format!("{base}/{cc}/{cc}.gif")
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
        assert_eq!(redact_credentials("http://u:pw@bad host:1/a@b"), "http://***@bad host:1/a@b");
        let br = CountryCode::new(b'B', b'R').expect("a code");
        assert_eq!(flag_url("http://h/flags/", br), "http://h/flags/br/br.gif");
        assert_eq!(flag_url("http://h/flags", br), "http://h/flags/br/br.gif");
    }
}
