//! Seeded fault schedules: a `u64` seed gives, always the same way, the
//! shape of one chaos case (two or three nodes, the batch's codes, the flag
//! server's delay, one or two runs) and the faults injected at set times
//! during each run, so that a failing case is reproduced from its seed
//! alone. The random numbers come from SplitMix64, written out here rather
//! than taken from a crate: a seed must name the same schedule for as long
//! as this file does not change.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use flagsd::model::codes::{CountryCode, all_countries, every_code};

use crate::harness::FLEET;

/// The consumers' ack wait in every case (`fleet.ack_wait`): a dead or
/// paused node's codes come back to the queue after it.
pub const ACK_WAIT: Duration = Duration::from_secs(2);

/// The streams' de-duplication window in every case (`fleet.duplicate_window`).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2);

/// The names of the nodes, in order.
pub const NODE_NAMES: [&str; 3] = ["a", "b", "c"];

/// The clock offsets a node may run with, in seconds (libfaketime).
const CLOCK_OFFSETS: [i64; 4] = [-20, -5, 5, 20];

/// SplitMix64: small, fast, and the same on every platform.
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (which must not be 0); the modulo's bias is far
    /// below anything a schedule could show.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A duration from `low` to `high` milliseconds, both included.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next_u64() % (high - low + 1))
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The codes of the batch the runs fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codes {
    /// `"every"`: all 676 two-letter codes, 194 flags and 482 not found.
    Every,
    /// `"all"`: the 194 countries, all of them flags.
    All,
}

impl Codes {
    /// The keyword, as the configuration writes it.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Every => "every",
            Self::All => "all",
        }
    }

    /// The codes themselves.
    pub fn list(self) -> Vec<CountryCode> {
        match self {
            Self::Every => every_code(),
            Self::All => all_countries(),
        }
    }
}

/// A message published on the fleet's subjects by someone who is not a
/// node: each names what it imitates and what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Forgery {
    /// A work item that is not JSON, on the running run's subject.
    WorkNotJson,
    /// A work item larger than any a node reads.
    WorkOversize,
    /// A work item for a code the run does not have (only with `"all"`).
    WorkCodeNotInRun,
    /// Work items for runs the fleet does not have: an unknown id, a known
    /// id with another nonce, and a subject that is no run token.
    WorkForeignRun,
    /// The previous run's valid work item, published again as it was
    /// (same subject, payload and message id).
    WorkReplay,
    /// An outcome that is not JSON, on a code's subject of the running run.
    OutcomeNotJson,
    /// A well-formed outcome larger than any a node reads.
    OutcomeOversize,
    /// A well-formed outcome for a code the run does not have (only with `"all"`).
    OutcomeCodeNotInRun,
    /// Well-formed outcomes for runs the fleet does not have.
    OutcomeForeignRun,
    /// An outcome on one code's subject whose payload names another code.
    OutcomeWrongCode,
    /// An outcome of a kind no node publishes.
    OutcomeUnknownKind,
}

impl Forgery {
    /// Every forgery.
    pub const ALL: [Self; 11] = [
        Self::WorkNotJson,
        Self::WorkOversize,
        Self::WorkCodeNotInRun,
        Self::WorkForeignRun,
        Self::WorkReplay,
        Self::OutcomeNotJson,
        Self::OutcomeOversize,
        Self::OutcomeCodeNotInRun,
        Self::OutcomeForeignRun,
        Self::OutcomeWrongCode,
        Self::OutcomeUnknownKind,
    ];

    /// Its name in schedules and coverage.
    pub fn label(self) -> &'static str {
        match self {
            Self::WorkNotJson => "work-not-json",
            Self::WorkOversize => "work-oversize",
            Self::WorkCodeNotInRun => "work-code-not-in-run",
            Self::WorkForeignRun => "work-foreign-run",
            Self::WorkReplay => "work-replay",
            Self::OutcomeNotJson => "outcome-not-json",
            Self::OutcomeOversize => "outcome-oversize",
            Self::OutcomeCodeNotInRun => "outcome-code-not-in-run",
            Self::OutcomeForeignRun => "outcome-foreign-run",
            Self::OutcomeWrongCode => "outcome-wrong-code",
            Self::OutcomeUnknownKind => "outcome-unknown-kind",
        }
    }

    /// Whether it can be made in run `run` (from 0) of a batch of `codes`:
    /// a code outside the run exists only with `"all"`, and a replay needs a
    /// previous run.
    fn possible(self, codes: Codes, run: usize) -> bool {
        match self {
            Self::WorkCodeNotInRun | Self::OutcomeCodeNotInRun => codes == Codes::All,
            Self::WorkReplay => run > 0,
            _ => true,
        }
    }
}

/// A bucket of the fleet that a fault deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `{fleet}_files`: the validators.
    Files,
    /// `{fleet}_names`: the file-name claims.
    Names,
    /// `{fleet}_runs`: the run records and the id counter.
    Runs,
}

impl Bucket {
    /// The bucket's name in the fleet `fleet`.
    pub fn name(self, fleet: &str) -> String {
        let suffix = match self {
            Self::Files => "files",
            Self::Names => "names",
            Self::Runs => "runs",
        };
        format!("{fleet}_{suffix}")
    }

    /// Its name in schedules and coverage.
    pub fn label(self) -> &'static str {
        match self {
            Self::Files => "delete-files",
            Self::Names => "delete-names",
            Self::Runs => "delete-runs",
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGKILL to node `node`, started again `down` later.
    Kill { node: usize, down: Duration },
    /// SIGSTOP to node `node`, SIGCONT `paused` later (longer than the ack
    /// wait and the de-duplication window).
    Pause { node: usize, paused: Duration },
    /// nats-server stopped (SIGKILL if `hard`, else SIGTERM) and started
    /// again `down` later with its store.
    NatsRestart { hard: bool, down: Duration },
    /// nats-server stopped, its store emptied, started again `down` later.
    NatsWipe { down: Duration },
    /// Forged messages published; `pick` chooses their codes.
    Forge { forgeries: Vec<Forgery>, pick: u64 },
    /// Node `node`'s output directory (a 64 KiB tmpfs from the start) is
    /// filled up to the last byte.
    DiskFull { node: usize },
    /// The bucket deleted.
    DeleteBucket(Bucket),
}

/// A fault, at a time after its run was submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When, after the run's `flagsd run` started.
    pub at: Duration,
    /// What.
    pub kind: FaultKind,
}

/// One chaos case; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it came from.
    pub seed: u64,
    /// How many nodes (named after [`NODE_NAMES`]).
    pub nodes: usize,
    /// The batch's codes.
    pub codes: Codes,
    /// How long the flag server waits before each answer.
    pub delay: Duration,
    /// A node whose clock is off by so many seconds, from its start.
    pub clock: Option<(usize, i64)>,
    /// The faults of each run, in time order.
    pub runs: Vec<Vec<Fault>>,
}

/// The kinds of fault a run may draw, with their weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Draw {
    Kill,
    Pause,
    NatsRestart,
    NatsWipe,
    Forge,
    DiskFull,
    DeleteBucket,
}

impl Schedule {
    /// The schedule of `seed`.
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let nodes = 2 + rng.below(2);
        let codes = if rng.below(3) < 2 { Codes::Every } else { Codes::All };
        let delay = Duration::from_millis(20 + 10 * rng.below(4) as u64);
        let clock = rng.one_in(4).then(|| (rng.below(nodes), rng.pick(&CLOCK_OFFSETS)));
        let run_count = 1 + rng.below(2);
        let mut disk_drawn = false;
        let mut runs = Vec::with_capacity(run_count);
        for run in 0..run_count {
            let count = if run == 0 { 1 + rng.below(3) } else { rng.below(3) };
            let mut nats_drawn = false;
            let mut busy: BTreeSet<usize> = BTreeSet::new();
            let mut faults = Vec::with_capacity(count);
            for _ in 0..count {
                let at = rng.millis(300, 2500);
                let free: Vec<usize> = (0..nodes).filter(|n| !busy.contains(n)).collect();
                let mut draws = vec![(Draw::Forge, 3), (Draw::DeleteBucket, 2)];
                if !free.is_empty() {
                    draws.extend([(Draw::Kill, 3), (Draw::Pause, 2)]);
                    if !disk_drawn {
                        draws.push((Draw::DiskFull, 1));
                    }
                }
                if !nats_drawn {
                    draws.extend([(Draw::NatsRestart, 2), (Draw::NatsWipe, 1)]);
                }
                let total: usize = draws.iter().map(|(_, w)| w).sum();
                let mut roll = rng.below(total);
                let draw = draws
                    .iter()
                    .find(|(_, weight)| {
                        let hit = roll < *weight;
                        roll = roll.saturating_sub(*weight);
                        hit
                    })
                    .map_or(Draw::Forge, |(draw, _)| *draw);
                let kind = match draw {
                    Draw::Kill | Draw::Pause | Draw::DiskFull => {
                        let node = rng.pick(&free);
                        busy.insert(node);
                        match draw {
                            Draw::Kill => FaultKind::Kill { node, down: rng.millis(300, 3000) },
                            Draw::Pause => FaultKind::Pause { node, paused: rng.millis(3000, 5000) },
                            _ => {
                                disk_drawn = true;
                                FaultKind::DiskFull { node }
                            }
                        }
                    }
                    Draw::NatsRestart => {
                        nats_drawn = true;
                        FaultKind::NatsRestart { hard: rng.one_in(2), down: rng.millis(200, 2000) }
                    }
                    Draw::NatsWipe => {
                        nats_drawn = true;
                        FaultKind::NatsWipe { down: rng.millis(200, 1500) }
                    }
                    Draw::Forge => Self::forge(&mut rng, codes, run),
                    Draw::DeleteBucket => {
                        FaultKind::DeleteBucket(rng.pick(&[Bucket::Files, Bucket::Names, Bucket::Runs]))
                    }
                };
                faults.push(Fault { at, kind });
            }
            faults.sort_by_key(|f| f.at);
            runs.push(faults);
        }
        Self { seed, nodes, codes, delay, clock, runs }
    }

    /// A burst of forged messages: each possible forgery with one chance
    /// in two, and at least two of them.
    fn forge(rng: &mut Rng, codes: Codes, run: usize) -> FaultKind {
        let possible: Vec<Forgery> = Forgery::ALL.into_iter().filter(|f| f.possible(codes, run)).collect();
        let mut forgeries: Vec<Forgery> = possible.iter().copied().filter(|_| rng.one_in(2)).collect();
        while forgeries.len() < 2 {
            let more = rng.pick(&possible);
            if !forgeries.contains(&more) {
                forgeries.push(more);
            }
        }
        forgeries.sort();
        FaultKind::Forge { forgeries, pick: rng.next_u64() }
    }

    /// The node whose output is a small tmpfs, if a fault fills it.
    pub fn small_disk(&self) -> Option<usize> {
        self.faults().find_map(|f| match f.kind {
            FaultKind::DiskFull { node } => Some(node),
            _ => None,
        })
    }

    /// Every fault of every run.
    pub fn faults(&self) -> impl Iterator<Item = &Fault> {
        self.runs.iter().flatten()
    }

    /// Whether a fault of run `run` (from 0) or a later one loses run
    /// records: the records of that run may then be gone.
    pub fn loses_records_from(&self, run: usize) -> bool {
        self.runs[run..]
            .iter()
            .flatten()
            .any(|f| matches!(f.kind, FaultKind::NatsWipe { .. } | FaultKind::DeleteBucket(Bucket::Runs)))
    }

    /// The kinds of fault it holds, each forgery and bucket on its own,
    /// for the coverage of the fixed seeds.
    pub fn labels(&self) -> BTreeSet<&'static str> {
        let mut labels = BTreeSet::new();
        if self.clock.is_some() {
            labels.insert("clock-offset");
        }
        for fault in self.faults() {
            match &fault.kind {
                FaultKind::Kill { .. } => {
                    labels.insert("kill");
                }
                FaultKind::Pause { .. } => {
                    labels.insert("pause");
                }
                FaultKind::NatsRestart { .. } => {
                    labels.insert("nats-restart");
                }
                FaultKind::NatsWipe { .. } => {
                    labels.insert("nats-wipe");
                }
                FaultKind::Forge { forgeries, .. } => labels.extend(forgeries.iter().map(|f| f.label())),
                FaultKind::DiskFull { .. } => {
                    labels.insert("disk-full");
                }
                FaultKind::DeleteBucket(bucket) => {
                    labels.insert(bucket.label());
                }
            }
        }
        labels
    }

    /// Every label a schedule can hold.
    pub fn all_labels() -> BTreeSet<&'static str> {
        let mut labels: BTreeSet<&'static str> =
            ["clock-offset", "kill", "pause", "nats-restart", "nats-wipe", "disk-full"].into();
        labels.extend(Forgery::ALL.iter().map(|f| f.label()));
        labels.extend([Bucket::Files, Bucket::Names, Bucket::Runs].iter().map(|b| b.label()));
        labels
    }
}

/// Seconds with two decimals.
fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill { node, down } => {
                write!(f, "SIGKILL node {}, started again {} later", NODE_NAMES[*node], secs(*down))
            }
            Self::Pause { node, paused } => {
                write!(f, "SIGSTOP node {}, SIGCONT {} later", NODE_NAMES[*node], secs(*paused))
            }
            Self::NatsRestart { hard, down } => {
                let how = if *hard { "SIGKILL" } else { "SIGTERM" };
                write!(f, "nats-server stopped ({how}), started again with its store {} later", secs(*down))
            }
            Self::NatsWipe { down } => {
                write!(f, "nats-server stopped, started again with an empty store {} later", secs(*down))
            }
            Self::Forge { forgeries, pick } => {
                let labels: Vec<&str> = forgeries.iter().map(|g| g.label()).collect();
                write!(f, "forged messages: {} (codes picked by {pick:#x})", labels.join(", "))
            }
            Self::DiskFull { node } => write!(f, "node {}'s 64 KiB output disk filled up", NODE_NAMES[*node]),
            Self::DeleteBucket(bucket) => write!(f, "bucket {} deleted", bucket.name(FLEET)),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = NODE_NAMES[..self.nodes].join(", ");
        write!(
            f,
            "chaos seed {}: {} nodes ({names}), codes \"{}\", answers after {} ms",
            self.seed,
            self.nodes,
            self.codes.keyword(),
            self.delay.as_millis()
        )?;
        if let Some((node, offset)) = self.clock {
            write!(f, ", node {}'s clock {offset:+} s (and a batch every 2 s)", NODE_NAMES[node])?;
        }
        if let Some(node) = self.small_disk() {
            write!(f, ", node {}'s output on a 64 KiB tmpfs", NODE_NAMES[node])?;
        }
        for (i, faults) in self.runs.iter().enumerate() {
            write!(f, "\n  run {}:", i + 1)?;
            if faults.is_empty() {
                write!(f, " no fault")?;
            }
            for fault in faults {
                write!(f, "\n    +{}  {}", secs(fault.at), fault.kind)?;
            }
        }
        Ok(())
    }
}
