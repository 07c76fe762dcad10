//! The open-files limit, and fitting a pool of workers into it.
//!
//! Every worker holds a socket and, while saving, a temporary file; with the
//! in-process `DEMO` server the server's end of each connection counts too.
//! A systemd service starts with a soft limit of 1024, so flagsd raises the
//! soft limit to the hard one at start (as servers do), and if even that
//! cannot hold the pool it says so and lowers the pool, instead of failing
//! with "too many open files" half way through a run.

/// The most connections the admin endpoint holds at once; more wait in its
/// listen backlog, so that a flood of them cannot take the descriptors
/// downloads need.
pub const ADMIN_CONNECTIONS: u64 = 32;

/// Descriptors kept aside for stdio, the runtime, logs, listeners and the
/// admin endpoint's connections.
const RESERVED_FDS: u64 = 64 + ADMIN_CONNECTIONS;

/// Raises the soft open-files limit to the hard limit; returns the new soft
/// limit (`None` if it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "open-files limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            None
        }
    }
}

/// The largest pool that `limit` open files can hold at `fds_per_worker`.
pub fn pool_capacity(limit: u64, fds_per_worker: u64) -> usize {
    let usable = limit.saturating_sub(RESERVED_FDS) / fds_per_worker.max(1);
    usize::try_from(usable).unwrap_or(usize::MAX).max(1)
}

/// `pool` lowered to what the current open-files limit can hold, with a
/// warning when it had to be lowered.
pub fn fit_pool(pool: usize, fds_per_worker: u64) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else { return pool };
    let capacity = pool_capacity(soft, fds_per_worker);
    if pool > capacity {
        tracing::warn!(
            requested = pool,
            lowered_to = capacity,
            limit = soft,
            "the open-files limit ({soft}) cannot hold {pool} concurrent connections; using {capacity} \
             (raise it with ulimit -n, or LimitNOFILE= under systemd)"
        );
        capacity
    } else {
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_leaves_a_reserve_and_never_drops_to_zero() {
        assert_eq!(pool_capacity(1024, 2), 464);
        assert_eq!(pool_capacity(1024, 3), 309);
        assert_eq!(pool_capacity(10, 2), 1);
        assert_eq!(pool_capacity(524_288, 2), 262_096);
    }
}
