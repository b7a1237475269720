//! `dummy`, the reference clusterkit resource type, like OCF's `Dummy`
//! agent: online creates `<state_dir>/<name>.state`, offline removes it, and
//! the health checks look at it.
//!
//! With `online_delay` above zero, `online` returns pending and a [`Worker`]
//! finishes it, reporting progress every 100 ms: the smallest example of a
//! pending operation. Built as a `cdylib` (`libclusterkit_dummy.so`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clusterkit::{
    Apply, Characteristics, ControlCode, Error, Health, Properties, PropertyError, PropertySpec,
    Reply, Resource, ResourceContext, ResourceType, Result, Schema, StartupContext, StatusReporter,
    Transition, TypeDescription, Worker,
};

/// How often a pending online reports progress.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// The `dummy` type.
#[derive(Debug)]
pub struct DummyType;

/// One `dummy` resource.
#[derive(Debug)]
pub struct Dummy {
    ctx: ResourceContext,
    state_file: PathBuf,
    /// Live: `SET_PROPERTIES` changes it for the next online.
    online_delay: Mutex<Duration>,
    worker: Mutex<Option<Worker>>,
}

impl ResourceType for DummyType {
    type Resource = Dummy;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: "dummy".into(),
            description: "Online while <state_dir>/<name>.state exists".into(),
            characteristics: Characteristics::REATTACH,
            schema: Schema::new(vec![
                PropertySpec::string("state_dir")
                    .describe("Directory of the state file")
                    .required()
                    .min(1),
                PropertySpec::duration("online_delay")
                    .describe("Finish online on a worker after this long (0: at once)")
                    .default(Duration::ZERO)
                    .max(60_000)
                    // Read at the next online only: a running resource
                    // takes the new value without a restart.
                    .apply(Apply::Live),
            ]),
        }
    }

    fn startup(ctx: &StartupContext) -> Result<DummyType> {
        ctx.log.debug(format_args!("dummy type started"));
        Ok(DummyType)
    }

    /// `VALIDATE_PROPERTIES`: the schema, then what `open` checks
    /// (`state_dir` is a directory), without opening anything.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            ControlCode::VALIDATE_PROPERTIES => {
                let valid = Self::describe()
                    .schema
                    .validate(&Properties::decode(input)?)?;
                let dir = Path::new(valid.str("state_dir")?);
                if !dir.is_dir() {
                    return Err(PropertyError::invalid(
                        "state_dir",
                        format!("{} is not a directory", dir.display()),
                    )
                    .into());
                }
                Ok(Vec::new())
            }
            _ => Err(Error::unsupported(code)),
        }
    }

    fn open(&self, ctx: ResourceContext, properties: &Properties, recover: bool) -> Result<Dummy> {
        let state_dir = state_dir(properties)?;
        let state_file = state_dir.join(format!("{}.state", ctx.name()));
        if recover && state_file.exists() {
            // Debug: a one-shot host (an OCF agent) re-attaches at every action.
            ctx.log()
                .debug(format_args!("re-attached to {}", state_file.display()));
        }
        Ok(Dummy {
            online_delay: Mutex::new(properties.duration("online_delay")?),
            state_file,
            worker: Mutex::new(None),
            ctx,
        })
    }
}

/// `state_dir`, which must be an existing directory: `NotFound` otherwise,
/// since a directory that vanished means the workload is gone.
fn state_dir(properties: &Properties) -> Result<PathBuf> {
    let state_dir = PathBuf::from(properties.str("state_dir")?);
    if !state_dir.is_dir() {
        return Err(Error::NotFound(format!(
            "property `state_dir`: {} is not a directory",
            state_dir.display()
        )));
    }
    Ok(state_dir)
}

impl Dummy {
    fn create_state_file(&self) -> Result<()> {
        fs::write(&self.state_file, self.ctx.name())
            .map_err(|e| Error::io(format_args!("creating {}", self.state_file.display()), &e))
    }

    fn remove_state_file(&self) -> Result<()> {
        match fs::remove_file(&self.state_file) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(
                format_args!("removing {}", self.state_file.display()),
                &e,
            )),
            _ => Ok(()),
        }
    }

    fn stop_worker(&self) {
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            worker.stop_and_join();
        }
    }
}

impl Resource for Dummy {
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        let delay = *self.online_delay.lock().unwrap_or_else(|e| e.into_inner());
        if delay.is_zero() {
            self.create_state_file()?;
            return Ok(Transition::Done);
        }
        self.stop_worker();
        let state_file = self.state_file.clone();
        let name = self.ctx.name().to_owned();
        let termination = self.ctx.termination().clone();
        let worker = Worker::spawn("dummy-online", move |stop| {
            let started = Instant::now();
            let mut checkpoint = 0;
            while let Some(remaining) = delay.checked_sub(started.elapsed()) {
                checkpoint += 1;
                if status.report(checkpoint, REPORT_EVERY * 2) == Reply::Terminate
                    || stop.wait_timeout(remaining.min(REPORT_EVERY))
                    || termination.is_raised()
                {
                    status.complete(Err(Error::Terminated("online was stopped".into())));
                    return;
                }
            }
            let outcome = fs::write(&state_file, &name)
                .map_err(|e| Error::io(format_args!("creating {}", state_file.display()), &e));
            status.complete(outcome);
        })
        .map_err(|e| Error::io("starting the online worker", &e))?;
        *self.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(worker);
        Ok(Transition::Pending)
    }

    fn offline(&self, _status: StatusReporter) -> Result<Transition> {
        self.stop_worker();
        self.remove_state_file()?;
        Ok(Transition::Done)
    }

    fn terminate(&self) -> Result<()> {
        // The termination flag is already raised: a pending worker sees it.
        self.stop_worker();
        self.remove_state_file()
    }

    fn looks_alive(&self) -> Health {
        if self.state_file.exists() {
            Health::Healthy
        } else {
            Health::failed(format!("{} does not exist", self.state_file.display()))
        }
    }

    fn is_alive(&self) -> Health {
        match fs::read_to_string(&self.state_file) {
            Ok(owner) if owner == self.ctx.name() => Health::Healthy,
            Ok(owner) => Health::failed(format!(
                "{} names {owner:?}, not {:?}",
                self.state_file.display(),
                self.ctx.name()
            )),
            Err(e) => Health::failed(format!("reading {}: {e}", self.state_file.display())),
        }
    }

    /// `SET_PROPERTIES`: a new `online_delay` applies from the next online;
    /// changing `state_dir` needs a restart (output 1), as the schema says.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        if code != ControlCode::SET_PROPERTIES {
            return Err(Error::unsupported(code));
        }
        let changes = Properties::decode(input)?;
        let mut restart = 0u8;
        for (name, value) in changes.iter() {
            match name {
                "online_delay" => {
                    let spec = DummyType::describe().schema;
                    let spec = spec.spec("online_delay").cloned();
                    if let Some(Err(problem)) = spec.map(|s| s.check(value)) {
                        return Err(PropertyError::new("online_delay", problem).into());
                    }
                    *self.online_delay.lock().unwrap_or_else(|e| e.into_inner()) =
                        changes.duration("online_delay")?;
                }
                "state_dir" => {
                    if self.state_file.parent().and_then(Path::to_str) != changes.str(name).ok() {
                        restart = 1;
                    }
                }
                _ => {
                    return Err(PropertyError::new(name, clusterkit::Problem::Unknown).into());
                }
            }
        }
        Ok(vec![restart])
    }

    fn close(self) -> Result<()> {
        self.stop_worker();
        Ok(())
    }
}

clusterkit::export_resource_types!(DummyType);
