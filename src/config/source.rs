//! Where a configuration comes from (a file, the environment, flags), and
//! reading it again on SIGHUP.

use std::path::{Path, PathBuf};

use super::args::ConfigArgs;
use super::checker;
use super::defaults;
use super::error::{ConfigError, Problem, UsageError};
use super::file::{self, Overrides};
use super::layers;
use super::server::Servers;
use super::settings::Settings;
use super::validate;

/// Where a configuration comes from and how to read it again (on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The file, if any: `--config`, `FLAGSD_CONFIG`, or the default path when present.
    pub path: Option<PathBuf>,
    /// Command-line values, the top layer.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// The file named by `path`, else the default file when present.
    pub fn file_or_default(path: Option<PathBuf>) -> Option<PathBuf> {
        path.or_else(|| {
            let default = Path::new(defaults::CONFIG_PATH);
            default.exists().then(|| default.to_owned())
        })
    }

    /// The source chosen by the command line.
    pub fn from_args(args: &ConfigArgs) -> Result<Self, UsageError> {
        let max_req = args
            .max_req
            .as_deref()
            .map(|m| validate::count_flag(m, "--max-req N must be >= 1"))
            .transpose()
            .map_err(UsageError)?;
        let path = Self::file_or_default(args.config.clone());
        Ok(Self {
            path,
            overrides: Overrides {
                max_req: max_req.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                output: args.output.clone(),
                verbose: args.verbose,
            },
        })
    }

    /// The name problems are reported under.
    pub fn origin(&self) -> String {
        file::origin_name(self.path.as_deref())
    }

    /// The server labels for `fetch`: built-in, overridden by the file's and
    /// the environment's `[servers]`.
    pub fn servers(&self) -> Result<Servers, ConfigError> {
        let raw = layers::load(self.path.as_deref(), configuration_variables()?, &self.overrides)?;
        checker::configured_servers(&raw, &self.origin())
    }

    /// Reads, layers and checks the configuration (environment from this process).
    pub fn load(&self) -> Result<Settings, ConfigError> {
        let raw = layers::load(self.path.as_deref(), configuration_variables()?, &self.overrides)?;
        Settings::check(&raw, &self.origin())
    }

    /// [`load`](Self::load), then checks the paths it names: every output
    /// directory writable or creatable (as `check-config` and a reload do;
    /// secrets are not read, see [`Settings::check_paths`]).
    pub fn load_checked(&self) -> Result<Settings, ConfigError> {
        let settings = self.load()?;
        settings.check_paths(&self.origin())?;
        Ok(settings)
    }

    /// [`load`](Self::load), then reads the secrets of the servers of the
    /// batches named in `names` (all when empty), as `run` does before its
    /// first request: a batch unit does not read another batch's secrets.
    pub fn load_for_run(&self, names: &[String]) -> Result<Settings, ConfigError> {
        let settings = self.load()?;
        settings.check_client_keys(&self.origin(), names)?;
        Ok(settings)
    }

    /// [`load_checked`](Self::load_checked), then reads the secrets (as
    /// `serve` does when it starts).
    pub fn load_for_start(&self) -> Result<Settings, ConfigError> {
        let settings = self.load_checked()?;
        settings.check_secrets(&self.origin())?;
        Ok(settings)
    }
}

/// The configuration variables of this process (`FLAGSD_…__…`); one whose
/// value is not UTF-8 text is a problem, named.
fn configuration_variables() -> Result<Vec<(String, String)>, ConfigError> {
    let mut variables = Vec::new();
    let mut problems = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("FLAGSD_") && n.contains("__")) else { continue };
        match value.into_string() {
            Ok(value) => variables.push((name.to_owned(), value)),
            Err(_) => problems.push(Problem {
                origin: format!("environment variable {name}"),
                line: None,
                column: None,
                key: None,
                message: "is not UTF-8 text".to_owned(),
            }),
        }
    }
    if problems.is_empty() { Ok(variables) } else { Err(ConfigError { problems }) }
}
