//! The README's examples stay true: each `$ flagsd …` example that runs
//! offline is run, in a directory of its own holding a copy of
//! `config/`, and its output (stdout and stderr) is compared with the
//! README's, line by line once ports, times and dates are blanked out and
//! the lines sorted (the order codes finish in varies). Every example the
//! test cannot run is named in [`NOT_RUN`] with the reason, so a new
//! example is either run or explicitly left out.

use std::path::Path;

use crate::helpers::*;

/// Examples that cannot run here, by their command line, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "flagsd serve -c flagsd.toml &",
        "a daemon with the example's [admin] lines uncommented; tests/integration/admin.rs",
    ),
    ("flagsd trigger -c flagsd.toml world", "a daemon with the example's [admin] lines; tests/integration/control.rs"),
    ("flagsd cancel -c flagsd.toml world", "a run in progress in a daemon; tests/integration/admin.rs"),
    ("flagsd status -c flagsd.toml", "a daemon's answer, with its next runs; tests/integration/explain.rs"),
    ("flagsd reload -c /etc/flagsd/flagsd.toml \"$MAINPID\"", "a daemon of /etc/flagsd; tests/systemd/check"),
];

/// One example: the commands of a block, and the output the README shows
/// after them.
#[derive(Debug)]
struct Example {
    commands: Vec<String>,
    output: Vec<String>,
}

/// The examples of `markdown`: each fenced block whose lines begin with
/// `$ flagsd`, split at each command that shows output.
fn examples(markdown: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut in_block = false;
    let mut current: Option<Example> = None;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            examples.extend(current.take());
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            match &mut current {
                // A command after another's output starts a new example.
                Some(example) if example.output.is_empty() => example.commands.push(command.to_owned()),
                _ => {
                    examples.extend(current.take());
                    current = Some(Example { commands: vec![command.to_owned()], output: Vec::new() });
                }
            }
        } else if let Some(example) = &mut current {
            example.output.push(line.to_owned());
        }
    }
    examples.into_iter().filter(|e| e.commands.iter().any(|c| c.starts_with("flagsd "))).collect()
}

/// `line` with what changes from run to run blanked out: addresses, times,
/// dates.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    // Addresses: http://HOST:PORT, and HOST:PORT after "localhost" or an IP.
    while let Some(at) = rest.find("http://") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 7..];
        let end = after.find(['/', ')', ' ']).unwrap_or(after.len());
        out.push_str("http://ADDRESS");
        rest = &after[end..];
    }
    out.push_str(rest);
    // Elapsed times: digits, a dot, two digits and `s`.
    let words: Vec<String> = out
        .split(' ')
        .map(|word| {
            let number = word.strip_suffix('s').and_then(|w| w.split_once('.'));
            match number {
                Some((whole, part))
                    if !whole.is_empty()
                        && whole.bytes().all(|b| b.is_ascii_digit())
                        && part.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    "TIME".to_owned()
                }
                _ => word.to_owned(),
            }
        })
        .collect();
    words.join(" ")
}

/// The lines of `text` as shapes, sorted.
fn shapes<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut shapes: Vec<String> = lines.into_iter().map(shape).collect();
    shapes.sort();
    shapes
}

/// Runs `command` (a README command line) in `dir`; its status and
/// output. `LOCAL`'s port is one where nothing listens.
fn run(dir: &Path, command: &str, closed: &str) -> (i32, String) {
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    let env = [("FLAGSD_SERVERS__LOCAL", closed)];
    let (status, stdout, stderr) = flagsd_in(dir, &words, &env);
    (status, format!("{stdout}{stderr}"))
}

#[test]
fn the_readme_examples_that_run_offline_print_what_the_readme_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let examples = examples(&readme);
    let closed = closed_port_url();
    let mut ran = 0;
    for example in &examples {
        if example.commands.iter().any(|c| NOT_RUN.iter().any(|(not, _)| c == not)) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::copy(root.join("config/flagsd.toml"), dir.path().join("config/flagsd.toml")).unwrap();
        let mut output = String::new();
        for command in &example.commands {
            let (status, text) = run(dir.path(), command, &closed);
            assert!(matches!(status, 0 | 1), "{command}: status {status}\n{text}");
            output = text;
        }
        assert_eq!(shapes(output.lines()), shapes(example.output.iter().map(String::as_str)), "{example:?}");
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} examples ran: {examples:?}");
    // Every example left out is still in the README (else NOT_RUN is stale).
    for (command, why) in NOT_RUN {
        assert!(examples.iter().any(|e| e.commands.iter().any(|c| c == command)), "{command} ({why}) is gone");
    }
}

#[test]
fn shapes_blank_out_addresses_and_times_only() {
    assert_eq!(shape("DEMO site: http://127.0.0.1:41237/flags"), "DEMO site: http://ADDRESS/flags");
    assert_eq!(shape("Elapsed time: 0.05s"), "Elapsed time: TIME");
    assert_eq!(
        shape("2 errors: 2 connection refused (http://localhost:8000/flags)"),
        "2 errors: 2 connection refused (http://ADDRESS/flags)"
    );
    assert_eq!(shape(" 20 flags downloaded."), " 20 flags downloaded.");
    assert_ne!(shape("  2 unchanged."), shape("  3 unchanged."));
}
