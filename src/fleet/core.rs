//! Joining a fleet: the NATS connection, and the streams and buckets every
//! node shares, created by whichever node comes first.
//!
//! Nodes only talk to NATS. A daemon keeps trying until NATS answers
//! ([`Fleet::join`] with retries), saying why in its log; the one-shot
//! commands (`run`, `status`) give up at once with a clear error.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv, stream};
use async_nats::{ConnectOptions, Event};

use super::names::Names;
use crate::config::FleetSettings;
use crate::config::validate::read_token_file;

/// How long a JetStream request or a publish acknowledgement may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the outcome stream keeps outcomes (and with them the per-code
/// details of a run).
const OUTCOMES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long an outcome's de-duplication id is remembered: longer than any
/// redelivery (an attempt's deadline plus the ack wait's grace).
const OUTCOME_DEDUP_WINDOW: Duration = Duration::from_secs(10 * 60);

/// How long a tick claim is kept: longer than any node's clock can lag.
const TICKS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// How long a node counts as live after its last heartbeat.
pub const NODE_LEASE: Duration = Duration::from_secs(10);

/// Something the fleet asked of NATS failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct FleetError {
    /// What was being done.
    pub what: String,
    /// What NATS (or the file system) said.
    pub detail: String,
}

impl FleetError {
    /// An error while doing `what`.
    pub fn new(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self { what: what.into(), detail: detail.to_string() }
    }
}

/// A joined fleet: the connection, the names, and the shared streams and
/// buckets. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    /// The fleet's names.
    pub names: Names,
    /// This process's name in the fleet.
    pub node: String,
    client: async_nats::Client,
    /// The JetStream context.
    pub js: jetstream::Context,
    /// The work-queue stream.
    pub work: stream::Stream,
    /// The outcome stream.
    pub outcomes: stream::Stream,
    /// Run records.
    pub runs: kv::Store,
    /// Tick claims.
    pub ticks: kv::Store,
    /// Validators for conditional requests.
    pub files: kv::Store,
    /// Heartbeats of the live nodes.
    pub nodes: kv::Store,
}

/// How to connect: a daemon waits for NATS, a one-shot command does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Keep trying (the daemon).
    Wait,
    /// Fail at once when NATS does not answer (`run`, `status`).
    Once,
}

/// Connects to the NATS servers of `settings` as `client_name`.
async fn connect(
    settings: &FleetSettings,
    client_name: &str,
    patience: Patience,
) -> Result<async_nats::Client, FleetError> {
    let mut options = match &settings.creds_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| FleetError::new(format!("fleet.creds_file '{}'", path.display()), e))?,
        None => ConnectOptions::new(),
    };
    if let Some(path) = &settings.token_file {
        options = options.token(read_token_file(path).map_err(|e| FleetError::new("fleet.token_file", e))?);
    }
    if let Some(path) = &settings.tls_ca_file {
        options = options.add_root_certificates(path.clone()).require_tls(true);
    }
    options = options
        .name(client_name)
        .connection_timeout(Duration::from_secs(3))
        // The first attempt at once (the client counts it as attempt 1),
        // then 100 ms more for each failed one, up to 2 s.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100 * attempts.saturating_sub(1) as u64).min(Duration::from_secs(2))
        })
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("connected to NATS"),
                Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                Event::LameDuckMode => tracing::warn!("the NATS server is shutting down (lame duck mode)"),
                Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
    if patience == Patience::Wait {
        options = options.retry_on_initial_connect();
    }
    let servers = settings.servers.join(", ");
    options
        .connect(settings.servers.as_slice())
        .await
        .map_err(|e| FleetError::new(format!("cannot connect to NATS at {servers}"), e))
}

impl Fleet {
    /// Connects and makes sure the fleet's streams and buckets exist (with
    /// `settings.replicas` replicas). With [`Patience::Wait`], keeps
    /// trying until it succeeds, logging each failure and calling `waiting`
    /// with the reason (for readiness reports).
    pub async fn join(
        settings: &FleetSettings,
        client_name: &str,
        patience: Patience,
        mut waiting: impl FnMut(&FleetError),
    ) -> Result<Self, FleetError> {
        let client = connect(settings, client_name, patience).await?;
        let mut backoff = Duration::from_millis(200);
        loop {
            match Self::set_up(settings, client.clone()).await {
                Ok(fleet) => return Ok(fleet),
                Err(e) if patience == Patience::Wait => {
                    let e = match client.connection_state() {
                        State::Connected => e,
                        state => FleetError::new(
                            format!("NATS at {} is not reachable ({state})", settings.servers.join(", ")),
                            e,
                        ),
                    };
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot join the fleet yet");
                    waiting(&e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn set_up(settings: &FleetSettings, client: async_nats::Client) -> Result<Self, FleetError> {
        let names = Names::new(&settings.name);
        let js = jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client.clone());
        let replicas = settings.replicas;
        let work = js
            .get_or_create_stream(stream::Config {
                name: names.work_stream(),
                subjects: vec![names.work_subjects()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| FleetError::new(format!("cannot create the stream {}", names.work_stream()), e))?;
        let outcomes = js
            .get_or_create_stream(stream::Config {
                name: names.outcome_stream(),
                subjects: vec![names.outcome_subjects()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                max_age: OUTCOMES_KEPT,
                duplicate_window: OUTCOME_DEDUP_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| FleetError::new(format!("cannot create the stream {}", names.outcome_stream()), e))?;
        let bucket = |name: String, max_age: Duration| kv::Config {
            bucket: name,
            history: 1,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let runs = key_value(&js, bucket(names.runs_bucket(), Duration::ZERO)).await?;
        let ticks = key_value(&js, bucket(names.ticks_bucket(), TICKS_KEPT)).await?;
        let files = key_value(&js, bucket(names.files_bucket(), Duration::ZERO)).await?;
        let nodes = key_value(&js, bucket(names.nodes_bucket(), NODE_LEASE)).await?;
        Ok(Self { names, node: settings.node.clone(), client, js, work, outcomes, runs, ticks, files, nodes })
    }

    /// Sends what is buffered, so that nothing published is lost at exit.
    pub async fn flush(&self) {
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "cannot flush the NATS connection");
        }
    }
}

/// The bucket of `config`, created if missing (by this node or a concurrent
/// one: creating with the same settings is idempotent).
async fn key_value(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, FleetError> {
    let name = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(create) => js
            .get_key_value(&name)
            .await
            .map_err(|e| FleetError::new(format!("cannot create the bucket {name}"), format!("{create}; {e}"))),
    }
}
