//! `clusterkit reload` and SIGHUP: the running host applies the difference
//! between its config and the file, without a restart.
//!
//! The file is checked whole first (as `validate` does, the libraries in a
//! child process); a file with any problem is refused with every problem,
//! and the host stays as it was. Then the host's resources are reconfigured
//! (`Host::reconfigure`): new resources are added (and brought online,
//! unless `autostart = false`), removed ones go offline and close, changed
//! timing applies at once, changed properties when nothing of the resource
//! runs (now if it is offline, else at its next online), and resources
//! that did not change are not touched.

use std::sync::{Arc, Mutex, PoisonError};

use clusterkit_host::{Applies, Host, Reconfigured, ResourceSet};
use serde_json::{Value, json};

use crate::config::Config;
use crate::managed::Managed;

/// Reloads the config a host was started from.
pub(crate) struct Reloader {
    host: Arc<Host>,
    /// What of the config as last applied cannot change while the host runs
    /// (the rest lives in the host; a big config's parse is not kept).
    running: Mutex<Fixed>,
    /// The resources Pacemaker manages here: kept across a reload.
    managed: Arc<Managed>,
}

impl Reloader {
    pub(crate) fn new(host: Arc<Host>, config: Config, managed: Arc<Managed>) -> Reloader {
        Reloader {
            host,
            running: Mutex::new(Fixed::of(&config)),
            managed,
        }
    }

    /// The resources Pacemaker manages through this host.
    pub(crate) fn managed(&self) -> &Managed {
        &self.managed
    }

    /// Re-reads the config file and applies it; the report as JSON, or
    /// every problem (nothing changed).
    pub(crate) fn reload(&self) -> Result<Value, String> {
        // One reload at a time: SIGHUP and a `reload` command may race.
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let path = running.path.clone();
        let fresh = Config::load(&path).map_err(|e| refused(&path, vec![e.to_string()]))?;
        let mut problems: Vec<String> = crate::builder(&fresh)
            .problems()
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect();
        for (what, before, after) in [
            ("state_dir", &running.state_dir, &fresh.state_dir),
            (
                "control_socket",
                &running.control_socket,
                &fresh.control_socket,
            ),
        ] {
            if before != after {
                problems.push(format!(
                    "{}: `{what}` cannot change while the host runs ({} → {}): restart the host",
                    path.display(),
                    before.display(),
                    after.display()
                ));
            }
        }
        if running.monitor != fresh.monitor {
            problems.push(format!(
                "{}: `monitor` cannot change while the host runs: restart the host",
                path.display()
            ));
        }
        problems.extend(crate::check_libraries_in_child(&path)?);
        if !problems.is_empty() {
            return Err(refused(&path, problems));
        }
        let report = {
            // Pacemaker's resources stay; none is registered meanwhile.
            let managed = self.managed.lock();
            let mut set = resource_set(&fresh);
            set.resources
                .extend(crate::managed::configs(&managed).map_err(|e| refused(&path, vec![e]))?);
            self.host
                .reconfigure(set)
                .map_err(|e| refused(&path, vec![e.to_string()]))?
        };
        // New resources come online as at start, unless told not to.
        let mut errors = Vec::new();
        let added: Vec<&str> = fresh
            .resources
            .iter()
            .filter(|r| r.autostart && report.added.iter().any(|a| a == r.name.get_ref()))
            .map(|r| r.name.get_ref().as_str())
            .collect();
        if let Err(e) = self.host.online_many(&added) {
            errors.push(format!("online {}: {e}", added.join(", ")));
        }
        *running = Fixed::of(&fresh);
        let mut answer = report_json(&path, &report);
        if !errors.is_empty() {
            answer["errors"] = json!(errors);
        }
        Ok(answer)
    }
}

/// The config's settings a reload cannot change, and where it is.
struct Fixed {
    path: std::path::PathBuf,
    state_dir: std::path::PathBuf,
    control_socket: std::path::PathBuf,
    monitor: Option<std::path::PathBuf>,
}

impl Fixed {
    fn of(config: &Config) -> Fixed {
        Fixed {
            path: config.path.clone(),
            state_dir: config.state_dir.clone(),
            control_socket: config.control_socket.clone(),
            monitor: config.monitor.clone(),
        }
    }
}

fn refused(path: &std::path::Path, problems: Vec<String>) -> String {
    format!(
        "{}: not reloaded, the host is unchanged:\n{}",
        path.display(),
        problems.join("\n")
    )
}

/// The resources of `config`, as a running host takes them.
pub(crate) fn resource_set(config: &Config) -> ResourceSet {
    ResourceSet {
        defaults: config.defaults,
        type_timing: config
            .type_timing
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        resources: config.resource_configs(),
    }
}

fn report_json(path: &std::path::Path, report: &Reconfigured) -> Value {
    json!({
        "config": path.display().to_string(),
        "added": report.added,
        "changed": report.changed.iter().map(|c| json!({
            "name": c.name,
            "what": c.what,
            "applies": match c.applies { Applies::Now => "now", Applies::NextOnline => "next_online" },
        })).collect::<Vec<_>>(),
        "removed": report.removed,
        "unchanged": report.unchanged,
    })
}

/// The reload report for people: one line per change, then a summary.
pub(crate) fn human_report(answer: &Value) -> String {
    let mut lines = Vec::new();
    let names = |key: &str| -> Vec<String> {
        answer[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names("added") {
        lines.push(format!("added    {name}"));
    }
    for c in answer["changed"].as_array().into_iter().flatten() {
        let what: Vec<&str> = c["what"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let when = match c["applies"].as_str() {
            Some("next_online") => "applies at its next online (it runs unchanged until then)",
            _ => "applied now",
        };
        lines.push(format!(
            "changed  {} ({}): {when}",
            c["name"].as_str().unwrap_or_default(),
            what.join(", ")
        ));
    }
    for name in names("removed") {
        lines.push(format!("removed  {name} (going offline, then closed)"));
    }
    for e in answer["errors"].as_array().into_iter().flatten() {
        lines.push(format!("error    {}", e.as_str().unwrap_or_default()));
    }
    lines.push(format!(
        "reloaded {}: {} added, {} changed, {} removed, {} unchanged",
        answer["config"].as_str().unwrap_or_default(),
        names("added").len(),
        answer["changed"].as_array().map_or(0, Vec::len),
        names("removed").len(),
        answer["unchanged"].as_u64().unwrap_or(0)
    ));
    lines.join("\n")
}
