//! Validators and conditional requests, as RFC 9110 §13 describes them:
//! strong entity tags from the content, `Last-Modified` to whole seconds,
//! when `If-Match` or `If-Unmodified-Since` fails with `412 Precondition
//! Failed`, when `If-None-Match` or `If-Modified-Since` earns `304 Not
//! Modified`, and when `If-Range` lets a `Range` through.

use std::time::{Duration, SystemTime};

use actix_web::HttpRequest;
use actix_web::http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};
use sha2::{Digest as _, Sha256};

use crate::model::digest::hex;

/// The last second an HTTP date can show (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE_UNIX: u64 = 253_402_300_799;

/// The strong entity tag of a body: the first 16 bytes of its SHA-256, in
/// hex and quotes.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex(&digest[..16]))
}

/// `time` cut to whole seconds and clamped to what an HTTP date can show.
pub fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.min(LAST_HTTP_DATE_UNIX))
}

/// Whether `etag` (strong, quoted) matches `*` or a member of the
/// comma-separated entity-tag `list`: by weak comparison (a `W/` prefix is
/// ignored), or by strong comparison (a `W/` member matches nothing).
/// Malformed members match nothing.
fn etag_list_matches(list: &str, etag: &str, weak: bool) -> bool {
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let is_weak = rest.starts_with("W/");
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        // An opaque tag may hold commas: find its closing quote first.
        if let Some(opaque) = tag.strip_prefix('"')
            && let Some(end) = opaque.find('"')
        {
            let tail = &opaque[end + 1..];
            let (junk, next) = tail.split_once(',').unwrap_or((tail, ""));
            if junk.trim().is_empty() && &tag[..end + 2] == etag && (weak || !is_weak) {
                return true;
            }
            rest = next;
        } else {
            let (member, next) = rest.split_once(',').unwrap_or((rest, ""));
            if member.trim() == "*" {
                return true;
            }
            rest = next;
        }
    }
}

/// Whether a conditional request gets `304 Not Modified` (RFC 9110
/// §13.2.2) for a file with `etag` and `modified` (whole seconds):
/// `If-None-Match`, when present, alone decides; otherwise
/// `If-Modified-Since`, if it is an HTTP date not before `modified`.
/// Unparseable dates are ignored.
pub fn is_not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    modified: SystemTime,
) -> bool {
    match if_none_match {
        Some(list) => etag_list_matches(list, etag, true),
        None => if_modified_since
            .and_then(|date| httpdate::parse_http_date(date.trim()).ok())
            .is_some_and(|since| modified <= since),
    }
}

/// Whether a request fails its preconditions (`412 Precondition Failed`,
/// RFC 9110 §13.2.2): `If-Match`, when present, must list the current tag
/// (strong comparison) or `*`; otherwise `If-Unmodified-Since`, if it is an
/// HTTP date, must not be before the file's time.
pub fn precondition_failed(
    if_match: Option<&str>,
    if_unmodified_since: Option<&str>,
    etag: &str,
    modified: SystemTime,
) -> bool {
    match if_match {
        Some(list) => !etag_list_matches(list, etag, false),
        None => if_unmodified_since
            .and_then(|date| httpdate::parse_http_date(date.trim()).ok())
            .is_some_and(|since| modified > since),
    }
}

/// Whether a `Range` is honoured under `If-Range` (RFC 9110 §13.1.5): with
/// none, always; with an entity tag, if it is the current one (strong);
/// with a date, if it is exactly the file's time.
pub fn if_range_allows(if_range: Option<&str>, etag: &str, modified: SystemTime) -> bool {
    match if_range.map(str::trim) {
        None => true,
        Some(tag) if tag.starts_with('"') => tag == etag,
        Some(tag) if tag.starts_with("W/") => false,
        Some(date) => httpdate::parse_http_date(date).is_ok_and(|date| date == modified),
    }
}

/// A header of a request, if it has exactly one readable line.
pub fn single(req: &HttpRequest, name: actix_web::http::header::HeaderName) -> Option<&str> {
    let mut lines = req.headers().get_all(name);
    match (lines.next(), lines.next()) {
        (Some(line), None) => line.to_str().ok(),
        _ => None,
    }
}

/// `If-None-Match` of a request, all its lines joined into one list.
pub fn if_none_match(req: &HttpRequest) -> Option<String> {
    let lines: Vec<_> = req.headers().get_all(IF_NONE_MATCH).map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
    (!lines.is_empty()).then(|| lines.join(", "))
}

/// `If-Modified-Since` of a request, if it has exactly one readable line.
pub fn if_modified_since(req: &HttpRequest) -> Option<&str> {
    single(req, IF_MODIFIED_SINCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"0123456789abcdef0123456789abcdef\"";

    /// `Mon, 01 Jan 2024 00:00:00 GMT`.
    fn date() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200)
    }

    fn inm(list: &str) -> bool {
        is_not_modified(Some(list), None, TAG, date())
    }

    fn ims(date_text: &str) -> bool {
        is_not_modified(None, Some(date_text), TAG, date())
    }

    #[test]
    fn etags_are_the_first_half_of_the_sha256_in_hex() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(etag_of(b"abc"), "\"ba7816bf8f01cfea414140de5dae2223\"");
    }

    #[test]
    fn if_none_match_matches_any_listed_tag_weakly() {
        assert!(inm(TAG));
        assert!(inm(&format!("W/{TAG}")));
        assert!(inm(&format!("\"other\", {TAG}")));
        assert!(inm(&format!("\"other\",W/{TAG} , \"more\"")));
        assert!(inm(&format!("\"a,b\",\t{TAG}")));
        assert!(inm("*"));
        assert!(inm(" * "));
        assert!(!inm("\"other\""));
        assert!(!inm("\"other\", W/\"more\""));
        assert!(!inm(""));
        // The tag without its quotes, in other case, or glued to junk.
        assert!(!inm("0123456789abcdef0123456789abcdef"));
        assert!(!inm(&TAG.to_uppercase()));
        assert!(!inm(&format!("{TAG}x")));
        assert!(!inm(&format!("w/{TAG}")));
    }

    #[test]
    fn a_non_matching_if_none_match_beats_if_modified_since() {
        let text = "Mon, 01 Jan 2024 00:00:00 GMT";
        assert!(ims(text));
        assert!(!is_not_modified(Some("\"other\""), Some(text), TAG, date()));
        assert!(is_not_modified(Some(TAG), Some("Thu, 01 Jan 1970 00:00:00 GMT"), TAG, date()));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        assert!(ims("Mon, 01 Jan 2024 00:00:00 GMT"), "equal");
        assert!(ims("Tue, 02 Jan 2024 00:00:00 GMT"), "later");
        assert!(ims("Monday, 01-Jan-24 00:00:00 GMT"), "RFC 850 form");
        assert!(ims("Mon Jan  1 00:00:00 2024"), "asctime form");
        assert!(!ims("Sun, 31 Dec 2023 23:59:59 GMT"), "a second earlier");
        let with_fraction = date() + Duration::from_millis(999);
        assert!(is_not_modified(None, Some("Mon, 01 Jan 2024 00:00:00 GMT"), TAG, whole_seconds(with_fraction)));
    }

    #[test]
    fn garbage_conditional_headers_are_ignored() {
        for date in ["", "yesterday", "Mon, 01 Jan 2024", "Mon, 32 Jan 2024 00:00:00 GMT", "\u{e9}t\u{e9}"] {
            assert!(!ims(date), "{date:?}");
        }
        for list in ["W/", "\"", "\"unterminated, *x", "W/*", ",,,", "\u{e9}"] {
            assert!(!inm(list), "{list:?}");
        }
        // A malformed member does not hide a good one after it.
        assert!(inm(&format!("junk, W/, {TAG}")));
    }

    #[test]
    fn times_are_cut_to_whole_seconds_an_http_date_can_show() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(whole_seconds(epoch + Duration::from_millis(1500)), epoch + Duration::from_secs(1));
        assert_eq!(whole_seconds(epoch - Duration::from_secs(5)), epoch);
        let far = whole_seconds(epoch + Duration::from_secs(u64::from(u32::MAX) * 1000));
        assert_eq!(httpdate::fmt_http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn if_match_compares_strongly_and_if_unmodified_since_by_date() {
        let failed = |m: Option<&str>, u: Option<&str>| precondition_failed(m, u, TAG, date());
        assert!(!failed(None, None));
        assert!(!failed(Some(TAG), None) && !failed(Some("*"), None) && !failed(Some(&format!("\"x\", {TAG}")), None));
        assert!(failed(Some(&format!("W/{TAG}")), None), "weak tags never match If-Match");
        assert!(failed(Some("\"other\""), None));
        assert!(!failed(None, Some("Mon, 01 Jan 2024 00:00:00 GMT")));
        assert!(failed(None, Some("Sun, 31 Dec 2023 23:59:59 GMT")));
        assert!(!failed(None, Some("not a date")));
        assert!(!failed(Some(TAG), Some("Sun, 31 Dec 2023 23:59:59 GMT")), "If-Match alone decides");
    }

    #[test]
    fn if_range_takes_the_current_tag_or_the_exact_date() {
        assert!(if_range_allows(None, TAG, date()));
        assert!(if_range_allows(Some(TAG), TAG, date()));
        assert!(!if_range_allows(Some("\"other\""), TAG, date()));
        assert!(!if_range_allows(Some(&format!("W/{TAG}")), TAG, date()));
        assert!(if_range_allows(Some("Mon, 01 Jan 2024 00:00:00 GMT"), TAG, date()));
        assert!(!if_range_allows(Some("Mon, 01 Jan 2024 00:00:01 GMT"), TAG, date()));
    }
}
