//! Leaf values: country codes, outcomes and counts, exit statuses.
pub mod codes;
pub mod exit;
pub mod outcome;
pub mod random;
