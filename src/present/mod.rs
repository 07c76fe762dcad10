//! Presentation.
pub mod report;
pub mod results;
