//! `flagsd status`: each batch's last and next run, in a table.
//!
//! It asks the daemon's admin endpoint for the batches
//! ([`BatchView`]s, the typed API of `GET /batches`) when `admin.listen` is
//! configured and the daemon answers; otherwise it builds the same views
//! from the configuration and the state database, without the next run
//! (only the daemon knows it) and without `running`. It never creates a
//! database: a missing one means no batch has run yet.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;

use super::admin_client::AdminClient;
use crate::config::{FleetSettings, Settings};
use crate::fleet::schedule::ticks_around;
use crate::fleet::{Fleet, Patience};
use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::model::time::rfc3339;
use crate::present::api::{BatchView, RunRecord};
use crate::present::report::emit;
use crate::store::state::{DB_FILE, StateDb};

/// Where the views came from, said above the table.
enum Source {
    Admin(String),
    StateDb { path: String, why: String },
    Fleet { name: String, servers: String },
}

/// `flagsd status`: prints a table of the configured batches with their
/// last and next run.
pub async fn status(settings: &Settings) -> Result<ExitStatus, FatalError> {
    if let Some(fleet) = &settings.fleet {
        return fleet_status(settings, fleet).await;
    }
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
                emit(&table(&views, &Source::Admin(client.url().to_owned())));
                return Ok(ExitStatus::Success);
            }
            Err(e) => why = e.to_string(),
        }
    }
    let path = settings.state_dir.join(DB_FILE).display().to_string();
    let mut last = match StateDb::open_read_only(&settings.state_dir)? {
        Some(db) => db.last_runs()?,
        None => {
            why.push_str("; no state database yet");
            Default::default()
        }
    };
    let views: Vec<BatchView> = settings.batches.iter().map(|b| BatchView::of(b, last.remove(&b.name))).collect();
    let source = Source::StateDb { path, why };
    emit(&table(&views, &source));
    Ok(ExitStatus::Success)
}

/// A run's result in a few words: `0 (20 downloaded, 174 unchanged)`.
fn run_result(run: &RunRecord) -> String {
    let (Some(status), Some(c)) = (run.exit_status, run.counts) else {
        return "running or incomplete".to_owned();
    };
    let mut parts = vec![format!("{} downloaded", c.downloaded)];
    for (n, what) in [(c.unchanged, "unchanged"), (c.not_found, "not found"), (c.errors, "errors")] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    format!("exit {status}: {}", parts.join(", "))
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
        Source::Admin(url) => format!("From the daemon at {url}:\n"),
        Source::StateDb { path, why } => format!("From the state database {path} ({why}; next runs unknown):\n"),
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

/// `flagsd status` of a fleet: its batches' last and next runs, and its
/// live nodes, read from NATS.
async fn fleet_status(settings: &Settings, fleet: &FleetSettings) -> Result<ExitStatus, FatalError> {
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
    let source = Source::Fleet { name: fleet.name.clone(), servers: fleet.display_servers() };
    let mut text = table(&views, &source);
    let nodes = nats.live_nodes().await?;
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| vec![n.node.clone(), n.heartbeat_at.clone(), n.in_flight.to_string(), n.joined_at.clone()])
        .collect();
    text.push_str(&format!("\nLive nodes: {}\n", nodes.len()));
    if !rows.is_empty() {
        text.push_str(&columns(&["NODE", "LAST HEARTBEAT", "IN FLIGHT", "JOINED"], &rows));
    }
    emit(&text);
    Ok(ExitStatus::Success)
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
        let text =
            table(&[view("populous", Some("6h"), Some(run)), view("adhoc", None, None)], &Source::Admin("u".into()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "From the daemon at u:");
        assert!(lines[1].starts_with("BATCH     EVERY      RUNNING  LAST RUN"), "{text}");
        assert!(lines[2].contains("exit 1: 2 downloaded, 18 unchanged, 1 errors"), "{text}");
        assert!(lines[2].ends_with("2026-11-25T12:00:00.000Z"), "{text}");
        assert!(lines[3].starts_with("adhoc     on demand  no       -"), "{text}");
        assert!(lines[3].contains("never run"), "{text}");
    }
}
