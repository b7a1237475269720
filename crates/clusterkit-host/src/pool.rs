//! The monitor's call dispatcher: leader/follower threads with one FIFO
//! queue per resource, and replies written in batches.
//!
//! A call runs on the thread that read it. Each thread loops: run a ready
//! call if there is one; else, if it ran calls since it last wrote, flush
//! the replies they left in the output buffer (one `write` for the whole
//! pass); else take the input (one reader at a time: the leader) and read
//! everything available, queueing the calls; else park as a follower. A
//! health check on an otherwise idle monitor is thus read, run and answered
//! by one thread, with no hand-off: a read, a write and no wake-up besides
//! the socket's, as cheap as a ping-pong between two threads.
//!
//! Calls to one resource run one at a time, in order (a key is in the ready
//! list at most once, and is put back only after its call returns); calls to
//! different resources run one after the other on the leader while they are
//! quick, and concurrently once one is slow. A *supervisor* thread sees to
//! that: while calls are in progress it wakes every [`STALL_LIMIT`], flushes
//! the output buffer (so a hung call holds back the replies its thread
//! buffered for at most that long), and when no call finished during a whole
//! period while calls are ready or nobody reads, it wakes a follower (or
//! starts a thread) to take over the input and the ready list, doubling the
//! number of threads it adds while the stall lasts. A burst of quick calls
//! that outlasts a period gets one more thread per period, up to one running
//! call per core, so a long burst is shared across cores. A hung `is_alive` or
//! `online` therefore never blocks reading: `terminate` and the other
//! resources' calls still arrive and are answered. The supervisor's thread
//! starts with the first call and sleeps without a timeout while nothing
//! runs, so an idle monitor uses no CPU.
//!
//! Calls that must not queue (`terminate`, which ends the call its resource
//! is running) get a thread of their own and flush their reply themselves.
//!
//! The dispatcher is generic over a [`Service`] (what a call is, how input is
//! read, how a call runs and replies are flushed), so the jobs are plain
//! values (no boxed closure per call) and the tests drive it on a socket
//! pair of their own.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::id_hash::IdMap;

/// How long the dispatcher lets a call run before it has another thread
/// take over reading and the ready calls (and flushes the replies the
/// running calls' threads have buffered).
///
/// 5 ms: well under the deadlines of any entry point (seconds, hundreds of
/// milliseconds for the tightest health checks), so a hung call delays the
/// others by a small fraction of their budget; and longer than a scheduler
/// time slice on a loaded machine (a few milliseconds), so a quick call whose
/// thread was merely preempted does not start a thread. While calls are in
/// progress the supervisor wakes this often: 200 wake-ups a second at most,
/// a fraction of a per mille of a core.
pub(crate) const STALL_LIMIT: Duration = Duration::from_millis(5);
/// How long an extra thread waits as a follower before exiting.
const IDLE_EXIT: Duration = Duration::from_secs(10);
/// A ceiling against runaway thread creation (each hung call holds one).
const MAX_THREADS: usize = 4096;
/// Emptied per-key queues kept for reuse, so a steady stream of health
/// checks allocates no queue per call.
const SPARE_QUEUES: usize = 64;
/// The most threads one stall adds is `2^MAX_STALL_DOUBLINGS`.
const MAX_STALL_DOUBLINGS: u32 = 10;

/// What the dispatcher dispatches: the calls, where they come from, how they
/// run and how their replies go out.
pub(crate) trait Service: Send + Sync + 'static {
    /// One call.
    type Job: Send + 'static;
    /// The reading end, held by one thread at a time.
    type Input: Send + 'static;

    /// Blocks until at least one call arrives and adds every call available
    /// to `arrivals`; `false` when the input has ended (the dispatcher stops
    /// reading and its threads exit once the queued calls have run).
    fn read(&self, input: &mut Self::Input, arrivals: &mut Arrivals<Self::Job>) -> bool;

    /// Runs one call. Its reply may be left in an output buffer for
    /// [`flush`](Service::flush).
    fn run(&self, job: Self::Job);

    /// Writes the buffered replies, if any.
    fn flush(&self);
}

/// The calls one read brought in.
pub(crate) struct Arrivals<J> {
    queued: Vec<(u32, J)>,
    alone: Vec<J>,
}

impl<J> Default for Arrivals<J> {
    fn default() -> Self {
        Arrivals {
            queued: Vec::new(),
            alone: Vec::new(),
        }
    }
}

impl<J> Arrivals<J> {
    /// A call that runs after `key`'s earlier calls, one at a time.
    pub(crate) fn queue(&mut self, key: u32, job: J) {
        self.queued.push((key, job));
    }

    /// A call that runs at once on a thread of its own, outside any queue.
    pub(crate) fn alone(&mut self, job: J) {
        self.alone.push(job);
    }

    /// Nothing arrived yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.alone.is_empty()
    }

    /// What arrived, for tests of a service's reading: the queued calls with
    /// their keys, and the calls to run alone.
    #[cfg(test)]
    pub(crate) fn contents(&self) -> (&[(u32, J)], &[J]) {
        (&self.queued, &self.alone)
    }
}

struct Queue<J> {
    jobs: VecDeque<J>,
    /// A thread is running one of this key's jobs, or the key is in `ready`.
    scheduled: bool,
}

/// A parked follower.
struct Sleeper {
    thread: Thread,
    /// Set, under the state lock, by whoever took it off the idle stack.
    claimed: AtomicBool,
}

struct State<S: Service> {
    queues: IdMap<Queue<S::Job>>,
    /// Keys with jobs and no thread on them, in arrival order.
    ready: VecDeque<u32>,
    /// The input while nobody reads it.
    input: Option<S::Input>,
    /// The input has ended.
    input_ended: bool,
    /// Parked, unclaimed followers, the most recently parked last.
    idle: Vec<Arc<Sleeper>>,
    threads: usize,
    /// Queued jobs running now.
    running: usize,
    /// Queued jobs finished so far: the supervisor's measure of progress.
    finished: u64,
    /// The supervisor is ticking (it sleeps untimed otherwise).
    watched: bool,
    /// The supervisor's thread exists: it starts with the first call, so an
    /// idle monitor that never ran one maps no more than it needs.
    supervised: bool,
    spare: Vec<VecDeque<S::Job>>,
}

impl<S: Service> State<S> {
    fn enqueue(&mut self, key: u32, job: S::Job) {
        let spare = &mut self.spare;
        let queue = self.queues.entry(key).or_insert_with(|| Queue {
            jobs: spare.pop().unwrap_or_default(),
            scheduled: false,
        });
        queue.jobs.push_back(job);
        if !queue.scheduled {
            queue.scheduled = true;
            self.ready.push_back(key);
        }
    }

    /// `key`'s job has returned: back of the line if it has more (one job
    /// per turn keeps resources fair), else its queue is put aside.
    fn finish(&mut self, key: u32) {
        self.running -= 1;
        self.finished += 1;
        if self.queues.get(&key).is_some_and(|q| !q.jobs.is_empty()) {
            self.ready.push_back(key);
        } else if let Some(queue) = self.queues.remove(&key)
            && self.spare.len() < SPARE_QUEUES
        {
            self.spare.push(queue.jobs);
        }
    }
}

struct Shared<S: Service> {
    service: S,
    state: Mutex<State<S>>,
    /// Wakes the supervisor: when work starts, and when the input ends.
    watch: Condvar,
    stall_limit: Duration,
}

impl<S: Service> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The dispatcher: [`serve`](Dispatcher::serve) runs it on the calling
/// thread, which becomes the first leader.
pub(crate) struct Dispatcher<S: Service> {
    shared: Arc<Shared<S>>,
}

impl<S: Service> Dispatcher<S> {
    /// A dispatcher reading `input` for `service`, taking over from a call
    /// that ran for `stall_limit` ([`STALL_LIMIT`] in the monitor).
    pub(crate) fn new(service: S, input: S::Input, stall_limit: Duration) -> Self {
        let shared = Arc::new(Shared {
            service,
            state: Mutex::new(State {
                queues: IdMap::default(),
                ready: VecDeque::new(),
                input: Some(input),
                input_ended: false,
                idle: Vec::new(),
                threads: 0,
                running: 0,
                finished: 0,
                watched: false,
                supervised: false,
                spare: Vec::new(),
            }),
            watch: Condvar::new(),
            stall_limit,
        });
        Dispatcher { shared }
    }

    /// Reads and runs calls on this thread (and others, as needed) until
    /// the input ends and the calls queued before have run.
    pub(crate) fn serve(&self) {
        self.shared.lock().threads += 1;
        work(&self.shared, false);
    }
}

/// One thread's loop; see the module docs. `may_exit`: an extra thread,
/// which exits after [`IDLE_EXIT`] as an idle follower.
fn work<S: Service>(shared: &Arc<Shared<S>>, may_exit: bool) {
    let me = Arc::new(Sleeper {
        thread: std::thread::current(),
        claimed: AtomicBool::new(false),
    });
    let mut arrivals = Arrivals::default();
    let mut unflushed = false;
    let mut state = shared.lock();
    loop {
        if let Some(key) = state.ready.pop_front() {
            let job = state.queues.get_mut(&key).and_then(|q| q.jobs.pop_front());
            state.running += 1;
            if !state.watched {
                state.watched = true;
                if state.supervised {
                    shared.watch.notify_one();
                } else {
                    start_supervisor(shared, &mut state);
                }
            }
            drop(state);
            if let Some(job) = job {
                // The calls catch panics at the library boundary; this guards
                // the service's own code, so one call cannot wedge a queue.
                let _ = catch_unwind(AssertUnwindSafe(|| shared.service.run(job)));
                unflushed = true;
            }
            state = shared.lock();
            state.finish(key);
            continue;
        }
        if unflushed {
            drop(state);
            shared.service.flush();
            unflushed = false;
            state = shared.lock();
            continue;
        }
        if let Some(mut input) = state.input.take() {
            drop(state);
            let more = shared.service.read(&mut input, &mut arrivals);
            for job in arrivals.alone.drain(..) {
                run_alone(shared, job);
            }
            state = shared.lock();
            for (key, job) in arrivals.queued.drain(..) {
                state.enqueue(key, job);
            }
            if more {
                state.input = Some(input);
            } else {
                state.input_ended = true;
                shared.watch.notify_one();
                wake_followers(&mut state, usize::MAX);
            }
            continue;
        }
        if state.input_ended {
            state.threads -= 1;
            return;
        }
        me.claimed.store(false, Ordering::Release);
        state.idle.push(me.clone());
        drop(state);
        let claimed = park(&me, may_exit.then_some(IDLE_EXIT));
        state = shared.lock();
        if !claimed {
            state.idle.retain(|s| !Arc::ptr_eq(s, &me));
            if state.ready.is_empty() && state.input.is_none() && state.threads > 1 {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// Runs `job` on a thread of its own, then flushes its reply.
fn run_alone<S: Service>(shared: &Arc<Shared<S>>, job: S::Job) {
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("ck-monitor-alone".into())
        .spawn(move || {
            let _ = catch_unwind(AssertUnwindSafe(|| shared.service.run(job)));
            shared.service.flush();
        });
    if let Err(e) = spawned {
        // Without a thread the call cannot run; the host's deadline will
        // notice and recover the monitor.
        eprintln!("clusterkit-monitor: cannot start a thread for a call: {e}");
    }
}

/// Wakes up to `count` parked followers; returns how many it could not find.
fn wake_followers<S: Service>(state: &mut State<S>, count: usize) -> usize {
    let mut left = count;
    while left > 0 {
        let Some(sleeper) = state.idle.pop() else {
            break;
        };
        sleeper.claimed.store(true, Ordering::Release);
        sleeper.thread.unpark();
        left -= 1;
    }
    left
}

/// Starts the supervisor's thread, which finds `state.watched` set.
fn start_supervisor<S: Service>(shared: &Arc<Shared<S>>, state: &mut State<S>) {
    let supervised = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("ck-monitor-watch".into())
        .spawn(move || supervise(&supervised));
    match spawned {
        Ok(_) => state.supervised = true,
        Err(e) => {
            // The next call tries again; until then a hung call is not
            // taken over from.
            state.watched = false;
            eprintln!("clusterkit-monitor: cannot start the stall watchdog: {e}");
        }
    }
}

/// The stall watchdog; see the module docs.
fn supervise<S: Service>(shared: &Arc<Shared<S>>) {
    let mut state = shared.lock();
    let mut seen = state.finished;
    let mut stalls = 0u32;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    loop {
        if state.input_ended && state.running == 0 && state.ready.is_empty() {
            state.supervised = false;
            return;
        }
        if !state.watched {
            state = shared
                .watch
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            seen = state.finished;
            stalls = 0;
            continue;
        }
        let tick = Instant::now() + shared.stall_limit;
        loop {
            let left = tick.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared
                .watch
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let progressed = state.finished != seen;
        seen = state.finished;
        if state.running == 0 {
            stalls = 0;
            if !progressed && state.ready.is_empty() {
                state.watched = false; // a whole quiet period: sleep untimed
            }
            continue;
        }
        // Replies buffered by a thread that is still in its pass.
        drop(state);
        shared.service.flush();
        state = shared.lock();
        let wanted = if progressed {
            stalls = 0;
            // A burst longer than a stall period: calls are quick but still
            // wait, so another core may share them (one thread a period).
            usize::from(!state.ready.is_empty() && state.running < cores)
        } else {
            let nobody_reads = state.input.is_some();
            let wanted = state.ready.len().min(1 << stalls.min(MAX_STALL_DOUBLINGS))
                + usize::from(nobody_reads);
            stalls += 1;
            wanted
        };
        let missing = wake_followers(&mut state, wanted);
        for _ in 0..missing {
            if state.threads >= MAX_THREADS {
                break;
            }
            state.threads += 1;
            let worker = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("ck-monitor-worker".into())
                .spawn(move || work(&worker, true));
            if spawned.is_err() {
                state.threads -= 1; // the next stall tries again
                break;
            }
        }
    }
}

/// Parks until claimed (true), or until `limit` passes unclaimed (false).
/// An unpark before the park makes it return at once; spurious wake-ups
/// park again.
fn park(me: &Sleeper, limit: Option<Duration>) -> bool {
    let deadline = limit.map(|limit| Instant::now() + limit);
    while !me.claimed.load(Ordering::Acquire) {
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::park_timeout(left);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
