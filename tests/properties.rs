//! Property tests of everything that parses untrusted text: configuration
//! files, codes files, country names from a server (from anywhere in
//! Unicode), durations, sizes and rates, the `Retry-After` and
//! conditional-request headers, URLs that carry secrets, text shown on a
//! terminal, values of any size in the journal, and the fleet's work items
//! and outcomes as another node may publish them. Each property must hold
//! on any input, and nothing may panic.
//!
//! Each property runs 256 cases (`FLAGSD_PROPTEST_CASES` to fuzz longer);
//! together they take a few seconds. A failing case is shrunk and kept in
//! `tests/proptest-regressions/properties.txt`, which proptest replays
//! first on every later run: commit it with the fix.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use flagsd::config::file::Overrides;
use flagsd::config::file::{RawFleet, RawUrls};
use flagsd::config::server::check_base_url;
use flagsd::config::validate::{MAX_DURATION, parse_duration, parse_listen, parse_size};
use flagsd::config::{ConfigSource, Server};
use flagsd::engine::retry::RetryPolicy;
use flagsd::fleet::messages::{MAX_BATCH, MAX_OUTCOMES, MAX_PARCEL, MAX_WORK_ITEM, read_outcomes, read_work};
use flagsd::http::proxy::parse_proxy;
use flagsd::http::rate::Rate;
use flagsd::http::response::parse_retry_after;
use flagsd::http::url::{parse_typed, redact_credentials, shown};
use flagsd::model::codes::{CodeSet, CountryCode, SHOWN_WORD_CHARS, parse_code, parse_code_list};
use flagsd::model::outcome::{DownloadError, Outcome};
use flagsd::model::random::Dice;
use flagsd::model::run::CodeResult;
use flagsd::model::text::{capped, is_invisible, terminal_safe};
use flagsd::present::report::result_line;
use flagsd::store::claims::{LocalClaims, claim_file_name};
use flagsd::store::naming::sanitize_stem;
use flagsd::store::state::KnownFiles;
use flagsd::sys::journal::{JournalLayer, MAX_ENTRY, MAX_FIELD, MAX_MESSAGE};
use flagsd::testserver::conditional::is_not_modified;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("FLAGSD_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Keys, values and headers a configuration file is made of, so that most
/// generated files get past the TOML parser and reach the checks.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "codes",
        "server",
        "every",
        "max_req",
        "limit",
        "output",
        "naming",
        "verbose",
        "timeout",
        "connect_timeout",
        "retries",
        "retry_after_cap",
        "max_size",
        "listen",
        "token_file",
        "dir",
        "rate",
        "url",
        "nats",
        "replicas",
        "shutdown_timeout",
        "LOCAL",
        "bogus",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9 ./:_-]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"500000000000years\"".to_owned()),
        Just("\"1s\"".to_owned()),
        Just("\"DEMO\"".to_owned()),
        Just("[\"BR\", \"b\", \"ZZZ\"]".to_owned()),
        Just("\"all\"".to_owned()),
        Just("true".to_owned()),
        Just("{ url = \"http://x\", rate = \"0/s\" }".to_owned()),
        Just("[]".to_owned()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ];
    let header = prop::sample::select(vec![
        "[defaults]",
        "[daemon]",
        "[state]",
        "[admin]",
        "[servers]",
        "[[batch]]",
        "[fleet]",
        "[extra]",
    ]);
    let line = prop_oneof![
        3 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => header.prop_map(str::to_owned),
        1 => "[ -~]{0,30}",
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// Characters that hide or reorder text, and the separators of paths:
/// what [`any_text`] mixes in more often than chance would.
const SPECIAL: [char; 29] = [
    '/',
    '\\',
    '.',
    '-',
    ' ',
    '\u{0}',
    '\u{1b}',
    '\r',
    '\u{7}',
    '\u{9b}',
    '\u{61c}',
    '\u{180e}',
    '\u{200b}',
    '\u{202e}',
    '\u{2066}',
    '\u{2028}',
    '\u{2800}',
    '\u{3164}',
    '\u{115f}',
    '\u{fff9}',
    '\u{feff}',
    '\u{e0001}',
    '\u{e0041}',
    '\u{e000}',
    '\u{ff0e}',
    '\u{ff0f}',
    '\u{2024}',
    '\u{301}',
    '\u{200d}',
];

/// Text from anywhere in Unicode (every plane, unassigned and private-use
/// code points included; surrogates become U+FFFD), with [`SPECIAL`]
/// characters and plain letters overrepresented. Each character is drawn
/// from one number (two fifths any code point, one fifth a special, two
/// fifths a letter): far cheaper than a union of strategies per character.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    let char_of = |n: u32| match n % 5 {
        0 | 1 => char::from_u32((n / 5) % 0x11_0000).unwrap_or('\u{fffd}'),
        2 => SPECIAL[(n / 5) as usize % SPECIAL.len()],
        _ => char::from(b'a' + ((n / 5) % 26) as u8),
    };
    prop::collection::vec(any::<u32>(), 0..max).prop_map(move |numbers| numbers.into_iter().map(char_of).collect())
}

/// Text of any size, from nothing to about a megabyte: a short text
/// repeated (what a server may send as a reason phrase or a header value).
fn text_of_any_size() -> impl Strategy<Value = String> {
    let times = prop::sample::select(vec![0usize, 1, 2, 100, 1_000, 12_000]);
    (any_text(16), times).prop_map(|(text, times)| text.repeat(times))
}

/// The codes of a fleet's run in the fleet-message properties.
fn run_codes() -> CodeSet {
    ["BR", "AR", "ZZ"].iter().filter_map(|c| parse_code(c)).collect()
}

/// A code as a hostile node may write one.
fn any_code() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["BR", "AR", "ZZ", "CL", "br", "B", "BRA", "", "\u{1b}R"]).prop_map(str::to_owned),
        1 => any_text(4),
    ]
}

/// An outcome as a hostile node may publish one: fields of any size and
/// content, kinds known and unknown, and now and then a field missing or
/// of another type.
fn any_outcome() -> impl Strategy<Value = serde_json::Value> {
    let kind = prop::sample::select(vec!["downloaded", "not_found", "http_error", "unfinished", "bogus", ""]);
    let text = prop_oneof![8 => any_text(40), 1 => text_of_any_size()];
    (any_code(), kind, text.clone(), text.clone(), text, any::<u32>(), 0u8..8).prop_map(
        |(code, kind, message, url, node, n, shape)| {
            let mut outcome = serde_json::json!({
                "code": code, "outcome": kind, "status": n % 600, "message": message, "attempts": n % 5,
                "bytes": n, "file": null, "url": url, "node": node,
            });
            match shape {
                0 => outcome["attempts"] = serde_json::json!("many"),
                1 => outcome = serde_json::json!(n),
                2 => drop(outcome.as_object_mut().map(|o| o.remove("url"))),
                _ => {}
            }
            outcome
        },
    )
}

/// A URL as someone may type it with a password: any scheme flagsd meets
/// (or refuses), a user, a password that starts with `Z` and ends with `Q`
/// (letters no generated host holds) and holds any printable ASCII, `@`,
/// `:`, `/`, `?`, `#` and `%` included, and a host that may not parse.
fn url_with_secret() -> impl Strategy<Value = (String, String)> {
    let scheme = prop::sample::select(vec!["http", "https", "HTTP", "nats", "tls", "socks5", "ftp", ""]);
    let host = prop::sample::select(vec!["127.0.0.1:1", "h", "[::1]:8080", "bad host:1", "", "h:99999", "[::1"]);
    let tail = prop::sample::select(vec!["", "/", "/flags", "/flags?a=b", "/flags#x", "/a@b"]);
    (scheme, "[a-z]{0,6}", "[ -~]{0,16}", host, tail).prop_map(|(scheme, user, core, host, tail)| {
        let secret = format!("Z{core}Q");
        let prefix = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
        (format!("{prefix}{user}:{secret}@{host}{tail}"), secret)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_configuration_loads_or_names_its_problems(text in config_text()) {
        let mut file = tempfile::NamedTempFile::new().expect("a file");
        file.write_all(text.as_bytes()).expect("written");
        let source = ConfigSource { path: Some(file.path().to_owned()), overrides: Overrides::default() };
        match source.load() {
            Ok(settings) => {
                for batch in &settings.batches {
                    prop_assert!(batch.every.is_none_or(|every| every <= MAX_DURATION));
                    prop_assert!(batch.job.pool_size >= 1);
                }
            }
            Err(error) => {
                prop_assert!(!error.problems.is_empty());
                for problem in &error.problems {
                    prop_assert!(!problem.message.is_empty());
                    prop_assert!(problem.key.is_some() || problem.line.is_some() || problem.message.contains("read"), "{problem:?}");
                }
            }
        }
    }

    #[test]
    fn a_codes_file_gives_codes_or_one_short_error(text in "\\PC{0,200}|[A-Za-z,# \\n]{0,200}") {
        match parse_code_list(&text, "list") {
            Ok(codes) => {
                for code in codes {
                    prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_uppercase()) && code.as_str().len() == 2);
                }
            }
            Err(error) => {
                prop_assert!(error.line >= 1 && error.line <= text.lines().count().max(1));
                prop_assert!(error.word.chars().filter(|c| *c != '\\').count() <= SHOWN_WORD_CHARS * 10 + 1);
                prop_assert!(!error.word.chars().any(char::is_control), "{:?}", error.word);
            }
        }
    }

    #[test]
    fn country_names_become_safe_stable_file_names(raw in "\\PC{0,80}|[./\\\\\u{2024}\u{FF0E}\u{FF0F}\u{202E}\u{2028}\u{0}-]{0,20}") {
        if let Some(stem) = sanitize_stem(&raw) {
            prop_assert!(!stem.is_empty() && stem.chars().count() <= 60);
            prop_assert!(!stem.contains('/') && !stem.contains('\\') && !stem.contains(".."), "{stem:?}");
            prop_assert!(!stem.starts_with('.') && !stem.starts_with('-'), "{stem:?}");
            prop_assert!(!stem.chars().any(|c| c.is_control() || ('\u{2028}'..='\u{202E}').contains(&c)), "{stem:?}");
            let again = sanitize_stem(&stem);
            prop_assert_eq!(again.as_deref(), Some(stem.as_str()), "not stable");
        }
    }

    #[test]
    fn no_two_codes_share_a_file_name(names in prop::collection::vec("[a-zA-Z]{1,3}", 1..30)) {
        let claims = LocalClaims::seeded(std::path::Path::new("out"), &KnownFiles::new());
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let mut given = std::collections::HashSet::new();
        for (i, name) in names.iter().enumerate() {
            let code = CountryCode::new(b'A' + (i / 26) as u8, b'A' + (i % 26) as u8).expect("a code");
            let file = runtime.block_on(claim_file_name(&claims, code, name)).expect("local claims never fail");
            prop_assert!(given.insert(file.to_lowercase()), "{file} given twice");
        }
    }

    #[test]
    fn durations_sizes_rates_and_addresses_parse_within_bounds(text in "\\PC{0,40}|[0-9]{1,25}(ns|ms|s|m|h|days|years|KiB|MB|GiB|/s|/h)?") {
        if let Ok(duration) = parse_duration(&text) {
            prop_assert!(duration <= MAX_DURATION);
        }
        if let Ok(size) = parse_size(&text) {
            prop_assert!(size >= 1);
        }
        if let Ok(rate) = text.parse::<Rate>() {
            prop_assert!(rate.interval() < Duration::from_secs(u64::MAX / 2));
        }
        let _ = parse_listen(&text);
    }

    #[test]
    fn retry_after_values_never_make_a_wait_beyond_the_cap(value in "\\PC{0,40}|[0-9]{1,25}|[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT", attempts in 1u32..40) {
        let now = SystemTime::now();
        let wait = parse_retry_after(&value, now);
        if let Ok(seconds) = value.trim().parse::<u64>() {
            prop_assert_eq!(wait, Some(Duration::from_secs(seconds)));
        }
        let policy = RetryPolicy { retries: 40, base: Duration::from_millis(250), cap: Duration::from_secs(10), retry_after_cap: Duration::from_secs(60) };
        let failed = Outcome::Failed(DownloadError::Http { status: 503, reason: String::new(), retry_after: wait });
        if let Some(delay) = policy.delay(&failed, attempts, &Dice::new(7)) {
            prop_assert!(delay <= Duration::from_secs(60), "{delay:?}");
        }
    }

    #[test]
    fn conditional_headers_never_panic_and_match_a_listed_tag(list in "\\PC{0,60}|[\"W/, *a-f0-9]{0,60}", date in "\\PC{0,40}") {
        let etag = "\"0123abcd\"";
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let _ = is_not_modified(Some(&list), Some(&date), etag, modified);
        let _ = is_not_modified(None, Some(&date), etag, modified);
        let listed = format!("{list}, {etag}");
        if !list.contains('"') {
            prop_assert!(is_not_modified(Some(&listed), None, etag, modified), "{listed}");
        }
    }

    #[test]
    fn a_password_never_shows_in_any_message_about_its_url((url, secret) in url_with_secret()) {
        let mut said = vec![redact_credentials(&url)];
        said.extend(parse_typed(&url).map(|u| shown(&u)).map_err(|e| format!("{e} {e:?}")).err());
        if let Ok(parsed) = parse_typed(&url) {
            said.push(shown(&parsed));
        }
        said.push(match parse_proxy(&url) {
            Ok(Some(proxy)) => format!("{} {:?}", proxy.shown, proxy.shown),
            Ok(None) => String::new(),
            Err(e) => e,
        });
        said.extend(check_base_url(&url).err());
        said.push(match Server::parse(&url) {
            Ok(server) => format!("{:?}", server.label),
            Err(e) => e.to_string(),
        });
        let fleet = RawFleet { nats: Some(RawUrls::One(url.clone())), ..RawFleet::default() };
        match flagsd::config::fleet::check(&fleet) {
            Ok(settings) => said.extend([settings.display_servers(), format!("{settings:?}")]),
            Err(problems) => said.extend(problems.into_iter().map(|(key, message)| format!("{key}: {message}"))),
        }
        for text in &said {
            prop_assert!(!text.contains(&secret), "{secret:?} shows in {text:?} (from {url:?})");
        }
    }

    #[test]
    fn names_from_anywhere_in_unicode_lose_everything_invisible(raw in any_text(90)) {
        if let Some(stem) = sanitize_stem(&raw) {
            prop_assert!(!stem.is_empty() && stem.chars().count() <= 60, "{stem:?}");
            prop_assert!(!stem.chars().any(is_invisible), "{raw:?} -> {stem:?}");
            prop_assert!(!stem.contains('/') && !stem.contains('\\') && !stem.contains(".."), "{stem:?}");
            prop_assert!(!stem.starts_with(['.', '-']) && !stem.ends_with('.'), "{stem:?}");
            let again = sanitize_stem(&stem);
            prop_assert_eq!(again.as_deref(), Some(stem.as_str()), "not stable");
        }
    }

    #[test]
    fn terminal_safe_text_holds_nothing_a_terminal_obeys(raw in any_text(100), max in 1usize..120) {
        let safe = terminal_safe(&raw, max);
        prop_assert!(!safe.chars().any(is_invisible), "{raw:?} -> {safe:?}");
        prop_assert!(safe.chars().count() <= max + 1, "{} > {max} + 1", safe.chars().count());
        if !raw.chars().any(is_invisible) && raw.chars().count() <= max {
            prop_assert_eq!(&safe, &raw);
        }
    }

    #[test]
    fn text_of_any_size_is_capped_at_a_character_boundary(text in text_of_any_size(), max in 0usize..2048) {
        let cut = capped(&text, max);
        prop_assert!(cut.len() <= max + '…'.len_utf8(), "{} > {max}", cut.len());
        prop_assert!(*cut == *text || text.starts_with(cut.strip_suffix('…').unwrap_or(&cut)), "not a prefix");
        if text.len() <= max {
            prop_assert_eq!(&*cut, text.as_str());
        }
    }

    #[test]
    fn journal_entries_of_any_size_arrive_cut(message in text_of_any_size(), value in text_of_any_size()) {
        use tracing_subscriber::layer::SubscriberExt as _;
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("journal.socket");
        let journald = std::os::unix::net::UnixDatagram::bind(&path).expect("a fake journald");
        journald.set_read_timeout(Some(Duration::from_secs(5))).expect("a timeout");
        let layer = JournalLayer::at(&path, "flagsd", str::to_owned).expect("it connects");
        let mut buffer = vec![0u8; MAX_ENTRY + 1];
        prop_assert_eq!(journald.recv(&mut buffer).expect("the probe"), 0);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::warn!(reason = %value, url = %value, "{message}");
        });
        let n = journald.recv(&mut buffer).expect("every event arrives");
        prop_assert!(n <= MAX_ENTRY, "{n} bytes");
        let entry = &buffer[..n];
        prop_assert!(entry.starts_with(b"PRIORITY=4\nSYSLOG_IDENTIFIER=flagsd\nMESSAGE"));
        // A value with a line break is sent with its length: none is longer
        // than the caps.
        let mut rest = entry;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(at);
            if line.iter().all(|b| b.is_ascii_uppercase() || *b == b'_') && after.len() > 9 {
                let length = u64::from_le_bytes(after[1..9].try_into().expect("8 bytes"));
                prop_assert!(length as usize <= MAX_MESSAGE.max(MAX_FIELD) + 16, "{length}");
                rest = &after[(9 + length as usize + 1).min(after.len())..];
            } else {
                prop_assert!(line.len() <= MAX_MESSAGE + 40, "{} bytes", line.len());
                rest = &after[1..];
            }
        }
    }

    #[test]
    fn retry_after_values_of_any_size_parse_or_not_without_panicking(value in text_of_any_size()) {
        let _ = parse_retry_after(&value, SystemTime::now());
    }

    #[test]
    fn a_work_item_of_any_bytes_is_codes_of_its_run_or_dropped(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            prop::collection::vec(any_code(), 1..20)
                .prop_map(|codes| serde_json::json!({"codes": codes}).to_string().into_bytes()),
        ]
    ) {
        let codes = run_codes();
        match read_work(&payload, &codes, None) {
            Ok(parcel) => {
                prop_assert!(payload.len() <= MAX_WORK_ITEM);
                prop_assert!(!parcel.codes.is_empty() && parcel.codes.len() <= MAX_PARCEL);
                prop_assert!(parcel.codes.iter().all(|code| codes.contains(*code)));
            }
            Err((_, why)) => prop_assert!(!why.is_empty()),
        }
    }

    #[test]
    fn outcomes_of_any_content_are_read_within_bounds_and_shown_safely(
        entries in prop::collection::vec(any_outcome(), 0..8),
        raw in prop::collection::vec(any::<u8>(), 0..64),
        as_raw in any::<bool>(),
    ) {
        let codes = run_codes();
        let payload = if as_raw { raw } else { serde_json::to_vec(&entries).expect("JSON") };
        let (results, drops) = read_outcomes(&payload, &codes);
        if payload.len() > MAX_OUTCOMES {
            prop_assert!(results.is_empty() && drops.len() == 1);
        }
        prop_assert!(results.len() + drops.len() <= (4 * MAX_BATCH).max(1));
        for (code, result) in &results {
            prop_assert!(codes.contains(*code) && result.code == code.as_str());
            let texts = [result.message.as_deref(), Some(result.url.as_str()), result.file.as_deref(), result.node.as_deref()];
            for text in texts.into_iter().flatten() {
                prop_assert!(text.len() <= 2048, "{} bytes", text.len());
            }
            let line = result_line(result);
            prop_assert!(!line.chars().any(is_invisible), "{line:?}");
            prop_assert!(line.chars().count() < 700, "{} characters", line.chars().count());
        }
        let _: Vec<CodeResult> = results.into_iter().map(|(_, r)| r).collect();
    }
}
