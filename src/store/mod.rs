//! What flagsd keeps on disk: the output directory and its atomic files,
//! safe file names from untrusted country names and the claims that keep
//! them apart, saving a flag (or keeping an earlier one), and the state
//! database (run history, validators for conditional requests).

pub mod body;
pub mod claims;
pub mod naming;
pub mod output;
pub mod save;
pub mod state;
