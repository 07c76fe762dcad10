//! A download job made ready: the shared set-up of `fetch`, `run` and `serve`.
//!
//! Preparing a job checks (and creates) the output directory, starts the
//! built-in server for `DEMO`, and builds the HTTP client, all before any
//! request, so each failure is reported once, up front.

use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::actors::{OutcomeSink, PoolOptions, Run};
use crate::config::file::Naming;
use crate::config::{JobConfig, ServerTarget};
use crate::download::{ClientOptions, Fetch, HttpFetcher, build_client};
use crate::exit::FatalError;
use crate::output::OutputDir;
use crate::testserver::{TestServer, TestServerOptions};

/// How much longer than the client's own total timeout the coordinator waits
/// for a worker before giving up on it.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// A job whose output directory, server and client are ready.
pub struct PreparedJob {
    /// The base URL requests go to.
    pub base_url: String,
    fetcher: Rc<dyn Fetch>,
    options: PoolOptions,
    /// The in-process server of `DEMO`, kept alive as long as the job.
    _demo: Option<TestServer>,
}

impl PreparedJob {
    /// Prepares `job`; nothing has been requested when this fails.
    pub fn prepare(job: &JobConfig) -> Result<Self, FatalError> {
        let output = Arc::new(OutputDir::prepare(&job.output)?);
        let (base_url, demo) = match &job.server.target {
            ServerTarget::Url(url) => (url.clone(), None),
            ServerTarget::Demo => {
                let server = TestServer::spawn(
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    TestServerOptions::default(),
                )?;
                (server.url(), Some(server))
            }
        };
        let client = build_client(&ClientOptions {
            pool_size: job.pool_size,
            timeouts: job.timeouts,
            no_proxy: demo.is_some(),
        })?;
        let fetcher = HttpFetcher::new(client, &base_url, output);
        let fetcher: Rc<dyn Fetch> = match job.naming {
            Naming::Code => Rc::new(fetcher),
            Naming::Country => Rc::new(fetcher.naming_by_country()),
        };
        let options = PoolOptions {
            pool_size: job.pool_size,
            deadline: job.timeouts.total + DEADLINE_GRACE,
        };
        Ok(Self {
            base_url,
            fetcher,
            options,
            _demo: demo,
        })
    }

    /// Starts the coordinator for `job`'s codes on the current arbiter.
    pub fn start(&self, job: &JobConfig, sink: Box<dyn OutcomeSink>) -> Run {
        Run::start(
            job.codes.clone(),
            Rc::clone(&self.fetcher),
            self.options,
            sink,
        )
    }
}
