//! flagsd: downloads country flag images by two-letter code.

pub mod app;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod http;
pub mod job;
pub mod model;
pub mod present;
pub mod store;
pub mod sys;
pub mod testserver;
