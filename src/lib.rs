//! flagsd: downloads country flag images by two-letter code.
//!
//! The Rust, actor-based, long-running form of the classic "flags2" exercise.
//! Module map, from the command line inwards:
//!
//! - [`cli`]: clap definitions, raw arguments only;
//! - [`config`]: raw arguments checked into typed settings ([`config::UsageError`] otherwise);
//! - [`codes`]: country codes, the code lists and flags2's selection rules;
//! - [`fetch`]: the `fetch` command from settings to exit status;
//! - [`actors`]: the coordinator and its fixed pool of workers (actix);
//! - [`download`]: one request to one [`outcome::Outcome`] (reqwest);
//! - [`naming`]: safe file names from country names;
//! - [`output`]: the output directory, temporary files and atomic renames;
//! - [`outcome`]: outcomes, error kinds and status counts;
//! - [`report`]: the flags2 report text, verbose lines, progress bar;
//! - [`admin`]: the daemon's admin HTTP endpoint, a thin front that asks the daemon over a channel;
//! - [`metrics`]: the daemon's Prometheus metrics registry and its text rendering;
//! - [`results`]: the `--json` document and the `--failed` list;
//! - [`state`]: the state database (run history, validators for conditional requests);
//! - [`status`]: `flagsd status`, and the batch view the admin endpoint serves;
//! - [`testserver`] and [`dataset`]: the built-in flag server and its embedded data;
//! - [`signals`], [`logging`], [`exit`], [`server_thread`]: process plumbing.

pub mod actors;
pub mod admin;
pub mod cli;
pub mod client;
pub mod codes;
pub mod config;
pub mod daemon;
pub mod dataset;
pub mod download;
pub mod exit;
pub mod fetch;
pub mod job;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod naming;
pub mod outcome;
pub mod output;
pub mod random;
pub mod rate;
pub mod report;
pub mod results;
pub mod retry;
pub mod run;
pub mod server_thread;
pub mod signals;
pub mod state;
pub mod status;
pub mod testserver;
