//! Secrets never show: passwords in URLs (whatever characters they hold),
//! tokens and keys, in any message of any output channel.

use crate::helpers::*;

/// A password with every character that once ended the user information
/// early for a URL parser, leaving the password in the host or the path.
const PASSWORD: &str = "pa#ss/w?rd";

/// Asserts that none of `texts` holds `secret` or the part of it before or
/// after its first special character (what a wrong split would leave).
fn assert_hidden(secret: &str, texts: &[&str]) {
    let pieces: Vec<&str> = secret.split(['#', '/', '?']).filter(|p| p.len() >= 2).collect();
    for text in texts {
        assert!(!text.contains(secret), "the secret shows in:\n{text}");
        for piece in &pieces {
            assert!(
                !text.contains(&format!("{piece}@")) && !text.contains(&format!(":{piece}")),
                "{piece} in:\n{text}"
            );
        }
    }
}

#[test]
fn passwords_with_a_hash_a_slash_or_a_question_mark_are_masked_and_used_as_typed() {
    let server = clean_server();
    let closed = closed_port_url();
    let closed_authority = closed.trim_start_matches("http://").trim_end_matches("/flags").to_owned();
    let out = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["fetch", "BR", "-v", "-o", "out"];
        all.extend_from_slice(args);
        flagsd_in(out.path(), &all, env)
    };

    let proxy = format!("http://user:{PASSWORD}@{closed_authority}");
    let (status, stdout, stderr) = run(&["-s", &server.url(), "--proxy", &proxy], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    let expected = format!("cannot reach proxy http://***@{closed_authority}: connection refused");
    assert!(stdout.contains(&expected), "{stdout}{stderr}");
    assert_hidden(PASSWORD, &[&stdout, &stderr]);

    let (status, stdout, stderr) = run(&["-s", "https://127.0.0.1:9/flags", "--json"], &[("https_proxy", &proxy)]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("cannot reach proxy http://***@{closed_authority}")), "{stdout}{stderr}");
    assert_hidden(PASSWORD, &[&stdout, &stderr]);

    let typed = format!("http://user:{PASSWORD}@{closed_authority}/flags");
    let (status, stdout, stderr) = run(&["-s", &typed], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with(&format!("CUSTOM site: http://***@{closed_authority}/flags\n")), "{stdout}");
    assert_hidden(PASSWORD, &[&stdout, &stderr]);

    // `user:1234/x` is the user information, not the host `user` with a
    // path: the request goes to the host after the last '@'.
    let typed = format!("http://user:1234/x@{}", server.url().trim_start_matches("http://"));
    let (status, stdout, stderr) = run(&["-s", &typed], &[]);
    assert_eq!((status, final_counts(&stdout)), (0, (1, 0, 0)), "{stdout}{stderr}");
    assert!(!stdout.contains("1234") && !stdout.contains("user"), "{stdout}");
}
