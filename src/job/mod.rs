//! Jobs.
pub mod prepare;
