//! The agent as a thin client of a node-local `clusterkit run`
//! (delegation; the host's side is `crate::managed`).
//!
//! The host is found through `CLUSTERKIT_SOCKET`, else the control socket
//! of the host config (`CLUSTERKIT_CONFIG`, else
//! `/etc/clusterkit/clusterkit.toml`). When it answers, `start`, `stop`,
//! `monitor` and `reload-agent` go to it. When it does not:
//!
//! - an instance the host started (a `.delegated` marker beside the
//!   `.started` one) waits for the host to come back within the
//!   operation's timeout (the host restarting under systemd re-attaches
//!   its resources), then falls back to one process per operation;
//! - any other instance runs in one process per operation, as without a
//!   host (`docs/PACEMAKER.md` lists what is lost then).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clusterkit::Properties;
use serde_json::json;

use super::{OCF_ERR_GENERIC, Outcome, instance_name, marker_path};

/// How long before Pacemaker's timeout the agent gives up waiting for a
/// host that is away, to answer in time.
const MARGIN: Duration = Duration::from_secs(2);

/// Pacemaker's timeout for this operation (`CRM_meta_timeout`, ms).
fn operation_timeout() -> Duration {
    std::env::var("OCF_RESKEY_CRM_meta_timeout")
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(20), Duration::from_millis)
}

fn delegated_marker(type_name: &str) -> PathBuf {
    marker_path(type_name).with_extension("delegated")
}

/// The node-local host's control socket, if one is configured.
fn host_socket() -> Option<PathBuf> {
    if let Some(socket) = std::env::var_os("CLUSTERKIT_SOCKET").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(socket));
    }
    let config = std::env::var_os("CLUSTERKIT_CONFIG")
        .filter(|c| !c.is_empty())
        .map_or_else(
            || PathBuf::from(crate::config::DEFAULT_CONFIG),
            PathBuf::from,
        );
    if !config.exists() {
        return None;
    }
    crate::config::Config::load(&config)
        .ok()
        .map(|c| c.control_socket)
}

/// The socket of a host to delegate `type_name`'s instance to, if there is
/// one now (or, for an instance it started, once it is back).
pub(super) fn host_for(type_name: &str) -> Option<PathBuf> {
    let socket = host_socket()?;
    if UnixStream::connect(&socket).is_ok() {
        return Some(socket);
    }
    if !delegated_marker(type_name).exists() {
        return None;
    }
    // The host that runs this instance is away (restarting?): wait for it,
    // within the operation's timeout.
    let deadline = Instant::now() + operation_timeout().saturating_sub(MARGIN);
    while Instant::now() < deadline {
        // Another process's socket: nothing to wait on but its existence.
        std::thread::sleep(Duration::from_millis(50));
        if UnixStream::connect(&socket).is_ok() {
            return Some(socket);
        }
    }
    None
}

/// Runs `action` in the host behind `socket`.
pub(super) fn run(
    socket: &Path,
    action: &str,
    library: &Path,
    type_name: &str,
    properties: &Properties,
) -> Outcome {
    let library = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_owned());
    let deep = std::env::var("OCF_CHECK_LEVEL")
        .ok()
        .and_then(|l| l.parse::<u32>().ok())
        .is_some_and(|l| l >= 10);
    let request = json!({
        "command": "ocf",
        "action": action,
        "instance": instance_name(),
        "node": std::env::var("OCF_RESKEY_CRM_meta_on_node").ok(),
        "library": library.display().to_string(),
        "type": type_name,
        "properties": crate::managed::hex_encode(&properties.encode()),
        "deep": deep,
        "timeout_ms": u64::try_from(operation_timeout().as_millis()).unwrap_or(u64::MAX),
    });
    let answer = match crate::control::call(socket, request) {
        Ok(answer) => answer,
        Err(e) => return Outcome::fail(OCF_ERR_GENERIC, format!("the clusterkit host: {e}")),
    };
    let code = answer["rc"]
        .as_u64()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(OCF_ERR_GENERIC);
    let outcome = Outcome::fail(code, answer["reason"].as_str().unwrap_or_default());
    if code == super::OCF_SUCCESS {
        let markers = [marker_path(type_name), delegated_marker(type_name)];
        match action {
            "start" => {
                for m in &markers {
                    if let Some(dir) = m.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    if let Err(e) = std::fs::write(m, b"started\n") {
                        let why = format!("started, but writing {}: {e}", m.display());
                        return Outcome::fail(OCF_ERR_GENERIC, why);
                    }
                }
            }
            "stop" => {
                for m in &markers {
                    let _ = std::fs::remove_file(m);
                }
            }
            _ => {}
        }
    }
    outcome
}
