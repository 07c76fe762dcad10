//! `flagsd testserver`: the built-in flag server in the foreground.

use crate::job::FatalError;
use crate::model::exit::ExitStatus;
use crate::testserver::options::TestServerArgs;
use crate::testserver::server::serve_forever;

/// Serves the flags as `args` say until SIGINT or SIGTERM.
pub async fn testserver(args: TestServerArgs) -> Result<ExitStatus, FatalError> {
    let bind = args.bind;
    serve_forever(bind, args.into()).await?;
    Ok(ExitStatus::Success)
}
