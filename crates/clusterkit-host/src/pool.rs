//! The monitor's call dispatcher: an elastic thread pool with one FIFO
//! queue per resource.
//!
//! Calls to one resource run one at a time, in order; calls to different
//! resources run concurrently. When every worker is busy (say, in a slow
//! `is_alive`) and work is waiting, another worker is started, so a slow
//! resource never delays another's checks. Workers idle for a while exit,
//! down to a small floor.
//!
//! Idle workers sleep on a stack, each parked on its own: a key that becomes
//! ready claims the most recently idle worker and wakes only that one (or
//! starts a worker when none is idle). The worker that has just finished a
//! call, often not even asleep yet, so takes the next one without a system
//! call, and the others stay asleep (a shared condition variable woke two
//! threads per call here; see docs/BENCHMARKS.md).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// One unit of work.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Workers kept even when idle.
const MIN_WORKERS: usize = 2;
/// How long an extra worker waits for work before exiting.
const IDLE_EXIT: Duration = Duration::from_secs(10);
/// A ceiling against runaway thread creation (each hung call holds one).
const MAX_WORKERS: usize = 4096;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// A worker is running one of this key's jobs, or the key is in `ready`.
    scheduled: bool,
}

/// An idle worker, parked until a submit claims it.
struct Sleeper {
    thread: Thread,
    /// Set, under the state lock, by the submit that took it off the idle
    /// stack; cleared by the worker when it goes back on.
    claimed: AtomicBool,
}

#[derive(Default)]
struct State {
    queues: HashMap<u32, Queue>,
    /// Keys with jobs and no worker on them, in arrival order.
    ready: VecDeque<u32>,
    /// Idle, unclaimed workers, the most recently idle last.
    idle: Vec<Arc<Sleeper>>,
    workers: usize,
}

#[derive(Default)]
struct PoolState {
    state: Mutex<State>,
}

/// The dispatcher. Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct Pool {
    shared: Arc<PoolState>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` behind `key`'s earlier jobs.
    pub(crate) fn submit(&self, key: u32, job: Job) {
        let mut state = self.lock();
        let queue = state.queues.entry(key).or_default();
        queue.jobs.push_back(job);
        if queue.scheduled {
            return; // the key's worker, or the worker claimed for it, runs it
        }
        queue.scheduled = true;
        state.ready.push_back(key);
        // Every ready key gets a worker of its own: the most recently idle
        // one (claimed here, so the next submit cannot count it again), or a
        // new one, so a burst never queues behind one worker that then hangs.
        if let Some(sleeper) = state.idle.pop() {
            sleeper.claimed.store(true, Ordering::Release);
            drop(state);
            // After the lock is released: a woken worker must not block on it.
            sleeper.thread.unpark();
        } else if state.workers < MAX_WORKERS {
            state.workers += 1;
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name("ck-monitor-worker".into())
                .spawn(move || pool.work());
            if spawned.is_err() {
                state.workers -= 1; // the existing workers will get to it
            }
        }
    }

    /// Runs `job` on a thread of its own, outside any queue (for `terminate`).
    pub(crate) fn run_now(&self, job: Job) {
        let spawned = std::thread::Builder::new()
            .name("ck-monitor-terminate".into())
            .spawn(job);
        if let Err(e) = spawned {
            // Without a thread the job cannot run; the host's deadline will
            // notice and recover the monitor.
            eprintln!("clusterkit-monitor: cannot start a thread for terminate: {e}");
        }
    }

    fn work(&self) {
        let me = Arc::new(Sleeper {
            thread: std::thread::current(),
            claimed: AtomicBool::new(false),
        });
        let mut state = self.lock();
        loop {
            let Some(key) = state.ready.pop_front() else {
                me.claimed.store(false, Ordering::Release);
                state.idle.push(me.clone());
                drop(state);
                sleep(&me);
                state = self.lock();
                if !me.claimed.load(Ordering::Acquire) {
                    // Not claimed within IDLE_EXIT: still on the idle stack.
                    state.idle.retain(|s| !Arc::ptr_eq(s, &me));
                    if state.ready.is_empty() && state.workers > MIN_WORKERS {
                        state.workers -= 1;
                        return;
                    }
                }
                continue;
            };
            let job = state.queues.get_mut(&key).and_then(|q| q.jobs.pop_front());
            drop(state);
            if let Some(job) = job {
                // The calls catch panics at the library boundary; this guards
                // the monitor's own code, so one call cannot wedge a queue.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            state = self.lock();
            if state.queues.get(&key).is_some_and(|q| !q.jobs.is_empty()) {
                // Back of the line: one job per turn keeps resources fair.
                state.ready.push_back(key);
            } else {
                state.queues.remove(&key);
            }
        }
    }
}

/// Parks until a submit claims `me` or [`IDLE_EXIT`] passes. An unpark that
/// comes before the park makes it return at once; spurious wake-ups park
/// again.
fn sleep(me: &Sleeper) {
    let deadline = Instant::now() + IDLE_EXIT;
    while !me.claimed.load(Ordering::Acquire) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::park_timeout(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn one_key_runs_in_order_while_a_blocked_key_does_not_delay_others() {
        let pool = Pool::default();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<(u32, u32)>();
        // Key 1 blocks until released.
        pool.submit(1, Box::new(move || release_rx.recv().unwrap()));
        for i in 0..50 {
            let tx = done_tx.clone();
            pool.submit(
                2 + i % 5,
                Box::new(move || tx.send((2 + i % 5, i)).unwrap()),
            );
        }
        let tx = done_tx.clone();
        pool.submit(1, Box::new(move || tx.send((1, 99)).unwrap()));
        let mut seen: HashMap<u32, Vec<u32>> = HashMap::new();
        for _ in 0..50 {
            let (key, i) = done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
            seen.entry(key).or_default().push(i);
        }
        for list in seen.values() {
            assert!(
                list.windows(2).all(|w| w[0] < w[1]),
                "per-key FIFO: {list:?}"
            );
        }
        // Key 1's second job waits for its first.
        assert!(done_rx.try_recv().is_err());
        release_tx.send(()).unwrap();
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            (1, 99)
        );
    }
}
