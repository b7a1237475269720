//! The timer table: at most one timer per key, ordered by due time. Setting
//! a key's timer replaces the previous one and cancelling removes it, so a
//! phase that ends takes its timers with it and nothing stale ever fires.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::ids::{IdMap, MonitorId, ResourceId};
use super::monitors::MonitorKey;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A health check is due (`looks_alive` when `looks`, else `is_alive`).
    Health {
        /// The resource.
        resource: ResourceId,
        /// Which check.
        looks: bool,
    },
    /// A pending operation's progress deadline.
    Pending(ResourceId),
    /// A held resource's restart.
    Restart(ResourceId),
    /// A killed monitor must have exited by now.
    Watchdog(MonitorId),
    /// A new monitor must have said hello by now.
    Hello(MonitorId),
    /// An exited monitor's socket is given up on.
    ReaderGrace(MonitorId),
    /// Try starting a monitor again.
    Respawn(MonitorKey),
    /// Try writing the state file again.
    PersistRetry,
}

/// Timers by due time, at most one per [`Timer`]. A heap ordered by due
/// time, and the current setting of each key: setting a key again or
/// cancelling it leaves its old heap entry behind, skipped when it comes
/// up (cheaper than removing it from an ordered map on every health check).
/// A resource's timers keep their setting in a slot of a vector, the
/// monitors' (rare) in a map.
#[derive(Default)]
pub(crate) struct TimerTable {
    heap: BinaryHeap<Reverse<Entry>>,
    /// The time keys count from (the first time set).
    base: Option<Instant>,
    /// Per resource, `SLOTS` settings (0: not set).
    slots: Vec<u64>,
    others: IdMap<Timer, u64>,
    seq: u64,
    /// Timers set now (the heap also holds entries left behind).
    live: usize,
}

/// One setting in the heap, ordered by due time then by when it was set
/// (two integers: cheaper to compare than an `Instant` and a `Timer` on
/// every step of a sift through tens of thousands of health checks).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Nanoseconds from the table's base.
    due: u64,
    seq: u64,
    timer: Timer,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Timers per resource: looks_alive, is_alive, pending, restart.
const SLOTS: usize = 4;

fn slot(timer: Timer) -> Option<usize> {
    match timer {
        Timer::Health { resource, looks } => Some(resource.0 * SLOTS + usize::from(!looks)),
        Timer::Pending(resource) => Some(resource.0 * SLOTS + 2),
        Timer::Restart(resource) => Some(resource.0 * SLOTS + 3),
        _ => None,
    }
}

impl TimerTable {
    fn setting(&self, timer: Timer) -> Option<u64> {
        match slot(timer) {
            Some(i) => self.slots.get(i).copied().filter(|&seq| seq != 0),
            None => self.others.get(&timer).copied(),
        }
    }

    fn store(&mut self, timer: Timer, seq: u64) {
        match (self.setting(timer).is_some(), seq != 0) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        match slot(timer) {
            Some(i) => {
                if i >= self.slots.len() {
                    self.slots.resize(i + 1, 0);
                }
                self.slots[i] = seq;
            }
            None if seq == 0 => {
                self.others.remove(&timer);
            }
            None => {
                self.others.insert(timer, seq);
            }
        }
    }

    /// Sets `timer` to fire at `at`, replacing an earlier setting.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.seq += 1;
        self.store(timer, self.seq);
        let due = self.key(at);
        self.heap.push(Reverse(Entry {
            due,
            seq: self.seq,
            timer,
        }));
        // Entries left behind by long timers (a pending deadline of minutes
        // cancelled at once) would pile up until they come due: once they
        // outnumber the live ones, the heap keeps the live ones only.
        if self.heap.len() > 2 * self.live + 1024 {
            self.compact();
        }
    }

    /// `at` as nanoseconds from the base: the earliest time ever set (a
    /// time before it moves the base back, shifting every entry alike).
    fn key(&mut self, at: Instant) -> u64 {
        let base = *self.base.get_or_insert(at);
        if at < base {
            let shift = nanos(base - at);
            let entries = std::mem::take(&mut self.heap).into_vec();
            self.heap = entries
                .into_iter()
                .map(|Reverse(e)| {
                    Reverse(Entry {
                        due: e.due.saturating_add(shift),
                        ..e
                    })
                })
                .collect();
            self.base = Some(at);
            return 0;
        }
        nanos(at - base)
    }

    fn instant(&self, due: u64) -> Option<Instant> {
        self.base
            .map(|base| base + std::time::Duration::from_nanos(due))
    }

    /// Drops the heap's entries left behind by timers set again or cancelled.
    fn compact(&mut self) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        let mut live: Vec<_> = entries
            .into_iter()
            .filter(|Reverse(e)| self.setting(e.timer) == Some(e.seq))
            .collect();
        live.shrink_to(2 * live.len());
        self.heap = BinaryHeap::from(live);
    }

    /// Removes `timer`, if set.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        if self.setting(timer).is_some() {
            self.store(timer, 0);
        }
    }

    /// When the earliest timer is due (perhaps one cancelled since, which
    /// costs one early wake-up and nothing else).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().and_then(|Reverse(e)| self.instant(e.due))
    }

    /// Takes the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let base = self.base?;
        // Before the base: nothing can be due yet.
        let now = nanos(now.checked_duration_since(base)?);
        while let Some(&Reverse(Entry { due, seq, timer })) = self.heap.peek() {
            if due > now {
                return None;
            }
            self.heap.pop();
            if self.setting(timer) == Some(seq) {
                self.store(timer, 0);
                return Some(timer);
            }
        }
        None
    }

    /// Whether `timer` is set.
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.setting(timer).is_some()
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_timer_set_again_fires_once_at_its_new_time() {
        let t0 = crate::engine::simulation::epoch();
        let mut timers = TimerTable::default();
        let t = Timer::Pending(ResourceId(0));
        timers.set(t, t0 + Duration::from_secs(1));
        timers.set(t, t0 + Duration::from_secs(2));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(2)), Some(t));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(9)), None);
    }

    #[test]
    fn cancelled_timers_never_fire_and_order_is_by_time() {
        let t0 = crate::engine::simulation::epoch();
        let mut timers = TimerTable::default();
        let (a, b, c) = (
            Timer::Restart(ResourceId(0)),
            Timer::Restart(ResourceId(1)),
            Timer::Restart(ResourceId(2)),
        );
        timers.set(a, t0 + Duration::from_millis(30));
        timers.set(b, t0 + Duration::from_millis(10));
        timers.set(c, t0 + Duration::from_millis(20));
        timers.cancel(c);
        assert!(!timers.is_set(c));
        assert_eq!(timers.next_due(), Some(t0 + Duration::from_millis(10)));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(timers.pop_due(later), Some(b));
        assert_eq!(timers.pop_due(later), Some(a));
        assert_eq!(timers.pop_due(later), None);
    }

    #[test]
    fn entries_left_behind_are_dropped_and_live_timers_still_fire_in_order() {
        let t0 = crate::engine::simulation::epoch();
        let mut timers = TimerTable::default();
        let at = |ms| t0 + Duration::from_millis(ms);
        // 10 000 resources: a long pending deadline each, cancelled at once,
        // and a health check re-armed again and again.
        for i in 0..10_000 {
            let pending = Timer::Pending(ResourceId(i));
            timers.set(pending, at(300_000));
            timers.cancel(pending);
            for round in 0..3 {
                let check = Timer::Health {
                    resource: ResourceId(i),
                    looks: true,
                };
                timers.set(check, at(1_000 * (round + 1) + i as u64));
            }
        }
        assert_eq!(timers.live, 10_000);
        assert!(
            timers.heap.len() <= 2 * 10_000 + 1024,
            "{}",
            timers.heap.len()
        );
        let mut fired = Vec::new();
        while let Some(t) = timers.pop_due(at(400_000)) {
            fired.push(t);
        }
        let expected: Vec<_> = (0..10_000)
            .map(|i| Timer::Health {
                resource: ResourceId(i),
                looks: true,
            })
            .collect();
        assert_eq!(fired, expected);
        assert_eq!(timers.live, 0);
    }
}
