//! The `config` crate's errors as problems that name their key, and every
//! problem of a file at once: serde stops at the first error, so when a
//! configuration does not deserialize, each of its parts is checked alone.

use std::collections::BTreeMap;

use super::error::{ConfigError, Problem};

/// Turns the `config` crate's error into a problem naming the key.
pub(super) fn from_config_error(origin: &str, error: config::ConfigError) -> ConfigError {
    ConfigError { problems: vec![problem(origin, None, error)] }
}

/// The problem `error` describes, in the part at key path `within` (if
/// any) of the configuration from `origin`.
fn problem(origin: &str, within: Option<&str>, error: config::ConfigError) -> Problem {
    let (key, message) = describe(error);
    let (from_environment, key) = match key.map(|k| dotted(&k)) {
        Some(k) if k.starts_with("environment ") => (true, Some(k["environment ".len()..].to_owned())),
        other => (false, other),
    };
    let key = match (within, key) {
        (Some(within), Some(key)) if !key.starts_with(within) => Some(format!("{within}.{key}")),
        (Some(within), None) => Some(within.to_owned()),
        (_, key) => key,
    };
    let origin = match (&key, from_environment) {
        (Some(key), true) => format!("environment FLAGSD_{}", key.replace('.', "__").to_ascii_uppercase()),
        _ => origin.to_owned(),
    };
    Problem { origin, line: None, key, message }
}

/// How one part of a configuration is checked on its own.
#[derive(Debug, Clone, Copy)]
pub(super) enum Part {
    /// A table, checked whole (`[defaults]`).
    Table(fn(config::Value) -> Result<(), config::ConfigError>),
    /// An array of tables, each checked alone (`[[batch]]`).
    List(fn(config::Value) -> Result<(), config::ConfigError>),
}

/// Every problem of `config` (from `origin`), when deserializing the whole
/// stopped at the first one (`first`): each of the `sections` is checked
/// alone, each table of a list alone, and a section that is not one of
/// them is unknown. Problems come sorted by key; `first` is among them, as
/// reported for the whole (it knows best whether a value came from the
/// environment).
pub(super) fn every_problem(
    config: &config::Config,
    origin: &str,
    first: config::ConfigError,
    sections: &[(&str, Part)],
) -> ConfigError {
    let first = problem(origin, None, first);
    let Ok(found) = config.clone().try_deserialize::<BTreeMap<String, config::Value>>() else {
        return ConfigError { problems: vec![first] };
    };
    let mut problems = Vec::new();
    for (name, value) in found {
        match sections.iter().find(|(section, _)| *section == name) {
            None => {
                let known: Vec<&str> = sections.iter().map(|(section, _)| *section).collect();
                let message = format!("unknown section, expected one of {}", known.join(", "));
                problems.push(Problem { origin: origin.to_owned(), line: None, key: Some(name), message });
            }
            Some((_, Part::Table(check))) => problems.extend(table_problems(origin, &name, *check, value)),
            Some((_, Part::List(check))) => match value.into_array() {
                Ok(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        problems.extend(table_problems(origin, &format!("{name}[{i}]"), *check, item));
                    }
                }
                Err(e) => problems.push(problem(origin, Some(&name), e)),
            },
        }
    }
    problems.retain(|p| p.key != first.key || p.message != first.message);
    let covered = match &first.key {
        Some(key) => problems.iter().any(|p| p.key.as_ref() == Some(key)),
        // An unknown section: reported above, by its name.
        None => !problems.is_empty(),
    };
    if !covered {
        problems.push(first);
    }
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    ConfigError { problems }
}

/// Every problem of the table `value` at key path `within`: serde stops at
/// the first bad key of a table, so that key is set aside and the rest
/// checked again, until the rest is good or the culprit cannot be told.
fn table_problems(
    origin: &str,
    within: &str,
    check: fn(config::Value) -> Result<(), config::ConfigError>,
    value: config::Value,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Ok(mut table) = value.clone().into_table() else {
        return check(value).err().map(|e| problem(origin, Some(within), e)).into_iter().collect();
    };
    while let Err(e) = check(config::Value::new(None, table.clone())) {
        let found = problem(origin, Some(within), e);
        let below = found.key.as_deref().and_then(|k| k.strip_prefix(within)).and_then(|k| k.strip_prefix('.'));
        let culprit = below.and_then(|k| k.split(['.', '[']).next()).map(str::to_owned).or_else(|| {
            // serde names an unknown field only in its message.
            let start = found.message.strip_prefix("unknown field `")?;
            start.split('`').next().map(str::to_owned)
        });
        problems.push(found);
        if culprit.and_then(|k| table.remove(&k)).is_none() {
            break;
        }
    }
    problems
}

/// `batch[0]max_req` (as the `config` crate writes some paths) to `batch[0].max_req`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut after_bracket = false;
    for c in key.chars() {
        if after_bracket && c != '.' && c != '[' {
            out.push('.');
        }
        after_bracket = c == ']';
        out.push(c);
    }
    out
}

fn describe(error: config::ConfigError) -> (Option<String>, String) {
    match error {
        config::ConfigError::Type { unexpected, expected, key, origin } => {
            let key = match (origin, key) {
                (Some(o), Some(k)) if o.contains("environment") => Some(format!("environment {k}")),
                (_, k) => k,
            };
            (key, format!("expected {expected}, found {unexpected}"))
        }
        config::ConfigError::At { error, key, .. } => {
            let (inner_key, message) = describe(*error);
            (key.or(inner_key), message)
        }
        config::ConfigError::NotFound(key) => (Some(key), "missing".to_owned()),
        other => (None, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_dotted() {
        assert_eq!(dotted("batch[0]max_req"), "batch[0].max_req");
        assert_eq!(dotted("batch[0].codes[1]"), "batch[0].codes[1]");
        assert_eq!(dotted("a[1][2]b"), "a[1][2].b");
    }
}
