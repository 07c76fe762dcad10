//! Exit statuses: how a command ended, as the process reports it.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | every code downloaded, unchanged or not found |
//! | 1 | at least one error outcome |
//! | 2 | usage or configuration error (nothing was downloaded) |
//! | 3 | fatal runtime error: output directory, client set-up, server bind, state database |
//! | 130 | interrupted (Ctrl-C, SIGINT) |
//! | 143 | terminated (SIGTERM) |

use crate::model::outcome::StatusCounts;

/// How a command ended, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every code downloaded or not found.
    Success = 0,
    /// At least one code ended in an error.
    SomeErrors = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Fatal runtime error.
    Fatal = 3,
    /// Interrupted by SIGINT.
    Interrupted = 130,
    /// Stopped by SIGTERM.
    Terminated = 143,
}

impl ExitStatus {
    /// The status of a run that finished every code: 1 if any ended in an
    /// error, else 0.
    pub fn of_counts(counts: &StatusCounts) -> Self {
        if counts.errors > 0 { Self::SomeErrors } else { Self::Success }
    }

    /// The numeric status for `std::process::exit`.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status a record wrote as `code` (an unknown number is a fatal
    /// error: no flagsd writes one).
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Success,
            1 => Self::SomeErrors,
            2 => Self::Usage,
            130 => Self::Interrupted,
            143 => Self::Terminated,
            _ => Self::Fatal,
        }
    }

    /// The worse of two statuses: interrupted, then fatal, usage, errors,
    /// success (what `flagsd run` exits with over its batches).
    pub fn worst(self, other: Self) -> Self {
        let rank = |s: Self| match s {
            Self::Success => 0,
            Self::SomeErrors => 1,
            Self::Usage => 2,
            Self::Fatal => 3,
            Self::Interrupted | Self::Terminated => 4,
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_wins() {
        use ExitStatus::*;
        assert_eq!(Success.worst(SomeErrors), SomeErrors);
        assert_eq!(Fatal.worst(SomeErrors), Fatal);
        assert_eq!(Usage.worst(Fatal), Fatal);
        assert_eq!(Interrupted.worst(Fatal), Interrupted);
        assert_eq!(Success.worst(Success), Success);
    }

    #[test]
    fn errors_make_a_finished_run_status_1() {
        let mut counts = StatusCounts { downloaded: 3, not_found: 2, ..StatusCounts::default() };
        assert_eq!(ExitStatus::of_counts(&counts), ExitStatus::Success);
        counts.errors = 1;
        assert_eq!(ExitStatus::of_counts(&counts), ExitStatus::SomeErrors);
    }
}
