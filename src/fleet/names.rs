//! The names of a fleet's streams, consumers, buckets, subjects and keys,
//! all under the fleet's name, so that fleets share a NATS cluster without
//! meeting.
//!
//! | what | name |
//! |---|---|
//! | work-queue stream | `{fleet}_work`, subjects `{fleet}.work.{batch}.{run}.{n}` (`n` codes) |
//! | a batch's consumer | `{fleet}-{batch}`, filter `{fleet}.work.{batch}.>` |
//! | outcome stream | `{fleet}_outcomes`, subjects `{fleet}.outcomes.{run}.{node}` |
//! | run records | bucket `{fleet}_runs`: `last.{batch}`, `run.{id}`, `next-id` |
//! | tick claims | bucket `{fleet}_ticks`: `{batch}.{tick}` |
//! | validators | bucket `{fleet}_files`: `{batch}.{CC}` |
//! | file names | bucket `{fleet}_names`: `{batch}.{hash of the name}` |
//! | live nodes | bucket `{fleet}_nodes`: `{node}` |
//!
//! `{run}` is a run's key, `{id}-{nonce}`: the id people see, and a random
//! nonce that makes every run's subjects and de-duplication ids its own,
//! even when the ids start again at 1 (the runs bucket lost or deleted).
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

    /// The subject of a work item of `n` codes of run `run` of `batch`
    /// (`run`: a run key, as [`run_token`] makes it).
    pub fn work_subject(&self, batch: &str, run: &str, n: usize) -> String {
        format!("{}.work.{}.{run}.{n}", self.fleet, token(batch))
    }

    /// The subjects of every work item of run `run` of `batch`.
    pub fn run_work(&self, batch: &str, run: &str) -> String {
        format!("{}.work.{}.{run}.*", self.fleet, token(batch))
    }

    /// The run key in a work subject of `batch`, and the number of codes
    /// the subject says its item has (`None` when it does not say), if the
    /// subject is one.
    pub fn parse_work_subject<'a>(&self, batch: &str, subject: &'a str) -> Option<(&'a str, Option<usize>)> {
        let prefix = format!("{}.work.{}.", self.fleet, token(batch));
        let rest = subject.strip_prefix(&prefix)?;
        let (run, n) = match rest.split_once('.') {
            Some((run, n)) => (run, Some(n.parse().ok()?)),
            None => (rest, None),
        };
        (!run.is_empty()).then_some((run, n))
    }

    /// The codes a work subject says its item has: one when it does not say.
    pub fn codes_of_work_subject(subject: &str) -> u64 {
        subject.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap_or(1)
    }

    /// The filter of every work subject of `batch`.
    pub fn batch_filter(&self, batch: &str) -> String {
        format!("{}.work.{}.>", self.fleet, token(batch))
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

    /// The subject of the outcomes of run `run` (a run key) that node
    /// `node` publishes.
    pub fn outcome_subject(&self, run: &str, node: &str) -> String {
        format!("{}.outcomes.{run}.{node}", self.fleet)
    }

    /// The subjects of every outcome of run `run` (a run key).
    pub fn run_outcomes(&self, run: &str) -> String {
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

    /// The bucket of file-name claims.
    pub fn names_bucket(&self) -> String {
        format!("{}_names", self.fleet)
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

/// The key of the claim on file name `name` in `batch`'s output: a hash
/// of the name, compared case-insensitively as the file system may.
pub fn name_key(batch: &str, folded_name: &str) -> String {
    let digest = crate::model::digest::sha256_hex(folded_name.as_bytes());
    format!("{}.{}", token(batch), &digest[..32])
}

/// The de-duplication id of the work item of `codes` in run `run` (a run
/// key): queueing the same codes twice queues them once.
pub fn message_id(run: &str, codes: &[CountryCode]) -> String {
    let mut id = format!("{run}/");
    for code in codes {
        id.push_str(code.as_str());
    }
    id
}

/// A run's key, `{id}-{nonce}`, as its subjects and ids carry it.
pub fn run_token(id: i64, nonce: &str) -> String {
    format!("{id}-{nonce}")
}

/// The id and nonce of a run key, if `token` is one.
pub fn parse_run_token(token: &str) -> Option<(i64, &str)> {
    let (id, nonce) = token.split_once('-')?;
    let valid = !nonce.is_empty() && nonce.len() <= 32 && nonce.bytes().all(|b| b.is_ascii_alphanumeric());
    Some((id.parse().ok().filter(|id| *id > 0)?, nonce)).filter(|_| valid)
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
        let run = run_token(7, "k2x9");
        assert_eq!(names.work_subject("daily", &run, 3), "flags.work.daily.7-k2x9.3");
        assert_eq!(names.run_work("daily", &run), "flags.work.daily.7-k2x9.*");
        assert_eq!(names.parse_work_subject("daily", "flags.work.daily.7-k2x9.3"), Some(("7-k2x9", Some(3))));
        assert_eq!(names.parse_work_subject("daily", "flags.work.daily.7-k2x9"), Some(("7-k2x9", None)));
        for bad in
            ["flags.work.other.7-k2x9.1", "flags.work.daily.7-k2x9.x", "flags.work.daily.7.1.1", "flags.work.daily."]
        {
            assert_eq!(names.parse_work_subject("daily", bad), None, "{bad}");
        }
        assert_eq!(Names::codes_of_work_subject("flags.work.daily.7-k2x9.12"), 12);
        assert_eq!(Names::codes_of_work_subject("flags.work.daily.7-k2x9"), 1);
        assert_eq!(names.batch_filter("daily"), "flags.work.daily.>");
        assert_eq!(names.consumer("daily"), "flags-daily");
        let br = CountryCode::new(b'B', b'R').expect("a code");
        assert_eq!(names.outcome_subject(&run, "n1"), "flags.outcomes.7-k2x9.n1");
        assert_eq!(names.run_outcomes(&run), "flags.outcomes.7-k2x9.*");
        assert_eq!((names.work_stream(), names.runs_bucket()), ("flags_work".to_owned(), "flags_runs".to_owned()));
        assert_eq!(
            (file_key("daily", br), message_id(&run, &[br, br])),
            ("daily.BR".to_owned(), "7-k2x9/BRBR".to_owned())
        );
        assert_eq!(parse_run_token("7-k2x9"), Some((7, "k2x9")));
        for bad in ["7", "x-k2", "0-k2", "7-", "7-a.b", "-1-ab"] {
            assert_eq!(parse_run_token(bad), None, "{bad}");
        }
        assert_eq!(name_key("daily", "france.gif").len(), "daily.".len() + 32);
        assert_ne!(name_key("daily", "france.gif"), name_key("daily", "france (fx).gif"));
        assert_eq!(
            (run_key(7), last_key("daily"), tick_key("daily", 60)),
            ("run.7".into(), "last.daily".into(), "daily.60".into())
        );
    }
}
