//! One download job, checked: which codes, from where, into where, how.

use std::path::PathBuf;

use super::file::Naming;
use super::server::Server;
use crate::engine::retry::RetryPolicy;
use crate::http::client::Timeouts;
use crate::model::codes::CountryCode;

/// Largest worker pool, whatever `--max-req` says.
pub const MAX_CONCURRENCY: usize = 1000;

/// One download job: which codes, from where, into where, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    /// The codes to download, sorted, unique, limited.
    pub codes: Vec<CountryCode>,
    /// Number of workers: min(max_req, 1000, number of codes).
    pub pool_size: usize,
    /// Where the flags come from.
    pub server: Server,
    /// Output directory.
    pub output: PathBuf,
    /// HTTP timeouts.
    pub timeouts: Timeouts,
    /// When to try failed codes again.
    pub retry: RetryPolicy,
    /// Largest body saved, in bytes.
    pub max_size: u64,
    /// File naming.
    pub naming: Naming,
}

/// The pool size for a run: at most `max_req`, [`MAX_CONCURRENCY`] and the
/// number of codes, and at least one.
pub fn pool_size(max_req: usize, codes: usize) -> usize {
    max_req.min(MAX_CONCURRENCY).min(codes).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_is_clamped_to_1000_and_to_the_codes() {
        assert_eq!(pool_size(5000, 676), 676);
        assert_eq!(pool_size(5000, 5000), 1000);
        assert_eq!(pool_size(30, 676), 30);
        assert_eq!(pool_size(30, 3), 3);
        assert_eq!(pool_size(1, 0), 1);
    }
}
