//! Checked settings: raw arguments, files and environment in, typed
//! settings out.
//!
//! Everything a user controls is checked here, once, before any request:
//! later code never re-parses text. The `fetch` flags become a
//! [`FetchConfig`] (each failure a [`UsageError`] naming the argument); a
//! configuration file, layered with the environment and the flags, becomes
//! [`Settings`] (each failure a [`ConfigError`] listing every problem with
//! its key). Both start from the same [`defaults`] and share the same
//! [`validate`] checks.

pub mod args;
mod checker;
pub mod defaults;
pub mod error;
pub mod fetch;
pub mod file;
pub mod fleet;
pub mod job;
pub mod layers;
pub mod names;
pub mod place;
mod reader;
pub mod server;
pub mod settings;
pub mod source;
mod suggest;
mod tree;
pub mod validate;

pub use error::{ConfigError, Problem, UsageError};
pub use fetch::FetchConfig;
pub use fleet::FleetSettings;
pub use job::JobConfig;
pub use server::{Server, ServerTarget, Servers};
pub use settings::{AdminSettings, BatchConfig, Settings};
pub use source::ConfigSource;
