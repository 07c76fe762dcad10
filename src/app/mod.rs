//! Commands.
pub mod fetch;
pub mod run;
pub mod status;
