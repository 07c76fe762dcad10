//! `flagsd fetch`: one flags2 run from checked settings to exit status.

use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actors::{PoolOptions, Run};
use crate::config::{FetchConfig, ServerTarget};
use crate::download::{ClientOptions, Fetch, HttpFetcher, build_client};
use crate::exit::{ExitStatus, FatalError};
use crate::output::OutputDir;
use crate::report::{ConsoleSink, final_report, initial_report};
use crate::testserver::{TestServer, TestServerOptions, raise_open_files_limit};

/// How much longer than the client's own total timeout the coordinator waits
/// for a worker before giving up on it.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// Runs `fetch` on the current actix system: checks the output directory,
/// prints the initial report, downloads, prints the final report.
pub async fn run(config: FetchConfig) -> Result<ExitStatus, FatalError> {
    let output = Arc::new(OutputDir::prepare(&config.output)?);
    raise_open_files_limit();
    // Kept alive until the run ends.
    let demo;
    let base_url = match &config.server.target {
        ServerTarget::Url(url) => url.clone(),
        ServerTarget::Demo => {
            let server = TestServer::spawn(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                TestServerOptions::default(),
            )?;
            demo = server;
            demo.url()
        }
    };
    let client = build_client(&ClientOptions {
        pool_size: config.pool_size,
        timeouts: config.timeouts,
        no_proxy: config.server.target == ServerTarget::Demo,
    })?;
    let fetcher: Rc<dyn Fetch> = Rc::new(HttpFetcher::new(client, &base_url, output));
    let interrupted = crate::signals::interrupted().map_err(FatalError::Signals)?;

    print!(
        "{}",
        initial_report(
            &config.server.label,
            &base_url,
            &config.codes,
            config.pool_size
        )
    );
    let started = Instant::now();
    let options = PoolOptions {
        pool_size: config.pool_size,
        deadline: config.timeouts.total + DEADLINE_GRACE,
    };
    let sink = Box::new(ConsoleSink::new(config.verbose, config.codes.len()));
    let summary = Run::start(config.codes, fetcher, options, sink)
        .finish_or_interrupt(interrupted)
        .await?;
    print!("{}", final_report(&summary.counts, started.elapsed()));
    if summary.interrupted {
        eprintln!(
            "*** Interrupted: {} codes did not finish.",
            summary.unfinished
        );
    }
    Ok(ExitStatus::of_run(&summary))
}
