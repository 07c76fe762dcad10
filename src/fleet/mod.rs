//! The fleet: several `flagsd serve` nodes sharing the batches of one
//! configuration through NATS JetStream.
//!
//! Nodes only talk to NATS ([`core`] joins it and creates the shared
//! streams and buckets, under the names of [`names`]). A run is a record in
//! a bucket and its codes messages on a work-queue stream ([`runs`]); every
//! node's coordinators pull codes from it as they have idle workers
//! ([`source`]), publish each code's outcome once (de-duplicated by
//! `{run}/{code}`) and share the validators of what they saved ([`files`]).
//! A [`node`] runs the lanes, the aligned schedules, the heartbeat and the
//! finisher. The payloads are in [`messages`]. See `docs/fleet.md`.

pub mod core;
pub mod files;
pub mod messages;
pub mod names;
pub mod node;
pub mod outcomes;
pub mod runs;
pub mod schedule;
pub mod source;
mod upkeep;

pub use self::core::{Fleet, FleetError, Patience};
pub use node::{Gauges, Hooks, Node};
