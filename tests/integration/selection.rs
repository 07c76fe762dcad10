//! Which codes a run asks for, as the initial report and the server see it.

use crate::helpers::*;

fn initial_lines(args: &[&str]) -> (Vec<String>, u64) {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut full: Vec<&str> = vec!["-s", &url];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = fetch(dir.path(), &full);
    assert!(status == 0 || status == 1, "{stderr}");
    (stdout.lines().skip(1).take(2).map(str::to_owned).collect(), server.hits())
}

#[test]
fn no_codes_means_the_20_most_populous_countries() {
    let (lines, hits) = initial_lines(&[]);
    assert_eq!(lines, ["Searching for 20 flags: from BD to VN", "20 concurrent connections will be used."]);
    assert_eq!(hits, 20);
}

#[test]
fn one_letter_expands_and_duplicates_collapse() {
    let (lines, hits) = initial_lines(&["c", "CN", "cn", "A", "-l", "30"]);
    assert_eq!(lines, ["Searching for 30 flags: from AA to CD", "30 concurrent connections will be used."]);
    assert_eq!(hits, 30);
}

#[test]
fn short_lists_are_spelled_out_and_one_worker_is_singular() {
    let (lines, hits) = initial_lines(&["zw", "br", "BR", "-m", "1"]);
    assert_eq!(lines, ["Searching for 2 flags: BR, ZW", "1 connection will be used."]);
    assert_eq!(hits, 2);
}

#[test]
fn the_pool_never_exceeds_the_number_of_codes() {
    let (lines, _) = initial_lines(&["-a", "-l", "3", "-m", "5000"]);
    assert_eq!(lines, ["Searching for 3 flags: AD, AE, AF", "3 concurrent connections will be used."]);
}

#[test]
fn every_wins_over_all_and_codes() {
    let (lines, hits) = initial_lines(&["BR", "-a", "-e", "-m", "2000"]);
    assert_eq!(lines, ["Searching for 676 flags: from AA to ZZ", "676 concurrent connections will be used."]);
    assert_eq!(hits, 676);
}
