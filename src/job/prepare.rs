//! A download job made ready: the shared set-up of `fetch`, `run` and `serve`.
//!
//! Preparing a job checks (and creates) the output directory, starts the
//! built-in server for `DEMO`, and builds the HTTP client, all before any
//! request, so each failure is reported once, up front.

use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::error::FatalError;
use super::fetch::FlagFetcher;
use crate::config::file::Naming;
use crate::config::{JobConfig, ServerTarget};
use crate::engine::{Fetch, OutcomeSink, Placement, Pool, PoolOptions, Run, RunSummary, WorkSource, WorkerThreads};
use crate::http::answer::FlagSource;
use crate::http::client::{ClientCache, ClientOptions, Clients};
use crate::http::connections::Opened;
use crate::http::rate::RateLimiters;
use crate::http::url::redact_credentials;
use crate::model::codes::CountryCode;
use crate::model::exit::ExitStatus;
use crate::present::results::{JobFacts, JobResult, job_result};
use crate::store::claims::NameClaims;
use crate::store::output::OutputDir;
use crate::store::save::{Names, Saver};
use crate::store::state::SharedKnownFiles;
use crate::sys::limits;
use crate::testserver::options::TestServerOptions;
use crate::testserver::server::TestServer;

/// Slack on top of the client's own total timeouts for one attempt.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// What the jobs of one process share: HTTP clients, rate limits per
/// server, and the threads the workers run on.
pub struct JobContext {
    /// Rate limiters by server label.
    pub limiters: RateLimiters,
    /// HTTP clients by options.
    pub clients: ClientCache,
    /// The worker threads, started when a pool first needs them.
    pub threads: WorkerThreads,
    /// Count the connections the jobs open (see
    /// [`ClientOptions::count_connections`]).
    count_connections: bool,
    /// Keep timestamps (`fetch --timestamping`; see [`Saver::timestamping`]).
    timestamps: bool,
}

impl JobContext {
    /// A context whose pools use at most `threads` threads, for a process
    /// that runs about `workload` workers at once (0 when it runs one job:
    /// its pool decides).
    pub fn new(threads: usize, workload: usize) -> Self {
        let threads = WorkerThreads::new(threads, workload);
        Self {
            limiters: RateLimiters::default(),
            clients: ClientCache::default(),
            threads,
            count_connections: true,
            timestamps: false,
        }
    }

    /// Saves files with the server's time, and asks for a file that has no
    /// earlier record with its own (`fetch --timestamping`).
    pub fn with_timestamps(mut self, on: bool) -> Self {
        self.timestamps = on;
        self
    }

    /// Counts no connections: for a `fetch` that reports none (neither
    /// `-v` nor `--json`); [`PreparedJob::opened`] is then zero.
    pub fn without_connection_counts(mut self) -> Self {
        self.count_connections = false;
        self
    }
}

/// What a job's saving shares with others: the files earlier runs saved,
/// and where file names are claimed. The default keeps no run state and
/// claims names in this process.
#[derive(Default)]
pub struct Saving {
    /// `Some` when run state is kept: files that earlier runs saved (as
    /// others may keep them up to date meanwhile) are asked for
    /// conditionally, and every saved file is hashed.
    pub known: Option<SharedKnownFiles>,
    /// Where file names are claimed when files are named by country (a
    /// fleet's shared bucket); `None`: in this process, the names of
    /// `known`'s files reserved for their codes.
    pub claims: Option<Arc<dyn NameClaims>>,
}

/// Run state alone (`Some`) or none, names claimed in this process.
impl From<Option<SharedKnownFiles>> for Saving {
    fn from(known: Option<SharedKnownFiles>) -> Self {
        Self { known, claims: None }
    }
}

/// A job whose output directory, server and client are ready.
pub struct PreparedJob {
    /// The base URL requests go to, credentials masked (for reports).
    pub display_url: String,
    /// Workers in the pool: the job's pool size, lowered if the open-files
    /// limit cannot hold it.
    pub pool_size: usize,
    clients: Arc<Clients>,
    /// What the (shared) clients had opened when the job was prepared.
    opened_before: Opened,
    fetcher: Arc<dyn Fetch>,
    options: PoolOptions,
    placement: Placement,
    /// The in-process server of `DEMO`, kept alive as long as the job.
    _demo: Option<TestServer>,
}

impl PreparedJob {
    /// Prepares `job`, with what `context` shares between the jobs of this
    /// process, saving as `saving` says; nothing has been requested when
    /// this fails.
    pub fn prepare(job: &JobConfig, context: &JobContext, saving: Saving) -> Result<Self, FatalError> {
        let output = Arc::new(OutputDir::prepare(&job.output)?);
        let (base_url, demo) = match &job.server.target {
            ServerTarget::Url(url) => (url.clone(), None),
            ServerTarget::Demo => {
                let server =
                    TestServer::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), TestServerOptions::default())?;
                (server.url(), Some(server))
            }
        };
        // A socket and a temporary file per worker; the DEMO server's end too.
        let fds_per_worker = if demo.is_some() { 3 } else { 2 };
        let pool_size = limits::fit_pool(job.pool_size, fds_per_worker);
        let transport = job.server.transport.clone();
        let clients = context.clients.get(ClientOptions {
            timeouts: job.timeouts,
            no_proxy: demo.is_some(),
            transport,
            count_connections: context.count_connections,
        });
        let base = clients.prepare_for(&base_url)?;
        let opened_before = clients.opened();
        let limiter = job.server.rate.map(|rate| context.limiters.get(&job.server.label, rate));
        let mut source = FlagSource::new(Arc::clone(&clients), base).max_size(job.max_size).rate_limited(limiter);
        if demo.is_some() {
            source = source.recorded_as(&job.server.label);
        }
        let names = match job.naming {
            Naming::Code => Names::ByCode,
            Naming::Country => Names::ByCountry(saving.claims),
        };
        let saver = Saver::new(output, names, saving.known, job.max_size).timestamping(context.timestamps);
        let fetcher: Arc<dyn Fetch> = Arc::new(FlagFetcher::new(source, saver));
        // Naming by country costs a second request (metadata.json) per code;
        // a first request to a TLS server may wait up to a connect timeout
        // for the probe of its protocol (see `http::protocol`).
        let requests = if job.naming == Naming::Country { 2 } else { 1 };
        let deadline = job.timeouts.total * requests + job.timeouts.connect + DEADLINE_GRACE;
        let options = PoolOptions { pool_size, deadline, retry: job.retry, keep_outcomes: true };
        let display_url = redact_credentials(&base_url);
        let placement = context.threads.placement(pool_size);
        Ok(Self { display_url, pool_size, clients, opened_before, fetcher, options, placement, _demo: demo })
    }

    /// The URL of `code` as reports show it (credentials masked).
    pub fn display_url_of(&self, code: CountryCode) -> String {
        self.fetcher.display_url(code)
    }

    /// The connections opened since the job was prepared. Jobs that share
    /// clients (batches of one server at the same time) share the count.
    pub fn opened(&self) -> Opened {
        self.clients.opened().since(self.opened_before)
    }

    /// The `--json` description of a run of `job` by this preparation, which
    /// started at `started` and took `elapsed`.
    pub fn result(
        &self,
        job: &JobConfig,
        summary: &RunSummary,
        (started, elapsed): (SystemTime, Duration),
        status: ExitStatus,
        run_id: Option<i64>,
    ) -> JobResult {
        let facts = JobFacts {
            server: &job.server.label,
            url: &self.display_url,
            connections: self.pool_size,
            opened: Some(self.opened()),
            codes: &job.codes,
            url_of: &|code| self.display_url_of(code),
            started,
            elapsed,
        };
        job_result(&facts, summary, status, run_id)
    }

    /// Starts the coordinator for `job`'s codes on the current arbiter.
    pub fn start(&self, job: &JobConfig, sink: Box<dyn OutcomeSink>) -> Run {
        Run::start(job.codes.clone(), self.pool(self.options), sink)
    }

    /// Starts a long-lived coordinator for the tasks of `source` (a shared
    /// queue) on the current arbiter; only counts are kept.
    pub fn start_from(&self, source: Rc<dyn WorkSource>, sink: Box<dyn OutcomeSink>) -> Run {
        let options = PoolOptions { keep_outcomes: false, ..self.options };
        Run::from_source(source, self.pool(options), sink)
    }

    fn pool(&self, options: PoolOptions) -> Pool {
        Pool { fetcher: Arc::clone(&self.fetcher), options, placement: self.placement.clone() }
    }

    /// The longest one attempt may take, all its requests included.
    pub fn deadline(&self) -> Duration {
        self.options.deadline
    }
}
