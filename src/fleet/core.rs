//! Joining a fleet: the NATS connection, and the streams and buckets every
//! node shares, created by whichever node comes first, and created again by
//! whichever node finds one missing (NATS restarted without its store, a
//! bucket deleted to cap its growth): [`Fleet::heal`].
//!
//! Nodes only talk to NATS. A daemon keeps trying until NATS answers
//! ([`Fleet::join`] with [`Patience::Wait`]), saying why in its log; the
//! one-shot commands (`run`, `status`, `cancel`) give up at once with a
//! clear error. Every NATS error keeps its source and is classified
//! ([`classify`]): unreachable, credentials refused, something missing, or
//! other, so that callers retry, heal or give up as fits.

use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::{self, kv, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};

use super::messages::Dropped;
use super::names::Names;
use crate::config::FleetSettings;
use crate::config::fleet::UrlAuth;
use crate::config::validate::read_token_file;
use crate::job::ledger::{FleetFailure, LedgerError};

/// How long a JetStream request or a publish acknowledgement may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the outcome stream keeps outcomes (and with them the per-code
/// details of a run).
const OUTCOMES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most the outcome stream holds; the oldest outcomes go first.
const OUTCOMES_MAX_BYTES: i64 = 1 << 30;

/// How long a node counts as live after its last heartbeat.
pub const NODE_LEASE: Duration = Duration::from_secs(10);

/// The least time between two attempts at creating what is missing.
const HEAL_EVERY: Duration = Duration::from_secs(1);

/// A fleet error: what was being done, and NATS's error, classified.
pub type FleetError = LedgerError;

/// The error of doing `what` that NATS answered with `error`.
pub fn nats_error(what: impl Into<String>, error: impl Into<Box<dyn Error + Send + Sync>>) -> FleetError {
    let source = error.into();
    LedgerError::Fleet { what: what.into(), kind: classify(&*source), source }
}

/// An error of doing `what` for a reason of flagsd's own (not NATS's).
pub fn fleet_error(what: impl Into<String>, kind: FleetFailure, reason: impl Into<String>) -> FleetError {
    LedgerError::Fleet { what: what.into(), kind, source: reason.into().into() }
}

/// What kind of failure `error` (and its sources) is. async-nats has an
/// error kind per call; their names are read off the chain's debug form.
pub fn classify(error: &(dyn Error + 'static)) -> FleetFailure {
    let mut chain = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        chain.push_str(&format!("{e:?} {e} "));
        next = e.source();
    }
    let has = |words: &[&str]| words.iter().any(|w| chain.contains(w));
    if has(&["AuthorizationViolation", "Authentication", "authorization violation", "Permissions Violation"]) {
        FleetFailure::Refused
    } else if has(&[
        "NoResponders",
        "no responders",
        "StreamNotFound",
        "stream not found",
        "consumer not found",
        "NotFound",
    ]) {
        // With NATS up, nothing answering a JetStream subject means its
        // stream (or bucket) is gone.
        FleetFailure::Missing
    } else if has(&[
        "TimedOut",
        "timed out",
        "Disconnected",
        "disconnected",
        "BrokenPipe",
        "broken pipe",
        "Io",
        "connection",
    ]) {
        FleetFailure::Unreachable
    } else {
        FleetFailure::Other
    }
}

/// A joined fleet: the connection, the names, and the shared streams and
/// buckets. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Fleet {
    /// The fleet's names.
    pub names: Names,
    /// This process's name in the fleet.
    pub node: String,
    /// The servers as messages show them (credentials masked).
    pub servers: String,
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
    /// File-name claims.
    pub file_names: kv::Store,
    /// Heartbeats of the live nodes.
    pub nodes: kv::Store,
    /// The messages this process dropped, by reason.
    pub dropped: Arc<Dropped>,
    /// What the fleet was set up with, to set it up again.
    plan: Arc<Plan>,
    /// The last time [`Fleet::heal`] ran.
    healed: Arc<Mutex<Option<Instant>>>,
}

/// How the streams and buckets are made.
struct Plan {
    replicas: usize,
    ack_wait: Duration,
    duplicate_window: Duration,
}

/// How to connect: a daemon waits for NATS, a one-shot command does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Keep trying (the daemon).
    Wait,
    /// Fail at once when NATS does not answer (`run`, `status`, `cancel`).
    Once,
}

/// The last thing the servers refused, for the reason a node gives while
/// it waits.
type Refusal = Arc<Mutex<Option<String>>>;

/// Connects to the NATS servers of `settings` as `client_name`.
async fn connect(
    settings: &FleetSettings,
    client_name: &str,
    patience: Patience,
    refusal: &Refusal,
) -> Result<async_nats::Client, FleetError> {
    let servers = settings.display_servers();
    let mut options = match &settings.creds_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| nats_error(format!("fleet.creds_file '{}'", path.display()), e))?,
        None => ConnectOptions::new(),
    };
    if let Some(path) = &settings.token_file {
        let token =
            read_token_file(path).map_err(|e| fleet_error("fleet.token_file", FleetFailure::Other, e.to_string()))?;
        options = options.token(token);
    }
    match &settings.url_auth {
        Some(UrlAuth::UserPassword { user, password }) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
        Some(UrlAuth::Token(token)) => options = options.token(token.clone()),
        None => {}
    }
    if let Some(path) = &settings.tls_ca_file {
        options = options.add_root_certificates(path.clone()).require_tls(true);
    }
    let refused = Arc::clone(refusal);
    options = options
        .name(client_name)
        .connection_timeout(Duration::from_secs(3))
        // The first attempt at once (the client counts it as attempt 1),
        // then 100 ms more for each failed one, up to 2 s.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100 * attempts.saturating_sub(1) as u64).min(Duration::from_secs(2))
        })
        .event_callback(move |event| {
            let refused = Arc::clone(&refused);
            async move {
                match event {
                    Event::Connected => {
                        *refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
                        tracing::info!("connected to NATS");
                    }
                    Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                    Event::LameDuckMode => tracing::warn!("the NATS server is shutting down (lame duck mode)"),
                    Event::ServerError(ServerError::AuthorizationViolation) => {
                        *refused.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some("the server refused the credentials (authorization violation)".to_owned());
                        tracing::warn!("NATS refused the credentials");
                    }
                    Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        });
    if patience == Patience::Wait {
        options = options.retry_on_initial_connect();
    }
    options.connect(settings.servers.as_slice()).await.map_err(|e| {
        if e.kind() == ConnectErrorKind::AuthorizationViolation {
            fleet_error(format!("NATS at {servers} refused the credentials"), FleetFailure::Refused, e.to_string())
        } else {
            nats_error(format!("cannot connect to NATS at {servers}"), e)
        }
    })
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
        let refusal = Refusal::default();
        let client = connect(settings, client_name, patience, &refusal).await?;
        let mut backoff = Duration::from_millis(200);
        loop {
            match Self::set_up(settings, client.clone()).await {
                Ok(fleet) => return Ok(fleet),
                Err(e) if patience == Patience::Wait => {
                    let servers = settings.display_servers();
                    let refused = refusal.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    let e = match (refused, client.connection_state()) {
                        (Some(why), _) => fleet_error(
                            format!("NATS at {servers} refused the credentials"),
                            FleetFailure::Refused,
                            why,
                        ),
                        (None, State::Connected) => e,
                        (None, state) => fleet_error(
                            format!("NATS at {servers} is not reachable ({state})"),
                            FleetFailure::Unreachable,
                            e.to_string(),
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
        let plan = Plan {
            replicas: settings.replicas,
            ack_wait: settings.ack_wait,
            duplicate_window: settings.duplicate_window,
        };
        let made = make_all(&js, &names, &plan).await?;
        Ok(Self {
            names,
            node: settings.node.clone(),
            servers: settings.display_servers(),
            client,
            js,
            work: made.work,
            outcomes: made.outcomes,
            runs: made.runs,
            ticks: made.ticks,
            files: made.files,
            file_names: made.file_names,
            nodes: made.nodes,
            dropped: Arc::default(),
            plan: Arc::new(plan),
            healed: Arc::default(),
        })
    }

    /// Creates again whatever stream or bucket is missing (at most once a
    /// second, however many callers found one missing): the handles this
    /// fleet holds address them by name, so they work again at once.
    pub async fn heal(&self) -> Result<(), FleetError> {
        {
            let mut healed = self.healed.lock().unwrap_or_else(PoisonError::into_inner);
            if healed.is_some_and(|at| at.elapsed() < HEAL_EVERY) {
                return Ok(());
            }
            *healed = Some(Instant::now());
        }
        make_all(&self.js, &self.names, &self.plan).await?;
        tracing::info!("the fleet's streams and buckets are in place");
        Ok(())
    }

    /// The fleet's streams (buckets are streams too) that NATS does not
    /// have: someone deleted them, or NATS lost its state.
    pub async fn missing(&self) -> Result<Vec<String>, FleetError> {
        use futures_util::StreamExt as _;
        let mut names = self.js.stream_names();
        let mut found = std::collections::HashSet::new();
        while let Some(name) = names.next().await {
            found.insert(name.map_err(|e| nats_error("cannot list the streams", e))?);
        }
        let names = &self.names;
        let buckets = [
            names.runs_bucket(),
            names.ticks_bucket(),
            names.files_bucket(),
            names.names_bucket(),
            names.nodes_bucket(),
        ];
        let wanted =
            [names.work_stream(), names.outcome_stream()].into_iter().chain(buckets.iter().map(|b| format!("KV_{b}")));
        Ok(wanted.filter(|name| !found.contains(name)).collect())
    }

    /// How long a node may hold a code without a sign of life.
    pub fn ack_wait(&self) -> Duration {
        self.plan.ack_wait
    }

    /// Whether the connection to NATS is up.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Sends what is buffered, so that nothing published is lost at exit.
    pub async fn flush(&self) {
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "cannot flush the NATS connection");
        }
    }
}

/// The streams and buckets, as made (or found).
struct Made {
    work: stream::Stream,
    outcomes: stream::Stream,
    runs: kv::Store,
    ticks: kv::Store,
    files: kv::Store,
    file_names: kv::Store,
    nodes: kv::Store,
}

/// Makes every stream and bucket of the fleet that is missing.
async fn make_all(js: &jetstream::Context, names: &Names, plan: &Plan) -> Result<Made, FleetError> {
    let replicas = plan.replicas;
    let stream = |name: String, subjects: String| stream::Config {
        name,
        subjects: vec![subjects],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: plan.duplicate_window,
        ..Default::default()
    };
    let work = stream(names.work_stream(), names.work_subjects());
    let work = stream::Config { retention: stream::RetentionPolicy::WorkQueue, ..work };
    let outcomes = stream(names.outcome_stream(), names.outcome_subjects());
    let outcomes = stream::Config {
        retention: stream::RetentionPolicy::Limits,
        max_age: OUTCOMES_KEPT,
        max_bytes: OUTCOMES_MAX_BYTES,
        ..outcomes
    };
    let make_stream = async |config: stream::Config| {
        let name = config.name.clone();
        js.get_or_create_stream(config).await.map_err(|e| nats_error(format!("cannot create the stream {name}"), e))
    };
    let bucket = |name: String, max_age: Duration| kv::Config {
        bucket: name,
        history: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    // All at once: each is a round trip to NATS of its own, and every
    // `flagsd run` in a fleet waits for them before it queues anything.
    let (work, outcomes, runs, ticks, files, file_names, nodes) = tokio::try_join!(
        make_stream(work),
        make_stream(outcomes),
        key_value(js, bucket(names.runs_bucket(), Duration::ZERO)),
        key_value(js, bucket(names.ticks_bucket(), Duration::ZERO)),
        key_value(js, bucket(names.files_bucket(), Duration::ZERO)),
        key_value(js, bucket(names.names_bucket(), Duration::ZERO)),
        key_value(js, bucket(names.nodes_bucket(), NODE_LEASE)),
    )?;
    Ok(Made { work, outcomes, runs, ticks, files, file_names, nodes })
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
            .map_err(|e| nats_error(format!("cannot create the bucket {name}"), format!("{create}; {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named(&'static str);

    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Named {}

    #[test]
    fn errors_are_classified_by_what_nats_said() {
        assert_eq!(classify(&Named("jetstream request timed out")), FleetFailure::Unreachable);
        assert_eq!(classify(&Named("no responders")), FleetFailure::Missing);
        assert_eq!(classify(&Named("stream not found")), FleetFailure::Missing);
        assert_eq!(classify(&Named("authorization violation")), FleetFailure::Refused);
        assert_eq!(classify(&Named("wrong last sequence")), FleetFailure::Other);
        let e = nats_error("cannot read run 3", Named("timed out"));
        assert_eq!(e.to_string(), "cannot read run 3: timed out");
        assert!(e.is_transient());
    }
}
