//! Helpers for tests that drive a host: short timings and waits on events.
//!
//! Used by this crate's integration tests and by the examples' tests. It
//! lives here, not in `clusterkit-testkit`, because it speaks the host's
//! types and the host dev-depends on the testkit. Not a supported API:
//! hidden from the docs, free to change.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::{Event, EventKind, Timing};

/// The guard on every wait: far above what any step takes, so a failure
/// shows as a clear timeout rather than a hang.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Short timings for tests: checks every 100 ms / 500 ms, 1 s deadlines
/// (the minimum), restarts after 50 ms.
pub fn fast_timing() -> Timing {
    fast_timing_with_deadlines(Duration::from_millis(1000))
}

/// [`fast_timing`] with longer deadlines (calls and pending operations),
/// for resources whose real backend is slow on a loaded machine.
pub fn fast_timing_with_deadlines(deadline: Duration) -> Timing {
    let mut t = Timing {
        looks_alive_interval: Duration::from_millis(100),
        is_alive_interval: Duration::from_millis(500),
        deadlock_timeout: deadline,
        pending_timeout: deadline,
        ..Timing::default()
    };
    t.restart.delay = Duration::from_millis(50);
    t
}

/// Waits up to [`PATIENCE`] for the first event matching `pred`, returning
/// it and every event seen before it; panics, listing them, if none comes.
pub fn wait_event(
    events: &Receiver<Event>,
    what: &str,
    pred: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    wait_event_within(events, PATIENCE, what, pred)
}

/// [`wait_event`], giving up after `patience`.
pub fn wait_event_within(
    events: &Receiver<Event>,
    patience: Duration,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let deadline = Instant::now() + patience;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if pred(&e) => return (e, seen),
            Ok(e) => seen.push(e),
            Err(_) => panic!(
                "no event {what} within {patience:?}; saw: {:#?}",
                seen.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            ),
        }
    }
}

/// A matcher for events of `kind` about `resource`.
pub fn is(kind: EventKind, resource: &str) -> impl FnMut(&Event) -> bool + '_ {
    move |e| e.kind == kind && e.resource.as_deref() == Some(resource)
}
