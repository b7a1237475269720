//! `ocf`, a clusterkit resource type that runs an installed OCF resource
//! agent (`ocf:heartbeat:Dummy`, `IPaddr2`, `anything`, ...) as a clusterkit
//! resource, under the host's deadlines, isolation and restart policy.
//!
//! Each entry point runs one agent action with the environment Pacemaker
//! gives agents (`OCF_ROOT`, `OCF_RESOURCE_INSTANCE`, `OCF_RESKEY_*`,
//! `OCF_RESKEY_CRM_meta_timeout`, `HA_RSCTMP`, ...), in a process group of
//! its own, under a deadline of this type's own that kills the group:
//!
//! | entry point | action |
//! |---|---|
//! | `online` | `start`, on a worker (pending) |
//! | `offline` | `stop`, on a worker (pending) |
//! | `looks_alive` | `monitor` with `OCF_CHECK_LEVEL=0` |
//! | `is_alive` | `monitor` with `OCF_CHECK_LEVEL=10` |
//! | `terminate` | kills the action in flight, then `stop` |
//!
//! The agent's parameters travel in the multi-string property
//! `parameters` (`name=value`); `open` and the type-level
//! `VALIDATE_PROPERTIES` check them against the agent's `meta-data`.
//! Exit codes map as in [`health_of`] and [`error_of`]; an agent's
//! `ocf-exit-reason:` line becomes the reason. Built as a `cdylib`
//! (`libclusterkit_ocf.so`).

mod agent;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterkit::{
    Characteristics, ControlCode, Error, Health, Properties, PropertySpec, Reply, Resource,
    ResourceContext, ResourceType, Result, Schema, StartupContext, StatusReporter, Transition,
    TypeDescription, Worker,
};

pub use agent::{
    AgentPath, MetaData, Parameter, ParameterType, locate, parse_interval, parse_meta_data,
};
use run::{Action, Outcome, Running, TICK};

/// The timeout used for an action whose meta-data advises none.
pub const FALLBACK_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `meta-data` may take.
const META_DATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The most `terminate` waits for the agent's `stop` (its budget is 1 s).
const TERMINATE_STOP_TIMEOUT: Duration = Duration::from_millis(800);

/// Pacemaker's feature set the agents are told (`crm_feature_set`).
const CRM_FEATURE_SET: &str = "3.16.2";

/// OCF exit codes (OCF resource agent API 1.1).
pub mod exit {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Generic error.
    pub const ERR_GENERIC: i32 = 1;
    /// Invalid or missing arguments (configuration).
    pub const ERR_ARGS: i32 = 2;
    /// The action is not implemented.
    pub const ERR_UNIMPLEMENTED: i32 = 3;
    /// Insufficient privileges.
    pub const ERR_PERM: i32 = 4;
    /// A required component is not installed.
    pub const ERR_INSTALLED: i32 = 5;
    /// The configuration is invalid on this node.
    pub const ERR_CONFIGURED: i32 = 6;
    /// The resource is cleanly stopped.
    pub const NOT_RUNNING: i32 = 7;
    /// Running in the promoted role.
    pub const RUNNING_PROMOTED: i32 = 8;
    /// Failed in the promoted role.
    pub const FAILED_PROMOTED: i32 = 9;
    /// Running, but degraded.
    pub const DEGRADED: i32 = 190;
    /// Running promoted, but degraded.
    pub const DEGRADED_PROMOTED: i32 = 191;
}

/// What an exit code means, in words, for reasons and errors.
pub fn exit_code_name(code: i32) -> &'static str {
    match code {
        exit::SUCCESS => "success",
        exit::ERR_GENERIC => "generic error",
        exit::ERR_ARGS => "invalid arguments",
        exit::ERR_UNIMPLEMENTED => "not implemented",
        exit::ERR_PERM => "insufficient privileges",
        exit::ERR_INSTALLED => "not installed",
        exit::ERR_CONFIGURED => "not configured",
        exit::NOT_RUNNING => "not running",
        exit::RUNNING_PROMOTED => "running promoted",
        exit::FAILED_PROMOTED => "failed promoted",
        exit::DEGRADED => "degraded",
        exit::DEGRADED_PROMOTED => "degraded promoted",
        _ => "unknown exit code",
    }
}

fn describe_exit(code: i32, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{reason} ({}, exit {code})", exit_code_name(code)),
        None => format!("{} (exit {code})", exit_code_name(code)),
    }
}

/// The health a `monitor` exit code means: 0 and 8 are healthy (8:
/// running promoted, still serving), 190 and 191 degraded (reported, not
/// recovered), everything else failed with the code and the agent's reason.
///
/// ```
/// use clusterkit::Health;
/// use clusterkit_ocf::{exit, health_of};
/// assert_eq!(health_of(exit::SUCCESS, None), Health::Healthy);
/// assert!(matches!(health_of(exit::DEGRADED, Some("slow")), Health::Degraded(r) if r.contains("slow")));
/// assert_eq!(health_of(exit::NOT_RUNNING, None), Health::failed("not running (exit 7)"));
/// ```
pub fn health_of(code: i32, reason: Option<&str>) -> Health {
    match code {
        exit::SUCCESS | exit::RUNNING_PROMOTED => Health::Healthy,
        exit::DEGRADED | exit::DEGRADED_PROMOTED => Health::degraded(describe_exit(code, reason)),
        _ => Health::failed(describe_exit(code, reason)),
    }
}

/// The error a failed `start`/`stop` exit code becomes: configuration
/// codes (2, 6) are `InvalidInput`, 5 `NotFound`, 3 `Unsupported`, the rest
/// `Failed`; the message names the agent, the action, the code and reason.
///
/// ```
/// use clusterkit::ErrorCode;
/// use clusterkit_ocf::{error_of, exit};
/// let e = error_of("heartbeat/IPaddr2", "start", exit::ERR_CONFIGURED, Some("bad ip"));
/// assert_eq!(e.code(), ErrorCode::InvalidInput);
/// assert!(e.to_string().contains("heartbeat/IPaddr2 start: bad ip (not configured, exit 6)"));
/// ```
pub fn error_of(agent: &str, action: &str, code: i32, reason: Option<&str>) -> Error {
    let message = format!("{agent} {action}: {}", describe_exit(code, reason));
    match code {
        exit::ERR_ARGS | exit::ERR_CONFIGURED => Error::InvalidInput(message),
        exit::ERR_INSTALLED => Error::NotFound(message),
        exit::ERR_UNIMPLEMENTED => Error::Unsupported(message),
        _ => Error::Failed(message),
    }
}

/// The `ocf` type. It caches each agent's meta-data per monitor process.
#[derive(Debug, Default)]
pub struct OcfType {
    meta_data: Mutex<HashMap<PathBuf, Arc<MetaData>>>,
}

/// One resource run by an OCF agent.
#[derive(Debug)]
pub struct OcfResource {
    ctx: ResourceContext,
    agent: Arc<Agent>,
    running: Running,
    worker: Mutex<Option<Worker>>,
}

/// What every action of one resource needs.
#[derive(Debug)]
struct Agent {
    label: String,
    path: PathBuf,
    env: Vec<(String, String)>,
    start_timeout: Duration,
    stop_timeout: Duration,
    monitor_timeout: Duration,
}

fn schema() -> Schema {
    Schema::new(vec![
        PropertySpec::string("agent")
            .describe("The agent: PROVIDER/TYPE (heartbeat/IPaddr2), ocf:PROVIDER:TYPE, or an absolute path")
            .required()
            .min(1),
        PropertySpec::string("ocf_root")
            .describe("OCF_ROOT, where resource.d/PROVIDER/TYPE and lib/heartbeat live")
            .default("/usr/lib/ocf")
            .min(1),
        PropertySpec::multi_string("parameters")
            .describe("The agent's parameters, NAME=VALUE each, checked against its meta-data")
            .default(Vec::<String>::new()),
        PropertySpec::string("rsc_tmp")
            .describe("HA_RSCTMP, the agents' state directory (created if missing)")
            .default("/run/resource-agents")
            .min(1),
        PropertySpec::duration("start_timeout")
            .describe("Deadline of `start` (0: what the meta-data advises, else 20 s)")
            .default(Duration::ZERO)
            .max(3_600_000),
        PropertySpec::duration("stop_timeout")
            .describe("Deadline of `stop` (0: what the meta-data advises, else 20 s)")
            .default(Duration::ZERO)
            .max(3_600_000),
        PropertySpec::duration("monitor_timeout")
            .describe("Deadline of `monitor` (0: what the meta-data advises, else 20 s); keep it below the host's deadlock_timeout")
            .default(Duration::ZERO)
            .max(3_600_000),
    ])
}

impl OcfType {
    /// The meta-data of the agent at `path`, run once per monitor process.
    fn meta_data(&self, located: &AgentPath, label: &str, ocf_root: &str) -> Result<Arc<MetaData>> {
        let mut cache = self.meta_data.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(md) = cache.get(&located.path) {
            return Ok(md.clone());
        }
        let action = Action {
            agent: &located.path,
            action: "meta-data",
            env: base_env(ocf_root, located, "meta-data", None),
            timeout: META_DATA_TIMEOUT,
        };
        let outcome = action
            .run(&Running::default())
            .map_err(|e| Error::io(format_args!("running {label} meta-data"), &e))?;
        let md = match outcome {
            Outcome::Exited {
                code: exit::SUCCESS,
                stdout,
                ..
            } => parse_meta_data(label, &stdout)?,
            Outcome::Exited { code, reason, .. } => {
                return Err(Error::InvalidInput(format!(
                    "agent {label}: meta-data failed: {}",
                    describe_exit(code, reason.as_deref())
                )));
            }
            Outcome::TimedOut(after) => {
                return Err(Error::Timeout(format!(
                    "agent {label}: meta-data did not finish within {after:?}"
                )));
            }
            Outcome::Killed(why) => {
                return Err(Error::Failed(format!("agent {label}: meta-data: {why}")));
            }
        };
        let md = Arc::new(md);
        cache.insert(located.path.clone(), md.clone());
        Ok(md)
    }

    /// Everything `open` checks, without opening: the agent, its meta-data,
    /// the parameters against it. Returns the agent, ready to run.
    fn prepare(&self, name: &str, properties: &Properties) -> Result<Agent> {
        let label = properties.str("agent")?;
        let ocf_root = properties.str("ocf_root")?;
        let located = locate(label, Path::new(ocf_root))?;
        let md = self.meta_data(&located, label, ocf_root)?;
        let parameters = md.check(label, properties.strings("parameters")?)?;
        let timeout = |property: &str, action: &str| -> Result<Duration> {
            let given = properties.duration(property)?;
            Ok(if given.is_zero() {
                md.timeouts.get(action).copied().unwrap_or(FALLBACK_TIMEOUT)
            } else {
                given
            })
        };
        let rsc_tmp = properties.str("rsc_tmp")?;
        let mut env = base_env(ocf_root, &located, name, Some(rsc_tmp));
        env.extend(
            parameters
                .into_iter()
                .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v)),
        );
        Ok(Agent {
            label: label.to_owned(),
            path: located.path,
            env,
            start_timeout: timeout("start_timeout", "start")?,
            stop_timeout: timeout("stop_timeout", "stop")?,
            monitor_timeout: timeout("monitor_timeout", "monitor")?,
        })
    }
}

/// The environment Pacemaker's executor gives every action.
fn base_env(
    ocf_root: &str,
    agent: &AgentPath,
    instance: &str,
    rsc_tmp: Option<&str>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("LC_ALL", "C"),
        ("OCF_ROOT", ocf_root),
        ("OCF_RA_VERSION_MAJOR", "1"),
        ("OCF_RA_VERSION_MINOR", "1"),
        ("OCF_RESOURCE_INSTANCE", instance),
        ("OCF_RESOURCE_TYPE", &agent.kind),
        ("OCF_RESOURCE_PROVIDER", &agent.provider),
        ("OCF_EXIT_REASON_PREFIX", run::EXIT_REASON_PREFIX),
        ("OCF_RESKEY_crm_feature_set", CRM_FEATURE_SET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(dir) = rsc_tmp {
        env.push(("HA_RSCTMP".into(), dir.into()));
    }
    env
}

impl Agent {
    /// The action's environment: the resource's, plus this call's
    /// `CRM_meta_*` and, for `monitor`, the check level.
    fn action<'a>(&'a self, action: &'a str, timeout: Duration, level: Option<u32>) -> Action<'a> {
        let mut env = self.env.clone();
        env.push((
            "OCF_RESKEY_CRM_meta_timeout".into(),
            timeout.as_millis().to_string(),
        ));
        if let Some(level) = level {
            env.push(("OCF_CHECK_LEVEL".into(), level.to_string()));
            env.push(("OCF_RESKEY_CRM_meta_interval".into(), "1000".into()));
        } else {
            env.push(("OCF_RESKEY_CRM_meta_interval".into(), "0".into()));
        }
        Action {
            agent: &self.path,
            action,
            env,
            timeout,
        }
    }

    /// Runs `start` or `stop`: `Ok` on exit 0, the mapped error otherwise.
    fn transition(
        &self,
        action: &str,
        timeout: Duration,
        running: &Running,
        tick: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        match self
            .action(action, timeout, None)
            .run_ticking(running, tick)
        {
            Ok(Outcome::Exited {
                code: exit::SUCCESS,
                ..
            }) => Ok(()),
            Ok(Outcome::Exited { code, reason, .. }) => {
                Err(error_of(&self.label, action, code, reason.as_deref()))
            }
            Ok(Outcome::TimedOut(after)) => Err(Error::Timeout(format!(
                "{} {action} did not finish within {after:?}; its process group was killed",
                self.label
            ))),
            Ok(Outcome::Killed(why)) => {
                Err(Error::Terminated(format!("{} {action}: {why}", self.label)))
            }
            Err(e) => Err(Error::io(
                format_args!("running {} {action}", self.label),
                &e,
            )),
        }
    }

    fn monitor(&self, level: u32, running: &Running) -> Health {
        match self
            .action("monitor", self.monitor_timeout, Some(level))
            .run(running)
        {
            Ok(Outcome::Exited { code, reason, .. }) => health_of(code, reason.as_deref()),
            Ok(Outcome::TimedOut(after)) => Health::failed(format!(
                "{} monitor did not finish within {after:?}; its process group was killed",
                self.label
            )),
            Ok(Outcome::Killed(why)) => Health::failed(format!("{} monitor: {why}", self.label)),
            Err(e) => Health::failed(format!("running {} monitor: {e}", self.label)),
        }
    }
}

impl ResourceType for OcfType {
    type Resource = OcfResource;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: "ocf".into(),
            description: "An installed OCF resource agent, run by clusterkit".into(),
            // The agent's workload lives outside the monitor (a daemon, an
            // address, a state file): a new monitor finds it with `monitor`.
            characteristics: Characteristics::REATTACH,
            schema: schema(),
        }
    }

    fn startup(_ctx: &StartupContext) -> Result<OcfType> {
        Ok(OcfType::default())
    }

    /// `VALIDATE_PROPERTIES`: the schema, then the agent and its
    /// parameters against its meta-data.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            ControlCode::VALIDATE_PROPERTIES => {
                let valid = schema().validate(&Properties::decode(input)?)?;
                self.prepare("validate", &valid)?;
                Ok(Vec::new())
            }
            _ => Err(Error::unsupported(code)),
        }
    }

    fn open(
        &self,
        ctx: ResourceContext,
        properties: &Properties,
        _recover: bool,
    ) -> Result<OcfResource> {
        let agent = self.prepare(ctx.name(), properties)?;
        let rsc_tmp = properties.str("rsc_tmp")?;
        std::fs::create_dir_all(rsc_tmp)
            .map_err(|e| Error::io(format_args!("property `rsc_tmp`: creating {rsc_tmp}"), &e))?;
        Ok(OcfResource {
            ctx,
            agent: Arc::new(agent),
            running: Running::default(),
            worker: Mutex::new(None),
        })
    }
}

impl OcfResource {
    fn stop_worker(&self) {
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            worker.request_stop();
            self.running.kill();
            worker.stop_and_join();
        }
    }

    /// Runs `start` or `stop` on a worker, reporting while it runs; a
    /// `Terminate` reply or `terminate` kills the agent's group.
    fn pending(&self, action: &'static str, status: StatusReporter) -> Result<Transition> {
        self.stop_worker();
        let agent = self.agent.clone();
        let running = self.running.clone();
        let timeout = match action {
            "start" => agent.start_timeout,
            _ => agent.stop_timeout,
        };
        let log = self.ctx.log().clone();
        let worker = Worker::spawn(action, move |stop| {
            let mut checkpoint = 0;
            let mut tick = || {
                checkpoint += 1;
                !stop.is_raised() && status.report(checkpoint, TICK * 4) == Reply::Continue
            };
            let outcome = agent.transition(action, timeout, &running, &mut tick);
            if let Err(e) = &outcome {
                log.warn(format_args!("{e}"));
            }
            status.complete(outcome);
        })
        .map_err(|e| Error::io(format_args!("starting the {action} worker"), &e))?;
        *self.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(worker);
        Ok(Transition::Pending)
    }
}

impl Resource for OcfResource {
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        self.pending("start", status)
    }

    fn offline(&self, status: StatusReporter) -> Result<Transition> {
        self.pending("stop", status)
    }

    /// Kills whatever action is running, then runs `stop` with what is
    /// left of the 1 s budget.
    fn terminate(&self) -> Result<()> {
        self.running.kill();
        self.stop_worker();
        let timeout = self.agent.stop_timeout.min(TERMINATE_STOP_TIMEOUT);
        self.agent
            .transition("stop", timeout, &self.running, &mut || true)
    }

    fn looks_alive(&self) -> Health {
        self.agent.monitor(0, &self.running)
    }

    fn is_alive(&self) -> Health {
        self.agent.monitor(10, &self.running)
    }

    fn close(self) -> Result<()> {
        self.stop_worker();
        Ok(())
    }
}

clusterkit::export_resource_types!(OcfType);

#[cfg(test)]
mod tests {
    use super::*;
    use clusterkit::ErrorCode;

    #[test]
    fn every_ocf_exit_code_maps_as_the_standard_defines_it() {
        let healthy = [exit::SUCCESS, exit::RUNNING_PROMOTED];
        let degraded = [exit::DEGRADED, exit::DEGRADED_PROMOTED];
        for code in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 190, 191, 42] {
            let health = health_of(code, Some("why"));
            match health {
                Health::Healthy => assert!(healthy.contains(&code), "{code}"),
                Health::Degraded(reason) => {
                    assert!(degraded.contains(&code), "{code}");
                    assert!(reason.starts_with("why ("), "{reason}");
                }
                Health::Failed(reason) => {
                    assert!(!healthy.contains(&code) && !degraded.contains(&code));
                    assert!(reason.contains(&format!("exit {code})")), "{reason}");
                }
            }
        }
        let codes = [
            (exit::ERR_GENERIC, ErrorCode::Failed),
            (exit::ERR_ARGS, ErrorCode::InvalidInput),
            (exit::ERR_UNIMPLEMENTED, ErrorCode::Unsupported),
            (exit::ERR_PERM, ErrorCode::Failed),
            (exit::ERR_INSTALLED, ErrorCode::NotFound),
            (exit::ERR_CONFIGURED, ErrorCode::InvalidInput),
            (exit::NOT_RUNNING, ErrorCode::Failed),
            (exit::FAILED_PROMOTED, ErrorCode::Failed),
        ];
        for (code, expected) in codes {
            let e = error_of("heartbeat/X", "start", code, None);
            assert_eq!(e.code(), expected, "{code}");
            assert!(
                e.to_string().contains(&format!(
                    "heartbeat/X start: {} (exit {code})",
                    exit_code_name(code)
                )),
                "{e}"
            );
        }
        assert_eq!(exit_code_name(42), "unknown exit code");
    }
}
