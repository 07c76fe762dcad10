//! The commands, one module each, from checked settings to an exit status:
//! [`fetch`], [`run`], [`status`], [`trigger`], [`cancel`], [`check_config`],
//! [`reload`], [`testserver`] and [`generate`] (man pages, written by
//! `manual`, and completions), and the shell's completion requests
//! ([`complete`]). (`serve` is the [`daemon`](crate::daemon).) Only the
//! binary imports them.

mod admin_client;
mod batch_report;
pub mod cancel;
pub mod check_config;
pub mod complete;
pub mod fetch;
mod fleet_run;
pub mod generate;
mod manual;
pub mod reload;
pub mod run;
pub mod status;
pub mod testserver;
pub mod trigger;
