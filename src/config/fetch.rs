//! `flagsd fetch`'s arguments, checked: the flags2 command line in, one
//! [`FetchConfig`] out. Every failure is a [`UsageError`] whose message names
//! the argument (flags2's own wording where flags2 has one), and the binary
//! exits with status 2 before any request.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::FetchArgs;
use super::checker::{exposed_secrets, transport_secret_problems};
use super::error::UsageError;
use super::file::Naming;
use super::job::{JobConfig, pool_size};
use super::server::Servers;
use super::{defaults, validate};
use crate::engine::retry::RetryPolicy;
use crate::http::client::Timeouts;
use crate::http::proxy::parse_proxy;
use crate::http::tls::TlsFile;
use crate::model::codes::{self, CountryCode, Selection};

/// Everything `flagsd fetch` needs, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// What to download.
    pub job: JobConfig,
    /// Most threads the workers run on.
    pub threads: usize,
    /// One line per code instead of a progress bar.
    pub verbose: bool,
    /// Print the JSON document instead of the report.
    pub json: bool,
    /// Print nothing (`-q`): no progress bar, no report.
    pub quiet: bool,
    /// Skip files that have not changed since the server's copy
    /// (`--timestamping`).
    pub timestamping: bool,
    /// Where to write the codes to try again, if anywhere.
    pub failed: Option<PathBuf>,
    /// The state directory, when state is kept.
    pub state_dir: Option<PathBuf>,
}

/// The largest `--codes-file` read (every code with a comment fits many
/// times over): a bigger one, or `/dev/zero`, is refused once this much is
/// read.
pub const MAX_CODES_FILE: u64 = 1 << 20;

/// The longest line of a `--codes-file`.
pub const MAX_CODES_LINE: usize = 4096;

/// Reads `--codes-file` (`-` is stdin), at most [`MAX_CODES_FILE`] bytes.
fn read_codes_file(path: &Path) -> Result<Vec<CountryCode>, UsageError> {
    let origin = path.display().to_string();
    let fail = |why: String| UsageError(format!("--codes-file '{origin}': {why}"));
    let reader: Box<dyn Read> = if origin == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| fail(format!("cannot read it: {e}")))?)
    };
    let mut bytes = Vec::new();
    reader.take(MAX_CODES_FILE + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_CODES_FILE {
        return Err(fail(format!("larger than {MAX_CODES_FILE} bytes: not a list of codes")));
    }
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.len() > MAX_CODES_LINE {
            return Err(fail(format!("line {} is longer than {MAX_CODES_LINE} bytes", i + 1)));
        }
        if let Err(e) = std::str::from_utf8(line) {
            return Err(fail(format!("line {} is not UTF-8 text ({e})", i + 1)));
        }
    }
    let text = String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8 text ({e})")))?;
    codes::parse_code_list(&text, &origin).map_err(|e| UsageError(e.to_string()))
}

/// A duration flag longer than zero; `flag` names it in errors.
fn duration(flag: &str, text: &str) -> Result<Duration, UsageError> {
    let parsed = validate::parse_duration(text).map_err(|e| UsageError(format!("{flag}: {e}")))?;
    validate::longer_than_zero(parsed).map_err(|e| UsageError(format!("{flag} {e}")))
}

/// A count flag of at least one; `message` is flags2's error.
fn count(text: &str, message: &str) -> Result<usize, UsageError> {
    validate::count_flag(text, message).map_err(UsageError)
}

impl FetchConfig {
    /// Warnings about the secret files of the server (`--key`, and the
    /// credentials files of a configured label) that others than their
    /// owner can read; nothing read from them.
    pub fn secret_warnings(&self) -> Vec<String> {
        let files = self.job.server.transport.secret_files().into_iter().map(|(key, path)| (key.to_owned(), path));
        exposed_secrets(files).into_iter().map(|(_, warning)| warning).collect()
    }

    /// Checks the `fetch` arguments; `servers` resolves server labels (the
    /// built-in ones, as overridden by the configuration).
    pub fn from_args(args: &FetchArgs, servers: &Servers) -> Result<Self, UsageError> {
        let mut explicit = Vec::new();
        for arg in &args.codes {
            let codes = codes::expand_argument(arg).map_err(|e| UsageError(e.to_string()))?;
            explicit.extend(codes);
        }
        let limit = args.limit.as_deref().map(|l| count(l, "--limit N must be >= 1")).transpose()?;
        let max_req = count(&args.max_req, "--max-req N must be >= 1")?;
        let mut server = servers.resolve(&args.server)?;
        if let Some(rate) = &args.rate {
            server.rate = Some(rate.parse().map_err(|e| UsageError(format!("--rate: {e}")))?);
        }
        let tls = &mut server.transport.tls;
        tls.ca_file = args.cacert.clone().or(tls.ca_file.take());
        if args.cert.is_some() {
            (tls.client_cert, tls.client_key) = (args.cert.clone(), args.key.clone());
        }
        if let Some((file, problem)) = tls.check().into_iter().next() {
            let flag = match file {
                TlsFile::Ca => "--cacert",
                TlsFile::Cert => "--cert",
                TlsFile::Key => "--key",
            };
            return Err(UsageError(format!("{flag}: {problem}")));
        }
        let entry = format!("servers.{}", server.label.to_ascii_lowercase());
        if let Some((key, problem)) = transport_secret_problems(&entry, &server.transport).into_iter().next() {
            return Err(UsageError(format!("--server {}: {key}: {problem}", server.label)));
        }
        let transport = &mut server.transport;
        if let Some(proxy) = &args.proxy {
            parse_proxy(proxy).map_err(|e| UsageError(format!("--proxy: {e}")))?;
            transport.proxy.proxy = Some(proxy.clone());
        }
        if let Some(list) = &args.noproxy {
            transport.proxy.no_proxy = Some(list.clone());
        }
        transport.http2_prior_knowledge |= args.http2_prior_knowledge;
        transport.allow_internal_redirects |= args.allow_internal_redirects;
        let timeouts = Timeouts {
            connect: duration("--connect-timeout", &args.connect_timeout)?,
            read: duration("--read-timeout", &args.read_timeout)?,
            total: duration("--timeout", &args.timeout)?,
        };
        let retries = args
            .retries
            .trim()
            .parse()
            .map_err(|_| UsageError(format!("--retries must be a whole number >= 0 (got '{}')", args.retries)))?;
        let retry = RetryPolicy {
            retries,
            base: duration("--retry-base", &args.retry_base)?,
            cap: duration("--retry-cap", &args.retry_cap)?,
            retry_after_cap: duration("--retry-after-cap", &args.retry_after_cap)?,
        };
        let max_size = validate::parse_size(&args.max_size).map_err(|e| UsageError(format!("--max-size: {e}")))?;
        // A list file is read (and checked) even when -e or -a overrides it.
        let selection = match args.codes_file.as_deref().map(read_codes_file).transpose()? {
            Some(listed) if !(args.every || args.all) => {
                explicit.extend(listed);
                Selection::Exactly(explicit)
            }
            _ => Selection::from_flags(args.every, args.all, explicit),
        };
        let codes = selection.resolve(limit);
        let job = JobConfig {
            pool_size: pool_size(max_req, codes.len()),
            codes,
            server,
            output: args.output.clone(),
            timeouts,
            retry,
            max_size,
            naming: Naming::Code,
        };
        let threads = match &args.threads {
            None => defaults::threads(),
            Some(text) => text
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|n| validate::threads(n, defaults::MAX_THREADS).ok())
                .ok_or_else(|| {
                    UsageError(format!("--threads N must be from 1 to {} (got '{text}')", defaults::MAX_THREADS))
                })?,
        };
        Ok(Self {
            job,
            threads,
            verbose: args.verbose,
            json: args.json,
            quiet: args.quiet,
            timestamping: args.timestamping,
            failed: args.failed.clone(),
            state_dir: args.state.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::defaults;

    /// `fetch`'s arguments as a command of their own.
    #[derive(Parser)]
    struct Fetch {
        #[command(flatten)]
        args: FetchArgs,
    }

    fn config(args: &[&str]) -> Result<FetchConfig, UsageError> {
        let argv = ["fetch"].iter().chain(args).copied();
        let fetch = Fetch::try_parse_from(argv).unwrap().args;
        let servers = Servers::default();
        FetchConfig::from_args(&fetch, &servers)
    }

    #[test]
    fn defaults_are_local_pop20_and_30_requests() {
        let c = config(&[]).unwrap();
        let (c, verbose) = (c.job, c.verbose);
        assert_eq!(c.codes.len(), 20);
        assert_eq!(c.pool_size, 20);
        assert_eq!(c.server.label, "LOCAL");
        assert_eq!(c.output, PathBuf::from("downloaded"));
        assert!(!verbose);
        assert_eq!(c.retry.retries, 0);
        assert_eq!(c.max_size, defaults::MAX_SIZE);
        assert_eq!(c.timeouts, defaults::TIMEOUTS);
        assert_eq!(c.retry, defaults::retry_policy(0));
    }

    #[test]
    fn every_beats_all_beats_codes_and_limit_cuts() {
        assert_eq!(config(&["-e", "-a", "BR"]).unwrap().job.codes.len(), 676);
        assert_eq!(config(&["-a", "BR"]).unwrap().job.codes.len(), 194);
        let c = config(&["-e", "-l", "30", "-m", "100"]).unwrap().job;
        assert_eq!(c.codes.len(), 30);
        assert_eq!(c.pool_size, 30);
    }

    #[test]
    fn bad_values_have_the_flags2_messages() {
        let message = |args: &[&str]| config(args).unwrap_err().0;
        assert_eq!(message(&["ABC"]), "'ABC': each CC argument must be A to Z or AA to ZZ.");
        assert_eq!(message(&["-l", "0"]), "--limit N must be >= 1");
        assert_eq!(message(&["-l", "-3"]), "--limit N must be >= 1");
        assert_eq!(message(&["-m", "0"]), "--max-req N must be >= 1");
        assert!(message(&["-m", "lots"]).starts_with("--max-req N must be >= 1 (got 'lots'"));
        assert!(message(&["-s", "NOWHERE"]).starts_with("--server LABEL must be one of LOCAL"));
        assert!(message(&["-s", "ftp://x/flags"]).starts_with("--server LABEL must be one of"));
        assert!(message(&["-s", "http://"]).contains("is not valid"));
        assert!(message(&["--timeout", "soon"]).starts_with("--timeout: 'soon' is not a duration"));
        assert_eq!(message(&["--read-timeout", "0s"]), "--read-timeout must be longer than 0s");
        assert!(message(&["--retries", "-1"]).starts_with("--retries must be a whole number >= 0"));
        assert!(message(&["--max-size", "big"]).starts_with("--max-size: 'big' is not a size"));
        assert!(message(&["--rate", "fast"]).starts_with("--rate: 'fast' is not a rate"));
    }
}
