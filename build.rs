//! Embeds the flag data set under `assets/flags/` into the binary.
//!
//! Generates `$OUT_DIR/dataset.rs`: a table of `(path, bytes)` pairs sorted by
//! path, where `path` is relative to `assets/` (for example `flags/ad/ad.gif`).
//! The built-in test server looks files up in it, so `flagsd testserver` and
//! `fetch -s DEMO` work without any file beside the binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let assets = manifest.join("assets");
    let flags = assets.join("flags");
    println!("cargo:rerun-if-changed={}", flags.display());

    let mut files = Vec::new();
    collect(&flags, &mut files);
    let mut entries: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&assets).expect("under assets").to_string_lossy().replace('\\', "/");
            (rel, p)
        })
        .collect();
    entries.sort();

    let mut code = String::from("/// Embedded data set: `(path under assets/, contents)`, sorted by path.\n");
    code.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, path) in &entries {
        writeln!(code, "    ({rel:?}, include_bytes!({:?})),", path.display().to_string()).expect("write to string");
    }
    code.push_str("];\n");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("dataset.rs");
    fs::write(&out, code).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
