//! The shape of the code, checked: imports point one way, and files stay
//! small enough to read.
//!
//! The dependency rules (see `docs/design.md`) are read off the source: every
//! `crate::…` and `super::…` path outside comments is an edge from the file
//! that names it to the module it names. Re-exports (`pub use`) in a
//! folder's `mod.rs` are the folder's face, not dependencies, and are left
//! out. The rules:
//!
//! - no cycle between top-level modules, nor between the files of a folder;
//! - `model` and `sys` import nothing of the crate;
//! - `engine` imports only `model`;
//! - nothing imports `app` or `daemon` (only the binary does);
//! - `cli` imports only the argument types it assembles;
//! - every `.rs` file has at most 1,200 lines: a generous ceiling that a
//!   file reaches only when it mixes responsibilities (a type's length is
//!   no reason to split it across files);
//! - a type's fields are private to its file: no field is `pub(super)` or
//!   `pub(crate)` (a field other files need is `pub`, or read through a
//!   method);
//! - `lib.rs` and `docs/design.md` name every top-level module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines in a source file.
const MAX_LINES: usize = 1_200;

/// Top-level modules that import nothing of the crate.
const LEAVES: [&str; 2] = ["model", "sys"];

/// Top-level modules nothing else may import.
const TOPS: [&str; 2] = ["app", "daemon"];

/// What `cli` may import: value types only.
const CLI_MAY_IMPORT: [&str; 3] = ["config::args", "testserver::options", "sys::logging::LogFormat"];

/// One source file: its module path and its text.
struct Source {
    /// `["daemon", "admin", "routes"]` for `src/daemon/admin/routes.rs`;
    /// `["daemon"]` for `src/daemon/mod.rs`.
    module: Vec<String>,
    /// Whether it is a folder's `mod.rs`.
    is_mod: bool,
    path: PathBuf,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources() -> Vec<Source> {
    let mut found = Vec::new();
    collect(&src_dir(), &mut Vec::new(), &mut found);
    found
}

fn collect(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("UTF-8 names").to_owned();
        if path.is_dir() {
            prefix.push(name);
            collect(&path, prefix, out);
            prefix.pop();
        } else if path.extension().is_some_and(|e| e == "rs") {
            let is_mod = name == "mod";
            let mut module = prefix.clone();
            if !is_mod && !(prefix.is_empty() && (name == "lib" || name == "main")) {
                module.push(name);
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push(Source { module, is_mod, path, text });
        }
    }
}

/// `text` with comments (doc comments included) and the contents of string
/// and character literals blanked out, line breaks kept: what is left is
/// code, where a `crate::` is a path.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 1;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !prev_is_ident(&chars, i) {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += hashes + 2;
            let closing: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < chars.len() && !chars[i..].iter().take(closing.len()).copied().eq(closing.chars()) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += closing.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                out.push(blank(chars.get(i).copied().unwrap_or(' ')));
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('x', '\n', '\u{1F}'); a lifetime has no closing quote.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// The absolute module paths (`["config", "args", "FetchArgs"]`) that `source`
/// names with `crate::` or `super::`, groups (`crate::a::{b, c::d}`) expanded.
fn imports(source: &Source) -> Vec<Vec<String>> {
    let mut code = code_only(&source.text);
    if source.is_mod {
        // Re-exports are the folder's face: drop `pub use …;` statements.
        while let Some(at) = code.find("pub use ") {
            let end = code[at..].find(';').map_or(code.len(), |e| at + e + 1);
            code.replace_range(at..end, "");
        }
    }
    let mut paths = Vec::new();
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent_of(source))] {
        let mut from = 0;
        while let Some(found) = code[from..].find(anchor) {
            let at = from + found;
            from = at + anchor.len();
            if code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut path = base.clone();
            let mut tail = &code[at + anchor.len()..];
            // `super::super::x`
            while let Some(more) = tail.strip_prefix("super::") {
                path.pop();
                tail = more;
            }
            // `use super::*;` is how a file's own test module sees the file.
            if !(anchor == "super::" && tail.starts_with('*')) {
                expand(&path, tail, &mut paths);
            }
        }
    }
    paths
}

/// Adds the paths that `text` (what follows `prefix::`) names: a path, or a
/// `{…}` group of them, each of which may end in a group again.
fn expand(prefix: &[String], text: &str, out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut rest = text.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        expand(&path, &group[start..i], out);
                        start = i + 1;
                        if c == '}' {
                            return;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            return;
        }
        let segment: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if segment.is_empty() || segment == "self" {
            break;
        }
        path.push(segment.clone());
        rest = &rest[segment.len()..];
        match rest.strip_prefix("::") {
            Some(more) => rest = more.trim_start(),
            None => break,
        }
    }
    if path.len() > prefix.len() || !prefix.is_empty() {
        out.push(path);
    }
}

/// The module `super` names in `source`.
fn parent_of(source: &Source) -> Vec<String> {
    let mut parent = source.module.clone();
    parent.pop();
    parent
}

/// Whether `module` (a path under `src/`) is a module of its own: a file or
/// a folder.
fn is_module(module: &[String]) -> bool {
    let mut path = src_dir();
    for seg in module {
        path.push(seg);
    }
    path.is_dir() || path.with_extension("rs").is_file()
}

/// Edges between the top-level modules, and between the files of each
/// folder (`mod` standing for the folder's `mod.rs`).
fn graphs(sources: &[Source]) -> (Graph, BTreeMap<Vec<String>, Graph>) {
    let mut top = Graph::new();
    let mut folders: BTreeMap<Vec<String>, Graph> = BTreeMap::new();
    for source in sources.iter().filter(|s| !s.module.is_empty()) {
        for target in imports(source) {
            let from = &source.module;
            if target.first() != from.first() {
                if let Some(to) = target.first() {
                    top.entry(from[0].clone()).or_default().insert(to.clone());
                }
                continue;
            }
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let folder = from[..common].to_vec();
            let node = |path: &[String], own_mod: bool| -> String {
                match path.get(common) {
                    Some(child) if !own_mod && is_module(&path[..=common]) => child.clone(),
                    _ => "mod".to_owned(),
                }
            };
            let own = source.is_mod && from.len() == common;
            let (a, b) = (node(from, own), node(&target, false));
            if a != b {
                folders.entry(folder).or_default().entry(a).or_default().insert(b);
            }
        }
    }
    (top, folders)
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// A cycle in `graph`, if there is one, as the list of its nodes.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_form_no_cycle() {
    let (top, _) = graphs(&sources());
    assert!(!top.is_empty(), "no imports found: is the scanner broken?");
    if let Some(cycle) = find_cycle(&top) {
        panic!("import cycle between top-level modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_files_of_each_folder_form_no_cycle() {
    let (_, folders) = graphs(&sources());
    let cycles: Vec<String> = folders
        .iter()
        .filter_map(|(folder, graph)| {
            find_cycle(graph).map(|cycle| format!("src/{}: {}", folder.join("/"), cycle.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles inside folders:\n{}", cycles.join("\n"));
}

#[test]
fn layers_import_only_what_they_may() {
    let (top, _) = graphs(&sources());
    let mut violations = Vec::new();
    for (from, targets) in &top {
        for to in targets {
            if LEAVES.contains(&from.as_str()) {
                violations.push(format!("{from} imports {to}: {from} must import nothing of the crate"));
            }
            if from == "engine" && to != "model" {
                violations.push(format!("engine imports {to}: engine may import only model"));
            }
            if TOPS.contains(&to.as_str()) {
                violations.push(format!("{from} imports {to}: nothing may import {to}"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn cli_imports_only_argument_types() {
    let sources = sources();
    let cli = sources.iter().find(|s| s.module == ["cli"]).expect("src/cli.rs");
    let bad: Vec<String> = imports(cli)
        .into_iter()
        .map(|path| path.join("::"))
        .filter(|path| !CLI_MAY_IMPORT.iter().any(|allowed| path.starts_with(allowed)))
        .collect();
    assert!(bad.is_empty(), "cli.rs may import only {CLI_MAY_IMPORT:?}; it imports {bad:?}");
}

#[test]
fn files_stay_readable_in_size() {
    let too_long: Vec<String> = sources()
        .iter()
        .map(|source| (source, source.text.lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(source, lines)| format!("{}: {lines} lines (at most {MAX_LINES})", source.path.display()))
        .collect();
    assert!(too_long.is_empty(), "{}", too_long.join("\n"));
}

#[test]
fn fields_are_private_to_their_types_file() {
    let mut shared = Vec::new();
    for source in sources() {
        for (n, line) in code_only(&source.text).lines().enumerate() {
            let line = line.trim_start();
            let field = ["pub(super) ", "pub(crate) "].iter().find_map(|p| line.strip_prefix(p));
            let is_field = field.is_some_and(|rest| {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                !name.is_empty() && rest[name.len()..].trim_start().starts_with(':') && !rest.starts_with("fn ")
            });
            if is_field {
                shared.push(format!("{}:{}: {line}", source.path.display(), n + 1));
            }
        }
    }
    assert!(shared.is_empty(), "fields shared beyond their file:\n{}", shared.join("\n"));
}

#[test]
fn the_module_map_is_described_in_lib_rs_and_the_design_guide() {
    let mut top: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(src_dir()).expect("read src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() || (name != "lib" && name != "main") {
            top.insert(name);
        }
    }
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("read lib.rs");
    let design = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/design.md"))
        .expect("read docs/design.md");
    for module in &top {
        assert!(lib.contains(&format!("pub mod {module};")), "lib.rs does not declare {module}");
        assert!(lib.contains(&format!("[`{module}`]")), "lib.rs's module map does not describe {module}");
        let folder =
            if src_dir().join(module).is_dir() { format!("src/{module}/") } else { format!("src/{module}.rs") };
        assert!(design.contains(&folder), "docs/design.md does not describe {folder}");
    }
}

#[test]
fn the_scanner_reads_paths_as_written() {
    let source = Source {
        module: vec!["daemon".into(), "admin".into(), "routes".into()],
        is_mod: false,
        path: PathBuf::from("src/daemon/admin/routes.rs"),
        text: "use crate::model::exit::ExitStatus; // crate::app::nope\n\
               let x = super::auth::check(\"crate::sys\");\n\
               /// [`crate::job`]\n\
               let q = '\"'; let s = \"a\\\"crate::app\"; let l: &'static str = r#\"crate::job\"#;\n\
               /* crate::present */ let m = \"crate::\n  store\";\n\
               f(super::super::metrics::Metrics::new());\n\
               use crate::store::{state::{StateDb, RunRecord}, output,\n  naming::NameRegistry};\n"
            .to_owned(),
    };
    let found: Vec<String> = imports(&source).into_iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "model::exit::ExitStatus",
            "store::state::StateDb",
            "store::state::RunRecord",
            "store::output",
            "store::naming::NameRegistry",
            "daemon::admin::auth::check",
            "daemon::metrics::Metrics::new",
        ]
    );
    let cycle: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), BTreeSet::from([(*b).to_owned()])))
        .collect();
    assert_eq!(find_cycle(&cycle).map(|c| c.len()), Some(4));
    let chain: Graph =
        [("a", "b"), ("b", "c")].iter().map(|(a, b)| ((*a).to_owned(), BTreeSet::from([(*b).to_owned()]))).collect();
    assert_eq!(find_cycle(&chain), None);
}
