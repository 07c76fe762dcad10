//! Whether a node can take work, and if not, why.
//!
//! Each part of a node that can fail on its own (a lane's queue, a lane's
//! output directory, the connection) sets its problem here and clears it
//! when it recovers. A node with any problem is not ready: `/readyz`
//! answers 503 with the reasons, and it stops renewing its heartbeat, so
//! the fleet does not count it as live (nor share its servers' rates with
//! it) until it can work again.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// The problems of a node's parts; none when the node can take work.
#[derive(Debug, Default)]
pub struct Health {
    problems: RefCell<BTreeMap<String, String>>,
}

impl Health {
    /// `part` cannot work because of `problem` (logged when it is new).
    pub fn set(&self, part: &str, problem: impl Into<String>) {
        let problem = problem.into();
        let mut problems = self.problems.borrow_mut();
        if problems.get(part) != Some(&problem) {
            tracing::warn!(part, %problem, "this node cannot take work");
            problems.insert(part.to_owned(), problem);
        }
    }

    /// `part` works (again).
    pub fn clear(&self, part: &str) {
        if self.problems.borrow_mut().remove(part).is_some() {
            tracing::info!(part, "this node can take work again");
        }
    }

    /// Forgets every problem of parts whose name starts with `prefix` (a
    /// lane that closed).
    pub fn forget(&self, prefix: &str) {
        self.problems.borrow_mut().retain(|part, _| !part.starts_with(prefix));
    }

    /// Why the node cannot take work, or `None` when it can.
    pub fn problem(&self) -> Option<String> {
        let problems = self.problems.borrow();
        (!problems.is_empty())
            .then(|| problems.iter().map(|(part, p)| format!("{part}: {p}")).collect::<Vec<_>>().join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_ready_once_every_part_recovered() {
        let health = Health::default();
        assert_eq!(health.problem(), None);
        health.set("lane world", "the queue is gone");
        health.set("disk world", "No space left on device");
        assert_eq!(
            health.problem().as_deref(),
            Some("disk world: No space left on device; lane world: the queue is gone")
        );
        health.clear("lane world");
        health.forget("disk ");
        assert_eq!(health.problem(), None);
    }
}
