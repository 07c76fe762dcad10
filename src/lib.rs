//! flagsd: downloads country flag images by two-letter code.
//!
//! The Rust, actor-based, long-running form of the classic "flags2"
//! exercise. The module map, from the bottom layer up; imports point down
//! only (checked by `tests/architecture.rs`, explained in `docs/design.md`):
//!
//! - [`model`]: leaf values (codes, outcomes and counts, exit statuses, the
//!   seeded dice, time and digest formats); imports nothing of the crate;
//! - [`sys`]: process plumbing (signals, the open-files limit, logging,
//!   servers on threads of their own); imports nothing of the crate;
//! - [`engine`]: the actor system, a coordinator and its fixed pool of
//!   workers, and the retry policy; owns the `Fetch` and `OutcomeSink`
//!   seams; imports only `model`;
//! - [`store`]: the output directory and its atomic files, safe names and
//!   their claims, saving a flag, the state database;
//! - [`http`]: HTTP clients, a flag asked for and its answer checked, rate
//!   limits;
//! - [`config`]: raw arguments, files and environment turned into checked
//!   settings, with the defaults and validators in one place;
//! - [`testserver`]: the built-in flag server (`DEMO`, tests, benchmarks);
//! - [`present`]: what people and programs read (the flags2 report, the
//!   `--json` documents, the admin API's types);
//! - [`job`]: preparing a job, fetching as answer plus saving, and the one
//!   recorded-run lifecycle every command uses;
//! - [`fleet`]: several nodes sharing the batches through NATS JetStream
//!   (runs, shared work queues, schedules claimed once, heartbeats);
//! - [`daemon`]: `flagsd serve` (schedules, signals, systemd notify, metrics,
//!   the admin endpoint);
//! - [`app`]: the other commands, one module each;
//! - [`cli`]: the command tree the binary parses.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod fleet;
pub mod http;
pub mod job;
pub mod model;
pub mod present;
pub mod store;
pub mod sys;
pub mod testserver;
