//! The names of a fleet's streams, consumers, buckets, subjects and keys,
//! all under the fleet's name, so that fleets share a NATS cluster without
//! meeting.
//!
//! | what | name |
//! |---|---|
//! | work-queue stream | `{fleet}_work`, subjects `{fleet}.work.{batch}.{run}` |
//! | a batch's consumer | `{fleet}-{batch}`, filter `{fleet}.work.{batch}.*` |
//! | outcome stream | `{fleet}_outcomes`, subjects `{fleet}.outcomes.{run}.{kind}` |
//! | run records | bucket `{fleet}_runs`: `run.{id}`, `last.{batch}`, `next-id` |
//! | tick claims | bucket `{fleet}_ticks`: `{batch}.{tick}` |
//! | validators | bucket `{fleet}_files`: `{batch}.{CC}` |
//! | live nodes | bucket `{fleet}_nodes`: `{node}` |
//!
//! A batch name may hold a `.`, which separates subject tokens; in names
//! and keys such a batch is written with `_` for `.` and a hash of its
//! exact name appended, so two batches never share a token.

use crate::model::codes::CountryCode;

/// The names of one fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    fleet: String,
}

/// A batch name as one subject token: itself, or (with a `.`) `_` for
/// each `.` and 8 hex digits of a hash (FNV-1a) of the exact name.
pub fn token(batch: &str) -> String {
    if !batch.contains('.') {
        return batch.to_owned();
    }
    let hash = batch.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{}-{hash:08x}", batch.replace('.', "_"))
}

impl Names {
    /// The names of the fleet `fleet`.
    pub fn new(fleet: &str) -> Self {
        Self { fleet: fleet.to_owned() }
    }

    /// The fleet's name.
    pub fn fleet(&self) -> &str {
        &self.fleet
    }

    /// The work-queue stream.
    pub fn work_stream(&self) -> String {
        format!("{}_work", self.fleet)
    }

    /// Every work subject.
    pub fn work_subjects(&self) -> String {
        format!("{}.work.>", self.fleet)
    }

    /// The subject of run `run`'s codes of `batch`.
    pub fn work_subject(&self, batch: &str, run: i64) -> String {
        format!("{}.work.{}.{run}", self.fleet, token(batch))
    }

    /// The subjects of every run of `batch`.
    pub fn batch_filter(&self, batch: &str) -> String {
        format!("{}.work.{}.*", self.fleet, token(batch))
    }

    /// The durable consumer every node pulls `batch`'s codes from.
    pub fn consumer(&self, batch: &str) -> String {
        format!("{}-{}", self.fleet, token(batch))
    }

    /// The outcome stream.
    pub fn outcome_stream(&self) -> String {
        format!("{}_outcomes", self.fleet)
    }

    /// Every outcome subject.
    pub fn outcome_subjects(&self) -> String {
        format!("{}.outcomes.>", self.fleet)
    }

    /// The subject of run `run`'s outcomes of kind `kind` (`downloaded`,
    /// `not_found`, …): one subject a kind, so that the stream counts them.
    pub fn outcome_subject(&self, run: i64, kind: &str) -> String {
        format!("{}.outcomes.{run}.{kind}", self.fleet)
    }

    /// The subjects of every outcome of run `run`.
    pub fn run_outcomes(&self, run: i64) -> String {
        format!("{}.outcomes.{run}.*", self.fleet)
    }

    /// The bucket of run records.
    pub fn runs_bucket(&self) -> String {
        format!("{}_runs", self.fleet)
    }

    /// The bucket of tick claims.
    pub fn ticks_bucket(&self) -> String {
        format!("{}_ticks", self.fleet)
    }

    /// The bucket of validators.
    pub fn files_bucket(&self) -> String {
        format!("{}_files", self.fleet)
    }

    /// The bucket of live nodes.
    pub fn nodes_bucket(&self) -> String {
        format!("{}_nodes", self.fleet)
    }
}

/// The key of run `id`'s record.
pub fn run_key(id: i64) -> String {
    format!("run.{id}")
}

/// The key holding the id of `batch`'s latest run.
pub fn last_key(batch: &str) -> String {
    format!("last.{}", token(batch))
}

/// The key of the claim on `batch`'s tick at `tick` (UNIX milliseconds).
pub fn tick_key(batch: &str, tick: u64) -> String {
    format!("{}.{tick}", token(batch))
}

/// The key of what is known of `code`'s file in `batch`.
pub fn file_key(batch: &str, code: CountryCode) -> String {
    format!("{}.{code}", token(batch))
}

/// The de-duplication id of `code`'s message or outcome in run `run`.
pub fn message_id(run: i64, code: CountryCode) -> String {
    format!("{run}/{code}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names_become_single_tokens_without_collisions() {
        assert_eq!(token("daily"), "daily");
        assert_eq!(token("a-b_c"), "a-b_c");
        let dotted = token("eu.daily");
        assert!(dotted.starts_with("eu_daily-") && dotted.len() == "eu_daily-".len() + 8, "{dotted}");
        assert!(!dotted.contains('.'));
        assert_ne!(token("a.b"), token("a_b"));
        assert_ne!(token("a.b"), token("a.c"));
    }

    #[test]
    fn names_live_under_the_fleet() {
        let names = Names::new("flags");
        assert_eq!(names.work_subject("daily", 7), "flags.work.daily.7");
        assert_eq!(names.batch_filter("daily"), "flags.work.daily.*");
        assert_eq!(names.consumer("daily"), "flags-daily");
        assert_eq!(names.outcome_subject(7, "not_found"), "flags.outcomes.7.not_found");
        assert_eq!(names.run_outcomes(7), "flags.outcomes.7.*");
        assert_eq!((names.work_stream(), names.runs_bucket()), ("flags_work".to_owned(), "flags_runs".to_owned()));
        let br = CountryCode::new(b'B', b'R').expect("a code");
        assert_eq!((file_key("daily", br), message_id(7, br)), ("daily.BR".to_owned(), "7/BR".to_owned()));
        assert_eq!(
            (run_key(7), last_key("daily"), tick_key("daily", 60)),
            ("run.7".into(), "last.daily".into(), "daily.60".into())
        );
    }
}
