//! What the test server serves and how it misbehaves: the options, as
//! `flagsd testserver` takes them on the command line and as tests build
//! them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// A delay before each answer: fixed, or uniform between two bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayRange {
    min: Duration,
    max: Duration,
}

impl DelayRange {
    /// The delay at `unit` (from 0 to 1) of the way from the minimum to the maximum.
    pub fn sample(&self, unit: f64) -> Duration {
        self.min + (self.max - self.min).mul_f64(unit)
    }
}

impl FromStr for DelayRange {
    type Err = String;

    /// Parses `MIN` or `MIN..MAX`, in seconds (`0.5`, `0.1..0.5`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let seconds = |part: &str| -> Result<Duration, String> {
            let value: f64 = part.trim().parse().map_err(|_| format!("'{part}' is not a number of seconds"))?;
            Duration::try_from_secs_f64(value).map_err(|_| format!("'{part}' must be a number of seconds >= 0"))
        };
        let (min, max) = match s.split_once("..") {
            Some((lo, hi)) => (seconds(lo)?, seconds(hi)?),
            None => (seconds(s)?, seconds(s)?),
        };
        if min > max {
            return Err(format!(
                "the minimum delay {}s is above the maximum {}s",
                min.as_secs_f64(),
                max.as_secs_f64()
            ));
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for DelayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.min.as_secs_f64())?;
        if self.max != self.min {
            write!(f, "..{}s", self.max.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Parses a fraction of requests from 0 to 1 (`0.25`).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("'{s}' must be a fraction from 0 to 1")),
    }
}

/// Parses `--bind`: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`; a host name is
/// resolved, and its first IPv4 address preferred (`localhost:8000` is
/// `127.0.0.1:8000`).
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s)
        .map_err(|e| format!("'{s}' is not an address such as 127.0.0.1:8000 or localhost:8000 ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// Faults injected into a fraction of requests each (0 = never, 1 = always).
///
/// Checked in this order, the first that applies wins: hang, unavailable,
/// status, teapot (`error_rate`), flap; then, for files that exist and
/// unless a conditional request gets `304 Not Modified`, reset, truncate,
/// slow.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Accept the request and never answer.
    pub hang_rate: f64,
    /// Answer `503 Service Unavailable` with `Retry-After: {retry_after}`.
    pub unavailable_rate: f64,
    /// Seconds in the `Retry-After` header of `unavailable` answers.
    pub retry_after: u64,
    /// Answer with the fixed `status`.
    pub status_rate: f64,
    /// The status of `status_rate` answers.
    pub status: u16,
    /// Answer `418 I'm a Teapot` (flags2's error server).
    pub error_rate: f64,
    /// Fraction of paths that flap: their first `flap_failures` requests get
    /// `503`, later ones succeed.
    pub flap_rate: f64,
    /// Failures of a flapping path before it succeeds.
    pub flap_failures: u32,
    /// Send the headers, then reset the connection (RST) before the body.
    pub reset_rate: f64,
    /// Send half of the body, then close the connection.
    pub truncate_rate: f64,
    /// Trickle the body in ten pieces, `slow_interval` apart.
    pub slow_rate: f64,
    /// Pause between the pieces of a slow body.
    pub slow_interval: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            hang_rate: 0.0,
            unavailable_rate: 0.0,
            retry_after: 1,
            status_rate: 0.0,
            status: 500,
            error_rate: 0.0,
            flap_rate: 0.0,
            flap_failures: 2,
            reset_rate: 0.0,
            truncate_rate: 0.0,
            slow_rate: 0.0,
            slow_interval: Duration::from_secs(1),
        }
    }
}

/// What the server serves and how it misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestServerOptions {
    /// Serve `{root}/{cc}/{cc}.gif` and `{root}/{cc}/metadata.json` instead
    /// of the embedded data set.
    pub root: Option<PathBuf>,
    /// Wait this long before each answer.
    pub delay: Option<DelayRange>,
    /// Faults to inject.
    pub faults: Faults,
    /// Seed of the fault generator.
    pub seed: u64,
    /// Server threads (0 means 1).
    pub workers: usize,
    /// Keep the path and time of every request (for tests).
    pub record: bool,
}

/// `flagsd testserver`: the built-in flag server.
#[derive(Debug, Args)]
pub struct TestServerArgs {
    /// Address to listen on: IP:PORT or HOST:PORT (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000", value_parser = parse_bind)]
    pub bind: SocketAddr,

    /// Serve DIR/{cc}/{cc}.gif and DIR/{cc}/metadata.json instead of the bundled data set
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Seconds to wait before each answer: MIN, or MIN..MAX for a uniform random delay
    #[arg(long, value_name = "MIN[..MAX]")]
    pub delay: Option<DelayRange>,

    /// Fraction of requests answered with 418 I'm a Teapot (0 to 1)
    #[arg(long, value_name = "P", default_value_t = Faults::default().error_rate, value_parser = parse_rate)]
    pub error_rate: f64,

    /// Fraction of flag bodies cut off half way (the connection closes early)
    #[arg(long, value_name = "P", default_value_t = Faults::default().truncate_rate, value_parser = parse_rate)]
    pub truncate_rate: f64,

    /// Fraction of flag responses reset (RST) right after the headers
    #[arg(long, value_name = "P", default_value_t = Faults::default().reset_rate, value_parser = parse_rate)]
    pub reset_rate: f64,

    /// Fraction of requests accepted and never answered
    #[arg(long, value_name = "P", default_value_t = Faults::default().hang_rate, value_parser = parse_rate)]
    pub hang_rate: f64,

    /// Fraction of flag bodies sent in ten pieces, --slow-interval apart
    #[arg(long, value_name = "P", default_value_t = Faults::default().slow_rate, value_parser = parse_rate)]
    pub slow_rate: f64,

    /// Pause between the pieces of a slow body
    #[arg(long, value_name = "DURATION", default_value_t = Faults::default().slow_interval.into())]
    pub slow_interval: humantime::Duration,

    /// Fraction of requests answered with the fixed --status
    #[arg(long, value_name = "P", default_value_t = Faults::default().status_rate, value_parser = parse_rate)]
    pub status_rate: f64,

    /// Status code of --status-rate answers
    #[arg(long, value_name = "CODE", default_value_t = Faults::default().status, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub status: u16,

    /// Fraction of requests answered 503 with a Retry-After header
    #[arg(long, value_name = "P", default_value_t = Faults::default().unavailable_rate, value_parser = parse_rate)]
    pub unavailable_rate: f64,

    /// Seconds in the Retry-After header of --unavailable-rate answers
    #[arg(long, value_name = "SECONDS", default_value_t = Faults::default().retry_after)]
    pub retry_after: u64,

    /// Fraction of paths that flap: their first --flap-failures requests get 503
    #[arg(long, value_name = "P", default_value_t = Faults::default().flap_rate, value_parser = parse_rate)]
    pub flap_rate: f64,

    /// Failures of a flapping path before it succeeds
    #[arg(long, value_name = "N", default_value_t = Faults::default().flap_failures)]
    pub flap_failures: u32,

    /// Seed of the random fault and delay generator
    #[arg(long, value_name = "N", default_value_t = TestServerOptions::default().seed)]
    pub seed: u64,

    /// Server threads
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
}

impl From<TestServerArgs> for TestServerOptions {
    fn from(args: TestServerArgs) -> Self {
        Self {
            root: args.root,
            delay: args.delay,
            faults: Faults {
                hang_rate: args.hang_rate,
                unavailable_rate: args.unavailable_rate,
                retry_after: args.retry_after,
                status_rate: args.status_rate,
                status: args.status,
                error_rate: args.error_rate,
                flap_rate: args.flap_rate,
                flap_failures: args.flap_failures,
                reset_rate: args.reset_rate,
                truncate_rate: args.truncate_rate,
                slow_rate: args.slow_rate,
                slow_interval: args.slow_interval.into(),
            },
            seed: args.seed,
            workers: usize::from(args.workers),
            record: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_as_seconds_or_ranges() {
        let fixed: DelayRange = "0.5".parse().unwrap();
        assert_eq!(fixed.sample(0.7), Duration::from_millis(500));
        let range: DelayRange = "0.1..0.3".parse().unwrap();
        assert_eq!(range.sample(0.0), Duration::from_millis(100));
        assert_eq!(range.sample(0.5), Duration::from_millis(200));
        assert!("0.3..0.1".parse::<DelayRange>().is_err());
        assert!("-1".parse::<DelayRange>().is_err());
        assert!("soon".parse::<DelayRange>().is_err());
    }

    #[test]
    fn rates_are_fractions() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("x").is_err());
    }
}
