//! `flagsd status`: each batch's last and next run, in a table.
//!
//! It asks the daemon's admin endpoint for the batches
//! ([`BatchView`]s, the typed API of `GET /batches`) when `admin.listen` is
//! configured and the daemon answers; otherwise it builds the same views
//! from the configuration and the state database, without the next run
//! (only the daemon knows it) and without `running`. It never creates a
//! database: a missing one means no batch has run yet.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::Serialize;

use super::admin_client::AdminClient;
use crate::config::{FleetSettings, Settings};
use crate::fleet::messages::NodeBeat;
use crate::fleet::schedule::ticks_around;
use crate::fleet::{Fleet, Patience};
use crate::job::FatalError;
use crate::model::causes::Causes;
use crate::model::exit::ExitStatus;
use crate::model::run::{CodeResult, RunDetails, RunState};
use crate::model::time::rfc3339;
use crate::present::api::{BatchView, RunRecord};
use crate::present::report::{emit, result_line};
use crate::present::results::to_json;
use crate::store::state::{DB_FILE, StateDb};

/// Where the views came from, said above the table (and in `--json`).
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Source {
    /// The daemon's admin endpoint.
    Daemon { url: String },
    /// The state database, and why not the daemon.
    StateDatabase { path: String, why: String },
    /// The fleet's NATS servers.
    Fleet { name: String, servers: String },
}

/// What `flagsd status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shown {
    /// One JSON document instead of the table (`--json`).
    pub json: bool,
    /// The failed codes of each batch's last run, below the table (the
    /// batches were named: `flagsd status BATCH`).
    pub failures: bool,
}

/// What `flagsd status` found.
struct Found {
    source: Source,
    views: Vec<BatchView>,
    /// A fleet's live nodes.
    nodes: Option<Vec<NodeBeat>>,
    /// The failed codes of each batch's last run with errors, by batch
    /// (when asked for).
    failures: BTreeMap<String, Vec<CodeResult>>,
}

/// `flagsd status --json`: what the table shows, as one document.
#[derive(Debug, Serialize)]
struct StatusDocument<'a> {
    /// `"status"`.
    command: &'static str,
    source: &'a Source,
    batches: &'a [BatchView],
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<&'a [NodeBeat]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failures: Option<&'a BTreeMap<String, Vec<CodeResult>>>,
}

/// `flagsd status`: prints a table of the configured batches with their
/// last and next run (or, with `--json`, one document), and, as `shown`
/// asks, the failures of their last runs.
pub async fn status(settings: &Settings, shown: Shown) -> Result<ExitStatus, FatalError> {
    let found = match &settings.fleet {
        Some(fleet) => fleet_status(settings, fleet, shown).await?,
        None => local_status(settings, shown).await?,
    };
    if shown.json {
        let document = StatusDocument {
            command: "status",
            source: &found.source,
            batches: &found.views,
            nodes: found.nodes.as_deref(),
            failures: shown.failures.then_some(&found.failures),
        };
        emit(&to_json(&document));
        return Ok(ExitStatus::Success);
    }
    let mut text = table(&found.views, &found.source);
    if let Some(nodes) = &found.nodes {
        text.push_str(&nodes_table(nodes));
    }
    if shown.failures {
        for view in &found.views {
            text.push_str(&failures_text(view, found.failures.get(&view.name)));
        }
    }
    emit(&text);
    Ok(ExitStatus::Success)
}

/// The batches as the daemon sees them, else as the state database does.
async fn local_status(settings: &Settings, shown: Shown) -> Result<Found, FatalError> {
    let mut why = "the admin endpoint is not configured".to_owned();
    if let Some(admin) = &settings.admin {
        let answer = match AdminClient::new(admin) {
            Ok(client) => client.call::<Vec<BatchView>>(Method::GET, "/batches").await.map(|v| (v, client)),
            Err(e) => Err(e),
        };
        match answer {
            Ok((mut views, client)) => {
                // Only the batches asked for (`flagsd status NAME ...`), which the file configures.
                views.retain(|v| settings.batches.iter().any(|b| b.name == v.name));
                let mut failures = BTreeMap::new();
                if shown.failures {
                    for (batch, id) in with_errors(&views) {
                        let details = client.call::<RunDetails>(Method::GET, &format!("/runs/{id}")).await;
                        // A run the daemon no longer keeps the outcomes of shows none.
                        if let Ok(details) = details {
                            failures.insert(batch, failed(details.codes));
                        }
                    }
                }
                let source = Source::Daemon { url: client.url().to_owned() };
                return Ok(Found { source, views, nodes: None, failures });
            }
            Err(e) => why = e.to_string(),
        }
    }
    let path = settings.state_dir.join(DB_FILE).display().to_string();
    let db = StateDb::open_read_only(&settings.state_dir)?;
    let mut last = match &db {
        Some(db) => db.last_runs()?,
        None => {
            why.push_str("; no state database yet");
            Default::default()
        }
    };
    let views: Vec<BatchView> = settings.batches.iter().map(|b| BatchView::of(b, last.remove(&b.name))).collect();
    let mut failures = BTreeMap::new();
    if let (Some(db), true) = (&db, shown.failures) {
        for (batch, id) in with_errors(&views) {
            failures.insert(batch, failed(db.outcomes(id)?));
        }
    }
    Ok(Found { source: Source::StateDatabase { path, why }, views, nodes: None, failures })
}

/// The batches among `views` whose last run had errors, with that run's id.
fn with_errors(views: &[BatchView]) -> Vec<(String, i64)> {
    let last_runs = views.iter().filter_map(|v| Some((&v.name, v.last_run.as_ref()?)));
    last_runs.filter(|(_, run)| has_errors(run)).map(|(batch, run)| (batch.clone(), run.id)).collect()
}

/// Whether `run` ended with codes in error.
fn has_errors(run: &RunRecord) -> bool {
    run.counts.is_some_and(|c| c.errors > 0)
}

/// The codes of `codes` that ended in an error.
fn failed(codes: Vec<CodeResult>) -> Vec<CodeResult> {
    codes.into_iter().filter(CodeResult::is_error).collect()
}

/// A run's result in a few words: `exit 0: 20 downloaded, 174 unchanged`,
/// `running`, `failed: …`.
fn run_result(run: &RunRecord) -> String {
    let counted = |c: crate::model::outcome::StatusCounts| {
        let mut parts = vec![format!("{} downloaded", c.downloaded)];
        for (n, what) in [(c.unchanged, "unchanged"), (c.not_found, "not found"), (c.errors, "errors")] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    };
    match (run.state, run.exit_status, run.counts) {
        (RunState::Running, _, _) => "running".to_owned(),
        (RunState::Failed, _, _) => format!("failed: {}", run.error.as_deref().unwrap_or("no reason recorded")),
        (RunState::Cancelled, Some(status), Some(c)) => format!("cancelled (exit {status}): {}", counted(c)),
        (RunState::Cancelled, _, _) => "cancelled".to_owned(),
        (RunState::Finished, Some(status), Some(c)) => format!("exit {status}: {}", counted(c)),
        (RunState::Finished, _, _) => "finished, counts not recorded".to_owned(),
    }
}

/// What `flagsd status BATCH` says below the table about the last run of
/// `view`: its failed codes (`failures`, when they were read), else why
/// there are none to show.
fn failures_text(view: &BatchView, failures: Option<&Vec<CodeResult>>) -> String {
    let name = &view.name;
    let Some(run) = &view.last_run else {
        return format!("\n{name} has never run.\n");
    };
    let id = run.id;
    if run.state == RunState::Failed {
        return format!(
            "\n{name}'s last run (run {id}) failed: {}\n",
            run.error.as_deref().unwrap_or("no reason recorded")
        );
    }
    if !has_errors(run) {
        return format!("\n{name}'s last run (run {id}) had no errors.\n");
    }
    let errors = run.counts.map_or(0, |c| c.errors);
    let causes = Causes::from_kept(&run.causes);
    let causes = if causes.is_empty() { String::new() } else { format!(": {causes}") };
    let mut text =
        format!("\n{name}'s last run (run {id}) had {errors} error{}{causes}\n", if errors == 1 { "" } else { "s" });
    match failures {
        Some(codes) => {
            for code in codes {
                text.push_str(&result_line(code));
                if let Some(node) = &code.node {
                    text.push_str(&format!(" [node {}]", crate::model::text::terminal_safe(node, 64)));
                }
                text.push('\n');
            }
        }
        None => text.push_str("(the outcomes of its codes are no longer kept)\n"),
    }
    text
}

/// The status table: one line a batch, columns padded to fit.
fn table(views: &[BatchView], source: &Source) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.every.clone().unwrap_or_else(|| "on demand".to_owned()),
                v.running.map_or_else(|| "?".to_owned(), |r| if r { "yes" } else { "no" }.to_owned()),
                v.last_run.as_ref().map_or_else(dash, |r| r.started_at.clone()),
                v.last_run.as_ref().map_or_else(|| "never run".to_owned(), run_result),
                v.next_run.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut text = match source {
        Source::Daemon { url } => format!("From the daemon at {url}:\n"),
        Source::StateDatabase { path, why } => format!("From the state database {path} ({why}; next runs unknown):\n"),
        Source::Fleet { name, servers } => format!("From the fleet {name} at {servers}:\n"),
    };
    text.push_str(&columns(&["BATCH", "EVERY", "RUNNING", "LAST RUN", "RESULT", "NEXT RUN"], &rows));
    if views.is_empty() {
        text.push_str("(no batch is configured)\n");
    }
    text
}

/// `header` and `rows` as lines of columns padded to fit.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(&mut header.iter().copied());
    for row in rows {
        text.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    text
}

/// The live nodes of a fleet, as a table below the batches.
fn nodes_table(nodes: &[NodeBeat]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| vec![n.node.clone(), n.heartbeat_at.clone(), n.in_flight.to_string(), n.joined_at.clone()])
        .collect();
    let mut text = format!("\nLive nodes: {}\n", nodes.len());
    if !rows.is_empty() {
        text.push_str(&columns(&["NODE", "LAST HEARTBEAT", "IN FLIGHT", "JOINED"], &rows));
    }
    text
}

/// A fleet's batches, their last and next runs, and its live nodes, read
/// from NATS.
async fn fleet_status(settings: &Settings, fleet: &FleetSettings, shown: Shown) -> Result<Found, FatalError> {
    let nats = Fleet::join(fleet, "flagsd-status", Patience::Once, |_| {}).await?;
    let names: Vec<String> = settings.batches.iter().map(|b| b.name.clone()).collect();
    let mut last = nats.last_runs(&names).await?;
    let now = SystemTime::now();
    let views: Vec<BatchView> = settings
        .batches
        .iter()
        .map(|b| {
            let last = last.remove(&b.name);
            BatchView {
                running: Some(last.as_ref().is_some_and(RunRecord::is_running)),
                next_run: b.every.map(|every| rfc3339(UNIX_EPOCH + Duration::from_millis(ticks_around(now, every).1))),
                ..BatchView::of(b, last)
            }
        })
        .collect();
    let mut failures = BTreeMap::new();
    if shown.failures {
        for (batch, id) in with_errors(&views) {
            if let Some(run) = nats.run_record(id).await? {
                let (codes, _) = nats.outcomes_of(&run).await?;
                failures.insert(batch, failed(codes));
            }
        }
    }
    let nodes = nats.live_nodes().await?;
    let source = Source::Fleet { name: fleet.name.clone(), servers: fleet.display_servers() };
    Ok(Found { source, views, nodes: Some(nodes), failures })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::StatusCounts;

    fn view(name: &str, every: Option<&str>, last_run: Option<RunRecord>) -> BatchView {
        BatchView {
            every: every.map(str::to_owned),
            next_run: every.map(|_| "2026-11-25T12:00:00.000Z".to_owned()),
            last_run,
            ..BatchView::sample(name)
        }
    }

    #[test]
    fn the_table_shows_last_and_next_runs() {
        let run = RunRecord {
            ended_at: Some("2026-11-25T06:00:01.000Z".to_owned()),
            state: crate::model::run::RunState::Finished,
            counts: Some(StatusCounts { downloaded: 2, unchanged: 18, not_found: 0, errors: 1 }),
            exit_status: Some(1),
            ..RunRecord::started(7, "populous", "schedule", "2026-11-25T06:00:00.000Z".to_owned())
        };
        let text = table(
            &[view("populous", Some("6h"), Some(run)), view("adhoc", None, None)],
            &Source::Daemon { url: "u".into() },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "From the daemon at u:");
        assert!(lines[1].starts_with("BATCH     EVERY      RUNNING  LAST RUN"), "{text}");
        assert!(lines[2].contains("exit 1: 2 downloaded, 18 unchanged, 1 errors"), "{text}");
        assert!(lines[2].ends_with("2026-11-25T12:00:00.000Z"), "{text}");
        assert!(lines[3].starts_with("adhoc     on demand  no       -"), "{text}");
        assert!(lines[3].contains("never run"), "{text}");
    }

    #[test]
    fn a_runs_result_says_its_state() {
        let started = || RunRecord::started(3, "b", "run", "2026-11-25T06:00:00.000Z".to_owned());
        let counts = StatusCounts { downloaded: 1, unchanged: 0, not_found: 0, errors: 2 };
        let cases = [
            (started(), "running"),
            (
                RunRecord { state: RunState::Failed, error: Some("output directory gone".into()), ..started() },
                "failed: output directory gone",
            ),
            (
                RunRecord { state: RunState::Cancelled, exit_status: Some(130), counts: Some(counts), ..started() },
                "cancelled (exit 130): 1 downloaded, 2 errors",
            ),
            (
                RunRecord { state: RunState::Finished, exit_status: Some(1), counts: Some(counts), ..started() },
                "exit 1: 1 downloaded, 2 errors",
            ),
        ];
        for (run, expected) in cases {
            assert_eq!(run_result(&run), expected, "{run:?}");
        }
    }
}
