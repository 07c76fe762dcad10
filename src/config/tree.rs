//! The layered configuration as one tree of values, each with its
//! [`Place`]: the file's TOML values with their line and column, and the
//! `FLAGSD_{TABLE}__{KEY}` environment variables laid over them.
//!
//! Values keep their TOML types: nothing is converted here. A variable's
//! value is text, which the reader ([`super::reader`]) parses as the type
//! its key takes.
//!
//! Written here rather than with the `config` crate, which layered the
//! file and the environment before: it turned every value into a loosely
//! typed one (`"yes"` read as a boolean, 2.5 as the integer 3) and forgot
//! where each came from. The `toml` crate's spanned document gives both
//! the types and the places.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::Problem;
use super::place::{Place, problem_at};

/// A value and where it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was set.
    pub place: Place,
}

/// A value of the file, as TOML types it, or a variable's text (a string).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    String(String),
    /// An integer; `value` is `None` when it does not fit in 64 bits.
    Integer {
        /// The integer.
        value: Option<i64>,
        /// As written.
        text: String,
    },
    /// A float, as written (no key takes one).
    Float(String),
    /// A boolean.
    Boolean(bool),
    /// A date or time, as written (no key takes one).
    Datetime(String),
    /// An array.
    Array(Vec<Node>),
    /// A table, its entries in the order of the file (then of the variables).
    Table(Vec<Entry>),
}

/// A key of a table, where the key is written, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key, as written.
    pub key: String,
    /// Where the key is written (or the variable that set it).
    pub place: Place,
    /// The value.
    pub node: Node,
}

/// The entries of the file's document `table`, parsed from `text`.
pub fn from_toml(text: &str, table: &DeTable<'_>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            place: Place::in_text(text, key.span().start),
            node: node(text, value),
        })
        .collect();
    entries.sort_by_key(|e| match e.place {
        Place::File { line, column } => (line, column),
        _ => (usize::MAX, usize::MAX),
    });
    entries
}

fn node(text: &str, value: &Spanned<DeValue<'_>>) -> Node {
    let place = Place::in_text(text, value.span().start);
    let value = match value.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(n) => {
            Value::Integer { value: i64::from_str_radix(n.as_str(), n.radix()).ok(), text: n.to_string() }
        }
        DeValue::Float(f) => Value::Float(f.to_string()),
        DeValue::Boolean(b) => Value::Boolean(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|item| node(text, item)).collect()),
        DeValue::Table(table) => Value::Table(from_toml(text, table)),
    };
    Node { value, place }
}

/// Lays the configuration variables of `env` over `root`: each
/// `FLAGSD_{TABLE}__{KEY}` (more `__` for a deeper key, as in
/// `FLAGSD_SERVERS__MIRROR__CA_FILE`) sets that key, whatever the file
/// says, as text. The name is taken in lower case, and matches a server
/// label in any case. A server given as a URL in the file becomes the
/// table `{ url = "…" }` when a variable sets a key of it, and a variable
/// that gives a server as a URL sets only the `url` of the file's table.
/// Variables without `__` are not configuration (`FLAGSD_LOG`) and are
/// left alone; a variable that cannot set a key is a problem.
pub fn apply_environment(
    root: &mut Vec<Entry>,
    env: impl IntoIterator<Item = (String, String)>,
    origin: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut variables: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name.starts_with("FLAGSD_") && name.contains("__")).collect();
    variables.sort();
    for (variable, text) in variables {
        let parts: Vec<String> = variable["FLAGSD_".len()..].split("__").map(str::to_ascii_lowercase).collect();
        let place = Place::Environment { variable: variable.clone(), key: parts.join(".") };
        if parts.iter().any(String::is_empty) {
            let message = "not a configuration key: FLAGSD_TABLE__KEY, each part not empty";
            problems.push(problem_at(origin, Some(&place), None, message));
            continue;
        }
        let node = Node { value: Value::String(text), place: place.clone() };
        if let Err(message) = set(root, "", &parts, node) {
            problems.push(problem_at(origin, Some(&place), None, message));
        }
    }
    problems
}

/// Sets the key path `parts` of the table `entries` (at key path `within`)
/// to `node`; why not, when a key on the way is not a table.
fn set(entries: &mut Vec<Entry>, within: &str, parts: &[String], node: Node) -> Result<(), String> {
    let Some((first, rest)) = parts.split_first() else { return Ok(()) };
    let path = if within.is_empty() { first.clone() } else { format!("{within}.{first}") };
    let a_server = within == "servers";
    // Keys are lower case, as the variable's name is made; a server label
    // is whatever case the file gives it.
    let same = |e: &Entry| if a_server { e.key.eq_ignore_ascii_case(first) } else { e.key == *first };
    let index = match entries.iter().position(same) {
        Some(index) => index,
        None if rest.is_empty() => {
            entries.push(Entry { key: first.clone(), place: node.place.clone(), node });
            return Ok(());
        }
        None => {
            let table = Node { value: Value::Table(Vec::new()), place: node.place.clone() };
            entries.push(Entry { key: first.clone(), place: node.place.clone(), node: table });
            entries.len() - 1
        }
    };
    let entry = &mut entries[index];
    if a_server && matches!(entry.node.value, Value::String(_)) && !rest.is_empty() {
        let url = Entry { key: "url".to_owned(), place: entry.node.place.clone(), node: entry.node.clone() };
        entry.node = Node { value: Value::Table(vec![url]), place: entry.node.place.clone() };
    }
    match (&mut entry.node.value, rest.is_empty()) {
        (Value::Table(table), true) if a_server => set(table, &path, &["url".to_owned()], node),
        (_, true) => {
            entry.place = node.place.clone();
            entry.node = node;
            Ok(())
        }
        (Value::Table(table), false) => set(table, &path, rest, node),
        (Value::Array(_), false) => {
            Err(format!("{path} is a list of tables: its keys cannot be set by environment variables"))
        }
        (_, false) => Err(format!("{path} is not a table: it has no key {}", rest.join("."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str, env: &[(&str, &str)]) -> (Vec<Entry>, Vec<String>) {
        let table = DeTable::parse(text).expect("TOML");
        let mut root = from_toml(text, table.get_ref());
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let problems = apply_environment(&mut root, env, "f.toml").iter().map(ToString::to_string).collect();
        (root, problems)
    }

    fn get<'a>(entries: &'a [Entry], key: &str) -> &'a Node {
        &entries.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no {key} in {entries:?}")).node
    }

    fn table(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Table(entries) => entries,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn values_keep_their_types_and_places() {
        let (root, _) = tree("[defaults]\nmax_req = 2.5\nretries = 0x10\nthreads = 99999999999999999999\n", &[]);
        let defaults = table(get(&root, "defaults"));
        assert_eq!(get(defaults, "max_req").value, Value::Float("2.5".into()));
        assert_eq!(get(defaults, "max_req").place, Place::File { line: 2, column: 11 });
        assert_eq!(get(defaults, "retries").value, Value::Integer { value: Some(16), text: "0x10".into() });
        assert!(matches!(get(defaults, "threads").value, Value::Integer { value: None, .. }));
        assert_eq!(defaults[0].place, Place::File { line: 2, column: 1 });
    }

    #[test]
    fn variables_set_keys_as_text_over_the_file() {
        let text = "[defaults]\nmax_req = 5\nRETRIES = 1\n[servers]\nMIRROR = \"http://m/flags\"\n\
                    OTHER = { url = \"http://o/flags\" }\n";
        let env = [
            ("FLAGSD_DEFAULTS__MAX_REQ", "7"),
            ("FLAGSD_SERVERS__MIRROR__CA_FILE", "/ca.pem"),
            ("FLAGSD_SERVERS__OTHER", "http://o2/flags"),
            ("FLAGSD_LOG", "debug"),
            ("FLAGSD_STATE__DIR", "/s"),
            ("FLAGSD_DEFAULTS__RETRIES", "3"),
        ];
        let (root, problems) = tree(text, &env);
        assert!(problems.is_empty(), "{problems:?}");
        let max_req = get(table(get(&root, "defaults")), "max_req");
        assert_eq!(max_req.value, Value::String("7".into()));
        let variable =
            Place::Environment { variable: "FLAGSD_DEFAULTS__MAX_REQ".into(), key: "defaults.max_req".into() };
        assert_eq!(max_req.place, variable);
        let servers = table(get(&root, "servers"));
        let mirror = table(get(servers, "MIRROR"));
        assert_eq!(get(mirror, "url").value, Value::String("http://m/flags".into()));
        assert_eq!(get(mirror, "ca_file").value, Value::String("/ca.pem".into()));
        let other = table(get(servers, "OTHER"));
        assert_eq!(get(other, "url").value, Value::String("http://o2/flags".into()));
        assert_eq!(get(table(get(&root, "state")), "dir").value, Value::String("/s".into()));
        // Only labels match in any case: RETRIES stays the file's (an unknown key).
        let defaults = table(get(&root, "defaults"));
        assert_eq!(get(defaults, "RETRIES").value, Value::Integer { value: Some(1), text: "1".into() });
        assert_eq!(get(defaults, "retries").value, Value::String("3".into()));
        assert!(!root.iter().any(|e| e.key == "log"));
    }

    #[test]
    fn variables_that_cannot_set_a_key_are_problems() {
        let text = "[defaults]\nmax_req = 5\n[[batch]]\nname = \"a\"\n";
        let env = [("FLAGSD_BATCH__0__NAME", "b"), ("FLAGSD_DEFAULTS__MAX_REQ__X", "1"), ("FLAGSD_DEFAULTS__", "1")];
        let (_, problems) = tree(text, &env);
        assert_eq!(
            problems,
            [
                "environment variable FLAGSD_BATCH__0__NAME: batch is a list of tables: its keys cannot be set by \
                 environment variables",
                "environment variable FLAGSD_DEFAULTS__: not a configuration key: FLAGSD_TABLE__KEY, each part not empty",
                "environment variable FLAGSD_DEFAULTS__MAX_REQ__X: defaults.max_req is not a table: it has no key x",
            ]
        );
    }
}
