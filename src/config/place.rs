//! Where each value of a configuration was set, and problems said there.
//!
//! A value comes from a line and column of the file, from an environment
//! variable (`FLAGSD_DEFAULTS__MAX_REQ`), from a command-line option
//! (`--output`), or from the built-in defaults. The loader records the
//! place of every key it reads ([`Places`]); a problem found later, by
//! key, is then said at the place that set the value:
//! `flagsd.toml:12:11: batch[1].max_req: must be >= 1`, or
//! `environment variable FLAGSD_DEFAULTS__MAX_REQ: must be >= 1`.

use std::collections::BTreeMap;

use super::error::Problem;

/// Where a value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In the file, at a line and a column (both from 1; the column counts
    /// characters).
    File {
        /// The line.
        line: usize,
        /// The column.
        column: usize,
    },
    /// In an environment variable.
    Environment {
        /// The variable's name (`FLAGSD_DEFAULTS__MAX_REQ`).
        variable: String,
        /// The key path it sets (`defaults.max_req`).
        key: String,
    },
    /// On the command line, by an option (`--output`).
    Flag(&'static str),
}

impl Place {
    /// The place of byte `offset` in the file's `text`.
    pub fn in_text(text: &str, offset: usize) -> Self {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self::File { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
    }

    /// Whether the value was set in the file.
    pub fn is_file(&self) -> bool {
        matches!(self, Self::File { .. })
    }

    /// Whether the value was set by an environment variable (text, to be
    /// parsed as the key's type).
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Environment { .. })
    }

    /// The place as a note after a value: `flagsd.toml:3:10`,
    /// `environment variable FLAGSD_STATE__DIR`, `option --output`.
    pub fn describe(&self, origin: &str) -> String {
        match self {
            Self::File { line, column } => format!("{origin}:{line}:{column}"),
            Self::Environment { variable, .. } => format!("environment variable {variable}"),
            Self::Flag(flag) => format!("option {flag}"),
        }
    }
}

/// A problem with `key` (if any) of the configuration read from `origin`,
/// said at `place`: the file's line and column, or the variable or option
/// that set the value. Without a place (a built-in default), at the file.
/// A variable names its key, so the key is left out when the variable
/// sets that very key.
pub fn problem_at(origin: &str, place: Option<&Place>, key: Option<&str>, message: impl Into<String>) -> Problem {
    let message = message.into();
    let key = key.map(str::to_owned);
    match place {
        Some(Place::File { line, column }) => {
            Problem { origin: origin.to_owned(), line: Some(*line), column: Some(*column), key, message }
        }
        Some(Place::Environment { variable, key: set }) => {
            let named = key.as_deref().is_some_and(|key| key.eq_ignore_ascii_case(set));
            Problem {
                origin: format!("environment variable {variable}"),
                line: None,
                column: None,
                key: if named { None } else { key },
                message,
            }
        }
        Some(Place::Flag(flag)) => Problem { origin: format!("option {flag}"), line: None, column: None, key, message },
        None => Problem { origin: origin.to_owned(), line: None, column: None, key, message },
    }
}

/// The key path around `key`: `batch[0].codes[1]` is in `batch[0].codes`,
/// which is in `batch[0]`, in `batch`.
fn parent(key: &str) -> Option<&str> {
    key.rfind(['.', '[']).filter(|i| *i > 0).map(|i| &key[..i])
}

/// The place of each value a configuration sets, by key path
/// (`batch[0].max_req`, compared without regard to case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    by_key: BTreeMap<String, Place>,
}

impl Places {
    /// Records that `key` was set at `place`.
    pub fn insert(&mut self, key: &str, place: Place) {
        self.by_key.insert(key.to_ascii_lowercase(), place);
    }

    /// Where `key` was set, else where the nearest key around it was (a
    /// batch's table for a key it leaves to its default); `None` for a
    /// built-in default.
    pub fn of(&self, key: &str) -> Option<&Place> {
        let mut key = Some(key);
        while let Some(k) = key {
            if let Some(place) = self.by_key.get(&k.to_ascii_lowercase()) {
                return Some(place);
            }
            key = parent(k);
        }
        None
    }

    /// Where `key` itself was set: `None` when it was not (a default).
    pub fn exactly(&self, key: &str) -> Option<&Place> {
        self.by_key.get(&key.to_ascii_lowercase())
    }

    /// Whether the file set anything at all.
    pub fn any_in_file(&self) -> bool {
        self.by_key.values().any(Place::is_file)
    }

    /// A problem with `key` of the configuration from `origin`, said where
    /// the value was set ([`Places::of`]).
    pub fn problem(&self, origin: &str, key: &str, message: impl Into<String>) -> Problem {
        problem_at(origin, self.of(key), Some(key), message)
    }
}

/// Sorts `problems` as a reader meets them: in the file's order, then the
/// others (environment, options, defaults) in the order they were found.
pub fn in_file_order(problems: &mut [Problem]) {
    problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns_of_characters() {
        let text = "a = 1\n\u{e9}t\u{e9} = \"x\"\n";
        assert_eq!(Place::in_text(text, 0), Place::File { line: 1, column: 1 });
        assert_eq!(Place::in_text(text, 4), Place::File { line: 1, column: 5 });
        // "été = " is 8 bytes and 6 characters.
        assert_eq!(Place::in_text(text, 6 + 8), Place::File { line: 2, column: 7 });
        assert_eq!(Place::in_text(text, 1000), Place::File { line: 3, column: 1 });
        assert_eq!(Place::in_text(text, 7), Place::File { line: 2, column: 1 });
    }

    #[test]
    fn a_key_left_to_its_default_is_found_at_its_table() {
        let mut places = Places::default();
        places.insert("batch[0]", Place::File { line: 7, column: 1 });
        places.insert("servers.MIRROR", Place::File { line: 2, column: 1 });
        assert_eq!(places.of("batch[0].output"), Some(&Place::File { line: 7, column: 1 }));
        assert_eq!(places.of("batch[0].codes[3]"), Some(&Place::File { line: 7, column: 1 }));
        assert_eq!(places.of("servers.mirror.ca_file"), Some(&Place::File { line: 2, column: 1 }));
        assert_eq!(places.exactly("batch[0].output"), None);
        assert_eq!(places.of("state.dir"), None);
        assert_eq!(places.of("batch[1]"), None);
    }

    #[test]
    fn problems_are_said_where_the_value_was_set() {
        let mut places = Places::default();
        places.insert("defaults.max_req", Place::File { line: 3, column: 11 });
        let variable = Place::Environment { variable: "FLAGSD_FLEET__NATS".into(), key: "fleet.nats".into() };
        places.insert("fleet.nats", variable);
        places.insert("defaults.output", Place::Flag("--output"));
        let said = |key: &str| places.problem("f.toml", key, "bad").to_string();
        assert_eq!(said("defaults.max_req"), "f.toml:3:11: defaults.max_req: bad");
        assert_eq!(said("fleet.nats"), "environment variable FLAGSD_FLEET__NATS: bad");
        assert_eq!(said("fleet.nats[1]"), "environment variable FLAGSD_FLEET__NATS: fleet.nats[1]: bad");
        assert_eq!(said("defaults.output"), "option --output: defaults.output: bad");
        assert_eq!(said("state.dir"), "f.toml: state.dir: bad");
        let deeper =
            Place::Environment { variable: "FLAGSD_SERVERS__M__CA_FILE".into(), key: "servers.m.ca_file".into() };
        assert_eq!(
            problem_at("f.toml", Some(&deeper), Some("servers.M"), "missing key url").to_string(),
            "environment variable FLAGSD_SERVERS__M__CA_FILE: servers.M: missing key url"
        );
    }

    #[test]
    fn problems_sort_in_file_order_then_the_others() {
        let mut places = Places::default();
        places.insert("a", Place::File { line: 9, column: 1 });
        places.insert("b", Place::File { line: 2, column: 5 });
        places.insert("c", Place::File { line: 2, column: 1 });
        let mut problems: Vec<Problem> =
            ["x", "a", "b", "y", "c"].iter().map(|k| places.problem("f", k, "m")).collect();
        in_file_order(&mut problems);
        let keys: Vec<_> = problems.iter().filter_map(|p| p.key.as_deref()).collect();
        assert_eq!(keys, ["c", "b", "a", "x", "y"]);
    }
}
