//! What the fleet tests share: a configuration of a fleet and its one
//! batch, `flagsd serve` nodes as child processes, `flagsd run --json`
//! against the fleet, and readers of the fleet's records through the
//! library, as any node reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flagsd::config::FleetSettings;
use flagsd::fleet::{Fleet, Patience};
use flagsd::job::ledger::RunQuery;
use flagsd::model::run::RunRecord;
use flagsd::testserver::{TestServer, TestServerOptions};
use serde_json::Value;

use crate::helpers::{assert_only_complete_flags, flagsd_child, server, wait_until};

/// How long a fleet test waits for anything.
pub const FLEET_WAIT: Duration = Duration::from_secs(90);

/// The fleet's name in every test (each test has its own NATS).
pub const FLEET: &str = "test";

/// A test server answering after `delay` seconds.
pub fn slow_server(delay: &str) -> TestServer {
    server(TestServerOptions {
        delay: Some(delay.parse().expect("a delay")),
        workers: 4,
        ..TestServerOptions::default()
    })
}

/// A configuration: the fleet on `nats`, one batch `world` of `codes` (TOML)
/// from `url`, short timeouts and a 3 s ack wait (so a dead node's codes
/// come back within about 3 s), files under `dir/out`; `extra` goes at the
/// end.
pub fn config(dir: &Path, nats: &[String], url: &str, codes: &str, extra: &str) -> PathBuf {
    let urls: Vec<String> = nats.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "[fleet]\nnats = [{}]\nname = \"{FLEET}\"\nack_wait = \"3s\"\n\n\
         [defaults]\noutput = \"{}\"\nmax_req = 10\ntimeout = \"2s\"\nconnect_timeout = \"1s\"\nread_timeout = \"2s\"\nretries = 0\n\n\
         [daemon]\nshutdown_timeout = \"3s\"\n\n\
         [[batch]]\nname = \"world\"\ncodes = {codes}\nserver = \"{url}\"\n{extra}",
        urls.join(", "),
        dir.join("out").display()
    );
    let path = dir.join("flagsd.toml");
    std::fs::write(&path, text).expect("write the configuration");
    path
}

/// A `flagsd serve` node, its log in a file.
pub struct Node {
    pub name: String,
    pub child: Child,
    log: PathBuf,
}

impl Node {
    /// Starts node `name` with the configuration `config`, and `env`.
    pub fn start(config: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let log = config.with_file_name(format!("{name}.log"));
        let mut cmd = flagsd_child();
        cmd.current_dir(config.parent().expect("a directory"))
            .args(["serve", "--config"])
            .arg(config)
            .env("FLAGSD_FLEET__NODE", name)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self { name: name.to_owned(), child: cmd.spawn().expect("flagsd serve starts"), log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the node has joined and pulls the batch's codes.
    pub fn wait_joined(&self) {
        assert!(
            wait_until(FLEET_WAIT, || self.log().contains("lane open")),
            "{} did not join:\n{}",
            self.name,
            self.log()
        );
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
    }

    /// Waits for the exit; its status, `None` if it takes longer than `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().expect("wait");
            status.is_some()
        });
        status.map(|s| s.code().unwrap_or(-1))
    }

    /// The admin endpoint's address, once logged.
    pub fn admin_addr(&self) -> String {
        let marker = "admin endpoint listening address=";
        assert!(wait_until(FLEET_WAIT, || self.log().contains(marker)), "{}", self.log());
        let log = self.log();
        let rest = &log[log.find(marker).unwrap_or_default() + marker.len()..];
        rest.split_whitespace().next().unwrap_or_default().to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nodes named `names`, each joined and pulling the batch's codes.
pub fn start_nodes(config: &Path, names: &[&str]) -> Vec<Node> {
    let nodes: Vec<Node> = names.iter().map(|n| Node::start(config, n, &[])).collect();
    nodes.iter().for_each(Node::wait_joined);
    nodes
}

/// `flagsd run --json` against the fleet, in the background.
pub fn submit(config: &Path) -> Child {
    submit_batches(config, &[])
}

/// `flagsd run --json` of `batches` (all when empty) against the fleet, in
/// the background.
pub fn submit_batches(config: &Path, batches: &[&str]) -> Child {
    flagsd_child()
        .current_dir(config.parent().expect("a directory"))
        .args(["run", "--json", "--config"])
        .arg(config)
        .args(batches)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flagsd run starts")
}

/// The exit status and the JSON document of a `flagsd run --json`.
pub fn finish(run: Child) -> (i32, Value) {
    let out = run.wait_with_output().expect("flagsd run ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let document = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), document)
}

/// The one batch of a `run --json` document.
pub fn batch(document: &Value) -> &Value {
    &document["batches"][0]
}

/// Codes by node, and the number of distinct codes, of a batch's result.
pub fn shares(batch: &Value) -> (BTreeMap<String, usize>, usize) {
    let codes = batch["codes"].as_array().expect("codes");
    let mut by_node = BTreeMap::new();
    for code in codes {
        *by_node.entry(code["node"].as_str().unwrap_or("none").to_owned()).or_insert(0) += 1;
    }
    let distinct: BTreeSet<&str> = codes.iter().filter_map(|c| c["code"].as_str()).collect();
    (by_node, distinct.len())
}

/// Asserts the counts of a batch of all 676 codes: 194 flags (downloaded,
/// or unchanged when a node that died or paused had saved the file and its
/// validators before its outcome was published), 482 not found, each code
/// once, and the files whole.
pub fn assert_every_code_once(batch: &Value, out: &Path) {
    let counts = &batch["counts"];
    let flags = counts["downloaded"].as_u64().unwrap_or(0) + counts["unchanged"].as_u64().unwrap_or(0);
    assert_eq!((flags, counts["not_found"].as_u64(), counts["errors"].as_u64()), (194, Some(482), Some(0)), "{counts}");
    assert_eq!(counts["unfinished"].as_u64(), Some(0), "{counts}");
    let (_, distinct) = shares(batch);
    assert_eq!(distinct, 676);
    assert_eq!(batch["codes"].as_array().map(Vec::len), Some(676));
    assert_eq!(assert_only_complete_flags(out), 194);
}

/// The settings of a client of the fleet on `nats`.
pub fn reader(nats: &[String]) -> FleetSettings {
    FleetSettings {
        servers: nats.to_vec(),
        url_auth: None,
        name: FLEET.to_owned(),
        node: "reader".to_owned(),
        replicas: 1,
        creds_file: None,
        token_file: None,
        tls_ca_file: None,
        ack_wait: std::time::Duration::from_secs(30),
        duplicate_window: std::time::Duration::from_secs(120),
    }
}

/// The fleet's run records, read from NATS as any node reads them.
pub fn fleet_runs(nats: &[String]) -> Vec<RunRecord> {
    let settings = reader(nats);
    actix_rt::System::new().block_on(async move {
        let fleet = Fleet::join(&settings, "test-reader", Patience::Once, |_| {}).await.expect("join the fleet");
        let query = RunQuery { batch: None, limit: 1000, before: None };
        fleet.recent_runs(&query).await.expect("the runs")
    })
}

/// The ticks of the fleet's runs, read from their records in NATS.
pub fn fleet_ticks(nats: &[String]) -> Vec<u64> {
    let settings = reader(nats);
    actix_rt::System::new().block_on(async move {
        let fleet = Fleet::join(&settings, "test-reader", Patience::Once, |_| {}).await.expect("join the fleet");
        let query = RunQuery { batch: None, limit: 1000, before: None };
        let mut ticks = Vec::new();
        for run in fleet.recent_runs(&query).await.expect("the runs") {
            let run = fleet.run_record(run.id).await.expect("a run").expect("its record");
            ticks.extend(run.tick);
        }
        ticks
    })
}
