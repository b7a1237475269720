//! The recovery matrix (`docs/RECOVERY.md`): every entry
//! point × {hang, panic, abort, error, slow within the deadline}, one test
//! per cell. `docs/RECOVERY.md` tabulates the outcomes and names these tests.
//!
//! In every cell the faulty resource `x` (fault-injection, with a control
//! file) shares its monitor with three healthy, re-attachable bystanders
//! `b0..b2` (fault-injection, no faults). Everything comes online, the
//! directive is written to x's control file, the entry point is triggered,
//! and once the fault's effect is seen (by events or status changes, never
//! by sleeping) the directive is removed and the outcome checked: x's state,
//! how often its restart policy ran, how often its workload was started,
//! whether it was isolated; and that the bystanders were neither blamed nor
//! restarted (start counters still 1) and end online (stopped, in the
//! `close` cells).
//!
//! Deadlines are 1 s (`common::fast_timing`), `slow` sleeps 300 ms, and x
//! waits 300 ms before a restart, so the test takes the directive away
//! before the restart policy brings x back. The event checks read
//! `events.jsonl`, the complete history (a subscription starts after the
//! host, and an `open` fault can come before it); a failing check prints it.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use clusterkit::{Health, ResourceState};
use clusterkit_fault_injection::{START_COUNT, is_running, start_count};
use clusterkit_host::{Event, EventKind, Host, HostError, PersistedState, ResourceStatus};
use clusterkit_testkit::TempDir;
use common::*;
use serde_json::{Value, json};

use ResourceState::{Failed, Offline, Online};

const BYSTANDERS: [&str; 3] = ["b0", "b1", "b2"];
/// How long `slow` sleeps: well within the 1 s deadline.
const SLOW_FOR: Duration = Duration::from_millis(300);
/// x's restart delay: time for the test to take the directive away first.
const X_RESTART_DELAY: Duration = Duration::from_millis(300);
/// The guard on every wait of this file: a broken cell fails in seconds,
/// printing the events, rather than after `PATIENCE`.
const SETTLE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Hang,
    Panic,
    Abort,
    Error,
    Slow,
}

impl Fault {
    /// The fault-injection action.
    fn action(self) -> &'static str {
        match self {
            Fault::Hang => "hang",
            Fault::Panic => "panic",
            Fault::Abort => "abort",
            Fault::Error => "fail",
            Fault::Slow => "slow",
        }
    }
}

/// What a cell expects of x at the end.
#[derive(Debug, Clone, Copy)]
struct Expect {
    /// The shared monitor ended (killed at x's deadline, or crashed in x's
    /// call), x alone was blamed and now has a monitor of its own, and the
    /// bystanders went on in a new shared monitor.
    isolated: bool,
    /// How often x was restarted (`ResourceStatus::restarts`).
    restarts: u64,
    /// x's workload start counter.
    starts: u32,
    /// x's final state (`close` cells: everything is stopped).
    state: ResourceState,
}

const fn isolated(restarts: u64, starts: u32, state: ResourceState) -> Expect {
    Expect {
        isolated: true,
        restarts,
        starts,
        state,
    }
}

const fn in_place(restarts: u64, starts: u32, state: ResourceState) -> Expect {
    Expect {
        isolated: false,
        restarts,
        starts,
        state,
    }
}

macro_rules! cell {
    ($name:ident, $entry:literal, $fault:ident, $expect:expr) => {
        #[test]
        fn $name() {
            run($entry, Fault::$fault, $expect);
        }
    };
}

// x's outcome: isolated (monitor killed or crashed, x restarted alone) or in
// place (same monitor); workload restarts (`resource_restarted`, counted in
// `ResourceStatus::restarts`); workload starts; final state. A terminate
// that fails leaves x failed, its workload possibly running, and asks for
// failover instead of restarting x beside it.
// x was started once before the fault, except in the `open` cells (x is
// started after its open); the `online` cells take x offline first and
// bring it online again (one more start).
cell!(open_hang, "open", Hang, isolated(1, 1, Online));
cell!(open_panic, "open", Panic, in_place(0, 1, Online));
cell!(open_abort, "open", Abort, isolated(0, 1, Online));
cell!(open_error, "open", Error, in_place(0, 1, Online));
cell!(open_slow, "open", Slow, in_place(0, 1, Online));
cell!(close_hang, "close", Hang, isolated(0, 1, Offline));
cell!(close_panic, "close", Panic, in_place(0, 1, Offline));
cell!(close_abort, "close", Abort, isolated(0, 1, Offline));
cell!(close_error, "close", Error, in_place(0, 1, Offline));
cell!(close_slow, "close", Slow, in_place(0, 1, Offline));
cell!(online_hang, "online", Hang, isolated(1, 2, Online));
cell!(online_panic, "online", Panic, in_place(1, 2, Online));
cell!(online_abort, "online", Abort, isolated(1, 2, Online));
cell!(online_error, "online", Error, in_place(1, 2, Online));
cell!(online_slow, "online", Slow, in_place(0, 2, Online));
cell!(offline_hang, "offline", Hang, isolated(0, 1, Offline));
cell!(offline_panic, "offline", Panic, in_place(0, 1, Offline));
cell!(offline_abort, "offline", Abort, isolated(0, 1, Offline));
cell!(offline_error, "offline", Error, in_place(0, 1, Offline));
cell!(offline_slow, "offline", Slow, in_place(0, 1, Offline));
cell!(terminate_hang, "terminate", Hang, isolated(1, 2, Online));
cell!(terminate_panic, "terminate", Panic, in_place(0, 1, Failed));
cell!(terminate_abort, "terminate", Abort, isolated(1, 2, Online));
cell!(terminate_error, "terminate", Error, in_place(0, 1, Failed));
cell!(terminate_slow, "terminate", Slow, in_place(1, 2, Online));
cell!(
    looks_alive_hang,
    "looks_alive",
    Hang,
    isolated(1, 2, Online)
);
cell!(
    looks_alive_panic,
    "looks_alive",
    Panic,
    in_place(0, 1, Online)
);
cell!(
    looks_alive_abort,
    "looks_alive",
    Abort,
    isolated(1, 2, Online)
);
cell!(
    looks_alive_error,
    "looks_alive",
    Error,
    in_place(0, 1, Online)
);
cell!(
    looks_alive_slow,
    "looks_alive",
    Slow,
    in_place(0, 1, Online)
);
cell!(is_alive_hang, "is_alive", Hang, isolated(1, 2, Online));
cell!(is_alive_panic, "is_alive", Panic, in_place(1, 2, Online));
cell!(is_alive_abort, "is_alive", Abort, isolated(1, 2, Online));
cell!(is_alive_error, "is_alive", Error, in_place(1, 2, Online));
cell!(is_alive_slow, "is_alive", Slow, in_place(0, 1, Online));
cell!(control_hang, "control", Hang, isolated(1, 2, Online));
cell!(control_panic, "control", Panic, in_place(0, 1, Online));
cell!(control_abort, "control", Abort, isolated(1, 2, Online));
cell!(control_error, "control", Error, in_place(0, 1, Online));
cell!(control_slow, "control", Slow, in_place(0, 1, Online));

fn run(entry: &'static str, fault: Fault, expect: Expect) {
    match entry {
        "open" => open_cell(fault, expect),
        "close" => close_cell(fault, expect),
        _ => running_cell(entry, fault, expect),
    }
}

/// online, offline, terminate, looks_alive, is_alive, control: faults hit
/// while everything is online.
fn running_cell(entry: &'static str, fault: Fault, expect: Expect) {
    let mut c = Cell::start(entry, fault, false);
    c.all_online();
    if entry == "online" {
        c.host().offline("x").unwrap();
        c.wait("x offline", is(EventKind::ResourceOffline, "x"));
    }
    c.inject();
    std::thread::scope(|s| {
        let (tx, replies) = mpsc::channel();
        let host = c.host();
        let triggered = Instant::now();
        match entry {
            "online" => host.online("x").unwrap(),
            "offline" => host.offline("x").unwrap(),
            // A failure is handled by `terminate`, then the restart policy.
            "terminate" => host.fail("x").unwrap(),
            // The call returns when x answers or its monitor dies.
            "control" => {
                s.spawn(move || {
                    let _ = tx.send(host.control("x", START_COUNT, b""));
                });
            }
            // Health checks: the next poll.
            _ => {}
        }
        c.observe(&replies, triggered);
    });
    c.settle(expect);
    c.check(expect);
}

/// `open` runs when a resource is (re)opened: the host starts with the
/// directive already in x's control file.
fn open_cell(fault: Fault, expect: Expect) {
    let mut c = Cell::start("open", fault, true);
    match fault {
        Fault::Hang | Fault::Slow => {
            // x's open is stuck (for 1 s, or 300 ms); the bystanders are
            // opened next to it and come online in milliseconds.
            for name in ["x", "b0", "b1", "b2"] {
                c.host().online(name).unwrap();
            }
            c.wait_for("the bystanders online", bystanders_online);
            c.shared_pid = c.pid("b0");
            let history = c.history();
            assert!(
                events(&history, EventKind::CallTimedOut, None).is_empty(),
                "the bystanders came online only after x's open passed its deadline: \
                 their opens waited behind x's (calls to different resources \
                 in one monitor run concurrently)\n{}",
                describe(&history)
            );
            if fault == Fault::Hang {
                assert_eq!(c.pid("x"), None, "x's open is still running");
                let e = c.wait(
                    "x's open past its deadline",
                    is(EventKind::CallTimedOut, "x"),
                );
                c.clear();
                assert_eq!(e.str_field("call"), Some("open"), "{}", c.history_text());
            } else {
                c.wait_for("x online", |s| by_name(s, "x").state == Online);
                c.clear();
            }
        }
        Fault::Panic | Fault::Error => {
            // The open fails at once (possibly before the event subscription
            // exists: watch the status); the monitor lives on.
            for name in BYSTANDERS {
                c.host().online(name).unwrap();
            }
            c.wait_for("x's open to fail", |s| {
                by_name(s, "x").state == ResourceState::Failed
            });
            c.clear();
            c.wait_for("x re-opened by its restart policy", |s| {
                let x = by_name(s, "x");
                x.state == Offline && x.monitor_pid.is_some()
            });
            c.host().online("x").unwrap();
            c.wait_for("the bystanders online", bystanders_online);
            c.shared_pid = c.pid("b0");
        }
        Fault::Abort => {
            // x's open aborts the shared monitor within milliseconds of the
            // host's start, while the bystanders are being opened in it: they
            // cannot be online before the fault hits. So they are asked
            // online only after the crash: they are re-opened (recover =
            // true) in a new monitor, not re-attached, and started once.
            c.wait_for("x blamed and isolated", |s| {
                by_name(s, "x").separate_monitor
            });
            c.clear();
            let died = c.history_of(EventKind::MonitorDied, None);
            assert_eq!(
                died.len(),
                1,
                "x must be blamed at the first crash, not re-opened next to the bystanders\n{}",
                c.history_text()
            );
            c.shared_pid = died[0]["pid"].as_u64().map(|p| p as u32);
            for name in BYSTANDERS {
                c.host().online(name).unwrap();
            }
            c.wait_for("the bystanders online", bystanders_online);
            c.wait_for("x re-opened alone by its restart policy", |s| {
                let x = by_name(s, "x");
                x.state == Offline && x.monitor_pid.is_some()
            });
            c.host().online("x").unwrap();
        }
    }
    c.settle(expect);
    c.check(expect);
}

/// `close` runs in `stop_all`: offline everything, close, shut down.
fn close_cell(fault: Fault, expect: Expect) {
    let mut c = Cell::start("close", fault, false);
    c.all_online();
    c.inject();
    let host = c.host.take().expect("running");
    let started = Instant::now();
    let result = host.stop_all(SETTLE);
    let took = started.elapsed();
    c.clear();
    let history = c.history();
    let text = describe(&history);
    let told = c.told();
    match (fault, &result) {
        (Fault::Slow, Ok(())) => assert!(took >= SLOW_FOR, "stopped in {took:?}"),
        (Fault::Slow, Err(e)) => panic!("stop_all: {e}\n{text}"),
        (_, Ok(())) => panic!("stop_all succeeded despite x's close\n{text}"),
        (_, Err(e)) => {
            let message = e.to_string();
            assert!(message.contains("`x`"), "{message}\n{text}");
            // The bystanders' closes are sent with x's and take
            // microseconds: they are done long before x's deadline. An
            // abort can cut short the ones still running in that process.
            if fault != Fault::Abort {
                for b in BYSTANDERS {
                    assert!(!message.contains(&format!("`{b}`")), "{message}\n{text}");
                }
            }
            let why = match fault {
                Fault::Hang | Fault::Abort => "the monitor died during close",
                _ => &told,
            };
            assert!(message.contains(why), "{message}\n{text}");
        }
    }
    let dir = c.dir.path();
    for name in ["x", "b0", "b1", "b2"] {
        assert!(!is_running(dir, name), "{name} still runs\n{text}");
    }
    assert_eq!(start_count(dir, "x"), expect.starts, "{text}");
    let state: PersistedState = serde_json::from_str(
        &std::fs::read_to_string(dir.join("host").join("state.json")).unwrap(),
    )
    .unwrap();
    let x = &state.resources["x"];
    assert_eq!(x.separate_monitor, expect.isolated, "x's isolation\n{text}");
    assert_eq!(x.restarts.total, expect.restarts, "x's restarts\n{text}");
    for b in BYSTANDERS {
        let saved = &state.resources[b];
        assert!(!saved.separate_monitor, "{b} isolated\n{text}");
        assert_eq!(saved.restarts.total, 0, "{b} restarted\n{text}");
        assert_eq!(start_count(dir, b), 1, "{b} was restarted\n{text}");
    }
    c.check_fault_events(&history, expect);
    c.check_bystander_events(&history, 0);
    // The stop ends with the host: no monitor is started after the fault.
    if expect.isolated {
        let died = position(&history, EventKind::MonitorDied, None).unwrap();
        assert!(
            events(&history, EventKind::MonitorStarted, None)
                .iter()
                .all(|e| index_of(&history, e) < died),
            "a monitor was started during the stop\n{text}"
        );
    }
}

struct Cell {
    // Dropped first: the host stops before its directory goes.
    host: Option<Host>,
    events: Receiver<Event>,
    dir: TempDir,
    control: PathBuf,
    entry: &'static str,
    fault: Fault,
    /// The shared monitor before the fault.
    shared_pid: Option<u32>,
}

impl Cell {
    /// Starts a host with x and the bystanders, with the directive already
    /// in x's control file when `preset`.
    fn start(entry: &'static str, fault: Fault, preset: bool) -> Cell {
        let dir = TempDir::new(&format!("matrix-{entry}-{}", fault.action()));
        let control = dir.path().join("x.control");
        let mut c = Cell {
            host: None,
            events: mpsc::channel().1,
            dir,
            control,
            entry,
            fault,
            shared_pid: None,
        };
        if preset {
            c.inject();
        }
        let path = c.dir.path();
        let mut b = builder(path).resource(
            common::fault("x", path)
                .property("control_file", c.control.to_str().unwrap())
                .property("slow_for", SLOW_FOR)
                .timing(|t| t.restart_delay = Some(X_RESTART_DELAY)),
        );
        for name in BYSTANDERS {
            b = b.resource(common::fault(name, path));
        }
        let host = b.start().unwrap();
        c.events = host.subscribe();
        c.host = Some(host);
        c
    }

    fn host(&self) -> &Host {
        self.host.as_ref().expect("the host runs")
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.host().resource_status(name).unwrap().monitor_pid
    }

    fn all_online(&mut self) {
        for name in ["x", "b0", "b1", "b2"] {
            self.host().online(name).unwrap();
        }
        self.wait_for("everything online", |s| s.iter().all(|r| r.state == Online));
        let status = self.host().status();
        let pid = status[0].monitor_pid;
        assert!(
            pid.is_some() && status.iter().all(|s| s.monitor_pid == pid),
            "one shared monitor: {status:#?}"
        );
        self.shared_pid = pid;
        for name in ["x", "b0", "b1", "b2"] {
            assert_eq!(start_count(self.dir.path(), name), 1);
        }
    }

    fn told(&self) -> String {
        format!("told to {} in {}", self.fault.action(), self.entry)
    }

    /// Writes the directive to x's control file.
    fn inject(&self) {
        let directive = format!("{} {}\n", self.fault.action(), self.entry);
        std::fs::write(&self.control, directive).unwrap();
    }

    /// Takes the directive away (a missing control file means no faults).
    fn clear(&self) {
        if let Err(e) = std::fs::remove_file(&self.control) {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        }
    }

    /// The next event matching `pred` from the subscription.
    fn wait(&self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if pred(&e) => return e,
                Ok(_) => {}
                Err(_) => panic!("no event {what} within {SETTLE:?}\n{}", self.history_text()),
            }
        }
    }

    fn wait_for(&self, what: &str, condition: impl FnMut(&[ResourceStatus]) -> bool) {
        if let Err(e) = self.host().wait_for(SETTLE, what, condition) {
            panic!(
                "{e}\nstatus: {:#?}\n{}",
                self.host().status(),
                self.history_text()
            );
        }
    }

    /// Waits until the fault has had its effect, and takes it away.
    fn observe(&self, replies: &Receiver<Result<Vec<u8>, HostError>>, triggered: Instant) {
        let (entry, told) = (self.entry, self.told());
        let text = || self.history_text();
        match self.fault {
            Fault::Hang => {
                let e = self.wait(
                    "x's call past its deadline",
                    is(EventKind::CallTimedOut, "x"),
                );
                self.clear();
                assert_eq!(e.str_field("call"), Some(entry), "{}", text());
                let elapsed = e.field("elapsed_ms").and_then(Value::as_u64).unwrap();
                assert!((1000..3000).contains(&elapsed), "after {elapsed} ms");
            }
            Fault::Abort => {
                // The warning x logs just before aborting, or the death.
                self.wait("x's abort", |e| {
                    e.kind == EventKind::MonitorDied
                        || (e.kind == EventKind::ResourceLog
                            && e.resource.as_deref() == Some("x")
                            && e.str_field("message").is_some_and(|m| m.contains(&told)))
                });
                self.clear();
            }
            Fault::Panic | Fault::Error => match entry {
                "looks_alive" => {
                    let e = self.wait("x's looks_alive failing", is(EventKind::HealthFailed, "x"));
                    assert_eq!(e.str_field("check"), Some("looks_alive"), "{}", text());
                    assert!(e.str_field("reason").unwrap().contains(&told), "{e:?}");
                    // looks_alive keeps failing: a healthy result now comes
                    // from the is_alive run at once, which passes.
                    self.wait_for("x's is_alive to pass", |s| {
                        by_name(s, "x").last_health == Some(Health::Healthy)
                    });
                    self.clear();
                }
                "is_alive" => {
                    let e = self.wait("x's is_alive failing", is(EventKind::HealthFailed, "x"));
                    assert_eq!(e.str_field("check"), Some("is_alive"), "{}", text());
                    assert!(e.str_field("reason").unwrap().contains(&told), "{e:?}");
                    self.wait("x's failure", is(EventKind::ResourceFailed, "x"));
                    self.clear();
                }
                "control" => {
                    let reply = replies.recv_timeout(SETTLE).expect("control answers");
                    self.clear();
                    assert!(
                        matches!(&reply, Err(HostError::Call(e)) if e.to_string().contains(&told)),
                        "{reply:?}"
                    );
                }
                _ => {
                    let e = self.wait("x's call failing", is(EventKind::CallFailed, "x"));
                    self.clear();
                    assert_eq!(e.str_field("call"), Some(entry), "{}", text());
                    assert!(e.str_field("error").unwrap().contains(&told), "{e:?}");
                    if entry == "terminate" {
                        // x was already shown failed; the outcome of the
                        // failed terminate is the request to move it.
                        self.wait(
                            "x's failover request",
                            is(EventKind::FailoverRequested, "x"),
                        );
                    }
                }
            },
            Fault::Slow => {
                match entry {
                    "looks_alive" | "is_alive" => self.wait_for("a slow check of x", |s| {
                        by_name(s, "x")
                            .last_check_latency
                            .is_some_and(|l| l >= SLOW_FOR)
                    }),
                    "online" => {
                        self.wait("x online", is(EventKind::ResourceOnline, "x"));
                    }
                    "offline" => {
                        self.wait("x offline", is(EventKind::ResourceOffline, "x"));
                    }
                    "terminate" => {
                        let failed = self.wait("x's failure", is(EventKind::ResourceFailed, "x"));
                        let restarted =
                            self.wait("x's restart", is(EventKind::ResourceRestarted, "x"));
                        let took = restarted.ts.duration_since(failed.ts).unwrap();
                        assert!(
                            took >= SLOW_FOR + X_RESTART_DELAY,
                            "restarted after {took:?}"
                        );
                    }
                    _ => {
                        let reply = replies.recv_timeout(SETTLE).expect("control answers");
                        assert_eq!(reply.unwrap(), b"1");
                    }
                }
                self.clear();
                if matches!(entry, "online" | "offline" | "control") {
                    assert!(triggered.elapsed() >= SLOW_FOR);
                }
            }
        }
        if entry == "control" && matches!(self.fault, Fault::Hang | Fault::Abort) {
            let reply = replies.recv_timeout(SETTLE).expect("control answers");
            assert!(
                matches!(&reply, Err(HostError::Call(e)) if e.to_string().contains("the monitor died during the call")),
                "{reply:?}"
            );
        }
    }

    /// Waits until recovery is over: x in its final state, the bystanders
    /// online.
    fn settle(&self, expect: Expect) {
        let shared = self.shared_pid;
        if expect.isolated {
            // Blamed at once, or never: check before waiting for recovery.
            if self.history_of(EventKind::MonitorDied, None).is_empty() {
                self.wait("the monitor's death", |e| e.kind == EventKind::MonitorDied);
            }
            let died = self.history_of(EventKind::MonitorDied, None);
            assert_eq!(
                died[0]["suspects"],
                json!(["x"]),
                "x must be blamed for the monitor's death\n{}",
                self.history_text()
            );
            self.wait_for("x alone, the bystanders in a new monitor", |s| {
                let x = by_name(s, "x");
                let b = by_name(s, "b0").monitor_pid;
                x.separate_monitor
                    && x.state == expect.state
                    && x.monitor_pid.is_some()
                    && bystanders_online(s)
                    && BYSTANDERS
                        .iter()
                        .all(|n| by_name(s, n).monitor_pid == b && b != shared)
            });
        } else {
            self.wait_for("x and the bystanders settled", |s| {
                by_name(s, "x").state == expect.state && bystanders_online(s)
            });
        }
    }

    fn check(&self, expect: Expect) {
        let history = self.history();
        let text = describe(&history);
        let dir = self.dir.path();
        let status = self.host().status();
        let x = by_name(&status, "x");
        assert_eq!(x.state, expect.state, "x's state\n{text}");
        assert_eq!(
            x.restarts, expect.restarts,
            "x was restarted {} times, expected {}\n{text}",
            x.restarts, expect.restarts
        );
        assert_eq!(start_count(dir, "x"), expect.starts, "x's starts\n{text}");
        // A failed terminate may leave the workload running: it must not be
        // started again beside it (the start count says so).
        if expect.state != Failed {
            assert_eq!(is_running(dir, "x"), expect.state == Online, "{text}");
        }
        assert_eq!(x.separate_monitor, expect.isolated, "x's isolation\n{text}");
        let pid = by_name(&status, "b0").monitor_pid;
        for b in BYSTANDERS {
            let s = by_name(&status, b);
            assert_eq!(s.state, Online, "{b}\n{text}");
            assert_eq!(s.monitor_pid, pid, "{b} left the shared monitor\n{text}");
            assert!(!s.separate_monitor, "{b} isolated\n{text}");
            assert_eq!(s.restarts, 0, "{b}'s restart policy ran\n{text}");
            assert_eq!(start_count(dir, b), 1, "{b} was restarted\n{text}");
            assert!(is_running(dir, b), "{b}\n{text}");
        }
        if expect.isolated {
            assert_ne!(x.monitor_pid, pid, "x shares a monitor\n{text}");
            assert_ne!(pid, self.shared_pid, "the old monitor lives\n{text}");
        } else {
            assert_eq!(x.monitor_pid, pid, "x left the shared monitor\n{text}");
            assert_eq!(pid, self.shared_pid, "the shared monitor changed\n{text}");
        }
        self.check_fault_events(&history, expect);
        // The bystanders were online when the monitor died, except when an
        // abort in open killed it before they could be.
        let reattached = expect.isolated && !(self.entry == "open" && self.fault == Fault::Abort);
        self.check_bystander_events(&history, usize::from(reattached));
        // Restarts that brought x back online show as resource_restarted;
        // a restart while x is wanted offline only re-opens it.
        let restarted = match self.entry {
            "open" if self.fault == Fault::Hang => 1,
            "open" => 0,
            _ if expect.state == Online => expect.restarts as usize,
            _ => 0,
        };
        assert_eq!(
            events(&history, EventKind::ResourceRestarted, Some("x")).len(),
            restarted,
            "x's resource_restarted events\n{text}"
        );
        // A failed terminate asks the cluster engine to move x (its
        // workload may still run here); nothing else asks for failover.
        let failovers = usize::from(expect.state == Failed);
        assert_eq!(
            events(&history, EventKind::FailoverRequested, Some("x")).len(),
            failovers,
            "{text}"
        );
        for kind in [
            EventKind::RestartThresholdExceeded,
            EventKind::FailoverRequested,
            EventKind::Escalation,
        ] {
            let others =
                events(&history, kind, None).len() - events(&history, kind, Some("x")).len();
            assert_eq!(others, 0, "{text}");
        }
        for kind in [EventKind::RestartThresholdExceeded, EventKind::Escalation] {
            assert!(events(&history, kind, None).is_empty(), "{text}");
        }
    }

    /// The events the fault must (and must not) have caused.
    fn check_fault_events(&self, history: &[Value], expect: Expect) {
        let text = describe(history);
        let (entry, told) = (self.entry, self.told());
        let died = events(history, EventKind::MonitorDied, None);
        let isolations = events(history, EventKind::ResourceIsolated, None);
        let timed_out = events(history, EventKind::CallTimedOut, None);
        let killed = events(history, EventKind::MonitorKilled, None);
        if expect.isolated {
            assert_eq!(died.len(), 1, "one monitor death\n{text}");
            assert_eq!(died[0]["suspects"], json!(["x"]), "the culprit\n{text}");
            if let Some(pid) = self.shared_pid {
                assert_eq!(died[0]["pid"], pid, "the shared monitor died\n{text}");
            }
            assert_eq!(isolations.len(), 1, "{text}");
            assert_eq!(isolations[0]["resource"], "x", "{text}");
            assert!(index_of(history, died[0]) < index_of(history, isolations[0]));
        } else {
            assert!(died.is_empty(), "no monitor death\n{text}");
            assert!(isolations.is_empty(), "no isolation\n{text}");
        }
        match self.fault {
            Fault::Hang => {
                assert_eq!(timed_out.len(), 1, "{text}");
                let e = timed_out[0];
                assert_eq!((&e["resource"], &e["call"]), (&json!("x"), &json!(entry)));
                assert_eq!(e["type"], "fault-injection", "{text}");
                // Step 2: the monitor's threads, recorded before the kill.
                assert!(
                    e["threads"].as_array().is_some_and(|t| !t.is_empty()),
                    "{e:#}"
                );
                assert_eq!(killed.len(), 1, "{text}");
                assert_eq!(killed[0]["resource"], "x", "{text}");
                assert_eq!(died[0]["killed"], true, "{text}");
                let order = [e, killed[0], died[0]].map(|e| index_of(history, e));
                assert!(order.is_sorted(), "step order {order:?}\n{text}");
            }
            Fault::Abort => {
                assert!(timed_out.is_empty() && killed.is_empty(), "{text}");
                assert_eq!(died[0]["killed"], false, "{text}");
                assert_eq!(died[0]["crash_signal"], libc::SIGABRT, "{text}");
            }
            Fault::Panic | Fault::Error => {
                assert!(timed_out.is_empty() && killed.is_empty(), "{text}");
                let (kind, field) = match entry {
                    "looks_alive" | "is_alive" => (EventKind::HealthFailed, "check"),
                    // Control errors go back to the caller only.
                    "control" => (EventKind::CallFailed, ""),
                    _ => (EventKind::CallFailed, "call"),
                };
                let failures = events(history, kind, Some("x"));
                if field.is_empty() {
                    assert!(failures.is_empty(), "{text}");
                } else {
                    assert!(
                        failures
                            .iter()
                            .any(|e| e[field] == entry && e.to_string().contains(&told)),
                        "no {} of x's {entry}\n{text}",
                        kind.name()
                    );
                }
                if entry == "looks_alive" {
                    assert!(
                        events(history, EventKind::ResourceFailed, Some("x")).is_empty(),
                        "is_alive passed: x must not fail\n{text}"
                    );
                }
            }
            Fault::Slow => {
                assert!(timed_out.is_empty() && killed.is_empty(), "{text}");
                for kind in [EventKind::CallFailed, EventKind::HealthFailed] {
                    assert!(events(history, kind, Some("x")).is_empty(), "{text}");
                }
            }
        }
    }

    /// The bystanders were not blamed, failed or restarted; each was
    /// re-attached `reattached` times.
    fn check_bystander_events(&self, history: &[Value], reattached: usize) {
        let text = describe(history);
        let death = position(history, EventKind::MonitorDied, None);
        for b in BYSTANDERS {
            for kind in [
                EventKind::ResourceFailed,
                EventKind::ResourceRestarted,
                EventKind::ResourceIsolated,
                EventKind::CallTimedOut,
                EventKind::CallFailed,
                EventKind::HealthFailed,
                EventKind::MonitorKilled,
            ] {
                assert!(
                    events(history, kind, Some(b)).is_empty(),
                    "{b}: {}\n{text}",
                    kind.name()
                );
            }
            let again = events(history, EventKind::ResourceReattached, Some(b));
            assert_eq!(again.len(), reattached, "{b} re-attached\n{text}");
            if let Some(e) = again.first() {
                assert!(death < Some(index_of(history, e)), "{text}");
            }
        }
    }

    /// Every event so far, from `events.jsonl`.
    fn history(&self) -> Vec<Value> {
        let path = self.dir.path().join("host").join("events.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn history_of(&self, kind: EventKind, resource: Option<&str>) -> Vec<Value> {
        events(&self.history(), kind, resource)
            .into_iter()
            .cloned()
            .collect()
    }

    fn history_text(&self) -> String {
        describe(&self.history())
    }
}

fn by_name<'a>(statuses: &'a [ResourceStatus], name: &str) -> &'a ResourceStatus {
    statuses
        .iter()
        .find(|s| s.name == name)
        .expect("configured")
}

fn bystanders_online(statuses: &[ResourceStatus]) -> bool {
    BYSTANDERS
        .iter()
        .all(|b| by_name(statuses, b).state == Online)
}

/// The events of `kind` (about `resource`, when given).
fn events<'a>(history: &'a [Value], kind: EventKind, resource: Option<&str>) -> Vec<&'a Value> {
    history
        .iter()
        .filter(|e| {
            e["kind"] == kind.name() && resource.is_none_or(|r| e["resource"].as_str() == Some(r))
        })
        .collect()
}

fn position(history: &[Value], kind: EventKind, resource: Option<&str>) -> Option<usize> {
    events(history, kind, resource)
        .first()
        .map(|e| index_of(history, e))
}

fn index_of(history: &[Value], event: &Value) -> usize {
    history
        .iter()
        .position(|e| std::ptr::eq(e, event))
        .expect("an event of this history")
}

/// One line per event: time, kind, resource, fields (not the thread dumps).
fn describe(history: &[Value]) -> String {
    let mut out = String::from("events:\n");
    for e in history {
        let ts = e["ts"].as_str().unwrap_or_default();
        let _ = write!(
            out,
            "  {} {}",
            ts.get(11..23).unwrap_or(ts),
            e["kind"].as_str().unwrap_or("?")
        );
        if let Some(r) = e["resource"].as_str() {
            let _ = write!(out, " {r}");
        }
        for (k, v) in e.as_object().into_iter().flatten() {
            if !matches!(k.as_str(), "ts" | "id" | "kind" | "resource" | "threads") {
                let _ = write!(out, " {k}={v}");
            }
        }
        out.push('\n');
    }
    out
}
