//! The NATS permissions a fleet needs, as `config/nats-fleet.conf` grants
//! them (docs/fleet.md shows that file): a fleet runs, is watched and is
//! cancelled as a user limited to its own streams, buckets and subjects,
//! without one permission violation; and the same user cannot join a fleet
//! of another name.

use crate::fleetctl::*;
use crate::helpers::{flagsd_in, http, server, wait_until};
use crate::natsd::NatsServer;

/// The example configuration of the repository, with `password`, the
/// fleet name `test` instead of `flagsd` (the tests' fleet), and its
/// address and store left to the harness's command line.
fn example(password: &str) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/nats-fleet.conf"))
        .expect("config/nats-fleet.conf");
    let kept: String = text
        .lines()
        .filter(|line| !line.starts_with("listen:") && !line.starts_with("jetstream {"))
        .map(|line| format!("{line}\n"))
        .collect();
    kept.replace("change-me", password)
        .replace("flagsd_", &format!("{FLEET}_"))
        .replace("\"flagsd.>\"", &format!("\"{FLEET}.>\""))
}

#[test]
fn a_fleet_runs_as_a_user_limited_to_its_own_subjects() {
    let Some(nats) = NatsServer::start_with_config(&example("pw-4-fleet")) else { return };
    let url = format!("nats://flagsd:pw-4-fleet@127.0.0.1:{}", nats.port());
    let flags = slow_server("0.02");
    let dir = tempfile::tempdir().expect("a directory");
    let extra = "naming = \"country\"\n\n[[batch]]\nname = \"tick\"\ncodes = [\"BR\"]\nserver = \"".to_owned()
        + &flags.url()
        + "\"\nevery = \"2s\"\n";
    let config = config(dir.path(), std::slice::from_ref(&url), &flags.url(), "\"every\"", &extra);
    let node = Node::start(&config, "a", &[("FLAGSD_ADMIN__LISTEN", "0")]);
    node.wait_joined();
    let (status, document) = finish(submit_batches(&config, &["world"]));
    assert_eq!(status, 0, "{document}\n{}", node.log());
    let counts = &batch(&document)["counts"];
    assert_eq!((counts["downloaded"].as_u64(), counts["not_found"].as_u64()), (Some(194), Some(482)), "{counts}");
    assert_eq!(std::fs::read_dir(dir.path().join("out/world")).expect("the files").count(), 194);
    // A second run, cancelled; the schedule's runs; status; the admin API.
    let run = submit_batches(&config, &["world"]);
    assert!(wait_until(FLEET_WAIT, || flags.hits() >= 700), "the second run did not start");
    let (status, _, stderr) = flagsd_in(dir.path(), &["cancel", "--config", "flagsd.toml", "world"], &[]);
    assert!(status == 0 || status == 1, "{stderr}");
    let _ = finish(run);
    let (status, stdout, stderr) = flagsd_in(dir.path(), &["status", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains("tick") && stdout.contains("Live nodes: 1"), "{stdout}");
    let addr = node.admin_addr();
    assert_eq!(http(&addr, "GET", "/runs", None).0, 200);
    let log = nats.log();
    assert!(!log.contains("Violation"), "permission violations:\n{log}");
    assert!(!node.log().contains("Permissions Violation"), "{}", node.log());
}

#[test]
fn the_user_of_one_fleet_cannot_join_another() {
    let Some(nats) = NatsServer::start_with_config(&example("pw-4-fleet")) else { return };
    let url = format!("nats://flagsd:pw-4-fleet@127.0.0.1:{}", nats.port());
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), std::slice::from_ref(&url), &server(Default::default()).url(), "[\"BR\"]", "");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    std::fs::write(&config, text.replace(&format!("name = \"{FLEET}\""), "name = \"elsewhere\"")).expect("write");
    let (status, _, stderr) = flagsd_in(dir.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("elsewhere_work") || stderr.contains("elsewhere"), "{stderr}");
    assert!(nats.log().contains("Violation"), "{}", nats.log());
}
