//! The fleet: several `flagsd serve` nodes sharing the batches of one
//! configuration through NATS JetStream.
//!
//! Nodes only talk to NATS ([`core`] joins it and creates the shared
//! streams and buckets, under the names of [`names`], and creates them
//! again when they go missing). The fleet is a run [ledger](crate::job::ledger)
//! like the state database of one process ([`ledger`]): a run is a record in
//! a bucket and its codes messages on a work-queue stream ([`runs`]); every
//! node's lanes pull codes from it as they have idle workers ([`source`]),
//! record each code's outcome once, the first winning ([`outcomes`]),
//! share the validators of what they saved ([`files`]) and claim file names
//! fleet-wide ([`claims`]). A [`node`] runs the
//! lanes, the schedules ([`schedule`]), the heartbeat and the finisher, and
//! knows whether it can take work ([`health`]). Everything read from NATS
//! is checked first ([`messages`]). See `docs/fleet.md`.

pub mod claims;
pub mod core;
pub mod files;
pub mod health;
pub mod ledger;
pub mod messages;
pub mod names;
pub mod node;
pub mod outcomes;
pub mod runs;
pub mod schedule;
pub mod source;

pub use self::core::{Fleet, FleetError, Patience};
pub use node::{Gauges, Hooks, Node};
