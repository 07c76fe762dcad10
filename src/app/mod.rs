//! The commands, one module each, from checked settings to an exit status:
//! [`fetch`], [`run`], [`status`], [`check_config`] and [`testserver`].
//! (`serve` is the [`daemon`](crate::daemon).) Only the binary imports them.

pub mod check_config;
pub mod fetch;
pub mod run;
pub mod status;
pub mod testserver;
