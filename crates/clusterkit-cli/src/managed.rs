//! Resources Pacemaker manages through a running host (delegation).
//!
//! With a node-local `clusterkit run` up, each `ocf:clusterkit:*` action is
//! a thin client of it (`ocf::delegate`): `start` registers the resource
//! with the host and brings it online, `monitor` asks the host for a check,
//! `stop` takes it offline and removes it. The host keeps the resource open
//! between operations (the disk's lock, the DNS refresh worker, QEMU), runs
//! its deadlines, isolation and re-attach, and for these resources never
//! restarts or fails over on its own: Pacemaker decides (`restart_action =
//! none`). A failure the host sees is pushed to Pacemaker at once
//! (`crm_resource --fail`), so recovery does not wait for the next monitor.
//!
//! The registry (`<state_dir>/managed.json`) lists them, so a host that is
//! killed and started again re-attaches to them as to its configured ones,
//! and Pacemaker notices nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clusterkit::{Health, Properties, ResourceState};
use clusterkit_host::{Event, EventKind, Host, ResourceConfig, ResourceStatus, RestartAction};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// OCF exit codes the host answers with.
const OCF_SUCCESS: u8 = 0;
const OCF_ERR_GENERIC: u8 = 1;
const OCF_ERR_INSTALLED: u8 = 5;
const OCF_ERR_CONFIGURED: u8 = 6;
const OCF_NOT_RUNNING: u8 = 7;
const OCF_DEGRADED: u8 = 190;

/// What answering takes at most beyond the caller's budget.
const MARGIN: Duration = Duration::from_millis(500);

/// One resource Pacemaker manages here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManagedResource {
    /// Pacemaker's id (`OCF_RESOURCE_INSTANCE`), for `crm_resource`.
    pub(crate) instance: String,
    /// The node Pacemaker runs it on (`CRM_meta_on_node`), if it said.
    pub(crate) node: Option<String>,
    pub(crate) library: PathBuf,
    pub(crate) type_name: String,
    /// The validated properties, in the property-list encoding, as hex.
    pub(crate) properties: String,
}

impl ManagedResource {
    fn config(&self, name: &str) -> Result<ResourceConfig, String> {
        let bytes = hex_decode(&self.properties)
            .ok_or_else(|| format!("`{name}`: the properties are not hex"))?;
        let properties = Properties::decode(&bytes).map_err(|e| format!("`{name}`: {e}"))?;
        let mut config = ResourceConfig::new(name, self.library.clone(), self.type_name.clone());
        config.properties = properties;
        // Pacemaker decides: the host reports, and never restarts or fails
        // over on its own.
        config.timing.restart_action = Some(RestartAction::None);
        Ok(config)
    }
}

/// The host's name for a Pacemaker instance: a clone's `web:0` is `web.0`.
pub(crate) fn resource_name(instance: &str) -> String {
    instance.replace(':', ".")
}

/// The resources Pacemaker manages through this host.
pub(crate) struct Managed {
    path: PathBuf,
    host: Arc<Host>,
    /// By resource name. Held through a change of the host's resources,
    /// so a reload and an agent never interleave.
    entries: Mutex<BTreeMap<String, ManagedResource>>,
    /// Resources whose `terminate` failed: their workload may still run,
    /// so their stop must fail (Pacemaker then fences the node).
    unstoppable: Mutex<BTreeSet<String>>,
    /// Resources Pacemaker has seen start here and not yet asked to stop:
    /// only their failures are pushed (a start or stop that fails answers
    /// for itself).
    running: Mutex<BTreeSet<String>>,
}

/// Reads the registry; a missing file is an empty one.
pub(crate) fn load(state_dir: &Path) -> Result<BTreeMap<String, ManagedResource>, String> {
    let path = state_dir.join("managed.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The host configs of the registry's resources.
pub(crate) fn configs(
    entries: &BTreeMap<String, ManagedResource>,
) -> Result<Vec<ResourceConfig>, String> {
    entries.iter().map(|(name, m)| m.config(name)).collect()
}

impl Managed {
    pub(crate) fn new(
        state_dir: &Path,
        host: Arc<Host>,
        entries: BTreeMap<String, ManagedResource>,
    ) -> Arc<Managed> {
        // A host started again: what it re-attaches was running.
        let running = entries.keys().cloned().collect();
        let managed = Arc::new(Managed {
            path: state_dir.join("managed.json"),
            host,
            entries: Mutex::new(entries),
            unstoppable: Mutex::new(BTreeSet::new()),
            running: Mutex::new(running),
        });
        managed.clone().push_failures();
        managed
    }

    /// The registry, locked: a reload holds it while it reconfigures.
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ManagedResource>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn save(&self, entries: &BTreeMap<String, ManagedResource>) -> Result<(), String> {
        let text = serde_json::to_string_pretty(entries).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", self.path.display())
        })
    }

    /// Serves one agent request: `{"command":"ocf", "action":…}`.
    pub(crate) fn serve(&self, request: &Value) -> Value {
        let instance = request["instance"].as_str().unwrap_or_default();
        let name = resource_name(instance);
        let budget = Duration::from_millis(request["timeout_ms"].as_u64().unwrap_or(20_000))
            .saturating_sub(MARGIN);
        let (code, reason) = match request["action"].as_str().unwrap_or_default() {
            "start" => self.start(&name, request, budget),
            "stop" => self.stop(&name, budget),
            "monitor" => self.monitor(&name, request["deep"] == true, budget),
            "reload-agent" => self.reload(&name, request),
            other => (OCF_ERR_CONFIGURED, format!("unknown action {other:?}")),
        };
        json!({"ok": true, "rc": code, "reason": reason})
    }

    fn start(&self, name: &str, request: &Value, budget: Duration) -> (u8, String) {
        let wanted = ManagedResource {
            instance: request["instance"].as_str().unwrap_or_default().to_owned(),
            node: request["node"].as_str().map(str::to_owned),
            library: PathBuf::from(request["library"].as_str().unwrap_or_default()),
            type_name: request["type"].as_str().unwrap_or_default().to_owned(),
            properties: request["properties"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let config = match wanted.config(name) {
            Ok(c) => c,
            Err(e) => return (OCF_ERR_CONFIGURED, e),
        };
        {
            let mut entries = self.lock();
            let configured = self
                .host
                .resources()
                .resources
                .iter()
                .any(|r| r.name == name);
            let change = match entries.get(name) {
                Some(known) if *known == wanted => Ok(None),
                Some(_) => self.host.update_resource(config).map(Some),
                None if configured => {
                    return (
                        OCF_ERR_CONFIGURED,
                        format!(
                            "resource `{name}` is in the host's config file; Pacemaker cannot \
                             manage it too"
                        ),
                    );
                }
                None => self.host.add_resource(config).map(Some),
            };
            if let Err(e) = change {
                return (OCF_ERR_CONFIGURED, e.to_string());
            }
            entries.insert(name.to_owned(), wanted);
            if let Err(e) = self.save(&entries) {
                return (OCF_ERR_GENERIC, format!("not recorded: {e}"));
            }
        }
        self.unstoppable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        self.set_running(name, false);
        let events = self.host.subscribe();
        if let Err(e) = self.host.online(name) {
            return (OCF_ERR_GENERIC, e.to_string());
        }
        match self.settle(name, budget, |s| {
            matches!(s.state, ResourceState::Online | ResourceState::Failed)
        }) {
            Some(s) if s.state == ResourceState::Online => {
                self.set_running(name, true);
                (OCF_SUCCESS, String::new())
            }
            Some(_) => last_failure(&events, name),
            None => (
                OCF_ERR_GENERIC,
                format!("start did not finish within {budget:?}"),
            ),
        }
    }

    fn stop(&self, name: &str, budget: Duration) -> (u8, String) {
        self.set_running(name, false);
        if self.host.resource_status(name).is_err() {
            self.forget(name);
            return (OCF_SUCCESS, String::new());
        }
        if let Err(e) = self.host.offline(name) {
            return (OCF_ERR_GENERIC, e.to_string());
        }
        let settled = self.settle(name, budget, |s| {
            matches!(s.state, ResourceState::Offline | ResourceState::Failed)
                && s.desired == clusterkit_host::Desired::Offline
        });
        let unstoppable = self
            .unstoppable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name);
        match settled {
            Some(s) if s.state == ResourceState::Failed && unstoppable => (
                OCF_ERR_GENERIC,
                "its terminate failed: the workload may still run here (fence this node)".into(),
            ),
            Some(_) => {
                let mut entries = self.lock();
                if let Err(e) = self.host.remove_resource(name) {
                    return (OCF_ERR_GENERIC, e.to_string());
                }
                entries.remove(name);
                if let Err(e) = self.save(&entries) {
                    return (OCF_ERR_GENERIC, format!("stopped, not recorded: {e}"));
                }
                (OCF_SUCCESS, String::new())
            }
            None => (
                OCF_ERR_GENERIC,
                format!("stop did not finish within {budget:?}"),
            ),
        }
    }

    fn set_running(&self, name: &str, running: bool) {
        let mut set = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running {
            set.insert(name.to_owned());
        } else {
            set.remove(name);
        }
    }

    fn forget(&self, name: &str) {
        let mut entries = self.lock();
        if entries.remove(name).is_some() {
            let _ = self.save(&entries);
        }
    }

    fn monitor(&self, name: &str, deep: bool, budget: Duration) -> (u8, String) {
        // A resource between states (re-attaching after a host restart,
        // pending) is answered once it settles.
        let settled = self.settle(name, budget, |s| {
            matches!(
                s.state,
                ResourceState::Online | ResourceState::Offline | ResourceState::Failed
            )
        });
        let Some(status) = settled else {
            return match self.host.resource_status(name) {
                Err(_) => (OCF_NOT_RUNNING, String::new()),
                Ok(s) => (
                    OCF_ERR_GENERIC,
                    format!("still {} after {budget:?}", s.state.name()),
                ),
            };
        };
        match status.state {
            ResourceState::Online => match self.host.check(name, deep) {
                Ok(Health::Healthy) => (OCF_SUCCESS, String::new()),
                Ok(Health::Degraded(why)) => (OCF_DEGRADED, format!("degraded: {why}")),
                Ok(Health::Failed(why)) => (OCF_ERR_GENERIC, why),
                Err(e) => (OCF_ERR_GENERIC, e.to_string()),
            },
            ResourceState::Offline => (OCF_NOT_RUNNING, String::new()),
            _ => (
                OCF_ERR_GENERIC,
                format!(
                    "failed: {}",
                    status
                        .last_health
                        .map_or_else(|| "see `clusterkit events`".into(), |h| h.to_string())
                ),
            ),
        }
    }

    fn reload(&self, name: &str, request: &Value) -> (u8, String) {
        let mut entries = self.lock();
        let Some(known) = entries.get(name).cloned() else {
            return (OCF_NOT_RUNNING, format!("`{name}` is not started here"));
        };
        let wanted = ManagedResource {
            properties: request["properties"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ..known
        };
        let change = wanted
            .config(name)
            .map_err(|e| (OCF_ERR_CONFIGURED, e))
            .and_then(|c| {
                self.host
                    .update_resource(c)
                    .map_err(|e| (OCF_ERR_CONFIGURED, e.to_string()))
            });
        if let Err(e) = change {
            return e;
        }
        entries.insert(name.to_owned(), wanted);
        match self.save(&entries) {
            Ok(()) => (OCF_SUCCESS, String::new()),
            Err(e) => (OCF_ERR_GENERIC, format!("not recorded: {e}")),
        }
    }

    /// Waits until `name`'s status satisfies `done`, or `budget` passes
    /// (`None`; also when it is not known).
    fn settle(
        &self,
        name: &str,
        budget: Duration,
        mut done: impl FnMut(&ResourceStatus) -> bool,
    ) -> Option<ResourceStatus> {
        self.host
            .wait_for_resource(name, budget, name, &mut done)
            .ok()
    }

    /// Tells Pacemaker at once when a resource it manages fails here, so
    /// recovery starts now rather than at its next monitor.
    fn push_failures(self: Arc<Self>) {
        let events = self.host.subscribe();
        let _ = std::thread::Builder::new()
            .name("ck-pacemaker-push".into())
            .spawn(move || {
                for event in events {
                    if event.kind != EventKind::ResourceFailed {
                        continue;
                    }
                    let Some(name) = event.resource.as_deref() else {
                        continue;
                    };
                    let Some(managed) = self.lock().get(name).cloned() else {
                        continue;
                    };
                    let running = self
                        .running
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(name);
                    if event.field("terminate_failed") == Some(&Value::Bool(true)) {
                        self.unstoppable
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(name.to_owned());
                    }
                    if running {
                        tell_pacemaker(&managed, &event);
                    }
                }
            });
    }
}

/// `crm_resource --fail` for `managed`, with a bounded wait.
fn tell_pacemaker(managed: &ManagedResource, event: &Event) {
    let mut command = std::process::Command::new("crm_resource");
    command.args(["--fail", "--resource", &managed.instance]);
    if let Some(node) = &managed.node {
        command.args(["--node", node]);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let reason = event.str_field("reason").unwrap_or_default();
    match command.spawn() {
        Ok(mut child) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => {
                        eprintln!(
                            "clusterkit: told Pacemaker `{}` failed: {reason}",
                            managed.instance
                        );
                        break;
                    }
                    Ok(Some(status)) => {
                        let mut err = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            let _ = std::io::Read::read_to_string(&mut e, &mut err);
                        }
                        eprintln!(
                            "clusterkit: crm_resource --fail {} ended {status}: {}",
                            managed.instance,
                            err.trim()
                        );
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        // A child process: no event to wait on short of a
                        // SIGCHLD handler the host does not install.
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        eprintln!(
                            "clusterkit: crm_resource --fail {} did not finish within 10 s",
                            managed.instance
                        );
                        break;
                    }
                }
            }
        }
        Err(e) => eprintln!("clusterkit: cannot run crm_resource: {e}"),
    }
}

/// The OCF exit code and reason of the last failure of `name` among the
/// events received so far: a call that failed on its configuration is 6
/// (`OCF_ERR_CONFIGURED`, Pacemaker does not retry it on this node), a
/// missing target 5, anything else 1.
fn last_failure(events: &std::sync::mpsc::Receiver<Event>, name: &str) -> (u8, String) {
    let mut code = OCF_ERR_GENERIC;
    let mut reason = None;
    for e in events.try_iter() {
        if e.resource.as_deref() != Some(name) {
            continue;
        }
        if e.kind == EventKind::CallFailed {
            code = match e.str_field("code") {
                Some("invalid_properties" | "invalid_input") => OCF_ERR_CONFIGURED,
                Some("not_found") => OCF_ERR_INSTALLED,
                _ => OCF_ERR_GENERIC,
            };
        }
        if matches!(
            e.kind,
            EventKind::ResourceFailed | EventKind::CallFailed | EventKind::CallTimedOut
        ) {
            reason = Some(
                e.str_field("reason")
                    .or_else(|| e.str_field("error"))
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.kind.name().to_owned()),
            );
        }
    }
    let reason = reason.unwrap_or_else(|| "failed (see `clusterkit events`)".into());
    (code, reason)
}

/// `bytes` as lowercase hex, as the registry and the agents carry properties.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
