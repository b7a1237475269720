//! Typed events: delivered to subscribers, to `tracing`, and appended as
//! JSON lines to `<state-dir>/events.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

clusterkit::stable_enum! {
    /// What happened. Ids and names are stable: they appear in
    /// `events.jsonl` and are never renumbered or reused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum EventKind: u32, non_exhaustive {
        /// A resource reached online.
        ResourceOnline = 1, "resource_online";
        /// A resource reached offline.
        ResourceOffline = 2, "resource_offline";
        /// `online`/`offline` went pending (`state`); again at each new
        /// `checkpoint` the resource reports.
        ResourcePending = 3, "resource_pending";
        /// A health check said degraded (no recovery).
        HealthDegraded = 4, "health_degraded";
        /// A health check said failed.
        HealthFailed = 5, "health_failed";
        /// A resource failed; recovery starts.
        ResourceFailed = 6, "resource_failed";
        /// A call passed its deadline; carries the monitor's thread diagnostics.
        CallTimedOut = 7, "call_timed_out";
        /// A monitor process ended.
        MonitorDied = 8, "monitor_died";
        /// A monitor process started and said hello.
        MonitorStarted = 9, "monitor_started";
        /// A resource resumed online in a new monitor without `online`.
        ResourceReattached = 10, "resource_reattached";
        /// A resource was restarted by its restart policy.
        ResourceRestarted = 11, "resource_restarted";
        /// A resource was moved to a monitor of its own.
        ResourceIsolated = 12, "resource_isolated";
        /// More restarts than the threshold within the period.
        RestartThresholdExceeded = 13, "restart_threshold_exceeded";
        /// The resource should move to another node.
        FailoverRequested = 14, "failover_requested";
        /// A killed monitor did not exit: the escalation action runs.
        Escalation = 15, "escalation";
        /// A monitor sent something malformed; it is ended.
        MonitorProtocolError = 16, "monitor_protocol_error";
        /// A line a resource or library logged.
        ResourceLog = 17, "resource_log";
        /// A call returned an error.
        CallFailed = 18, "call_failed";
        /// A monitor is being killed.
        MonitorKilled = 19, "monitor_killed";
        /// The host started.
        HostStarted = 20, "host_started";
        /// The host stopped.
        HostStopped = 21, "host_stopped";
        /// The state file could not be written (a full or failing disk):
        /// what the host does is not recorded until it can be; it retries.
        StateNotSaved = 22, "state_not_saved";
        /// The state file is written again after `state_not_saved`.
        StateSaved = 23, "state_saved";
        /// An operator's cleanup: restart counters reset, an isolation
        /// lifted (at the next open), a held failure cleared.
        ResourceCleanedUp = 24, "resource_cleaned_up";
        /// A resource was added to the running host (`reconfigure`).
        ResourceAdded = 25, "resource_added";
        /// A resource's configuration changed: `what` changed, and it
        /// `applies` `now` or at the `next_online`.
        ResourceChanged = 26, "resource_changed";
        /// A removed resource is offline and closed, and gone.
        ResourceRemoved = 27, "resource_removed";
        /// The host's resources were reconfigured: how many were `added`,
        /// `changed`, `removed` and left `unchanged`.
        HostReconfigured = 28, "host_reconfigured";
    }
}

impl EventKind {
    /// The stable numeric id.
    pub const fn id(self) -> u32 {
        self as u32
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened.
    pub ts: SystemTime,
    /// What happened.
    pub kind: EventKind,
    /// The resource it concerns, if any.
    pub resource: Option<String>,
    /// Kind-specific fields (`type`, `call`, `elapsed_ms`, `reason`, `pid`, …).
    pub fields: Map<String, Value>,
    /// Its number within this host run (1, 2, …; 0 before it is emitted):
    /// tells events apart even within one millisecond.
    pub seq: u64,
}

impl Event {
    /// A new event, now.
    pub fn new(kind: EventKind, resource: Option<&str>) -> Event {
        Event {
            ts: SystemTime::now(),
            kind,
            resource: resource.map(str::to_owned),
            fields: Map::new(),
            seq: 0,
        }
    }

    /// An event for the engine's core, which reads no clock: the driver
    /// stamps `ts` when it emits the event.
    pub(crate) fn of(kind: EventKind, resource: Option<&str>) -> Event {
        Event {
            ts: UNIX_EPOCH,
            kind,
            resource: resource.map(str::to_owned),
            fields: Map::new(),
            seq: 0,
        }
    }

    /// Adds a field.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Event {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// A field, if present.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// A string field, if present.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Value::as_str)
    }

    /// The JSON line: `ts`, `id`, `kind`, `resource` (when set), then the fields.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("ts".into(), rfc3339(self.ts).into());
        map.insert("seq".into(), self.seq.into());
        map.insert("id".into(), self.kind.id().into());
        map.insert("kind".into(), self.kind.name().into());
        if let Some(r) = &self.resource {
            map.insert("resource".into(), r.clone().into());
        }
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind.name())?;
        if let Some(r) = &self.resource {
            write!(f, " {r}")?;
        }
        for (k, v) in &self.fields {
            match v {
                Value::String(s) => write!(f, " {k}={s:?}")?,
                Value::Array(_) | Value::Object(_) => write!(f, " {k}=…")?,
                other => write!(f, " {k}={other}")?,
            }
        }
        Ok(())
    }
}

/// Formats a time as RFC 3339 in UTC with millisecond precision.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
/// assert_eq!(clusterkit_host::rfc3339(t), "2026-11-18T11:06:40.123Z");
/// ```
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// How large the event log may grow before it is rotated, and how many
/// rotated files are kept: `events.jsonl` becomes `events.jsonl.1`, which
/// becomes `events.jsonl.2`, …, up to `events.jsonl.<keep>`; older ones
/// are deleted.
///
/// ```
/// let limits = clusterkit_host::EventLogLimits::default();
/// assert_eq!((limits.max_bytes, limits.keep), (10 << 20, 5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLogLimits {
    /// The size past which `events.jsonl` is rotated (0: never).
    pub max_bytes: u64,
    /// Rotated files kept (0: none, the log starts over).
    pub keep: u32,
}

impl Default for EventLogLimits {
    fn default() -> EventLogLimits {
        EventLogLimits {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

/// The event log's files, oldest first: the rotated `events.jsonl.N` …
/// `events.jsonl.1` that exist, then `events.jsonl` itself (whether or not
/// it exists).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("ck-doc-log-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("events.jsonl.1"), "").unwrap();
/// let files = clusterkit_host::event_log_files(&dir.join("events.jsonl"));
/// assert_eq!(files, [dir.join("events.jsonl.1"), dir.join("events.jsonl")]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn event_log_files(current: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = (1..)
        .map(|n| rotated_path(current, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(current.to_owned());
    files
}

/// The rotated file `n` of the log at `current`.
fn rotated_path(current: &Path, n: u32) -> std::path::PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(format!(".{n}"));
    name.into()
}

/// Where events go: the JSON-lines file, subscribers and `tracing`.
/// A log whose last line was cut short (a crash or a full disk mid-write)
/// is cut back to its last whole line, so the next host's first line is
/// not glued to the torn one.
fn repair_torn_line(file: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut reader = file;
    let tail = len.min(64 << 10);
    reader.seek(SeekFrom::Start(len - tail))?;
    let mut buf = Vec::with_capacity(tail as usize);
    reader.take(tail).read_to_end(&mut buf)?;
    if buf.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => len - tail + i as u64 + 1,
        None if tail == len => 0,
        // A last line longer than the window: end it instead.
        None => return (&*file).write_all(b"\n"),
    };
    file.set_len(keep)
}

/// Where a subscriber's events go.
pub(crate) enum Subscriber {
    /// Every event, however slowly it is read (in-process subscribers that
    /// keep up by design).
    Unbounded(mpsc::Sender<Event>),
    /// At most the channel's capacity waiting: a subscriber that falls that
    /// far behind (a follower that stopped reading) is dropped, so it cannot
    /// grow the host's memory.
    Bounded(mpsc::SyncSender<Event>),
}

impl Subscriber {
    /// Sends `event`; false when the subscriber is gone or dropped.
    fn deliver(&self, event: &Event) -> bool {
        match self {
            Subscriber::Unbounded(tx) => tx.send(event.clone()).is_ok(),
            Subscriber::Bounded(tx) => tx.try_send(event.clone()).is_ok(),
        }
    }
}

impl From<mpsc::Sender<Event>> for Subscriber {
    fn from(tx: mpsc::Sender<Event>) -> Subscriber {
        Subscriber::Unbounded(tx)
    }
}

pub(crate) struct EventSink {
    path: std::path::PathBuf,
    /// The last append failed (reported once until one succeeds).
    failing: bool,
    seq: u64,
    file: Option<File>,
    subscribers: Vec<Subscriber>,
    limits: EventLogLimits,
}

impl EventSink {
    pub(crate) fn open(state_dir: &Path, limits: EventLogLimits) -> std::io::Result<EventSink> {
        let path = state_dir.join("events.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        repair_torn_line(&file)?;
        Ok(EventSink {
            seq: 0,
            file: Some(file),
            subscribers: Vec::new(),
            path,
            failing: false,
            limits,
        })
    }

    /// Rotates the log once it is past its size: each `events.jsonl.N`
    /// moves to `N + 1` (the last is replaced), the log to `.1`, and a new
    /// log starts. A rename that fails leaves the log growing (reported
    /// once, like a failed append) rather than losing events.
    fn rotate_if_full(&mut self, len: u64) {
        let EventLogLimits { max_bytes, keep } = self.limits;
        if max_bytes == 0 || len < max_bytes {
            return;
        }
        let moved = if keep == 0 {
            std::fs::remove_file(&self.path)
        } else {
            (1..keep)
                .rev()
                .map(|n| (rotated_path(&self.path, n), rotated_path(&self.path, n + 1)))
                .filter(|(from, _)| from.exists())
                .try_for_each(|(from, to)| std::fs::rename(from, to))
                .and_then(|()| std::fs::rename(&self.path, rotated_path(&self.path, 1)))
        };
        match moved.and_then(|()| {
            OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
        }) {
            Ok(file) => self.file = Some(file),
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(target: "clusterkit::event", "cannot rotate {}: {e}", self.path.display());
                }
            }
        }
    }

    pub(crate) fn subscribe(&mut self, subscriber: impl Into<Subscriber>) {
        self.subscribers.push(subscriber.into());
    }

    pub(crate) fn emit(&mut self, mut event: Event) {
        self.seq += 1;
        event.seq = self.seq;
        let line = event.to_json().to_string();
        self.append(line);
        match event.kind {
            EventKind::ResourceLog => {
                let message = event.str_field("message").unwrap_or_default();
                let resource = event.resource.as_deref().unwrap_or("-");
                match event.str_field("level") {
                    Some("error") => {
                        tracing::error!(target: "clusterkit::resource", resource, "{message}")
                    }
                    Some("warn") => {
                        tracing::warn!(target: "clusterkit::resource", resource, "{message}")
                    }
                    Some("info") => {
                        tracing::info!(target: "clusterkit::resource", resource, "{message}")
                    }
                    _ => tracing::debug!(target: "clusterkit::resource", resource, "{message}"),
                }
            }
            EventKind::HealthDegraded | EventKind::CallFailed => {
                tracing::warn!(target: "clusterkit::event", id = event.kind.id(), "{event}")
            }
            EventKind::ResourceFailed
            | EventKind::HealthFailed
            | EventKind::CallTimedOut
            | EventKind::MonitorDied
            | EventKind::MonitorKilled
            | EventKind::MonitorProtocolError
            | EventKind::RestartThresholdExceeded
            | EventKind::FailoverRequested
            | EventKind::StateNotSaved
            | EventKind::Escalation => {
                tracing::error!(target: "clusterkit::event", id = event.kind.id(), "{event}")
            }
            _ => tracing::info!(target: "clusterkit::event", id = event.kind.id(), "{event}"),
        }
        self.subscribers.retain(|s| s.deliver(&event));
    }

    /// Appends one line. A line that cannot be written whole (a full disk)
    /// is cut off again, so the log never holds a torn line; later events
    /// try again, and a log deleted meanwhile is created anew.
    fn append(&mut self, line: String) {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        // One fstat: the length to cut back to, and whether the file was
        // deleted while the host runs (later readers look for the path).
        let meta = self.file.as_ref().and_then(|f| f.metadata().ok());
        let deleted = meta.as_ref().is_some_and(|m| m.nlink() == 0);
        if deleted {
            self.file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
                .ok();
        }
        let Some(file) = &mut self.file else {
            return;
        };
        let before = if deleted {
            file.metadata().map(|m| m.len()).ok()
        } else {
            meta.map(|m| m.len())
        };
        match file.write_all(&bytes) {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::warn!(target: "clusterkit::event", "events.jsonl is written again");
                }
                if let Some(len) = before {
                    self.rotate_if_full(len + bytes.len() as u64);
                }
            }
            Err(e) => {
                if let Some(len) = before {
                    let _ = file.set_len(len);
                }
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(target: "clusterkit::event", "cannot append to {}: {e}", self.path.display());
                }
            }
        }
    }

    pub(crate) fn sync(&mut self) {
        if let Some(file) = &mut self.file {
            let _ = file.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_torn_last_line_is_cut_back_at_open_and_appends_go_on_after_it() {
        let dir = std::env::temp_dir().join(format!("ck-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        std::fs::write(&path, "{\"seq\":1}\n{\"seq\":2,\"ki").unwrap();
        let mut sink = EventSink::open(&dir, EventLogLimits::default()).unwrap();
        sink.emit(Event::of(EventKind::HostStarted, None));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "{\"seq\":1}");
        assert!(lines[1].contains("host_started"), "{text}");
        // Deleted while running: the next event creates it anew.
        std::fs::remove_file(&path).unwrap();
        sink.emit(Event::of(EventKind::HostStopped, None));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("host_stopped"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_append_leaves_no_torn_line() {
        // /dev/full fails every write with ENOSPC.
        let mut sink = EventSink {
            seq: 0,
            file: OpenOptions::new().append(true).open("/dev/full").ok(),
            subscribers: Vec::new(),
            path: "/dev/full".into(),
            failing: false,
            limits: EventLogLimits::default(),
        };
        let (tx, rx) = mpsc::channel();
        sink.subscribe(tx);
        sink.emit(Event::of(EventKind::HostStarted, None));
        sink.emit(Event::of(EventKind::HostStopped, None));
        assert!(sink.failing);
        // Subscribers still get every event.
        assert_eq!(rx.try_iter().count(), 2);
    }

    use std::sync::mpsc;

    #[test]
    fn a_bounded_subscriber_that_stops_reading_is_dropped_at_its_capacity() {
        let dir = std::env::temp_dir().join(format!("ck-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sink = EventSink::open(&dir, EventLogLimits::default()).unwrap();
        let (slow, slow_rx) = mpsc::sync_channel(8);
        let (fast, fast_rx) = mpsc::channel();
        sink.subscribe(Subscriber::Bounded(slow));
        sink.subscribe(fast);
        for _ in 0..100 {
            sink.emit(Event::of(EventKind::ResourceOnline, Some("a")));
        }
        // The slow one holds its 8, then was dropped: the channel ends.
        assert_eq!(slow_rx.iter().count(), 8);
        assert_eq!(fast_rx.try_iter().count(), 100);
        assert_eq!(sink.subscribers.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;

    #[test]
    fn the_log_rotates_by_size_keeping_a_bounded_number_of_files() {
        let dir = std::env::temp_dir().join(format!("ck-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let limits = EventLogLimits {
            max_bytes: 1000,
            keep: 2,
        };
        let mut sink = EventSink::open(&dir, limits).unwrap();
        for _ in 0..100 {
            sink.emit(Event::of(EventKind::ResourceOnline, Some("a")));
        }
        let current = dir.join("events.jsonl");
        let files = event_log_files(&current);
        assert_eq!(
            files,
            [
                dir.join("events.jsonl.2"),
                dir.join("events.jsonl.1"),
                current.clone()
            ]
        );
        assert!(!dir.join("events.jsonl.3").exists());
        let mut seqs = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.len() < 1000 + 200,
                "{} is {} bytes",
                f.display(),
                text.len()
            );
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                seqs.push(v["seq"].as_u64().unwrap());
            }
        }
        // Oldest first, in order, the newest kept, nothing torn.
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert_eq!(seqs.last(), Some(&100));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kinds_have_unique_ids_and_names() {
        let mut ids: Vec<u32> = EventKind::ALL.iter().map(|k| k.id()).collect();
        ids.dedup();
        assert_eq!(ids.len(), EventKind::ALL.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let names: std::collections::HashSet<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
    }

    #[test]
    fn json_line_has_the_required_fields() {
        let e = Event::new(EventKind::CallTimedOut, Some("web"))
            .with("call", "is_alive")
            .with("elapsed_ms", 1003u64);
        let json = e.to_json();
        assert_eq!(json["id"], 7);
        assert_eq!(json["kind"], "call_timed_out");
        assert_eq!(json["resource"], "web");
        assert_eq!(json["elapsed_ms"], 1003);
        assert!(json["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn rfc3339_handles_leap_years_and_epoch() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
