//! The names a configuration file gives, read leniently: its batches and
//! its server labels, for the shell completions.
//!
//! Completing must never get in the way: a file that is missing,
//! unreadable, too large or not TOML names nothing, and an entry that is
//! not what it should be is skipped, all without a word. Only the file is
//! read (not the environment's `FLAGSD_…__…` layer), and it is not checked:
//! `check-config` does that.

use std::io::Read as _;
use std::path::Path;

use super::server::SERVER_LABELS;
use super::validate;

/// A name to offer, with a few words about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The name.
    pub name: String,
    /// What it is (a batch's schedule, a label's URL), if known.
    pub about: Option<String>,
}

/// What a configuration file names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfiguredNames {
    /// The batches, in file order.
    pub batches: Vec<Named>,
    /// The server labels: the built-in ones, then those the file adds (a
    /// label the file overrides keeps its place, with the file's URL).
    pub servers: Vec<Named>,
}

/// The largest file read: a configuration is a few kilobytes.
const MAX_FILE: u64 = 1 << 20;

/// What the file at `path` names; with no file (`None`), only the
/// built-in labels.
pub fn configured_names(path: Option<&Path>) -> ConfiguredNames {
    let mut servers: Vec<Named> = SERVER_LABELS
        .iter()
        .map(|(label, url)| Named { name: (*label).to_owned(), about: Some((*url).to_owned()) })
        .chain([Named { name: "DEMO".to_owned(), about: Some("the built-in flag server".to_owned()) }])
        .collect();
    let Some(table) = path.and_then(read_table) else {
        return ConfiguredNames { batches: Vec::new(), servers };
    };
    if let Some(configured) = table.get("servers").and_then(toml::Value::as_table) {
        for (label, entry) in configured {
            let url = entry.as_str().or_else(|| entry.get("url").and_then(toml::Value::as_str));
            let named = Named { name: label.clone(), about: url.map(str::to_owned) };
            match servers.iter_mut().find(|s| s.name.eq_ignore_ascii_case(label)) {
                Some(known) => known.about = named.about,
                None => servers.push(named),
            }
        }
    }
    let batches = table
        .get("batch")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|batch| {
            let name = batch.get("name")?.as_str()?;
            validate::batch_name(name).ok()?;
            let every = batch.get("every").and_then(toml::Value::as_str);
            let about = every.map_or_else(|| "on demand".to_owned(), |every| format!("every {every}"));
            Some(Named { name: name.to_owned(), about: Some(about) })
        })
        .collect();
    ConfiguredNames { batches, servers }
}

/// The file at `path` as a TOML table, if it is one.
fn read_table(path: &Path) -> Option<toml::Table> {
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_FILE + 1).read_to_string(&mut text).ok()?;
    if text.len() as u64 > MAX_FILE {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[Named]) -> Vec<&str> {
        items.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn batches_and_labels_come_from_the_file_and_junk_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flagsd.toml");
        let text = "[servers]\nlocal = \"http://mirror/flags\"\nMIRROR = { url = \"http://m2/flags\" }\n\
                    [[batch]]\nname = \"world\"\nevery = \"1day\"\n[[batch]]\nname = \"adhoc\"\nbogus = 1\n\
                    [[batch]]\nname = \"../evil\"\n[[batch]]\nname = 7\n[[batch]]\ncodes = \"all\"\n";
        std::fs::write(&path, text).unwrap();
        let found = configured_names(Some(&path));
        assert_eq!(names(&found.batches), ["world", "adhoc"]);
        assert_eq!(found.batches[0].about.as_deref(), Some("every 1day"));
        assert_eq!(found.batches[1].about.as_deref(), Some("on demand"));
        assert_eq!(names(&found.servers), ["LOCAL", "REMOTE", "DELAY", "ERROR", "DEMO", "MIRROR"]);
        assert_eq!(found.servers[0].about.as_deref(), Some("http://mirror/flags"));
    }

    #[test]
    fn a_missing_or_broken_file_names_only_the_built_in_labels() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "[[batch]\nname = ").unwrap();
        for path in [None, Some(dir.path().join("missing.toml")), Some(broken), Some(dir.path().to_owned())] {
            let found = configured_names(path.as_deref());
            assert!(found.batches.is_empty(), "{path:?}");
            assert_eq!(found.servers.len(), 5, "{path:?}");
        }
    }
}
