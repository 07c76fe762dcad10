//! Machine-readable results: the `--json` documents of `fetch` and `run`
//! checked against `docs/result.schema.json` (and the schema checked for
//! strictness), and the `--failed` list fed back through `--codes-file`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use flagsd::testserver::{Faults, TestServerOptions};
use serde_json::{Value, json};

use crate::helpers::*;

/// The schema, as shipped.
const SCHEMA: &str = include_str!("../../docs/result.schema.json");

/// The outcomes that are errors (everything but these four).
const NOT_ERRORS: [&str; 4] = ["downloaded", "unchanged", "not_found", "unfinished"];

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

/// A draft 2020-12 validator for the schema that also checks `format`
/// (`date-time`), which the draft leaves to annotation by default.
fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema()).expect("the schema compiles")
}

/// What the schema finds wrong with `document`, one entry per error.
fn violations(document: &Value) -> Vec<String> {
    let validator = validator();
    validator.iter_errors(document).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

fn assert_valid(document: &Value) {
    let problems = violations(document);
    assert!(problems.is_empty(), "the document breaks the schema:\n{}\n{document:#}", problems.join("\n"));
}

/// Parses `stdout`, which must be exactly one JSON document and nothing else.
fn only_document(stdout: &str) -> Value {
    assert!(stdout.starts_with('{') && stdout.ends_with("}\n"), "not one document alone:\n{stdout}");
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a whole number: {value}"))
}

fn entries(job: &Value) -> &Vec<Value> {
    job["codes"].as_array().unwrap_or_else(|| panic!("no codes array in {job}"))
}

/// The codes of `job` whose outcome is an error, in document order.
fn error_codes(job: &Value) -> Vec<String> {
    entries(job)
        .iter()
        .filter(|e| !NOT_ERRORS.contains(&text(&e["outcome"])))
        .map(|e| text(&e["code"]).to_owned())
        .collect()
}

/// Checks what a finished, uninterrupted job says about itself: one entry
/// per code of `asked` (sorted), the URL of each, the status and message
/// each outcome implies, files on disk (relative to `cwd`) matching
/// `bytes`, counts that match the entries and add up, and an exit status
/// of 1 exactly when something failed. Returns the codes by outcome.
fn check_job(job: &Value, base_url: &str, asked: &[&str], cwd: &Path) -> BTreeMap<String, Vec<String>> {
    assert_eq!(text(&job["url"]), base_url);
    assert_eq!(job["interrupted"], false);
    assert_eq!(job["error"], Value::Null);
    assert!(text(&job["started_at"]).ends_with('Z'), "not UTC: {}", job["started_at"]);
    let codes: Vec<&str> = entries(job).iter().map(|e| text(&e["code"])).collect();
    assert_eq!(codes, asked, "one entry per code asked for, sorted");

    let mut by_outcome: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in entries(job) {
        let code = text(&entry["code"]);
        let outcome = text(&entry["outcome"]);
        let lower = code.to_ascii_lowercase();
        assert_eq!(text(&entry["url"]), format!("{base_url}/{lower}/{lower}.gif"), "{entry}");
        assert!(number(&entry["attempts"]) >= 1, "{entry}");
        match outcome {
            "downloaded" => {
                assert_eq!(entry["status"], 200, "{entry}");
                assert_eq!(entry["message"], Value::Null, "{entry}");
                let file = cwd.join(text(&entry["file"]));
                assert_eq!(file.file_name().and_then(|n| n.to_str()), Some(format!("{code}.gif").as_str()));
                let size = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).len();
                assert_eq!(number(&entry["bytes"]), size, "{entry}");
                assert!(size > 0, "{entry}");
            }
            "not_found" => {
                assert_eq!(entry["status"], 404, "{entry}");
                assert_eq!(entry["message"], Value::Null, "{entry}");
                assert_eq!(entry["file"], Value::Null, "{entry}");
                assert_eq!(entry["bytes"], 0, "{entry}");
            }
            "unchanged" | "unfinished" => panic!("unexpected outcome: {entry}"),
            error => {
                let message = text(&entry["message"]);
                assert!(!message.is_empty(), "{entry}");
                assert_eq!(entry["file"], Value::Null, "{entry}");
                assert_eq!(entry["bytes"], 0, "{entry}");
                if error == "http_error" {
                    let status = number(&entry["status"]);
                    assert!(message.starts_with(&format!("HTTP {status} - ")), "{entry}");
                } else {
                    assert_eq!(entry["status"], Value::Null, "{entry}");
                }
            }
        }
        by_outcome.entry(outcome.to_owned()).or_default().push(code.to_owned());
    }

    let counts = &job["counts"];
    let listed = |outcome: &str| by_outcome.get(outcome).map_or(0, Vec::len) as u64;
    assert_eq!(number(&counts["downloaded"]), listed("downloaded"), "{counts}");
    assert_eq!(number(&counts["not_found"]), listed("not_found"), "{counts}");
    assert_eq!(number(&counts["unchanged"]), 0, "{counts}");
    assert_eq!(number(&counts["unfinished"]), 0, "{counts}");
    let errors = error_codes(job).len() as u64;
    assert_eq!(number(&counts["errors"]), errors, "{counts}");
    let total: u64 =
        ["downloaded", "unchanged", "not_found", "errors", "unfinished"].iter().map(|k| number(&counts[*k])).sum();
    assert_eq!(total, asked.len() as u64, "{counts}");
    assert_eq!(job["exit_status"], if errors > 0 { 1 } else { 0 }, "{counts}");
    by_outcome
}

/// The initial report's second line for `codes` (sorted).
fn searching(codes: &[String]) -> String {
    let list = match codes {
        [first, .., last] if codes.len() > 10 => format!("from {first} to {last}"),
        _ => codes.join(", "),
    };
    format!("Searching for {} flag{}: {list}", codes.len(), if codes.len() == 1 { "" } else { "s" })
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn the_schema_is_draft_2020_12_closed_and_described() {
    let schema = schema();
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("not a valid draft 2020-12 schema: {e}");
    }
    let mut problems = Vec::new();
    check_schema_node(&schema, String::new(), &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every object schema under `node` requires each of its properties,
/// describes each, and admits no other (`job` excepted: it is only used
/// flattened, closed by its users' `unevaluatedProperties`).
fn check_schema_node(node: &Value, at: String, problems: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                let names: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
                let required: BTreeSet<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if required != names {
                    problems.push(format!("{at}: required {required:?} is not every property {names:?}"));
                }
                for (name, property) in properties {
                    if property.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                        problems.push(format!("{at}/properties/{name}: no description"));
                    }
                }
                let closed = map.get("additionalProperties") == Some(&Value::Bool(false))
                    || map.get("unevaluatedProperties") == Some(&Value::Bool(false));
                if !closed && at != "/$defs/job" {
                    problems.push(format!("{at}: admits properties it does not list"));
                }
            }
            for (key, child) in map {
                check_schema_node(child, format!("{at}/{key}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_schema_node(child, format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

#[test]
fn fetch_json_of_a_mixed_run_validates_and_states_the_facts() {
    let server = server(TestServerOptions {
        faults: Faults { error_rate: 0.5, ..Faults::default() },
        seed: 17,
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = fetch(dir.path(), &["-e", "-l", "60", "--json", "-s", &server.url()]);
    let document = only_document(&stdout);
    assert_valid(&document);
    assert_eq!(stderr, "");
    assert_eq!(document["schema_version"], 1);
    assert_eq!(document["command"], "fetch");
    assert_eq!(document["server"], "CUSTOM");
    assert_eq!(document["run_id"], Value::Null);

    let asked: Vec<String> = flagsd::model::codes::every_code().iter().take(60).map(ToString::to_string).collect();
    let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
    let by_outcome = check_job(&document, &server.url(), &asked, dir.path());
    let kinds: Vec<&str> = by_outcome.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["downloaded", "http_error", "not_found"], "a mixed run: {document:#}");
    for entry in entries(&document).iter().filter(|e| e["outcome"] == "http_error") {
        assert_eq!(entry["status"], 418, "{entry}");
        assert_eq!(entry["message"], "HTTP 418 - I'm a Teapot", "{entry}");
    }
    assert_eq!(status, 1);
    assert_eq!(document["exit_status"], status);

    // Only the downloaded codes left a file, and each request is counted once.
    let saved: Vec<String> = by_outcome["downloaded"].iter().map(|c| format!("{c}.gif")).collect();
    assert_eq!(files_in(dir.path()), saved);
    assert_eq!(assert_only_complete_flags(dir.path()), saved.len());
    let attempts: u64 = entries(&document).iter().map(|e| number(&e["attempts"])).sum();
    assert_eq!(server.hits(), attempts);
}

#[test]
fn run_json_validates_keeps_file_order_and_exits_with_the_worst_status() {
    let good = clean_server();
    let teapot = faulty(Faults { error_rate: 1.0, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the batch "mid" wants its output directory.
    let blocker = write_file(dir.path(), "blocker", "not a directory");
    let config = format!(
        "[defaults]\noutput = \"out\"\n\n\
         [[batch]]\nname = \"zeta\"\ncodes = [\"BR\", \"ZZ\"]\nserver = \"{good}\"\n\n\
         [[batch]]\nname = \"mid\"\ncodes = [\"CL\"]\nserver = \"{good}\"\noutput = \"{blocker}\"\n\n\
         [[batch]]\nname = \"alpha\"\ncodes = [\"AR\", \"BR\"]\nserver = \"{teapot}\"\n",
        good = good.url(),
        teapot = teapot.url(),
        blocker = path_str(&blocker),
    );
    write_file(dir.path(), "flagsd.toml", &config);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml", "--json"], &[]);
    let document = only_document(&stdout);
    assert_valid(&document);
    assert_eq!(document["command"], "run");

    let batches = document["batches"].as_array().expect("a batches array");
    let names: Vec<&str> = batches.iter().map(|b| text(&b["name"])).collect();
    assert_eq!(names, ["zeta", "mid", "alpha"], "batches in file order");
    let statuses: Vec<u64> = batches.iter().map(|b| number(&b["exit_status"])).collect();
    assert_eq!(statuses, [0, 3, 1]);
    assert_eq!(document["exit_status"], 3, "the worst batch status");
    assert_eq!(status, 3);

    let zeta = check_job(&batches[0], &good.url(), &["BR", "ZZ"], dir.path());
    assert_eq!((&zeta["downloaded"], &zeta["not_found"]), (&vec!["BR".to_owned()], &vec!["ZZ".to_owned()]));
    let alpha = check_job(&batches[2], &teapot.url(), &["AR", "BR"], dir.path());
    assert_eq!(alpha.keys().collect::<Vec<_>>(), ["http_error"]);
    let run_ids: BTreeSet<u64> = [&batches[0], &batches[2]].iter().map(|b| number(&b["run_id"])).collect();
    assert_eq!(run_ids.len(), 2, "each batch is its own run");

    let mid = &batches[1];
    assert!(text(&mid["error"]).contains(path_str(&blocker)), "{mid}");
    assert_eq!(entries(mid).len(), 0);
    assert!(stderr.contains("*** Error in batch mid: "), "{stderr}");
    assert_eq!((good.hits(), teapot.hits()), (2, 2));
}

/// `document` with the member at `pointer` (`/a/0/b`) changed by `change`,
/// which gets the parent object and the member's name.
fn edited(document: &Value, pointer: &str, change: impl FnOnce(&mut serde_json::Map<String, Value>, &str)) -> Value {
    let mut copy = document.clone();
    let (parent, name) = pointer.rsplit_once('/').expect("a JSON pointer");
    let object = copy.pointer_mut(parent).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("no {parent}"));
    change(object, name);
    copy
}

fn renamed(document: &Value, pointer: &str, new_name: &str) -> Value {
    edited(document, pointer, |object, name| {
        let value = object.remove(name).unwrap_or_else(|| panic!("no member {name}"));
        object.insert(new_name.to_owned(), value);
    })
}

fn added(document: &Value, pointer: &str, value: Value) -> Value {
    edited(document, pointer, |object, name| assert!(object.insert(name.to_owned(), value).is_none(), "{name}"))
}

fn removed(document: &Value, pointer: &str) -> Value {
    edited(document, pointer, |object, name| assert!(object.remove(name).is_some(), "no member {name}"))
}

fn replaced(document: &Value, pointer: &str, value: Value) -> Value {
    edited(document, pointer, |object, name| assert!(object.insert(name.to_owned(), value).is_some(), "{name}"))
}

#[test]
fn documents_that_break_the_schema_are_rejected() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, _) = fetch(dir.path(), &["BR", "ZZ", "--json", "-s", &server.url()]);
    assert_eq!(status, 0);
    let fetch_doc = only_document(&stdout);
    assert_valid(&fetch_doc);
    // The same job as the one batch of a `run` document.
    let mut job = fetch_doc.clone();
    let members = job.as_object_mut().expect("an object");
    members.remove("schema_version");
    members.remove("command");
    members.insert("name".to_owned(), json!("b"));
    let run_doc = json!({ "schema_version": 1, "command": "run", "exit_status": 0, "batches": [job] });
    assert_valid(&run_doc);

    let broken = [
        ("a renamed job field", renamed(&fetch_doc, "/elapsed_seconds", "elapsed")),
        ("a renamed code field", renamed(&fetch_doc, "/codes/0/bytes", "size")),
        ("a renamed count", renamed(&fetch_doc, "/counts/not_found", "missing")),
        ("an extra top-level field", added(&fetch_doc, "/extra", json!(true))),
        ("an extra code field", added(&fetch_doc, "/codes/1/etag", Value::Null)),
        ("an extra count", added(&fetch_doc, "/counts/skipped", json!(0))),
        ("a missing nullable field", removed(&fetch_doc, "/run_id")),
        ("a missing code field", removed(&fetch_doc, "/codes/0/message")),
        ("another schema version", replaced(&fetch_doc, "/schema_version", json!(2))),
        ("a fetch document calling itself run", replaced(&fetch_doc, "/command", json!("run"))),
        ("an unknown outcome", replaced(&fetch_doc, "/codes/0/outcome", json!("ok"))),
        ("a lower-case code", replaced(&fetch_doc, "/codes/0/code", json!("br"))),
        ("a status as a string", replaced(&fetch_doc, "/codes/0/status", json!("200"))),
        ("negative attempts", replaced(&fetch_doc, "/codes/0/attempts", json!(-1))),
        ("fractional connections", replaced(&fetch_doc, "/connections", json!(2.5))),
        ("a start that is no date", replaced(&fetch_doc, "/started_at", json!("yesterday"))),
        ("an unknown exit status", replaced(&fetch_doc, "/exit_status", json!(4))),
        ("a renamed batch name", renamed(&run_doc, "/batches/0/name", "batch")),
        ("a fetch field in a batch", added(&run_doc, "/batches/0/command", json!("fetch"))),
        ("a job field at the top of run", added(&run_doc, "/server", json!("DEMO"))),
        ("a run without its status", removed(&run_doc, "/exit_status")),
        ("a bad batch name", replaced(&run_doc, "/batches/0/name", json!(".hidden"))),
    ];
    for (what, document) in &broken {
        assert!(!violations(document).is_empty(), "{what} was accepted:\n{document:#}");
    }
}

#[test]
fn the_failed_list_feeds_codes_file_until_nothing_fails() {
    let flaky = server(TestServerOptions {
        faults: Faults { error_rate: 0.5, ..Faults::default() },
        seed: 5,
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let failed = dir.path().join("failed.txt");
    let failed_arg = path_str(&failed);

    let (status, stdout, stderr) = fetch(&out, &["B", "C", "--json", "--failed", failed_arg, "-s", &flaky.url()]);
    assert_eq!(status, 1, "{stderr}");
    let document = only_document(&stdout);
    assert_valid(&document);
    let errors = error_codes(&document);
    assert!(!errors.is_empty() && errors.len() < 52, "{errors:?}");
    let list = std::fs::read_to_string(&failed).expect("the failed list is written");
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "not sorted: {list}");
    assert_eq!(list, errors.iter().map(|c| format!("{c}\n")).collect::<String>());

    // The list read back and rewritten in place: by `--codes-file` when the
    // run starts, by `--failed` when it ends.
    let clean = server(TestServerOptions { record: true, ..TestServerOptions::default() });
    let (status, stdout, stderr) =
        fetch(&out, &["-v", "--codes-file", failed_arg, "--failed", failed_arg, "-s", &clean.url()]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(report_lines(&stdout)[1], searching(&errors), "{stdout}");
    let verbose = verbose_lines(&stdout);
    assert_eq!(verbose.keys().collect::<Vec<_>>(), errors.iter().collect::<Vec<_>>());
    for (code, lines) in &verbose {
        let lower = code.to_ascii_lowercase();
        let not_found = format!("{code} not found: {}/{lower}/{lower}.gif", clean.url());
        assert!(lines == &[format!("{code} OK")] || lines == &[not_found], "{lines:?}");
    }
    let mut paths: Vec<String> = clean.requests().into_iter().map(|(path, _)| path).collect();
    paths.sort();
    let expected: Vec<String> =
        errors.iter().map(|c| c.to_ascii_lowercase()).map(|l| format!("/flags/{l}/{l}.gif")).collect();
    assert_eq!(paths, expected);
    assert_eq!(std::fs::read_to_string(&failed).expect("the failed list is rewritten"), "");

    // Together the two runs saved every country whose code starts with B or C.
    let countries = flagsd::model::codes::all_countries().iter().filter(|c| c.as_str().starts_with(['B', 'C'])).count();
    assert_eq!(assert_only_complete_flags(&out), countries);
}

#[test]
fn codes_file_dash_reads_stdin_with_the_codes_given_as_arguments() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let out = flagsd()
        .args(["fetch", "-v", "--codes-file", "-", "ZW", "-s", &server.url(), "-o", path_str(dir.path())])
        .write_stdin("br # Brazil\n\nAR,cl\n")
        .output()
        .expect("flagsd runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report_lines(&stdout)[1], "Searching for 4 flags: AR, BR, CL, ZW");
    let verbose = verbose_lines(&stdout);
    assert_eq!(verbose.keys().collect::<Vec<_>>(), ["AR", "BR", "CL", "ZW"]);
    assert!(verbose.iter().all(|(code, lines)| lines == &[format!("{code} OK")]), "{verbose:?}");
    assert_eq!(server.hits(), 4);
}

#[test]
fn an_empty_codes_file_fetches_nothing_and_exits_0() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let comments = write_file(dir.path(), "comments.txt", "# nothing failed last time\n\n");
    let (status, stdout, stderr) = fetch(&out, &["--codes-file", path_str(&comments), "-s", &server.url()]);
    assert_eq!(status, 0, "{stderr}");
    assert!(report_lines(&stdout)[1].starts_with("Searching for 0 flags"), "{stdout}");
    assert_eq!(final_counts(&stdout), (0, 0, 0));

    let empty = write_file(dir.path(), "empty.txt", "");
    let failed = dir.path().join("failed.txt");
    let args = ["--codes-file", path_str(&empty), "--json", "--failed", path_str(&failed), "-s", &server.url()];
    let (status, stdout, stderr) = fetch(&out, &args);
    assert_eq!(status, 0, "{stderr}");
    let document = only_document(&stdout);
    assert_valid(&document);
    assert_eq!(document["codes"], json!([]));
    assert_eq!(
        document["counts"],
        json!({"downloaded": 0, "unchanged": 0, "not_found": 0, "errors": 0, "unfinished": 0})
    );
    assert_eq!(document["exit_status"], 0);
    assert_eq!(std::fs::read_to_string(&failed).expect("an empty failed list"), "");
    // Not the 20 most populous countries, the default without codes.
    assert_eq!(server.hits(), 0);
    assert_eq!(files_in(&out), Vec::<String>::new());
}

#[test]
fn a_bad_word_in_a_codes_file_is_a_usage_error_naming_file_and_line() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "codes.txt", "# retry these\nBR\nAR, BRA cl\n");
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["fetch", "--codes-file", "codes.txt", "-s", &server.url(), "-o", "out"], &[]);
    assert_eq!(status, 2);
    assert_eq!(
        stderr.lines().next(),
        Some("*** Usage error: codes.txt:3: 'BRA': each CC argument must be A to Z or AA to ZZ.")
    );
    assert_eq!(stdout, "");

    let out = flagsd()
        .current_dir(dir.path())
        .args(["fetch", "--codes-file", "-", "-s", &server.url(), "-o", "out"])
        .write_stdin("BR\n\n  x1 # not a code\n")
        .output()
        .expect("flagsd runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).expect("utf-8 output");
    assert_eq!(stderr.lines().next(), Some("*** Usage error: -:3: 'x1': each CC argument must be A to Z or AA to ZZ."));
    assert_eq!(server.hits(), 0);
}

#[test]
fn a_missing_codes_file_is_a_usage_error_naming_it() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) =
        flagsd_in(dir.path(), &["fetch", "--codes-file", "no-such-list.txt", "-s", &server.url(), "-o", "out"], &[]);
    assert_eq!(status, 2);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("*** Usage error: --codes-file 'no-such-list.txt': cannot read it: "), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(server.hits(), 0);
}

#[test]
fn a_failed_list_in_a_missing_directory_is_fatal_after_the_report() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let failed = dir.path().join("missing").join("failed.txt");
    let message = format!("cannot write the list of failed codes to '{}': ", failed.display());

    let (status, stdout, stderr) = fetch(&out, &["BR", "--failed", path_str(&failed), "-s", &server.url()]);
    assert_eq!(status, 3);
    let expected = [
        format!("CUSTOM site: {}", server.url()),
        "Searching for 1 flag: BR".to_owned(),
        "1 connection will be used.".to_owned(),
        "--------------------".to_owned(),
        "  1 flag downloaded.".to_owned(),
        "Elapsed time: *".to_owned(),
    ];
    assert_eq!(report_lines(&stdout), expected);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("*** Error: {message}")), "{stderr}");
    assert_eq!(assert_only_complete_flags(&out), 1);
    assert!(!dir.path().join("missing").exists());

    // With --json the document is still printed, with the status the
    // process exits with.
    let (status, stdout, stderr) = fetch(&out, &["BR", "--json", "--failed", path_str(&failed), "-s", &server.url()]);
    assert_eq!(status, 3);
    let document = only_document(&stdout);
    assert_valid(&document);
    assert_eq!(document["exit_status"], status);
    assert!(text(&document["error"]).starts_with(&message), "{document:#}");
    assert_eq!(document["counts"]["downloaded"], 1);
    assert!(stderr.starts_with(&format!("*** Error: {message}")), "{stderr}");
}

#[test]
fn a_failed_list_goes_through_fifos_and_symlinks_without_replacing_them() {
    use std::os::unix::fs::FileTypeExt as _;
    let server = faulty(Faults { error_rate: 1.0, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let fifo = dir.path().join("failed.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A reader opened first (without waiting for a writer) lets flagsd's
    // open go through; once flagsd is gone, reading gets what it wrote.
    let mut reader = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::File::options().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap()
    };
    let (status, _, stderr) = fetch(&out, &["BR", "--failed", path_str(&fifo), "-s", &server.url()]);
    assert_eq!(status, 1, "{stderr}");
    let mut list = String::new();
    std::io::Read::read_to_string(&mut reader, &mut list).unwrap();
    assert_eq!(list, "BR\n");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");

    // A symbolic link is written through, like `>` does, and stays a link.
    let target = dir.path().join("target.txt");
    std::fs::write(&target, "old contents, longer than the list\n").unwrap();
    let link = dir.path().join("failed.link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (status, _, stderr) = fetch(&out, &["ZZ", "--failed", path_str(&link), "-s", &server.url()]);
    assert_eq!(status, 1, "{stderr}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "ZZ\n");
}

#[test]
fn a_codes_file_is_read_within_bounds() {
    let server = clean_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let url = server.url();
    let usage = |file: &str| {
        let (status, stdout, stderr) = fetch(&out, &["--codes-file", file, "-s", &url]);
        assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
        stderr.lines().next().unwrap_or_default().to_owned()
    };
    // /dev/zero would never end: reading stops at 1 MiB.
    assert_eq!(
        usage("/dev/zero"),
        "*** Usage error: --codes-file '/dev/zero': larger than 1048576 bytes: not a list of codes"
    );
    let long = write_file(dir.path(), "long.txt", &format!("BR\n{}\n", "\0".repeat(100_000)));
    assert_eq!(
        usage(path_str(&long)),
        format!("*** Usage error: --codes-file '{}': line 2 is longer than 4096 bytes", long.display())
    );
    // The bad word is shown cut short, its control characters escaped.
    let word = write_file(dir.path(), "word.txt", &format!("BR {}\n", "\u{1b}x".repeat(50)));
    let expected = format!("*** Usage error: {}:1: '{}…': each CC argument", word.display(), "\\u{1b}x".repeat(10));
    assert!(usage(path_str(&word)).starts_with(&expected), "{}", usage(path_str(&word)));
    assert_eq!(server.hits(), 0);
}
