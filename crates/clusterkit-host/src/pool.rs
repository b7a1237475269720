//! The monitor's call dispatcher: an elastic thread pool with one FIFO
//! queue per resource.
//!
//! Calls to one resource run one at a time, in order; calls to different
//! resources run concurrently. When every worker is busy (say, in a slow
//! `is_alive`) and work is waiting, another worker is started, so a slow
//! resource never delays another's checks. Workers idle for a while exit,
//! down to a small floor.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

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

#[derive(Default)]
struct State {
    queues: HashMap<u32, Queue>,
    /// Keys with jobs and no worker on them, in arrival order.
    ready: VecDeque<u32>,
    idle: usize,
    workers: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The dispatcher. Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
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
        if !queue.scheduled {
            queue.scheduled = true;
            state.ready.push_back(key);
        }
        if state.idle == 0 && state.workers < MAX_WORKERS {
            state.workers += 1;
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name("ck-monitor-worker".into())
                .spawn(move || pool.work());
            if spawned.is_err() {
                state.workers -= 1; // the existing workers will get to it
            }
        } else {
            self.shared.wake.notify_one();
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
        let mut state = self.lock();
        loop {
            let Some(key) = state.ready.pop_front() else {
                state.idle += 1;
                let (next, timeout) = self
                    .shared
                    .wake
                    .wait_timeout(state, IDLE_EXIT)
                    .unwrap_or_else(PoisonError::into_inner);
                state = next;
                state.idle -= 1;
                if timeout.timed_out() && state.ready.is_empty() && state.workers > MIN_WORKERS {
                    state.workers -= 1;
                    return;
                }
                continue;
            };
            let job = state.queues.get_mut(&key).and_then(|q| q.jobs.pop_front());
            drop(state);
            if let Some(job) = job {
                job();
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
