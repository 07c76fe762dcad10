//! The checks that values from the command line and from configuration
//! files share, so that both accept the same things and say the same about
//! what they refuse. Each returns the reason of a refusal without naming the
//! value's origin: the caller prefixes the flag (`--timeout: …`) or the key
//! (`flagsd.toml: defaults.timeout: …`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The longest duration any setting takes (366 days): a timeout, a wait or
/// an interval beyond it is a mistake, and adding one to a clock could
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A humantime duration (`500ms`, `5s`, `2m`), at most [`MAX_DURATION`].
/// A refusal says what is wrong in words and what a duration looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let parsed = humantime::parse_duration(trimmed).map_err(|e| {
        let why = duration_problem(trimmed, e);
        format!("'{text}' is not a duration ({why}): write a number and a unit, such as 500ms, 5s, 2m or 1h30m")
    })?;
    at_most_max(parsed)
}

/// What is wrong with `text`, which humantime refused with `error`.
fn duration_problem(text: &str, error: humantime::DurationError) -> String {
    use humantime::DurationError;
    let at = |offset: usize| text.get(offset..).and_then(|rest| rest.chars().next()).unwrap_or(' ');
    match error {
        DurationError::Empty => "it is empty".to_owned(),
        _ if text.starts_with('-') => "it is negative".to_owned(),
        DurationError::UnknownUnit { unit, .. } if unit.is_empty() => "the number has no unit".to_owned(),
        DurationError::UnknownUnit { unit, .. } => format!("'{unit}' is not a unit: use ms, s, m, h or d"),
        DurationError::NumberOverflow => "the number is too large".to_owned(),
        DurationError::InvalidCharacter(offset) | DurationError::NumberExpected(offset) => {
            format!("'{}' where a number or a unit should be", at(offset).escape_debug())
        }
    }
}

/// `duration`, if it is at most [`MAX_DURATION`].
pub fn at_most_max(duration: Duration) -> Result<Duration, String> {
    if duration <= MAX_DURATION { Ok(duration) } else { Err("must be at most 366days".to_owned()) }
}

/// `duration`, if it is longer than zero (and at most [`MAX_DURATION`]).
pub fn longer_than_zero(duration: Duration) -> Result<Duration, String> {
    if duration.is_zero() { Err("must be longer than 0s".to_owned()) } else { at_most_max(duration) }
}

/// `value` as a count of at least one.
pub fn at_least_one(value: i64) -> Result<usize, &'static str> {
    if value < 1 { Err("must be >= 1") } else { Ok(usize::try_from(value).unwrap_or(usize::MAX)) }
}

/// A number of worker threads: from 1 to `max`.
pub fn threads(value: i64, max: usize) -> Result<usize, String> {
    match usize::try_from(value) {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be from 1 to {max} (got {value})")),
    }
}

/// A count flag's text (`--limit`, `--max-req`) as a count of at least
/// one; `message` is what to say when it is not (flags2's wording).
pub fn count_flag(text: &str, message: &str) -> Result<usize, String> {
    match text.trim().parse::<i64>() {
        Ok(n) => at_least_one(n).map_err(|_| message.to_owned()),
        Err(_) => Err(format!("{message} (got '{text}', not a whole number)")),
    }
}

/// Parses a size: bytes, or a number with a unit (`512KiB`, `10MB`, `1.5GiB`;
/// `K`/`M`/`G` and `KB`/`MB`/`GB` are powers of 1000, `KiB`/`MiB`/`GiB` of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a size such as 1048576, \"512KiB\" or \"10MB\"");
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A batch name: 1 to 64 letters, digits, `.`, `_`, `-`, not starting with
/// a dot (it names a directory and a systemd instance).
pub fn batch_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!("'{name}' must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"))
    }
}

/// Parses where to listen: `PORT` (on `127.0.0.1`), `IP:PORT` or
/// `[IPv6]:PORT`. The message of an error names the value.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let value = text.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<u16>()
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .map_err(|_| format!("'{text}' is not a port: ports go from 0 to 65535"));
    }
    value.parse().map_err(|_| format!("'{text}' is not a listen address: expected PORT, IP:PORT or [IPv6]:PORT"))
}

/// Whether `addr` is a loopback address (`127.0.0.0/8`, `::1`, or
/// `::ffff:127.x.y.z`), reachable from this machine only.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(v4) => v4.ip().is_loopback(),
        SocketAddr::V6(v6) => v6.ip().is_loopback() || v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Whether `name` is a DNS host name: dot-separated labels of letters,
/// digits and inner hyphens, 63 bytes each, 253 in all.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Reads a secret (a bearer token) from `path`: the file's content without
/// surrounding whitespace. An empty file, or one that cannot be read, is an
/// error whose message names the path (and the operating system's error);
/// no message ever contains the secret.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let content =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file '{}': {e}", path.display()))?;
    let token = content.trim();
    if token.is_empty() {
        return Err(format!("the token file '{}' is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// A warning if the secret file at `path` can be read by others than its
/// owner (its group, or every user: its mode allows it and so do the
/// directories above it); `None` if it cannot, or if that cannot be told.
pub fn exposed_secret(path: &Path) -> Option<String> {
    let (readers, mode) = crate::sys::files::other_readers(path).ok()??;
    let who = match readers {
        crate::sys::files::Readers::Group => "its group",
        crate::sys::files::Readers::Everyone => "every user",
    };
    Some(format!(
        "warning: '{}' can be read by {who} (mode {:04o}): keep it to its owner (chmod 600), or hand it to the \
         service with LoadCredential= (see flagsd.service)",
        path.display(),
        mode & 0o7777
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_labels_of_letters_digits_and_hyphens() {
        for good in ["flagsd", "flagsd.example", "a-1.b2.example"] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in ["", "-a.example", "a-.example", "a..b", "a b", "a/b", "[::1]", &"a".repeat(64)] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("512KiB"), Ok(524_288));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5 GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("2k"), Ok(2000));
        for bad in ["", "MB", "0", "-1", "10XB", "1e3"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_must_parse_and_be_longer_than_zero_and_at_most_366_days() {
        assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(longer_than_zero(parse_duration("0s").unwrap()), Err("must be longer than 0s".to_owned()));
        assert_eq!(parse_duration("366days"), Ok(MAX_DURATION));
        for absurd in ["367days", "500000000000years", "18446744073709551615s"] {
            assert_eq!(parse_duration(absurd), Err("must be at most 366days".to_owned()), "{absurd}");
        }
        assert!(longer_than_zero(MAX_DURATION + Duration::from_nanos(1)).is_err());
        assert!(parse_duration("soon").unwrap_err().starts_with("'soon' is not a duration"));
        assert_eq!(at_least_one(0), Err("must be >= 1"));
    }

    #[test]
    fn a_refused_duration_says_why_and_what_one_looks_like() {
        let why = |text: &str| {
            let message = parse_duration(text).unwrap_err();
            assert!(message.ends_with("): write a number and a unit, such as 500ms, 5s, 2m or 1h30m"), "{message}");
            message
        };
        assert!(why("-5s").starts_with("'-5s' is not a duration (it is negative)"));
        assert!(why("5").starts_with("'5' is not a duration (the number has no unit)"));
        assert!(
            why("5parsecs").starts_with("'5parsecs' is not a duration ('parsecs' is not a unit: use ms, s, m, h or d)")
        );
        assert!(why("").starts_with("'' is not a duration (it is empty)"));
        assert!(why("5s!").starts_with("'5s!' is not a duration ('!' where a number or a unit should be)"));
        assert!(why("soon").starts_with("'soon' is not a duration ('s' where a number or a unit should be)"));
        assert_eq!(at_least_one(3), Ok(3));
    }

    #[test]
    fn batch_names_are_plain_words() {
        for good in ["daily", "a.b_c-1", &"x".repeat(64)] {
            assert!(batch_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "../x", "sp ace", &"x".repeat(65)] {
            assert!(batch_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(parse_listen("9090"), Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))));
        assert_eq!(parse_listen("0"), Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
        assert_eq!(parse_listen("0.0.0.0:80"), Ok(SocketAddr::from(([0, 0, 0, 0], 80))));
        assert_eq!(parse_listen("[::1]:9090"), Ok("[::1]:9090".parse().expect("an address")));
        assert_eq!(parse_listen(" 10.0.0.1:1 "), Ok(SocketAddr::from(([10, 0, 0, 1], 1))));
        for bad in ["", "65536", "localhost:80", "::1:80", "1.2.3.4", "1.2.3.4:99999", "[::1]", "port"] {
            let error = parse_listen(bad).expect_err(bad);
            assert!(error.contains(&format!("'{bad}'")), "{error}");
        }
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for addr in ["127.0.0.1:1", "127.1.2.3:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert!(is_loopback(&addr.parse().expect("an address")), "{addr}");
        }
        for addr in ["0.0.0.0:1", "10.0.0.1:1", "[::]:1", "[::ffff:10.0.0.1]:1", "[2001:db8::1]:1"] {
            assert!(!is_loopback(&addr.parse().expect("an address")), "{addr}");
        }
    }

    #[test]
    fn token_files_are_read_trimmed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token \n").expect("write the token");
        assert_eq!(read_token_file(&path), Ok("s3cret-token".to_owned()));

        std::fs::write(&path, " \n\t\n").expect("write blanks");
        let empty = read_token_file(&path).expect_err("empty");
        assert!(empty.contains(&path.display().to_string()) && empty.contains("empty"), "{empty}");

        let missing = dir.path().join("missing");
        let error = read_token_file(&missing).expect_err("missing");
        assert!(error.contains(&missing.display().to_string()), "{error}");
        let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
        assert!(error.contains("No such file") || error.contains(&os), "{error}");

        std::fs::write(&path, b"s3cret\xff\n").expect("write bytes");
        let binary = read_token_file(&path).expect_err("not UTF-8");
        assert!(binary.contains(&path.display().to_string()) && !binary.contains("s3cret"), "{binary}");
    }
}
