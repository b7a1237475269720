//! Resources added, changed and removed while the host runs.
//!
//! A reconfiguration is the whole new set of resources. It is checked
//! whole (every resource against its type; a library not loaded yet is
//! loaded first) and refused whole with every problem, changing nothing;
//! or applied, resource by resource, matched by name:
//!
//! - **unchanged**: untouched — no call, no restart, no event;
//! - **timing or dependencies changed**: applied at once (the next check
//!   is due at the new interval from now);
//! - **properties, type, library, group or placement changed**: the
//!   resource keeps running as it is; the change is *staged* and applied
//!   when nothing of it runs: at once if it is offline (closed, re-opened
//!   with the new configuration), else at its next offline or restart, so
//!   the next online uses it;
//! - **added**: opened, offline (the caller brings it online);
//! - **removed**: taken offline (its dependents are removed with it, or
//!   the set is refused), closed, and retired: its id stays taken so no
//!   stale reference can reach another resource, its status and its entry
//!   in the state file go, and a monitor of its own exits.

use std::collections::{BTreeMap, HashSet};

use clusterkit::{Characteristics, Properties, ResourceState};
use serde::{Deserialize, Serialize};

use crate::config::Timing;
use crate::error::HostError;
use crate::events::{Event, EventKind};
use crate::protocol::{Op, ToMonitor};
use crate::state_file::Desired;

use super::calls::CallKind;
use super::core::{Action, Core, ResourceEntry, ResourceSpec};
use super::ids::{LibraryId, RequestId, ResourceId};
use super::lifecycle::{AfterOpen, Phase, Then};
use super::monitors::{LibState, MonitorKey, single_group_instance_problems};

/// The new set of resources, resolved (`depends_on` indexes this list).
pub(crate) struct Reconfiguration {
    pub(crate) resources: Vec<ResourceSpec>,
    pub(crate) default_timing: Timing,
}

impl std::fmt::Debug for Reconfiguration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No properties: they may hold secrets.
        let names: Vec<&str> = self.resources.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("Reconfiguration")
            .field("resources", &names)
            .finish_non_exhaustive()
    }
}

/// A reconfiguration waiting for the types of libraries being loaded.
pub(crate) struct Waiting {
    request: RequestId,
    plan: Reconfiguration,
    /// Libraries asked for: a second ask means the first load was lost
    /// with its monitor (a crash in the library's startup).
    asked: Vec<LibraryId>,
}

/// A resource's new configuration, applied when nothing of it runs.
pub(crate) struct Staged {
    spec: ResourceSpec,
    validated: Properties,
    characteristics: Characteristics,
}

/// What a reconfiguration did; the answer of
/// [`Host::reconfigure`](crate::Host::reconfigure).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconfigured {
    /// Resources added (offline; bring them online as wanted).
    pub added: Vec<String>,
    /// Resources changed, with what changed and when it applies.
    pub changed: Vec<ResourceChange>,
    /// Resources removed (going offline, then closed).
    pub removed: Vec<String>,
    /// How many resources were left untouched.
    pub unchanged: usize,
}

/// One changed resource in [`Reconfigured`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// The resource.
    pub name: String,
    /// What changed: `timing`, `dependencies`, `properties`, `type`,
    /// `library`, `group`, `placement`, `separate_monitor`.
    pub what: Vec<String>,
    /// When it takes effect.
    pub applies: Applies,
}

/// When a change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applies {
    /// Now: timing and dependencies, or anything of a resource that is offline.
    Now,
    /// When the resource next comes online (after an offline or a restart);
    /// it keeps running with its old configuration until then.
    NextOnline,
}

impl Core {
    pub(crate) fn on_reconfigure(&mut self, request: RequestId, plan: Reconfiguration) {
        let refusal = if !self.validated {
            Some("the host is still starting")
        } else if self.is_stopping() {
            Some("the host is stopping")
        } else if self.reconfiguring.is_some() {
            Some("another reconfiguration is under way")
        } else {
            None
        };
        if let Some(why) = refusal {
            self.reply(
                request,
                Err(HostError::Config(format!("not reconfigured: {why}"))),
            );
            return;
        }
        for spec in &plan.resources {
            if !self.libraries.iter().any(|l| l.path == spec.library) {
                self.libraries.push(super::core::Library {
                    path: spec.library.clone(),
                    types: None,
                });
            }
        }
        self.reconfiguring = Some(Waiting {
            request,
            plan,
            asked: Vec::new(),
        });
    }

    /// Loads what the waiting reconfiguration needs, then checks and
    /// applies it (or refuses it).
    pub(crate) fn continue_reconfigure(&mut self) {
        let Some(mut waiting) = self.reconfiguring.take() else {
            return;
        };
        if self.is_stopping() {
            let error = HostError::Config("not reconfigured: the host is stopping".into());
            self.reply(waiting.request, Err(error));
            return;
        }
        let mut loading = false;
        let mut failed = Vec::new();
        for spec in &waiting.plan.resources {
            let lib = self.library_id(&spec.library);
            if self.libraries[lib.0].types.is_some() {
                continue;
            }
            // Loaded where the resource will run, as at start.
            let key = MonitorKey::Shared(spec.placement);
            match self.load_library(key, lib, &mut waiting.asked) {
                Some(LibState::Failed) => failed.push(HostError::Library {
                    path: spec.library.display().to_string(),
                    problem: format!(
                        "{}: the resource library failed to load, or its monitor died loading \
                         it (see the events)",
                        spec.library.display()
                    ),
                }),
                _ => loading = true,
            }
        }
        if !failed.is_empty() {
            failed.dedup_by(|a, b| a.to_string() == b.to_string());
            self.refuse(waiting.request, failed);
        } else if loading {
            self.reconfiguring = Some(waiting);
        } else {
            self.check_and_apply(waiting.request, waiting.plan);
        }
    }

    fn library_id(&self, path: &std::path::Path) -> LibraryId {
        LibraryId(
            self.libraries
                .iter()
                .position(|l| l.path == path)
                .expect("registered by on_reconfigure"),
        )
    }

    /// Asks `key`'s monitor to load `lib` if it has not yet; its state
    /// there, if it has a usable monitor.
    fn load_library(
        &mut self,
        key: MonitorKey,
        lib: LibraryId,
        asked: &mut Vec<LibraryId>,
    ) -> Option<LibState> {
        let m = self.ensure_monitor(key)?;
        let monitor = &self.monitors[&m];
        if !monitor.is_usable() {
            return None;
        }
        if let Some(state) = monitor.libraries.get(&lib) {
            return Some(*state);
        }
        if asked.contains(&lib) {
            return Some(LibState::Failed);
        }
        asked.push(lib);
        self.send_load(m, lib);
        Some(LibState::Loading)
    }

    fn refuse(&mut self, request: RequestId, problems: Vec<HostError>) {
        self.reply(request, Err(HostError::Refused(problems)));
    }

    fn check_and_apply(&mut self, request: RequestId, plan: Reconfiguration) {
        let mut problems = Vec::new();
        let mut checked = Vec::with_capacity(plan.resources.len());
        for spec in &plan.resources {
            match self.validate_spec(spec) {
                Ok(valid) => checked.push(valid),
                Err(problem) => {
                    problems.push(problem);
                    checked.push((Properties::new(), Characteristics::empty()));
                }
            }
        }
        let kinds: Vec<_> = plan
            .resources
            .iter()
            .zip(&checked)
            .map(|(spec, (_, c))| (spec, *c))
            .collect();
        problems.extend(single_group_instance_problems(&kinds));
        if !problems.is_empty() {
            self.refuse(request, problems);
            return;
        }
        let report = self.apply(plan, checked);
        let answer = serde_json::to_vec(&report).map_err(|e| HostError::Config(e.to_string()));
        self.emit(
            Event::of(EventKind::HostReconfigured, None)
                .with("added", report.added.len())
                .with("changed", report.changed.len())
                .with("removed", report.removed.len())
                .with("unchanged", report.unchanged),
        );
        self.persist();
        self.reply(request, answer);
    }

    fn apply(
        &mut self,
        plan: Reconfiguration,
        checked: Vec<(Properties, Characteristics)>,
    ) -> Reconfigured {
        let mut report = Reconfigured::default();
        // Match by name; a resource being removed comes back if named again.
        let live: BTreeMap<String, ResourceId> = self
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.retired)
            .map(|(i, r)| (r.spec.name.clone(), ResourceId(i)))
            .collect();
        let mut next = self.resources.len();
        let ids: Vec<ResourceId> = plan
            .resources
            .iter()
            .map(|spec| {
                live.get(&spec.name).copied().unwrap_or_else(|| {
                    next += 1;
                    ResourceId(next - 1)
                })
            })
            .collect();
        for ((mut spec, (validated, characteristics)), &i) in
            plan.resources.into_iter().zip(checked).zip(&ids)
        {
            spec.depends_on = spec.depends_on.iter().map(|&d| ids[d].0).collect();
            if i.0 == self.resources.len() {
                report.added.push(spec.name.clone());
                self.add(spec, validated, characteristics);
                continue;
            }
            let was_removing = std::mem::take(&mut self.res_mut(i).removing);
            if let Some(change) = self.change(i, spec, validated, characteristics) {
                report.changed.push(change);
            } else if !was_removing {
                report.unchanged += 1;
            }
            if was_removing {
                report.added.push(self.name(i).to_owned());
            }
        }
        let kept: HashSet<ResourceId> = ids.iter().copied().collect();
        for (name, i) in live {
            if kept.contains(&i) || self.res(i).removing {
                continue;
            }
            let r = self.res_mut(i);
            r.removing = true;
            r.staged = None;
            r.desired = Desired::Offline;
            self.touch(i);
            self.mark_dirty(i);
            report.removed.push(name);
        }
        self.default_timing = plan.default_timing;
        self.rebuild_dependents();
        report
    }

    fn add(
        &mut self,
        mut spec: ResourceSpec,
        validated: Properties,
        characteristics: Characteristics,
    ) {
        // Only the validated list is kept (as at start).
        spec.properties = Properties::new();
        let i = ResourceId(self.resources.len());
        let name = spec.name.clone();
        let mut entry = ResourceEntry::new(spec, AfterOpen::FRESH, self.now);
        entry.validated = validated;
        entry.characteristics = characteristics;
        entry.status_changed = false;
        self.resources.push(entry);
        self.dirty.push(false);
        self.touch(i);
        self.mark_dirty(i);
        self.emit(Event::of(EventKind::ResourceAdded, Some(&name)));
    }

    /// Applies what can change at once, stages the rest; `None` if nothing
    /// changed.
    fn change(
        &mut self,
        i: ResourceId,
        spec: ResourceSpec,
        validated: Properties,
        characteristics: Characteristics,
    ) -> Option<ResourceChange> {
        let r = self.res(i);
        let old = &r.spec;
        let mut what: Vec<&str> = Vec::new();
        let mut staged_what = Vec::new();
        if old.timing != spec.timing {
            what.push("timing");
        }
        if old.depends_on != spec.depends_on {
            what.push("dependencies");
        }
        for (changed, name) in [
            (r.validated != validated, "properties"),
            (old.type_name != spec.type_name, "type"),
            (old.library != spec.library, "library"),
            (old.group != spec.group, "group"),
            (old.placement != spec.placement, "placement"),
            (
                old.separate_monitor != spec.separate_monitor,
                "separate_monitor",
            ),
        ] {
            if changed {
                staged_what.push(name);
            }
        }
        // A staged change that is now undone is no change either.
        let unstaged = r.staged.is_some() && staged_what.is_empty();
        if what.is_empty() && staged_what.is_empty() && !unstaged {
            return None;
        }
        let timing_changed = old.timing != spec.timing;
        let r = self.res_mut(i);
        r.spec.timing = spec.timing;
        r.spec.depends_on = spec.depends_on.clone();
        if timing_changed {
            self.reschedule_checks(i);
        }
        if staged_what.is_empty() {
            self.res_mut(i).staged = None;
        } else {
            let mut spec = spec;
            spec.properties = Properties::new();
            self.res_mut(i).staged = Some(Box::new(Staged {
                spec,
                validated,
                characteristics,
            }));
        }
        what.extend(staged_what.iter().copied());
        self.touch(i);
        self.mark_neighbours(i);
        // Offline and idle, or closed: the staged change applies now.
        let r = self.res(i);
        let applies =
            if staged_what.is_empty() || matches!(r.phase, Phase::Offline | Phase::Closed { .. }) {
                Applies::Now
            } else {
                Applies::NextOnline
            };
        let what: Vec<String> = what.into_iter().map(str::to_owned).collect();
        self.emit(
            Event::of(EventKind::ResourceChanged, Some(self.name(i)))
                .with("what", what.join(","))
                .with(
                    "applies",
                    match applies {
                        Applies::Now => "now",
                        Applies::NextOnline => "next_online",
                    },
                ),
        );
        Some(ResourceChange {
            name: self.name(i).to_owned(),
            what,
            applies,
        })
    }

    /// A new interval takes effect now: the next check is due one new
    /// interval from now, if that is sooner.
    fn reschedule_checks(&mut self, i: ResourceId) {
        let timing = self.res(i).spec.timing;
        if let Phase::Online { looks, is, .. } = &self.res(i).phase {
            let mut phase = self.res(i).phase.clone();
            let (looks_due, is_due) = (
                looks.due.min(self.now + timing.looks_alive_interval),
                is.due.min(self.now + timing.is_alive_interval),
            );
            if let Phase::Online { looks, is, .. } = &mut phase {
                looks.due = looks_due;
                is.due = is_due;
            }
            self.set_phase(i, phase);
        }
    }

    fn rebuild_dependents(&mut self) {
        for r in &mut self.resources {
            r.dependents.clear();
        }
        for i in 0..self.resources.len() {
            if self.resources[i].retired {
                continue;
            }
            for d in self.resources[i].spec.depends_on.clone() {
                self.resources[d].dependents.push(ResourceId(i));
            }
        }
    }

    /// Moves a removed or changed resource along: closed once offline and
    /// idle, then retired or re-opened with its new configuration. `true`
    /// when it took the step (the caller does nothing more now).
    pub(crate) fn settle_change(&mut self, i: ResourceId) -> bool {
        let r = self.res(i);
        if !r.removing && r.staged.is_none() {
            return false;
        }
        match r.phase {
            // Nothing of it runs: `Then::Offline` is a close after offline,
            // or a first open that never happened.
            Phase::Closed { next, .. } if next.then == Then::Offline => {
                if r.removing {
                    self.retire(i);
                    return true;
                }
                self.apply_staged(i);
                false
            }
            Phase::Held {
                open: false, next, ..
            } if r.removing => {
                // Failed, closed: re-open only to stop what may still run.
                self.set_phase(
                    i,
                    Phase::Closed {
                        next,
                        shown: ResourceState::Failed,
                    },
                );
                if next.then == Then::Offline {
                    self.retire(i);
                    return true;
                }
                false
            }
            Phase::Offline | Phase::Held { open: true, .. } if r.is_idle() => {
                if r.phase == Phase::Offline || r.removing {
                    self.close(i);
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    fn close(&mut self, i: ResourceId) {
        let Some(m) = self.res(i).monitor else {
            return;
        };
        let shown = self.res(i).phase.state();
        if let Some(call) = self.send_call(m, Some(i), Op::Close, CallKind::Close) {
            self.set_phase(i, Phase::Closing { call, shown });
        }
    }

    fn apply_staged(&mut self, i: ResourceId) {
        let old_key = self.monitor_key(i);
        let staged = *self.res_mut(i).staged.take().expect("checked");
        let r = self.res_mut(i);
        // An isolation the host imposed stays (until a cleanup lifts it).
        let isolated_by_host = r.separate_monitor && !r.spec.separate_monitor;
        r.separate_monitor = staged.spec.separate_monitor || isolated_by_host;
        r.spec = staged.spec;
        r.spec.properties = Properties::new();
        r.validated = staged.validated;
        r.characteristics = staged.characteristics;
        r.monitor = None;
        self.set_phase(
            i,
            Phase::Closed {
                next: AfterOpen::FRESH,
                shown: ResourceState::Offline,
            },
        );
        if old_key != self.monitor_key(i) {
            self.retire_monitor(old_key);
        }
    }

    fn retire(&mut self, i: ResourceId) {
        let key = self.monitor_key(i);
        let r = self.res_mut(i);
        r.retired = true;
        r.removing = false;
        r.monitor = None;
        r.staged = None;
        let name = r.spec.name.clone();
        self.set_phase(
            i,
            Phase::Closed {
                next: AfterOpen::FRESH,
                shown: ResourceState::Offline,
            },
        );
        self.retire_monitor(key);
        // Nothing kept depends on it (the set was checked); its own
        // dependencies forget it.
        for d in self.res(i).spec.depends_on.clone() {
            self.resources[d].dependents.retain(|&x| x != i);
        }
        let event = self.stamped(Event::of(EventKind::ResourceRemoved, Some(&name)));
        self.actions.push_back(Action::Forget(i));
        self.actions.push_back(Action::Emit(event));
        self.persist();
    }

    /// A monitor of a resource's own that no resource uses any more exits.
    /// (Only its resource maps to a monitor of its own: once that resource
    /// is retired or placed elsewhere, nothing uses the monitor.)
    fn retire_monitor(&mut self, key: MonitorKey) {
        if !matches!(key, MonitorKey::Own(_)) {
            return;
        }
        if let Some(m) = self.current.remove(&key)
            && let Some(entry) = self.monitors.get_mut(&m)
        {
            entry.retiring = true;
            self.actions.push_back(Action::Send {
                monitor: m,
                message: ToMonitor::Shutdown,
            });
        }
    }
}
