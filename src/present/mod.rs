//! What people and programs read: the flags2 report, verbose lines and
//! progress bar ([`report`]), the `--json` documents and the `--failed` list
//! ([`results`]), and the admin endpoint's API types ([`api`]).

pub mod api;
pub mod report;
pub mod results;
