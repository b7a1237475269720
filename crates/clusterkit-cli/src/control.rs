//! The running host's control socket: JSON lines over a Unix socket with
//! mode 0600, each connection's peer uid checked against the host's.
//!
//! A request is one JSON object on one line: `{"command":"status"}`,
//! `{"command":"online","resource":"web"}` (also `offline`, `fail`,
//! `cleanup`, `properties`), `{"command":"control","resource":"web",
//! "code":3,"input":"<hex>"}` (answered with `"output":"<hex>"`),
//! `{"command":"events","follow":true}`, `{"command":"reload"}`, and the
//! OCF agents' `{"command":"ocf","action":"start",…}` (`managed`). A reply is one JSON line
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}`; `events` answers with
//! event lines instead (the stored log across its rotated files unless
//! `"past":false`, then, with `"mark_live":true`, [`LIVE_MARK`]), and keeps
//! the connection open when following.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clusterkit_host::{Host, ResourceStatus};

use crate::reload::Reloader;
use serde_json::{Value, json};

/// Why talking to the control socket failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// The socket could not be reached.
    #[error("control socket {path}: {error} (is `clusterkit run` running with this config?)")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The host answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The exchange broke.
    #[error("control socket {path}: {error}")]
    Io {
        /// The socket.
        path: String,
        /// Why.
        error: String,
    },
}

/// The version of the status JSON (`docs/CONFIG.md`, "Status JSON"):
/// raised when a field changes meaning or goes away, not when one is added.
pub(crate) const STATUS_SCHEMA: u32 = 1;

/// The line between the stored log and live events in an `events` answer
/// asked with `"mark_live":true`.
pub(crate) const LIVE_MARK: &str = "{\"live\":true}";

/// A status as JSON (the fields `docs/CONFIG.md` documents).
pub(crate) fn status_json(s: &ResourceStatus) -> Value {
    let health = s.last_health.as_ref();
    json!({
        "name": s.name,
        "type": s.type_name,
        "group": s.group,
        "state": s.state.name(),
        "since": clusterkit_host::rfc3339(s.since),
        "desired": match s.desired { clusterkit_host::Desired::Online => "online", clusterkit_host::Desired::Offline => "offline" },
        "monitor": s.monitor,
        "monitor_pid": s.monitor_pid,
        "separate_monitor": s.separate_monitor,
        "isolation_lifted_at_next_open": s.isolation_lifted_at_next_open,
        "restarts": s.restarts,
        "restarts_in_period": s.restarts_in_period,
        "health_checks": s.health_checks,
        "degraded_count": s.degraded_count,
        "last_check_latency_us": s.last_check_latency.map(|d| d.as_micros() as u64),
        "last_health": health.map(|h| match h {
            clusterkit::Health::Healthy => "healthy",
            clusterkit::Health::Degraded(_) => "degraded",
            clusterkit::Health::Failed(_) => "failed",
        }),
        "last_health_reason": health.map(|h| h.reason().to_owned()).filter(|r| !r.is_empty()),
        "last_failure": s.last_failure.as_ref().map(|f| json!({
            "at": clusterkit_host::rfc3339(f.at),
            "reason": f.reason,
        })),
        "next_restart": s.next_restart.map(clusterkit_host::rfc3339),
    })
}

/// Bytes as lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hexadecimal as bytes.
pub(crate) fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(text.get(i..i + 2).unwrap_or("?"), 16)
                .map_err(|_| format!("{:?} is not hexadecimal", &text[i..]))
        })
        .collect()
}

/// Serves the socket at `path` until the process exits.
pub(crate) fn serve(
    path: &Path,
    host: Arc<Host>,
    events_file: PathBuf,
    reloader: Arc<Reloader>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Bind under a restrictive umask so the socket is never, even briefly,
    // connectable by others; then make the mode explicit.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let own_uid = rustix::process::geteuid();
    std::thread::Builder::new()
        .name("ck-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let host = host.clone();
                let events_file = events_file.clone();
                let reloader = reloader.clone();
                let _ = std::thread::Builder::new()
                    .name("ck-control-conn".into())
                    .spawn(move || {
                        let _ = serve_one(stream, &host, &events_file, &reloader, own_uid);
                    });
            }
        })?;
    Ok(())
}

/// The peer's uid (`SO_PEERCRED`). Read with libc: a peer in another PID
/// namespace has pid 0 there, which `rustix`'s credentials refuse.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    // SAFETY: `ucred` is plain data; getsockopt writes at most `len` bytes
    // into it, on a socket this function borrows.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
}

fn reply(stream: &mut UnixStream, value: Value) -> std::io::Result<()> {
    writeln!(stream, "{value}")?;
    stream.flush()
}

fn serve_one(
    mut stream: UnixStream,
    host: &Host,
    events_file: &Path,
    reloader: &Reloader,
    own_uid: rustix::process::Uid,
) -> std::io::Result<()> {
    let peer_uid = peer_uid(&stream)?;
    if peer_uid != own_uid.as_raw() {
        return reply(
            &mut stream,
            json!({"ok": false, "error": format!("uid {peer_uid} may not control this host")}),
        );
    }
    // One request line, of bounded size, within a bounded time.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(stream.try_clone()?, 64 << 10)).read_line(&mut line)?;
    stream.set_read_timeout(None)?;
    let request: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                &mut stream,
                json!({"ok": false, "error": format!("bad request: {e}")}),
            );
        }
    };
    let resource = request["resource"].as_str().unwrap_or_default();
    let result = match request["command"].as_str().unwrap_or_default() {
        "status" => {
            let resources: Vec<Value> = host.status().iter().map(status_json).collect();
            return reply(&mut stream, json!({"ok": true, "resources": resources}));
        }
        "online" => host.online(resource),
        "offline" => host.offline(resource),
        "fail" => host.fail(resource),
        "ocf" => return reply(&mut stream, reloader.managed().serve(&request)),
        "reload" => {
            let answer = match reloader.reload() {
                Ok(mut report) => {
                    report["ok"] = json!(true);
                    report
                }
                Err(problems) => json!({"ok": false, "error": problems}),
            };
            return reply(&mut stream, answer);
        }
        "cleanup" => host.cleanup(resource),
        "properties" => {
            let answer = match host.properties(resource) {
                Ok(props) => {
                    let shown: serde_json::Map<String, Value> = props
                        .iter()
                        .map(|(k, v)| (k.to_owned(), crate::ocf::value_text(v).into()))
                        .collect();
                    json!({"ok": true, "properties": shown})
                }
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            };
            return reply(&mut stream, answer);
        }
        "control" => {
            let code = request["code"].as_u64().and_then(|c| u32::try_from(c).ok());
            let input = unhex(request["input"].as_str().unwrap_or_default());
            let answer = match (code, input) {
                (None, _) => {
                    json!({"ok": false, "error": "bad request: `code` must be a 32-bit number"})
                }
                (_, Err(e)) => json!({"ok": false, "error": format!("bad request: `input`: {e}")}),
                (Some(code), Ok(input)) => {
                    match host.control(resource, clusterkit::ControlCode(code), &input) {
                        Ok(output) => json!({"ok": true, "output": hex(&output)}),
                        Err(e) => json!({"ok": false, "error": e.to_string()}),
                    }
                }
            };
            return reply(&mut stream, answer);
        }
        "events" => {
            return stream_events(
                stream,
                host,
                events_file,
                request["follow"].as_bool() == Some(true),
                request["mark_live"].as_bool() == Some(true),
                request["past"].as_bool() != Some(false),
            );
        }
        other => {
            return reply(
                &mut stream,
                json!({"ok": false, "error": format!("unknown command {other:?}")}),
            );
        }
    };
    match result {
        Ok(()) => reply(&mut stream, json!({"ok": true})),
        Err(e) => reply(&mut stream, json!({"ok": false, "error": e.to_string()})),
    }
}

/// Events a follower may fall behind by before the host drops it.
const FOLLOW_BACKLOG: usize = 1024;

fn stream_events(
    mut stream: UnixStream,
    host: &Host,
    events_file: &Path,
    follow: bool,
    mark_live: bool,
    past: bool,
) -> std::io::Result<()> {
    // Subscribe before reading the file, so nothing falls between the two.
    // Bounded: a follower that stops reading is dropped, not buffered.
    let live = follow.then(|| host.subscribe_bounded(FOLLOW_BACKLOG));
    // The last line is of this host run (it logs host_started first):
    // live events up to its number are already printed.
    let mut last_seq = 0;
    let files = if past {
        clusterkit_host::event_log_files(events_file)
    } else {
        Vec::new()
    };
    for file in files {
        let past = std::fs::read_to_string(file).unwrap_or_default();
        for line in past.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                last_seq = v["seq"].as_u64().unwrap_or(0);
            }
            writeln!(stream, "{line}")?;
        }
    }
    if mark_live {
        writeln!(stream, "{LIVE_MARK}")?;
    }
    stream.flush()?;
    let Some(live) = live else { return Ok(()) };
    for event in live {
        if event.seq <= last_seq {
            continue; // already in the file
        }
        let json = event.to_json();
        writeln!(stream, "{json}")?;
        stream.flush()?;
    }
    Ok(())
}

/// Sends one request and returns the reply lines (one, or many for events),
/// calling `on_line` for each as it arrives.
pub(crate) fn request(
    path: &Path,
    request: Value,
    mut on_line: impl FnMut(&str) -> bool,
) -> Result<(), ControlError> {
    let mut stream = UnixStream::connect(path).map_err(|error| ControlError::Connect {
        path: path.display().to_string(),
        error,
    })?;
    let io = |e: std::io::Error| ControlError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    };
    // A host that refuses the connection answers and closes at once, maybe
    // before the request is written: read its answer before reporting that.
    let written = writeln!(stream, "{request}");
    let mut answered = false;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io)?;
        answered = true;
        if !on_line(&line) {
            break;
        }
    }
    match written {
        Err(e) if !answered => Err(io(e)),
        _ => Ok(()),
    }
}

/// Sends a request expecting one `{"ok":...}` reply.
pub(crate) fn call(path: &Path, body: Value) -> Result<Value, ControlError> {
    let mut answer = None;
    request(path, body, |line| {
        answer = Some(line.to_owned());
        false
    })?;
    let answer = answer.ok_or_else(|| ControlError::Io {
        path: path.display().to_string(),
        error: "the host closed the connection without answering".into(),
    })?;
    let value: Value = serde_json::from_str(&answer).map_err(|e| ControlError::Io {
        path: path.display().to_string(),
        error: format!("bad reply: {e}"),
    })?;
    if value["ok"] == true {
        Ok(value)
    } else {
        Err(ControlError::Refused(
            value["error"].as_str().unwrap_or("refused").to_owned(),
        ))
    }
}
