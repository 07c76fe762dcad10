//! URLs as reports and logs show them.

/// `url` with any user name and password replaced by `***`, so that
/// credentials never reach a report or a log.
pub fn redact_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
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
    }
}
