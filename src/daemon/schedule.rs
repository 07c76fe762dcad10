//! The daemon's schedules when it runs alone: one task per scheduled batch,
//! starting a run at start-up and then at each interval. A tick that finds
//! the previous run still going is skipped and logged, not caught up.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix_rt::task::JoinHandle;

use crate::config::{BatchConfig, Settings};

/// What a schedule drives: the daemon's runs.
pub trait Ticks {
    /// A tick of `batch`'s schedule (the first after a start or a reload
    /// when `defer`).
    fn tick(self: Rc<Self>, batch: &Rc<BatchConfig>, defer: bool);
    /// When `batch` runs next (`None`: not scheduled).
    fn set_next_run(&self, batch: &str, at: Option<SystemTime>);
}

/// Starts a run of `batch` now and then every `every`. A tick missed while
/// a run was in progress is skipped, not caught up.
async fn schedule(alone: Rc<dyn Ticks>, batch: Rc<BatchConfig>, every: Duration) {
    let mut next = tokio::time::Instant::now();
    // The first tick (at start or after a reload) waits for a run in
    // progress instead of being skipped, so changed settings apply at once.
    let mut defer = true;
    loop {
        let at = SystemTime::now() + next.duration_since(tokio::time::Instant::now());
        alone.set_next_run(&batch.name, Some(at));
        tokio::time::sleep_until(next).await;
        Rc::clone(&alone).tick(&batch, defer);
        defer = false;
        let now = tokio::time::Instant::now();
        while next <= now {
            next += every;
        }
    }
}

/// The schedules in force: one task per scheduled batch.
#[derive(Default)]
pub struct Schedules {
    tasks: BTreeMap<String, (Rc<BatchConfig>, JoinHandle<()>)>,
}

impl Schedules {
    /// Makes the schedules match `settings`: new and changed batches get a
    /// fresh schedule (first run now) that runs through `alone`, removed
    /// ones lose theirs. Runs in progress are not touched.
    pub fn apply(&mut self, alone: &Rc<dyn Ticks>, settings: &Settings) {
        let wanted: HashSet<&str> =
            settings.batches.iter().filter(|b| b.every.is_some()).map(|b| b.name.as_str()).collect();
        self.tasks.retain(|name, (_, task)| {
            let keep = wanted.contains(name.as_str());
            if !keep {
                tracing::info!(batch = %name, "batch removed from the schedule");
                task.abort();
                alone.set_next_run(name, None);
            }
            keep
        });
        for batch in &settings.batches {
            let Some(every) = batch.every else { continue };
            if self.tasks.get(&batch.name).is_some_and(|(old, _)| **old == *batch) {
                continue;
            }
            tracing::info!(batch = %batch.name, every = %humantime::format_duration(every), "batch scheduled");
            let batch = Rc::new(batch.clone());
            let task = actix_rt::spawn(schedule(Rc::clone(alone), Rc::clone(&batch), every));
            if let Some((_, old)) = self.tasks.insert(batch.name.clone(), (batch, task)) {
                old.abort();
            }
        }
        if self.tasks.is_empty() {
            tracing::warn!("no batch has an `every` interval: nothing is scheduled");
        }
    }

    /// Stops every schedule (runs in progress go on).
    pub fn stop(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.tasks) {
            task.abort();
        }
    }
}
