//! systemd integration through the `sd-notify` crate: readiness, watchdog
//! pings (only when `WATCHDOG_PID` names this process, as
//! `sd_watchdog_enabled(3)` wants) and a status line counting the resources
//! online, pending and failed.
//!
//! Every function does nothing outside systemd (no `NOTIFY_SOCKET`), and a
//! notification that cannot be sent never stops the host.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{Event, EventKind, Host, StateCounts};
use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    let _ = sd_notify::notify(states);
}

/// The `STATUS=` line: how many resources are in each state that matters to
/// an operator, and a state file that cannot be written; shared by the
/// threads following the host's statuses and events, and the one saying
/// the host is ready.
#[derive(Default)]
pub(crate) struct StatusLine(Mutex<Line>);

#[derive(Default)]
struct Line {
    counts: Counts,
    state_not_saved: Option<String>,
    sent: String,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    total: usize,
    online: usize,
    pending: usize,
    failed: usize,
}

impl Counts {
    fn of(counts: &StateCounts) -> Counts {
        Counts {
            total: counts.total(),
            online: counts.in_state(ResourceState::Online),
            pending: counts.pending(),
            failed: counts.in_state(ResourceState::Failed),
        }
    }
}

impl StatusLine {
    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in one event of the host: the status line says whether the
    /// state file could be written.
    pub(crate) fn update(&self, event: &Event) {
        let mut line = self.lock();
        match event.kind {
            EventKind::StateNotSaved => {
                line.state_not_saved = Some(event.str_field("error").unwrap_or_default().to_owned())
            }
            EventKind::StateSaved => line.state_not_saved = None,
            _ => return,
        }
        line.send_if_changed();
    }

    /// Keeps the counts of the status line up to date, in a thread of its
    /// own, as long as the host lives.
    ///
    /// It waits on the host's status board, which wakes it on each change:
    /// no polling, and a count is never left behind by a change that no
    /// later event follows.
    pub(crate) fn follow(self: &Arc<Self>, host: &Arc<Host>) {
        let (line, host) = (self.clone(), Arc::downgrade(host));
        let _ = std::thread::Builder::new()
            .name("ck-status-line".into())
            .spawn(move || {
                while let Some(host) = host.upgrade() {
                    let shown = line.lock().counts;
                    let mut now = shown;
                    let changed = host.wait_for_counts(RECHECK, "a status change", |counts| {
                        now = Counts::of(counts);
                        now != shown
                    });
                    if changed.is_ok() {
                        let mut line = line.lock();
                        line.counts = now;
                        line.send_if_changed();
                    }
                }
            });
    }
}

/// How long the status line's thread holds the host between two looks at
/// whether it still lives.
const RECHECK: Duration = Duration::from_secs(10);

impl Line {
    /// The line as systemd shows it.
    fn text(&self) -> String {
        let Counts {
            total,
            online,
            pending,
            failed,
        } = self.counts;
        let mut text =
            format!("{online} online, {pending} pending, {failed} failed (of {total} resources)");
        if let Some(error) = &self.state_not_saved {
            // A state file that cannot be written is the operator's business
            // now: the line says so until it is written again.
            text.push_str(&format!("; state not saved: {error}; retrying"));
        }
        text.replace('\n', " ")
    }

    fn send_if_changed(&mut self) {
        let text = self.text();
        if text != self.sent {
            send(&[NotifyState::Status(&text)]);
            self.sent = text;
        }
    }
}

/// Tells systemd the host is ready (with the status line as it is now),
/// and when systemd asked for a watchdog for this process, starts pings at
/// half its timeout while the host's engine answers.
pub(crate) fn ready(host: Arc<Host>, status: &StatusLine) {
    let mut line = status.lock();
    line.counts = Counts::of(&host.state_counts());
    let text = line.text();
    send(&[NotifyState::Ready, NotifyState::Status(&text)]);
    line.sent = text;
    drop(line);
    // `None` too when WATCHDOG_PID names another process: a monitor child
    // inherits the variables but is not the one systemd watches.
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    // A zero timeout (systemd never sends one) must not spin.
    let period = (timeout / 2).max(Duration::from_millis(1));
    let _ = std::thread::Builder::new()
        .name("ck-watchdog".into())
        .spawn(move || {
            loop {
                // A wedged engine stops the pings, and systemd restarts the service.
                if host.is_responsive(period) {
                    send(&[NotifyState::Watchdog]);
                }
                std::thread::sleep(period);
            }
        });
}

/// Tells systemd the host is stopping.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}
