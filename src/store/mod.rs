//! Storage.
pub mod naming;
pub mod output;
pub mod state;
