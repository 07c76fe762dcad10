//! Integration tests: the `flagsd` binary against the built-in flag server,
//! started in-process on a free loopback port by each test.

mod helpers;
mod natsd;

mod admin;
mod admin_auth;
mod alerts;
mod browser;
mod cli;
mod config;
mod console;
mod control;
mod daemon;
mod disk;
mod explain;
mod faults;
mod fetch;
mod fleet;
mod fleet_faults;
mod fleet_permissions;
mod fleetctl;
mod hostile;
mod http2;
mod interrupt;
mod naming;
mod proxy;
mod readme;
mod redirects;
mod results;
mod secrets;
mod selection;
mod state;
mod terminal;
mod testserver;
mod tls;
mod usage;
mod webdriver;
