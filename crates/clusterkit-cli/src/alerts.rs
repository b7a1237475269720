//! `[[alert]]`: runs an executable on each matching event, with the event in
//! environment variables after Pacemaker's alert-agent convention
//! (`CRM_alert_kind`, `CRM_alert_rsc`, `CRM_alert_desc`, …), so Pacemaker's
//! sample agents work unchanged (docs/decisions/0067).
//!
//! Off the engine thread: one dispatcher reads the host's events and hands
//! each alert's matches to that alert's worker through a bounded queue; a
//! full queue drops the event (counted and logged), never blocking the host.
//! Each run has a timeout, after which its whole process group is killed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, UNIX_EPOCH};

use clusterkit_host::{Event, EventKind, Host, rfc3339};
use serde::Deserialize;
use toml::Spanned;

use crate::config::ConfigDuration;

/// Events waiting for one alert's agent at most.
const QUEUE: usize = 256;
/// How long an agent may run by default (Pacemaker's default too).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// What `CRM_alert_version` says: agents check only that it is set.
const VERSION: &str = concat!("clusterkit-", env!("CARGO_PKG_VERSION"));

/// One `[[alert]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertSection {
    /// The agent.
    path: Spanned<PathBuf>,
    /// Event kinds (names) to run for; default: every kind but `resource_log`.
    #[serde(default)]
    kinds: Option<Vec<Spanned<String>>>,
    /// Resources to run for; default: every resource, and host events.
    #[serde(default)]
    resources: Option<Vec<Spanned<String>>>,
    /// How long one run may take.
    #[serde(default)]
    timeout: Option<Spanned<ConfigDuration>>,
    /// `CRM_alert_recipient`: a file, an address, whatever the agent wants.
    #[serde(default)]
    recipient: Option<String>,
}

/// A checked alert.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    path: PathBuf,
    kinds: Option<HashSet<EventKind>>,
    resources: Option<HashSet<String>>,
    timeout: Duration,
    recipient: String,
}

impl AlertSection {
    /// Checks the entry against the resources declared; `base` resolves a
    /// relative `path`. Problems carry their offset in the file.
    pub(crate) fn check(
        &self,
        base: &Path,
        resources: &HashSet<&str>,
    ) -> Result<Alert, Vec<(usize, String)>> {
        let mut problems = Vec::new();
        let path = base.join(self.path.get_ref());
        let path = std::path::absolute(&path).unwrap_or(path);
        if let Err(problem) = executable(&path) {
            problems.push((
                self.path.span().start,
                format!("[[alert]] key `path`: {}: {problem}", path.display()),
            ));
        }
        let kinds = self.kinds.as_ref().map(|kinds| {
            kinds
                .iter()
                .filter_map(|k| {
                    let found = EventKind::ALL.iter().find(|e| e.name() == k.get_ref());
                    if found.is_none() {
                        problems.push((
                            k.span().start,
                            format!(
                                "[[alert]] key `kinds`: no event kind `{}` (kinds: {})",
                                k.get_ref(),
                                EventKind::ALL
                                    .iter()
                                    .map(|e| e.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                    found.copied()
                })
                .collect()
        });
        let names = self.resources.as_ref().map(|names| {
            names
                .iter()
                .map(|r| {
                    if !resources.contains(r.get_ref().as_str()) {
                        problems.push((
                            r.span().start,
                            format!(
                                "[[alert]] key `resources`: no resource `{}` is declared",
                                r.get_ref()
                            ),
                        ));
                    }
                    r.get_ref().clone()
                })
                .collect()
        });
        let timeout = self
            .timeout
            .as_ref()
            .map_or(DEFAULT_TIMEOUT, |t| t.get_ref().0);
        if timeout.is_zero() {
            problems.push((
                self.timeout.as_ref().map_or(0, |t| t.span().start),
                "[[alert]] key `timeout`: must be above zero".to_owned(),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Alert {
            path,
            kinds,
            resources: names,
            timeout,
            recipient: self.recipient.clone().unwrap_or_default(),
        })
    }
}

fn executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err("not an executable file".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

impl Alert {
    fn matches(&self, event: &Event) -> bool {
        let kind = match &self.kinds {
            Some(kinds) => kinds.contains(&event.kind),
            None => event.kind != EventKind::ResourceLog,
        };
        let resource = match (&self.resources, &event.resource) {
            (None, _) => true,
            (Some(names), Some(r)) => names.contains(r),
            (Some(_), None) => false,
        };
        kind && resource
    }
}

/// Starts a worker per alert and the dispatcher feeding them from `host`.
pub(crate) fn start(alerts: Vec<Alert>, host: &Host) -> Result<(), String> {
    if alerts.is_empty() {
        return Ok(());
    }
    let node = node_name();
    let mut queues = Vec::new();
    for alert in alerts {
        let (tx, rx) = mpsc::sync_channel::<Event>(QUEUE);
        let alert = Arc::new(alert);
        let worker_alert = alert.clone();
        let node = node.clone();
        std::thread::Builder::new()
            .name("ck-alert".into())
            .spawn(move || {
                for event in rx {
                    run(&worker_alert, &event, &node);
                }
            })
            .map_err(|e| format!("starting an alert thread: {e}"))?;
        queues.push(Queue {
            alert,
            tx,
            dropped: 0,
        });
    }
    // Unbounded from the host, so the engine never waits; this thread only
    // filters and hands on, and the bounded queues behind it drop instead.
    let events = host.subscribe();
    std::thread::Builder::new()
        .name("ck-alerts".into())
        .spawn(move || {
            for event in events {
                for queue in &mut queues {
                    queue.offer(&event);
                }
            }
        })
        .map_err(|e| format!("starting the alert dispatcher: {e}"))?;
    Ok(())
}

/// One alert's queue, and how many events it dropped in a row.
struct Queue {
    alert: Arc<Alert>,
    tx: SyncSender<Event>,
    dropped: u64,
}

impl Queue {
    fn offer(&mut self, event: &Event) {
        if !self.alert.matches(event) {
            return;
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => {
                if self.dropped > 0 {
                    eprintln!(
                        "clusterkit: alert {}: {} events dropped while its queue was full",
                        self.alert.path.display(),
                        std::mem::take(&mut self.dropped)
                    );
                }
            }
            Err(TrySendError::Full(_)) => {
                if self.dropped == 0 {
                    eprintln!(
                        "clusterkit: alert {}: its agent falls behind ({QUEUE} events queued): \
                         dropping events until it catches up",
                        self.alert.path.display()
                    );
                }
                self.dropped += 1;
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// This node's name, as `CRM_alert_node`.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_owned())
        .unwrap_or_default()
}

/// Pacemaker's variables for `event` (each also as `CRM_notify_*`, as
/// Pacemaker sets them), and clusterkit's own.
pub(crate) fn environment(event: &Event, node: &str, recipient: &str) -> Vec<(String, String)> {
    let since = event.ts.duration_since(UNIX_EPOCH).unwrap_or_default();
    let field = |name: &str| event.str_field(name).map(str::to_owned);
    let reason = field("reason").or_else(|| field("error"));
    let mut crm: Vec<(&str, String)> = vec![
        ("version", VERSION.to_owned()),
        ("recipient", recipient.to_owned()),
        ("node_sequence", event.seq.to_string()),
        ("timestamp", rfc3339(event.ts)),
        ("timestamp_epoch", since.as_secs().to_string()),
        ("timestamp_usec", since.subsec_micros().to_string()),
        ("node", node.to_owned()),
    ];
    match &event.resource {
        Some(resource) => {
            let (task, rc, status, desc) = resource_outcome(event, reason);
            crm.extend([
                ("kind", "resource".to_owned()),
                ("rsc", resource.clone()),
                ("task", task),
                ("interval", "0".to_owned()),
                ("rc", rc.to_string()),
                ("target_rc", "0".to_owned()),
                ("status", status.to_string()),
                ("desc", desc),
            ]);
        }
        None => {
            // Host-wide events are about this node.
            let desc = match reason {
                Some(reason) => format!("{}: {reason}", event.kind.name()),
                None => event.kind.name().to_owned(),
            };
            crm.extend([
                ("kind", "node".to_owned()),
                ("nodeid", String::new()),
                ("desc", desc),
            ]);
        }
    }
    let mut env = Vec::with_capacity(crm.len() * 2 + 2);
    for (name, value) in crm {
        env.push((format!("CRM_alert_{name}"), value.clone()));
        env.push((format!("CRM_notify_{name}"), value));
    }
    env.push(("CLUSTERKIT_EVENT".to_owned(), event.kind.name().to_owned()));
    env.push((
        "CLUSTERKIT_EVENT_JSON".to_owned(),
        event.to_json().to_string(),
    ));
    env
}

/// A resource event as an operation's result: task, OCF return code,
/// Pacemaker execution status (0 done, 2 timed out, 4 error) and text.
fn resource_outcome(event: &Event, reason: Option<String>) -> (String, u8, u8, String) {
    let call = event
        .str_field("call")
        .or_else(|| event.str_field("check"))
        .map(str::to_owned);
    let with_reason = |what: &str| match &reason {
        Some(reason) => format!("{what}: {reason}"),
        None => what.to_owned(),
    };
    match event.kind {
        EventKind::ResourceOnline => ("start".into(), 0, 0, "ok".into()),
        EventKind::ResourceOffline => ("stop".into(), 0, 0, "ok".into()),
        EventKind::ResourceReattached => ("reattach".into(), 0, 0, "ok".into()),
        EventKind::HealthDegraded => (
            call.unwrap_or_else(|| "monitor".into()),
            0,
            0,
            with_reason("degraded"),
        ),
        // OCF_NOT_RUNNING: the check found the workload gone or broken.
        EventKind::HealthFailed => (
            call.unwrap_or_else(|| "monitor".into()),
            7,
            0,
            with_reason("not running"),
        ),
        EventKind::CallTimedOut => (
            call.unwrap_or_else(|| "unknown".into()),
            1,
            2,
            "Timed Out".into(),
        ),
        EventKind::CallFailed => (
            call.unwrap_or_else(|| "unknown".into()),
            1,
            4,
            with_reason("error"),
        ),
        EventKind::ResourceFailed => ("monitor".into(), 1, 4, with_reason("failed")),
        EventKind::ResourcePending => {
            let task = match event.str_field("state") {
                Some("offline_pending") => "stop",
                _ => "start",
            };
            (task.into(), 0, 0, "pending".into())
        }
        EventKind::ResourceRestarted => ("restart".into(), 0, 0, "ok".into()),
        EventKind::ResourceIsolated => (
            "isolate".into(),
            0,
            0,
            with_reason("moved to a monitor of its own"),
        ),
        EventKind::RestartThresholdExceeded => {
            ("restart".into(), 1, 4, "restart threshold exceeded".into())
        }
        EventKind::FailoverRequested => {
            ("failover".into(), 1, 4, with_reason("failover requested"))
        }
        other => (
            call.unwrap_or_else(|| other.name().into()),
            0,
            0,
            with_reason(other.name()),
        ),
    }
}

/// Runs the agent for one event, at most `timeout`; says what went wrong.
fn run(alert: &Alert, event: &Event, node: &str) {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let what = format!(
        "alert {} for {} {}",
        alert.path.display(),
        event.kind.name(),
        event.resource.as_deref().unwrap_or("")
    );
    let child = Command::new(&alert.path)
        // The host's own dealings with systemd are not the agent's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_PID")
        .env_remove("WATCHDOG_USEC")
        .envs(environment(event, node, &alert.recipient))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // A group of its own: a timeout kills what the agent started too.
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("clusterkit: {what}: cannot start: {e}");
            return;
        }
    };
    let pid = child.id() as i32;
    // The wait is done on a thread of its own so that this one can wait
    // for it with a timeout instead of polling.
    let (done, finished) = mpsc::sync_channel(1);
    let waiter = std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = match finished.recv_timeout(alert.timeout) {
        Ok(status) => status,
        Err(_) => {
            // SAFETY: kill(2) on the agent's own process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            eprintln!(
                "clusterkit: {what}: still running after {:?}: killed",
                alert.timeout
            );
            let _ = waiter.join();
            return;
        }
    };
    let _ = waiter.join();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => match s.signal() {
            Some(signal) => eprintln!("clusterkit: {what}: ended by signal {signal}"),
            None => eprintln!("clusterkit: {what}: exited with {}", s.code().unwrap_or(-1)),
        },
        Err(e) => eprintln!("clusterkit: {what}: waiting for it: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} is not set: {env:?}"))
    }

    #[test]
    fn a_failed_check_is_a_resource_alert_in_pacemakers_terms() {
        let event = Event::new(EventKind::HealthFailed, Some("web"))
            .with("check", "is_alive")
            .with("reason", "marker gone");
        let env = environment(&event, "n1", "/tmp/log");
        assert_eq!(value(&env, "CRM_alert_kind"), "resource");
        assert_eq!(value(&env, "CRM_alert_rsc"), "web");
        assert_eq!(value(&env, "CRM_alert_task"), "is_alive");
        assert_eq!(value(&env, "CRM_alert_rc"), "7");
        assert_eq!(value(&env, "CRM_alert_desc"), "not running: marker gone");
        assert_eq!(value(&env, "CRM_notify_desc"), "not running: marker gone");
        assert_eq!(value(&env, "CRM_alert_node"), "n1");
        assert_eq!(value(&env, "CRM_alert_recipient"), "/tmp/log");
        assert_eq!(value(&env, "CLUSTERKIT_EVENT"), "health_failed");
        assert!(value(&env, "CRM_alert_version").starts_with("clusterkit-"));
    }

    #[test]
    fn a_host_event_is_a_node_alert() {
        let env = environment(&Event::new(EventKind::HostStarted, None), "n1", "");
        assert_eq!(value(&env, "CRM_alert_kind"), "node");
        assert_eq!(value(&env, "CRM_alert_desc"), "host_started");
    }

    fn alert(kinds: Option<&[EventKind]>, resources: Option<&[&str]>) -> Alert {
        Alert {
            path: "/bin/true".into(),
            kinds: kinds.map(|k| k.iter().copied().collect()),
            resources: resources.map(|r| r.iter().map(|s| s.to_string()).collect()),
            timeout: DEFAULT_TIMEOUT,
            recipient: String::new(),
        }
    }

    #[test]
    fn kinds_and_resources_select_events() {
        let failed = Event::new(EventKind::ResourceFailed, Some("web"));
        let log = Event::new(EventKind::ResourceLog, Some("web"));
        let host = Event::new(EventKind::HostStarted, None);
        let all = alert(None, None);
        assert!(all.matches(&failed) && all.matches(&host) && !all.matches(&log));
        let web_failures = alert(Some(&[EventKind::ResourceFailed]), Some(&["web"]));
        assert!(web_failures.matches(&failed));
        assert!(!web_failures.matches(&host));
        assert!(!alert(None, Some(&["db"])).matches(&failed));
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, rx) = mpsc::sync_channel(2);
        let mut queue = Queue {
            alert: Arc::new(alert(None, None)),
            tx,
            dropped: 0,
        };
        let failed = Event::new(EventKind::ResourceFailed, Some("web"));
        for _ in 0..5 {
            queue.offer(&failed);
        }
        assert_eq!(queue.dropped, 3);
        assert_eq!(rx.try_iter().count(), 2);
        // Room again: taken, and the count is logged and reset.
        queue.offer(&failed);
        assert_eq!(queue.dropped, 0);
        assert_eq!(rx.try_iter().count(), 1);
    }

    /// Whether `pid` has exited (gone, or a zombie waiting for its reaper).
    fn exited(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[test]
    fn an_agent_past_its_timeout_is_killed_with_what_it_started() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ck-alert-timeout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pids = dir.join("pids");
        let agent = dir.join("agent.sh");
        std::fs::write(
            &agent,
            format!(
                "#!/bin/sh\nsleep 1000 &\necho $$ $! > {}.tmp\nmv {0}.tmp {0}\nexec sleep 1000\n",
                pids.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut slow = alert(None, None);
        slow.path = agent;
        slow.timeout = Duration::from_secs(1);
        // Returns once the agent is killed, not after its 1000 s.
        run(&slow, &Event::new(EventKind::HostStarted, None), "n1");
        let text = std::fs::read_to_string(&pids).unwrap();
        let (agent_pid, child_pid) = text.trim().split_once(' ').unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(exited(agent_pid) && exited(child_pid)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{text}: still running"
            );
            std::thread::sleep(Duration::from_millis(10)); // the kernel's doing
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
