//! A worker thread with a cooperative stop flag: the equivalent of ResUtil's
//! `ClusWorker` on Windows.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A flag that one side raises and another checks or waits on.
///
/// Used by [`Worker`] for stop requests, and by the export glue to tell an
/// in-flight call that `terminate` was called (see
/// [`ResourceContext::termination`](crate::ResourceContext::termination)).
#[derive(Debug, Clone, Default)]
pub struct StopFlag {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl StopFlag {
    /// A lowered flag.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, bool> {
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises the flag and wakes every waiter.
    pub fn raise(&self) {
        *self.state() = true;
        self.inner.1.notify_all();
    }

    /// Lowers the flag again.
    pub fn lower(&self) {
        *self.state() = false;
    }

    /// Whether the flag is raised.
    pub fn is_raised(&self) -> bool {
        *self.state()
    }

    /// Sleeps for `timeout` or until the flag is raised; returns whether it
    /// is raised. Use it instead of `thread::sleep` in workers, so a stop
    /// request is seen at once.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut raised = self.state();
        while !*raised {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            raised = self
                .inner
                .1
                .wait_timeout(raised, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *raised
    }
}

/// A thread that runs a closure given a [`StopFlag`], stopped cooperatively.
///
/// Dropping a `Worker` raises its flag and joins the thread.
///
/// ```
/// use clusterkit::Worker;
/// use std::time::Duration;
///
/// let worker = Worker::spawn("poller", |stop| {
///     while !stop.wait_timeout(Duration::from_millis(10)) {
///         // poll something
///     }
/// })
/// .unwrap();
/// worker.stop_and_join(); // returns promptly: the loop sees the flag
/// ```
#[derive(Debug)]
pub struct Worker {
    stop: StopFlag,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts `work` on a new thread named `name`. The thread logs where
    /// this one does: the logger [entered](crate::Logger::enter) here (in an
    /// entry point: the resource's) is entered there too, so `tracing` and
    /// `log` lines of the worker are attributed to the resource.
    pub fn spawn(
        name: &str,
        work: impl FnOnce(&StopFlag) + Send + 'static,
    ) -> std::io::Result<Worker> {
        let stop = StopFlag::new();
        let flag = stop.clone();
        let log = crate::log::entered();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _log = log.as_ref().map(crate::Logger::enter);
                work(&flag)
            })?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// The worker's stop flag.
    pub fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    /// Asks the worker to stop, without waiting.
    pub fn request_stop(&self) {
        self.stop.raise();
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Asks the worker to stop and waits for it. Returns whether the worker's
    /// closure panicked.
    pub fn stop_and_join(mut self) -> bool {
        self.finish()
    }

    fn finish(&mut self) -> bool {
        self.stop.raise();
        self.thread.take().is_some_and(|t| t.join().is_err())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_when_raised_from_another_thread() {
        let flag = StopFlag::new();
        assert!(!flag.wait_timeout(Duration::from_millis(1)));
        let other = flag.clone();
        let t = std::thread::spawn(move || other.wait_timeout(Duration::from_secs(600)));
        flag.raise();
        assert!(t.join().unwrap());
        flag.lower();
        assert!(!flag.is_raised());
    }

    #[test]
    fn a_worker_logs_to_the_logger_entered_where_it_was_spawned() {
        use std::sync::{Arc, Mutex};
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let log = crate::Logger::from_fn(move |_, msg| sink.lock().unwrap().push(msg.to_owned()));
        let scope = log.enter();
        let worker = Worker::spawn("logs", |_| {
            if let Some(current) = crate::Logger::current() {
                current.info(format_args!("from the worker"));
            }
        })
        .unwrap();
        drop(scope);
        assert!(!worker.stop_and_join());
        assert_eq!(*lines.lock().unwrap(), ["from the worker"]);
    }

    #[test]
    fn worker_panic_is_reported_on_join() {
        let w = Worker::spawn("boom", |_| panic!("worker panic")).unwrap();
        assert!(w.stop_and_join());
    }
}
