//! Leaf values that every layer shares: country codes and the selection
//! rules, outcomes and their counts, exit statuses, the seeded dice, time
//! formats. Nothing here imports anything else of the crate.

pub mod codes;
pub mod digest;
pub mod exit;
pub mod outcome;
pub mod random;
pub mod time;
