//! The I/O lane: a resource's disk I/O runs on a helper thread and is waited
//! for with a deadline, so a hung device makes a health check fail in time
//! instead of blocking it (and, past the host's deadline, the whole monitor).
//!
//! At most one job runs per lane. A job that missed its deadline may stay
//! blocked in the kernel for a long time: while it does, later calls fail at
//! once ("still not finished") instead of piling up more blocked threads.

use std::io;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clusterkit::{Error, StopFlag};

/// How often a waiting call looks at the termination flag.
const POLL: Duration = Duration::from_millis(10);

/// Why a job gave no result.
#[derive(Debug)]
pub(crate) enum LaneError {
    /// The job did not finish within its deadline; it goes on in the background.
    TimedOut {
        what: &'static str,
        deadline: Duration,
    },
    /// An earlier job that missed its deadline has still not finished.
    Stuck {
        what: &'static str,
        running_for: Duration,
    },
    /// `terminate` was called while the job ran.
    Terminated { what: &'static str },
    /// The helper thread could not be started.
    Spawn(io::Error),
    /// The job panicked.
    Panicked { what: &'static str },
}

impl LaneError {
    /// A sentence about the disk at `path`.
    pub(crate) fn describe(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            LaneError::TimedOut { what, deadline } => {
                format!("{what} did not finish within {deadline:?} (disk {path})")
            }
            LaneError::Stuck { what, running_for } => format!(
                "an earlier {what} has not finished after {running_for:?}: disk {path} is not \
                 answering"
            ),
            LaneError::Terminated { what } => {
                format!("{what} on disk {path} was cut short by terminate")
            }
            LaneError::Spawn(e) => format!("starting an I/O thread for disk {path}: {e}"),
            LaneError::Panicked { what } => format!("{what} on disk {path} panicked"),
        }
    }

    /// The matching [`Error`], naming the disk at `path`.
    pub(crate) fn into_error(self, path: &Path) -> Error {
        let message = self.describe(path);
        match self {
            LaneError::TimedOut { .. } | LaneError::Stuck { .. } => Error::Timeout(message),
            LaneError::Terminated { .. } => Error::Terminated(message),
            LaneError::Spawn(_) => Error::Io(message),
            LaneError::Panicked { .. } => Error::Internal(message),
        }
    }
}

struct InFlight {
    what: &'static str,
    started: Instant,
    thread: JoinHandle<()>,
}

/// One resource's lane.
#[derive(Default)]
pub(crate) struct Lane {
    late: Mutex<Option<InFlight>>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").finish_non_exhaustive()
    }
}

impl Lane {
    /// Runs `job` (described by `what`, e.g. "probe I/O") on a helper thread
    /// and waits for it up to `deadline`, or until `termination` is raised.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        deadline: Duration,
        termination: &StopFlag,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LaneError> {
        let mut late = self.late.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = late.take() {
            if !previous.thread.is_finished() {
                let stuck = LaneError::Stuck {
                    what: previous.what,
                    running_for: previous.started.elapsed(),
                };
                *late = Some(previous);
                return Err(stuck);
            }
            let _ = previous.thread.join();
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let started = Instant::now();
        let thread = thread::Builder::new()
            .name("disk-io".into())
            .spawn(move || {
                let _ = tx.send(job());
            })
            .map_err(LaneError::Spawn)?;
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                *late = Some(InFlight {
                    what,
                    started,
                    thread,
                });
                return Err(LaneError::TimedOut { what, deadline });
            }
            match rx.recv_timeout(left.min(POLL)) {
                Ok(value) => {
                    let _ = thread.join(); // it has sent: it is returning
                    return Ok(value);
                }
                Err(RecvTimeoutError::Timeout) if termination.is_raised() => {
                    *late = Some(InFlight {
                        what,
                        started,
                        thread,
                    });
                    return Err(LaneError::Terminated { what });
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = thread.join();
                    return Err(LaneError::Panicked { what });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job standing for an I/O on a hung device: blocked until released.
    fn hung_job(release: mpsc::Receiver<()>) -> impl FnOnce() -> u32 + Send + 'static {
        move || {
            let _ = release.recv();
            7
        }
    }

    #[test]
    fn a_hung_job_times_out_and_blocks_the_lane_until_it_ends() {
        let lane = Lane::default();
        let never = StopFlag::new();
        assert_eq!(
            lane.run("read", Duration::from_secs(60), &never, || 1)
                .unwrap(),
            1
        );

        let (release, hold) = mpsc::channel();
        let started = Instant::now();
        let err = lane
            .run(
                "probe I/O",
                Duration::from_millis(50),
                &never,
                hung_job(hold),
            )
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(started.elapsed() < Duration::from_secs(10));
        let message = err.describe(Path::new("/dev/x"));
        assert_eq!(
            message,
            "probe I/O did not finish within 50ms (disk /dev/x)"
        );
        assert_eq!(
            err.into_error(Path::new("/dev/x")).code(),
            clusterkit::ErrorCode::Timeout
        );

        // While it is still blocked, the next call fails at once.
        let err = lane
            .run("read", Duration::from_secs(60), &never, || 2)
            .unwrap_err();
        let message = err.describe(Path::new("/dev/x"));
        assert!(
            message.starts_with("an earlier probe I/O has not finished after"),
            "{message}"
        );

        // Once it ends, the lane works again.
        release.send(()).unwrap();
        let late = lane.late.lock().unwrap().take().unwrap();
        late.thread.join().unwrap();
        assert_eq!(
            lane.run("read", Duration::from_secs(60), &never, || 3)
                .unwrap(),
            3
        );
    }

    #[test]
    fn terminate_cuts_a_wait_short() {
        let lane = Lane::default();
        let termination = StopFlag::new();
        termination.raise();
        let (release, hold) = mpsc::channel();
        let started = Instant::now();
        let err = lane
            .run(
                "probe I/O",
                Duration::from_secs(60),
                &termination,
                hung_job(hold),
            )
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, LaneError::Terminated { .. }), "{err:?}");
        release.send(()).unwrap();
    }

    #[test]
    fn a_panicking_job_is_reported() {
        let lane = Lane::default();
        let err = lane
            .run(
                "read",
                Duration::from_secs(60),
                &StopFlag::new(),
                || -> u32 { panic!("boom") },
            )
            .unwrap_err();
        assert!(
            matches!(err, LaneError::Panicked { what: "read" }),
            "{err:?}"
        );
    }
}
