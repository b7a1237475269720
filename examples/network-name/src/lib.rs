//! `network-name`, a clusterkit resource type that registers
//! `name → address` in DNS by RFC 2136 dynamic update, signed with TSIG
//! (RFC 8945), against one or more DNS servers.
//!
//! It is built so that the outage in the seeds cannot happen here: there, a
//! network name's DNS registration ran inside `IsAlive`, hung on the first
//! DNS server (its port was blocked by a firewall), never tried the second,
//! and took the whole resource host process, and every resource in it, down
//! with it. Here:
//!
//! - **No entry point waits on DNS beyond its budget.** Registration,
//!   refresh and removal run on a [`Worker`]; `online` and `offline` return
//!   [`Transition::Pending`] at once and the worker reports progress through
//!   the [`StatusReporter`]. `is_alive` asks the servers itself, but within
//!   [`IS_ALIVE_BUDGET`] in total; `looks_alive` never touches the network.
//! - **Every attempt has its own short timeout** (`attempt_timeout`, 500 ms
//!   by default), and a server that fails is logged at warn level (`DNS
//!   server 192.0.2.53:53 unreachable: no answer within 500 ms`) and the next
//!   one is tried.
//! - **A DNS problem never fails the resource.** A missing record makes
//!   `is_alive` ask the worker to register it again and answer
//!   [`Health::Degraded`]; servers that do not answer give `Degraded` too
//!   (or `Healthy`, while the worker's last confirmation is recent). Only
//!   the address leaving the node's interfaces is a [`Health::Failed`].
//!
//! | entry point | what it does |
//! |---|---|
//! | `open` | checks the properties beyond the schema (address, servers, TSIG algorithm and secret, name inside zone), naming each bad one |
//! | `online` | checks the address is on a local interface (with `check_interface`), returns pending; the worker sends one UPDATE deleting every A and AAAA record of the name and adding ours, server after server until one takes it, completes, then refreshes every `refresh_interval` and whenever `is_alive` asks |
//! | `offline` | stops the refresh, returns pending; the worker deletes our record (only ours) and completes |
//! | `terminate` | stops the worker at once and **leaves the record** (see the README) |
//! | `looks_alive` | the address is on a local interface (`getifaddrs`) |
//! | `is_alive` | the same, and the name resolves to the address on at least one server, within [`IS_ALIVE_BUDGET`] |
//! | `open` with `recover = true` | adopts the registration: no update; the refresh worker starts with the first health check and verifies the record before anything else |
//!
//! Built as a `cdylib` (`libclusterkit_network_name.so`); the `README.md`
//! next to this crate lists the properties and shows a BIND configuration.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clusterkit::{
    Characteristics, ControlCode, Error, Health, Properties, Reply, Resource, ResourceContext,
    ResourceType, Result, StartupContext, StatusReporter, StopFlag, Transition, TypeDescription,
    Worker,
};
use hickory_proto::op::Message;

mod config;
mod dns;
mod interfaces;

use config::Config;
use dns::{AttemptError, Lookup};

pub use config::SUPPORTED_TSIG_ALGORITHMS;
pub use interfaces::interface_of;

/// The type's name, as hosts and configs refer to it.
pub const TYPE_NAME: &str = "network-name";

/// The most `is_alive` spends asking DNS servers, all of them together.
/// Each server gets at most `attempt_timeout`, and at most an even share of
/// what is left of the budget, the server that answered last going first.
pub const IS_ALIVE_BUDGET: Duration = Duration::from_millis(300);

/// After a refresh that failed on every server, the next try comes this
/// soon (or after `refresh_interval`, if that is shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// How often a pending `online`/`offline` reports progress while a server
/// keeps it waiting.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// An `is_alive` attempt is not started with less budget than this left.
const MIN_CHECK_ATTEMPT: Duration = Duration::from_millis(5);

/// The `network-name` type.
#[derive(Debug)]
pub struct NetworkNameType;

/// One `network-name` resource.
#[derive(Debug)]
pub struct NetworkName {
    shared: Arc<Shared>,
    control: Mutex<Control>,
}

/// What the resource and its worker share.
#[derive(Debug)]
struct Shared {
    ctx: ResourceContext,
    cfg: Config,
    /// `web.example.test. A 192.0.2.7`, for messages.
    record: String,
    dns: Mutex<DnsState>,
    /// Wakes a refreshing worker: a refresh request, or a stop.
    wake: Condvar,
}

/// What is known about the registration.
#[derive(Debug, Default)]
struct DnsState {
    /// When a server last confirmed the record (took our update, or
    /// answered a query with our address).
    confirmed_at: Option<Instant>,
    /// The server that did (an index into `servers`): `is_alive` asks it first.
    preferred: Option<usize>,
    /// `is_alive` found the record missing or could not confirm it.
    refresh_requested: bool,
}

/// Whether the host has this resource online, and its worker.
#[derive(Debug)]
struct Control {
    /// Online (or adopted by `open` with `recover`): a refresh worker should run.
    online: bool,
    worker: Option<Worker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ResourceType for NetworkNameType {
    type Resource = NetworkName;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: TYPE_NAME.into(),
            description:
                "Registers name -> address in DNS by TSIG-signed dynamic update (RFC 2136)".into(),
            characteristics: Characteristics::REATTACH,
            schema: config::schema(),
        }
    }

    fn startup(ctx: &StartupContext) -> Result<NetworkNameType> {
        ctx.log.debug(format_args!("network-name type started"));
        Ok(NetworkNameType)
    }

    /// `VALIDATE_PROPERTIES`: the schema, then what `open` checks (the
    /// name inside the zone, the servers, the TSIG key), offline.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            ControlCode::VALIDATE_PROPERTIES => {
                let valid = config::schema().validate(&Properties::decode(input)?)?;
                Config::from_properties(&valid)?;
                Ok(Vec::new())
            }
            _ => Err(Error::unsupported(code)),
        }
    }

    fn open(
        &self,
        ctx: ResourceContext,
        properties: &Properties,
        recover: bool,
    ) -> Result<NetworkName> {
        let cfg = Config::from_properties(properties)?;
        let rtype = match cfg.address {
            IpAddr::V4(_) => "A",
            IpAddr::V6(_) => "AAAA",
        };
        let record = format!("{} {rtype} {}", cfg.name, cfg.address);
        if recover {
            ctx.log().info(format_args!(
                "re-opened to adopt {record}: no update now; the refresh starts with the \
                 first health check, verifying the record first"
            ));
        }
        Ok(NetworkName {
            shared: Arc::new(Shared {
                ctx,
                cfg,
                record,
                dns: Mutex::new(DnsState::default()),
                wake: Condvar::new(),
            }),
            control: Mutex::new(Control {
                online: recover,
                worker: None,
            }),
        })
    }
}

/// How a worker begins.
enum Start {
    /// Register at once, completing a pending `online`.
    Register(StatusReporter),
    /// Adopt: look the record up, register only if it is missing.
    Verify,
}

/// Why an update reached no server.
enum UpdateFailure {
    /// The worker was told to stop.
    Stopped,
    /// Every server failed; the text names each and why.
    Failed(String),
}

/// The progress reports of a pending operation.
struct Progress {
    status: StatusReporter,
    checkpoint: Cell<u32>,
    last: Cell<Instant>,
    terminated: Cell<bool>,
}

impl Progress {
    fn new(status: StatusReporter) -> Progress {
        Progress {
            status,
            checkpoint: Cell::new(0),
            last: Cell::new(Instant::now()),
            terminated: Cell::new(false),
        }
    }

    /// Reports the next checkpoint; `false` when the host answers Terminate.
    fn report(&self) -> bool {
        if self.terminated.get() {
            return false;
        }
        let checkpoint = self.checkpoint.get() + 1;
        self.checkpoint.set(checkpoint);
        self.last.set(Instant::now());
        let reply = self.status.report(checkpoint, REPORT_EVERY * 2);
        self.terminated.set(reply == Reply::Terminate);
        reply == Reply::Continue
    }

    /// Reports again if the last report is [`REPORT_EVERY`] old.
    fn tick(&self) -> bool {
        if self.last.get().elapsed() >= REPORT_EVERY {
            self.report()
        } else {
            !self.terminated.get()
        }
    }
}

impl Shared {
    fn log(&self) -> &clusterkit::Logger {
        self.ctx.log()
    }

    /// Whether a worker must stop: told to, or the host called `terminate`.
    fn stopping(&self, stop: &StopFlag) -> bool {
        stop.is_raised() || self.ctx.termination().is_raised()
    }

    fn confirm(&self, server: usize) {
        let mut dns = lock(&self.dns);
        dns.confirmed_at = Some(Instant::now());
        dns.preferred = Some(server);
    }

    fn request_refresh(&self) {
        lock(&self.dns).refresh_requested = true;
        self.wake.notify_all();
    }

    /// Sends the update `build` makes to each server in the configured
    /// order until one takes it; every failed server is logged at warn
    /// level. Returns the index of the server that took it.
    fn update_everywhere(
        &self,
        what: &str,
        build: impl Fn() -> Message,
        stop: &StopFlag,
        progress: Option<&Progress>,
    ) -> Result<usize, UpdateFailure> {
        let cfg = &self.cfg;
        let mut failures = Vec::with_capacity(cfg.servers.len());
        for (i, &server) in cfg.servers.iter().enumerate() {
            if self.stopping(stop) || progress.is_some_and(|p| !p.report()) {
                return Err(UpdateFailure::Stopped);
            }
            let mut keep_going = || !self.stopping(stop) && progress.is_none_or(|p| p.tick());
            match dns::update(
                server,
                build(),
                &cfg.key,
                cfg.attempt_timeout,
                &mut keep_going,
            ) {
                Ok(()) => return Ok(i),
                Err(AttemptError::Stopped) => return Err(UpdateFailure::Stopped),
                Err(e) => {
                    self.log_server_failure(server, &e, what, i + 1 < cfg.servers.len());
                    failures.push(format!("{server}: {e}"));
                }
            }
        }
        Err(UpdateFailure::Failed(format!(
            "the {what} failed on every DNS server: {}",
            failures.join("; ")
        )))
    }

    fn log_server_failure(&self, server: SocketAddr, e: &AttemptError, what: &str, more: bool) {
        let next = if more { "; trying the next server" } else { "" };
        if e.is_unreachable() {
            self.log()
                .warn(format_args!("DNS server {server} unreachable: {e}{next}"));
        } else {
            self.log().warn(format_args!(
                "DNS server {server} did not take the {what}: {e}{next}"
            ));
        }
    }

    /// Registers the record: one UPDATE replacing every A and AAAA record
    /// of the name with ours.
    fn register(&self, stop: &StopFlag, progress: Option<&Progress>) -> Result<(), UpdateFailure> {
        let cfg = &self.cfg;
        let what = format!("registration of {}", self.record);
        let build = || dns::registration(&cfg.zone, &cfg.name, cfg.address, cfg.ttl);
        let server = self.update_everywhere(&what, build, stop, progress)?;
        self.confirm(server);
        self.log().info(format_args!(
            "registered {} on {}",
            self.record, cfg.servers[server]
        ));
        Ok(())
    }

    /// Looks the record up on each server in order, for an adopted
    /// registration. `Ok(true)`: a server has it.
    fn verify(&self, stop: &StopFlag) -> Result<bool, UpdateFailure> {
        let cfg = &self.cfg;
        let mut keep_going = || !self.stopping(stop);
        for (i, &server) in cfg.servers.iter().enumerate() {
            match dns::lookup(
                server,
                &cfg.name,
                cfg.address,
                cfg.attempt_timeout,
                &mut keep_going,
            ) {
                Ok(Lookup::Present) => {
                    self.confirm(i);
                    self.log().info(format_args!(
                        "adopted {}: registered on {server}",
                        self.record
                    ));
                    return Ok(true);
                }
                Ok(Lookup::Absent(what)) => {
                    self.log().info(format_args!("{server}: {what}"));
                }
                Err(AttemptError::Stopped) => return Err(UpdateFailure::Stopped),
                Err(e) => {
                    let what = format!("lookup of {}", self.record);
                    self.log_server_failure(server, &e, &what, i + 1 < cfg.servers.len());
                }
            }
        }
        Ok(false)
    }

    /// The refresh loop, after the registration or adoption: waits for
    /// the next refresh (or a request from `is_alive`), registers again.
    fn refresh_loop(&self, mut next: Instant, stop: &StopFlag) {
        let cfg = &self.cfg;
        loop {
            {
                let mut dns = lock(&self.dns);
                loop {
                    if self.stopping(stop) {
                        return;
                    }
                    if std::mem::take(&mut dns.refresh_requested) {
                        break;
                    }
                    let now = Instant::now();
                    if now >= next {
                        break;
                    }
                    dns = self
                        .wake
                        .wait_timeout(dns, next - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            next = match self.register(stop, None) {
                Ok(()) => Instant::now() + cfg.refresh_interval,
                Err(UpdateFailure::Stopped) => return,
                Err(UpdateFailure::Failed(why)) => {
                    let retry = cfg.refresh_interval.min(RETRY_AFTER_FAILURE);
                    self.log().error(format_args!(
                        "refreshing: {why}; trying again in {} s",
                        retry.as_secs()
                    ));
                    Instant::now() + retry
                }
            };
        }
    }

    /// A registration or adoption worker.
    fn run(&self, start: Start, stop: &StopFlag) {
        let next = match start {
            Start::Register(status) => {
                let progress = Progress::new(status);
                match self.register(stop, Some(&progress)) {
                    Ok(()) => progress.status.complete(Ok(())),
                    Err(UpdateFailure::Stopped) => {
                        progress
                            .status
                            .complete(Err(Error::Terminated("online was stopped".into())));
                        return;
                    }
                    Err(UpdateFailure::Failed(why)) => {
                        self.log().error(format_args!("online: {why}"));
                        progress.status.complete(Err(Error::Failed(why)));
                        return;
                    }
                }
                Instant::now() + self.cfg.refresh_interval
            }
            Start::Verify => match self.verify(stop) {
                Ok(true) => Instant::now() + self.cfg.refresh_interval,
                Ok(false) => {
                    self.log().warn(format_args!(
                        "{} is not confirmed by any DNS server; registering it again",
                        self.record
                    ));
                    Instant::now()
                }
                Err(_) => return,
            },
        };
        self.refresh_loop(next, stop);
    }

    /// An `offline` worker: deletes our record.
    fn run_removal(&self, status: StatusReporter, stop: &StopFlag) {
        let cfg = &self.cfg;
        let progress = Progress::new(status);
        let what = format!("removal of {}", self.record);
        let build = || dns::removal(&cfg.zone, &cfg.name, cfg.address);
        match self.update_everywhere(&what, build, stop, Some(&progress)) {
            Ok(server) => {
                *lock(&self.dns) = DnsState::default();
                self.log().info(format_args!(
                    "removed {} on {}",
                    self.record, cfg.servers[server]
                ));
                progress.status.complete(Ok(()));
            }
            Err(UpdateFailure::Stopped) => {
                progress
                    .status
                    .complete(Err(Error::Terminated("offline was stopped".into())));
            }
            Err(UpdateFailure::Failed(why)) => {
                self.log().error(format_args!("offline: {why}"));
                progress.status.complete(Err(Error::Failed(why)));
            }
        }
    }
}

impl NetworkName {
    /// Starts a worker running `work` on the shared state.
    fn spawn(&self, work: impl FnOnce(&Shared, &StopFlag) + Send + 'static) -> Result<Worker> {
        let shared = self.shared.clone();
        Worker::spawn("network-name", move |stop| work(&shared, stop))
            .map_err(|e| Error::io("starting the DNS worker", &e))
    }

    /// Stops `worker` promptly: a waiting worker is woken, an attempt in
    /// flight gives up within [`dns::POLL_SLICE`].
    fn stop_worker(&self, worker: Worker) {
        worker.request_stop();
        {
            let _dns = lock(&self.shared.dns);
            self.shared.wake.notify_all();
        }
        if worker.stop_and_join() {
            self.shared
                .log()
                .error(format_args!("the DNS worker had panicked"));
        }
    }

    /// Marks the resource offline and stops its worker, if any. Returns
    /// whether it was online (or adopted).
    fn halt(&self) -> bool {
        let (was_online, worker) = {
            let mut control = lock(&self.control);
            (
                std::mem::replace(&mut control.online, false),
                control.worker.take(),
            )
        };
        if let Some(worker) = worker {
            self.stop_worker(worker);
        }
        was_online
    }

    /// Health checks call this: an online (or adopted) resource whose
    /// worker is missing or ended (it panicked) gets a new one, which
    /// verifies the record before anything else.
    fn ensure_worker(&self) {
        let mut control = lock(&self.control);
        if !control.online || control.worker.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        if let Some(ended) = control.worker.take() {
            // Finished: joins at once.
            if ended.stop_and_join() {
                self.shared.log().error(format_args!(
                    "the DNS worker had panicked; starting another"
                ));
            }
        }
        match self.spawn(|shared, stop| shared.run(Start::Verify, stop)) {
            Ok(worker) => control.worker = Some(worker),
            Err(e) => self.shared.log().error(format_args!("{e}")),
        }
    }

    /// `Some(Failed)` when `check_interface` is on and the address is not
    /// on a local interface.
    fn interface_health(&self) -> Option<Health> {
        let cfg = &self.shared.cfg;
        if !cfg.check_interface {
            return None;
        }
        match interface_of(cfg.address) {
            Ok(Some(_)) => None,
            Ok(None) => Some(Health::failed(format!(
                "address {} is not on any local interface",
                cfg.address
            ))),
            Err(e) => Some(Health::failed(format!("listing local interfaces: {e}"))),
        }
    }

    /// The servers in the order `is_alive` asks them: the one that last
    /// confirmed the record first, then the others as configured.
    fn check_order(&self) -> Vec<usize> {
        let n = self.shared.cfg.servers.len();
        let preferred = lock(&self.shared.dns).preferred.filter(|&p| p < n);
        preferred
            .into_iter()
            .chain((0..n).filter(|&i| Some(i) != preferred))
            .collect()
    }
}

impl Resource for NetworkName {
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        let cfg = &self.shared.cfg;
        if cfg.check_interface {
            match interface_of(cfg.address) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(Error::NotFound(format!(
                        "address {} is not on any local interface: bring it up first (the IP \
                         address resource this one depends on), or set check_interface = false",
                        cfg.address
                    )));
                }
                Err(e) => return Err(Error::io("listing local interfaces", &e)),
            }
        }
        self.halt();
        // Spawned under the lock: a `terminate` arriving now waits for it,
        // then stops this worker.
        let mut control = lock(&self.control);
        control.worker =
            Some(self.spawn(move |shared, stop| shared.run(Start::Register(status), stop))?);
        control.online = true;
        Ok(Transition::Pending)
    }

    fn offline(&self, status: StatusReporter) -> Result<Transition> {
        self.halt();
        let mut control = lock(&self.control);
        control.worker = Some(self.spawn(move |shared, stop| shared.run_removal(status, stop))?);
        Ok(Transition::Pending)
    }

    fn terminate(&self) -> Result<()> {
        // The record stays: removing it would mean waiting on DNS servers,
        // and terminate must return promptly (a slow server is what the
        // seeds' outage was about). The next owner's registration replaces
        // every A and AAAA record of the name anyway.
        if self.halt() {
            self.shared.log().info(format_args!(
                "terminated: DNS work stopped; {} is left registered",
                self.shared.record
            ));
        }
        Ok(())
    }

    fn looks_alive(&self) -> Health {
        if let Some(failed) = self.interface_health() {
            return failed;
        }
        self.ensure_worker();
        Health::Healthy
    }

    fn is_alive(&self) -> Health {
        if let Some(failed) = self.interface_health() {
            return failed;
        }
        self.ensure_worker();
        let shared = &self.shared;
        let cfg = &shared.cfg;
        let started = Instant::now();
        let order = self.check_order();
        let mut missing: Option<(SocketAddr, String)> = None;
        let mut errors = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            let server = cfg.servers[i];
            let left = IS_ALIVE_BUDGET.saturating_sub(started.elapsed());
            if left < MIN_CHECK_ATTEMPT {
                errors.push(format!("{server}: not asked, the check's budget was spent"));
                continue;
            }
            let share = left / u32::try_from(order.len() - k).unwrap_or(u32::MAX);
            let timeout = cfg.attempt_timeout.min(share);
            match dns::lookup(server, &cfg.name, cfg.address, timeout, &mut || true) {
                Ok(Lookup::Present) => {
                    shared.confirm(i);
                    return Health::Healthy;
                }
                Ok(Lookup::Absent(what)) => {
                    missing.get_or_insert((server, what));
                }
                Err(e) => {
                    shared
                        .log()
                        .debug(format_args!("is_alive: DNS server {server}: {e}"));
                    errors.push(format!("{server}: {e}"));
                }
            }
        }
        if let Some((server, what)) = missing {
            shared.request_refresh();
            shared.log().warn(format_args!(
                "{} is missing ({server}: {what}); registering it again",
                shared.record
            ));
            return Health::degraded(format!("record missing; re-registering ({server}: {what})"));
        }
        let confirmed = lock(&shared.dns).confirmed_at;
        match confirmed {
            Some(at) if at.elapsed() <= cfg.refresh_interval => {
                shared.log().debug(format_args!(
                    "is_alive: no DNS server answered within {} ms; the record was confirmed \
                     {} s ago",
                    IS_ALIVE_BUDGET.as_millis(),
                    at.elapsed().as_secs()
                ));
                Health::Healthy
            }
            _ => {
                // The worker has the time to try every server in full.
                shared.request_refresh();
                Health::degraded(format!(
                    "no DNS server answered within {} ms ({}); the registration is unconfirmed",
                    IS_ALIVE_BUDGET.as_millis(),
                    errors.join("; ")
                ))
            }
        }
    }

    fn close(self) -> Result<()> {
        self.halt();
        Ok(())
    }
}

impl Drop for NetworkName {
    /// A resource dropped without `close` (a monitor drops one still held by
    /// a `terminate` later) stops its worker too: a refreshing worker waits
    /// on the resource's own condition variable, which dropping a
    /// [`Worker`] alone would not wake.
    fn drop(&mut self) {
        self.halt();
    }
}

clusterkit::export_resource_types!(NetworkNameType);
