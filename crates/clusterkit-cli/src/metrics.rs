//! `[metrics]`: the host's numbers in the Prometheus text exposition format,
//! served at `GET /metrics` by a small HTTP/1.1 responder on a thread of its
//! own (docs/decisions/0065).
//!
//! The numbers come from the host's event stream (counted by a subscriber
//! thread), its status board (resources by state, monitor processes), its
//! health-check latency histograms, and `/proc` (monitor RSS).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{CheckKind, Event, EventKind, Host};
use serde::Deserialize;
use toml::Spanned;

/// A request head larger than this is refused.
const MAX_REQUEST: usize = 8 << 10;
/// A client slower than this, reading or writing, is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[metrics]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    /// Where to listen: `"127.0.0.1:9464"`.
    listen: Spanned<String>,
}

impl MetricsSection {
    /// The address, or the problem and where it is in the file.
    pub(crate) fn address(&self) -> Result<SocketAddr, (usize, String)> {
        self.listen.get_ref().parse().map_err(|_| {
            (
                self.listen.span().start,
                format!(
                    "[metrics] key `listen`: {:?} is not an address and port, such as \
                     \"127.0.0.1:9464\" or \"[::1]:9464\"",
                    self.listen.get_ref()
                ),
            )
        })
    }
}

/// What the event stream has counted so far.
#[derive(Debug, Default)]
struct Counts {
    /// (family, label value) → count.
    counters: BTreeMap<(&'static str, String), u64>,
}

impl Counts {
    fn add(&mut self, family: &'static str, label: &str) {
        *self.counters.entry((family, label.to_owned())).or_default() += 1;
    }

    fn count(&mut self, event: &Event) {
        let resource = event.resource.as_deref().unwrap_or_default();
        match event.kind {
            EventKind::ResourceRestarted => self.add("restarts", resource),
            EventKind::ResourceFailed => self.add("resource_failures", resource),
            EventKind::HealthFailed => self.add(
                "health_check_failures",
                event.str_field("check").unwrap_or("-"),
            ),
            EventKind::MonitorKilled => self.add("monitor_kills", ""),
            EventKind::CallTimedOut => {
                self.add("call_timeouts", event.str_field("call").unwrap_or("-"))
            }
            EventKind::ResourceIsolated => self.add("isolations", resource),
            EventKind::Escalation => self.add("escalations", ""),
            EventKind::FailoverRequested => self.add("failovers_requested", resource),
            _ => {}
        }
    }

    fn get(&self, family: &'static str, label: &str) -> u64 {
        self.counters
            .get(&(family, label.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Starts counting `host`'s events and serving them on `address`; fails
/// only when the address cannot be bound.
pub(crate) fn serve(address: SocketAddr, host: Arc<Host>) -> Result<(), String> {
    let listener =
        TcpListener::bind(address).map_err(|e| format!("[metrics] listen {address}: {e}"))?;
    let counts = Arc::new(Mutex::new(Counts::default()));
    let events = host.subscribe();
    let counting = counts.clone();
    std::thread::Builder::new()
        .name("ck-metrics-events".into())
        .spawn(move || {
            for event in events {
                lock(&counting).count(&event);
            }
        })
        .map_err(|e| format!("starting the metrics thread: {e}"))?;
    std::thread::Builder::new()
        .name("ck-metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that misbehaves costs it its answer, nothing more.
                let _ = answer(stream, &host, &counts);
            }
        })
        .map_err(|e| format!("starting the metrics thread: {e}"))?;
    Ok(())
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads one request and answers it; the connection closes after.
fn answer(mut stream: TcpStream, host: &Host, counts: &Mutex<Counts>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "");
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => {
            let body = render(host, &lock(counts));
            respond(&mut stream, "200 OK", &body)
        }
        (_, "/metrics") => respond(&mut stream, "405 Method Not Allowed", "only GET\n"),
        _ => respond(&mut stream, "404 Not Found", "metrics are at /metrics\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// A label value, escaped as the exposition format wants.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `# HELP` and `# TYPE` of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The whole exposition, now.
fn render(host: &Host, counts: &Counts) -> String {
    let statuses = host.status();
    let mut out = String::new();

    family(
        &mut out,
        "clusterkit_resources",
        "gauge",
        "Resources by state.",
    );
    for state in ResourceState::ALL {
        let n = statuses.iter().filter(|s| s.state == state).count();
        let _ = writeln!(out, "clusterkit_resources{{state=\"{state}\"}} {n}");
    }

    family(
        &mut out,
        "clusterkit_health_checks_total",
        "counter",
        "Health checks answered, by check.",
    );
    let latency = CheckKind::ALL.map(|kind| (kind, host.check_latency(kind)));
    for (kind, snapshot) in &latency {
        let _ = writeln!(
            out,
            "clusterkit_health_checks_total{{check=\"{}\"}} {}",
            kind.name(),
            snapshot.count
        );
    }
    family(
        &mut out,
        "clusterkit_health_check_failures_total",
        "counter",
        "Health checks that said failed, by check.",
    );
    for kind in CheckKind::ALL {
        let n = counts.get("health_check_failures", kind.name());
        let _ = writeln!(
            out,
            "clusterkit_health_check_failures_total{{check=\"{}\"}} {n}",
            kind.name()
        );
    }
    family(
        &mut out,
        "clusterkit_health_check_duration_seconds",
        "histogram",
        "Health check latency, host to monitor to resource and back, by check.",
    );
    for (kind, snapshot) in &latency {
        let check = kind.name();
        for (bound_us, n) in snapshot.buckets {
            let le = bound_us as f64 / 1e6;
            let _ = writeln!(
                out,
                "clusterkit_health_check_duration_seconds_bucket{{check=\"{check}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "clusterkit_health_check_duration_seconds_bucket{{check=\"{check}\",le=\"+Inf\"}} {}\n\
             clusterkit_health_check_duration_seconds_sum{{check=\"{check}\"}} {}\n\
             clusterkit_health_check_duration_seconds_count{{check=\"{check}\"}} {}",
            snapshot.count,
            snapshot.sum.as_secs_f64(),
            snapshot.count
        );
    }

    let per_resource = [
        (
            "restarts",
            "clusterkit_restarts_total",
            "Restarts by the restart policy, by resource.",
        ),
        (
            "resource_failures",
            "clusterkit_resource_failures_total",
            "Failures (recovery started), by resource.",
        ),
        (
            "isolations",
            "clusterkit_isolations_total",
            "Moves to a monitor of its own, by resource.",
        ),
        (
            "failovers_requested",
            "clusterkit_failovers_requested_total",
            "Restart thresholds passed (fail over), by resource.",
        ),
    ];
    for (key, name, help) in per_resource {
        family(&mut out, name, "counter", help);
        for s in &statuses {
            let _ = writeln!(
                out,
                "{name}{{resource=\"{}\"}} {}",
                escaped(&s.name),
                counts.get(key, &s.name)
            );
        }
    }

    family(
        &mut out,
        "clusterkit_call_timeouts_total",
        "counter",
        "Calls past their deadline, by entry point.",
    );
    let mut calls: BTreeSet<&str> = ["looks_alive", "is_alive", "online", "offline", "open"]
        .into_iter()
        .collect();
    calls.extend(
        counts
            .counters
            .keys()
            .filter(|(f, _)| *f == "call_timeouts")
            .map(|(_, call)| call.as_str()),
    );
    for call in calls {
        let _ = writeln!(
            out,
            "clusterkit_call_timeouts_total{{call=\"{}\"}} {}",
            escaped(call),
            counts.get("call_timeouts", call)
        );
    }
    for (key, name, help) in [
        (
            "monitor_kills",
            "clusterkit_monitor_kills_total",
            "Monitor processes killed.",
        ),
        (
            "escalations",
            "clusterkit_escalations_total",
            "Monitors that would not die (the escalation ran).",
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", counts.get(key, ""));
    }

    family(
        &mut out,
        "clusterkit_monitor_resident_memory_bytes",
        "gauge",
        "Resident memory of each monitor process.",
    );
    let monitors: BTreeSet<u32> = statuses.iter().filter_map(|s| s.monitor_pid).collect();
    for pid in monitors {
        if let Some(bytes) = resident_bytes(pid) {
            let _ = writeln!(
                out,
                "clusterkit_monitor_resident_memory_bytes{{pid=\"{pid}\"}} {bytes}"
            );
        }
    }
    out
}

/// `VmRSS` of `pid`, from `/proc/PID/status`; none once it has exited.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_by_family_and_label() {
        let mut counts = Counts::default();
        let failed = Event::new(EventKind::HealthFailed, Some("web")).with("check", "is_alive");
        counts.count(&failed);
        counts.count(&failed);
        counts.count(&Event::new(EventKind::ResourceRestarted, Some("web")));
        counts.count(&Event::new(EventKind::CallTimedOut, Some("web")).with("call", "online"));
        counts.count(&Event::new(EventKind::ResourceOnline, Some("web")));
        assert_eq!(counts.get("health_check_failures", "is_alive"), 2);
        assert_eq!(counts.get("restarts", "web"), 1);
        assert_eq!(counts.get("call_timeouts", "online"), 1);
        assert_eq!(counts.counters.len(), 3);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_resident_memory_of_this_process_is_read() {
        assert!(resident_bytes(std::process::id()).unwrap() > 0);
    }
}
