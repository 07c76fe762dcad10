//! What is wrong with arguments or a configuration, said so that the user
//! can find it: the argument, or the file, line and key.

use std::fmt;

/// A command-line value that flagsd cannot use; the text is the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// One thing wrong with a configuration: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file it comes from, or the environment variable or option
    /// that set the value.
    pub origin: String,
    /// Line in the file, where known.
    pub line: Option<usize>,
    /// Column in the line (in characters, from 1), where known.
    pub column: Option<usize>,
    /// Key path such as `batch[2].max_req`, where known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A configuration that cannot be used: every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The problems, in file order where known.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// A configuration error with a single problem.
    pub fn single(origin: &str, key: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                origin: origin.to_owned(),
                line: None,
                column: None,
                key: key.map(str::to_owned),
                message: message.into(),
            }],
        }
    }
}
