//! Leaf values that every layer shares: country codes and the selection
//! rules, outcomes and their counts and causes, runs and their records, exit
//! statuses, the seeded dice, time formats, text made safe for a terminal.
//! Nothing here imports anything else of the crate.

pub mod causes;
pub mod codes;
pub mod digest;
pub mod exit;
pub mod outcome;
pub mod random;
pub mod run;
pub mod text;
pub mod time;
