//! What one batch of `flagsd run` leaves to print, whether it ran here or
//! in the fleet.

use crate::config::{BatchConfig, ServerTarget};
use crate::http::url::redact_credentials;
use crate::model::exit::ExitStatus;
use crate::present::results::JobResult;

/// What a batch run leaves to print: its report (stdout) and any fatal
/// error (stderr), its exit status, and its result for `--json`.
pub struct BatchReport {
    /// The report text.
    pub report: String,
    /// The fatal error, said on stderr.
    pub error: Option<String>,
    /// The batch's exit status.
    pub status: ExitStatus,
    /// The batch's `--json` result.
    pub result: JobResult,
}

/// The base URL a batch's report shows (credentials masked; none for `DEMO`,
/// whose port is only known once it runs).
pub fn display_url(batch: &BatchConfig) -> String {
    match &batch.job.server.target {
        ServerTarget::Url(url) => redact_credentials(url),
        ServerTarget::Demo => String::new(),
    }
}
