//! The URLs of flags, and URLs as reports and logs show them.

use reqwest::Url;

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
        assert_eq!(redact_credentials("http://u:pw@bad host:1/a@b"), "http://***@bad host:1/a@b");
        let br = CountryCode::new(b'B', b'R').expect("a code");
        assert_eq!(flag_url("http://h/flags/", br), "http://h/flags/br/br.gif");
        assert_eq!(flag_url("http://h/flags", br), "http://h/flags/br/br.gif");
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
