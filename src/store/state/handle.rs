//! The state database on a thread of its own.
//!
//! SQLite calls block: on another process's lock for up to
//! [`BUSY_TIMEOUT`](super::BUSY_TIMEOUT), and on the disk. The daemon runs on
//! one thread, so a blocked call there would freeze its schedules and its
//! admin answers (`/healthz` included). So the connection lives on a
//! dedicated thread, and [`StateHandle::call`] sends it a closure and awaits
//! the answer; the calls of one process run one at a time, in order.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::db::{StateDb, probe_writable};
use super::error::StateError;

/// A call waiting for the database thread.
type Job = Box<dyn FnOnce(&mut StateDb) + Send>;

/// A handle on the state database's thread; clones share the one
/// connection. The thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct StateHandle {
    jobs: mpsc::Sender<Job>,
    dir: PathBuf,
    path: PathBuf,
}

impl StateHandle {
    /// Moves `db` to a new thread that serves this handle's calls.
    pub fn spawn(mut db: StateDb) -> Result<Self, StateError> {
        let (dir, path) = (db.dir().to_owned(), db.path().to_owned());
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("flagsd-state".to_owned())
            .spawn(move || {
                for job in queue {
                    job(&mut db);
                }
            })
            .map_err(|source| StateError::Thread { path: path.clone(), source })?;
        Ok(Self { jobs, dir, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`StateDb::check_writable`], answered here rather than on the
    /// database's thread: readiness must not wait behind a write that waits
    /// for another process's lock.
    pub fn check_writable(&self) -> Result<(), StateError> {
        probe_writable(&self.dir, &self.path)
    }

    /// Runs `f` with the database on its thread and returns what it
    /// returned.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateDb) -> Result<R, StateError> + Send + 'static,
    ) -> Result<R, StateError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = reply.send(f(db));
        });
        let gone = || StateError::Gone { path: self.path.clone() };
        self.jobs.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn calls_run_on_the_database_thread_in_order() {
        let dir = tempfile::tempdir().expect("a directory");
        let handle = StateHandle::spawn(StateDb::open(dir.path()).expect("opens")).expect("a thread");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let ids = runtime.block_on(async {
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(handle.call(|db| db.begin_run("b", "run", SystemTime::now())).await.expect("recorded"));
            }
            ids
        });
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let thread = runtime.block_on(handle.call(|_| Ok(std::thread::current().name().map(str::to_owned))));
        assert_eq!(thread.expect("answered").as_deref(), Some("flagsd-state"));
        assert_eq!(handle.path(), dir.path().join(super::super::DB_FILE));
    }
}
