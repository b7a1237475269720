//! One `disk` resource: its reservation's life (claimed on a worker, held
//! and renewed, released) and its health checks.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use clusterkit::{
    ControlCode, Error, Health, Level, Properties, Resource, ResourceContext, Result,
    StatusReporter, StopFlag, Transition, Worker,
};

use crate::device::{self, AlignedBlock, Device};
use crate::lane::{Lane, LaneError};
use crate::layout::{self, LayoutError, PROBE_BLOCK, RECORD_BLOCK, Record};
use crate::lease::{Claim, Renewer};
use crate::{
    Config, FORMAT, RESERVATION, busy_error, decode_input, force_spec, format_disk, layout_error,
    read_error, write_error,
};

/// An open, locked device. Dropping it releases the lock at once, even while
/// a late I/O thread still holds the device (and so keeps it open).
#[derive(Debug)]
struct Locked {
    device: Arc<Device>,
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = device::unlock(&self.device.file);
    }
}

/// A held reservation. Fields drop in order: the renewal stops before the
/// lock goes.
#[derive(Debug)]
struct Held {
    renewer: Renewer,
    locked: Locked,
    generation: u64,
}

#[derive(Debug)]
enum Reservation {
    /// Not held; `note` says why, when it is not simply offline.
    Released {
        note: Option<String>,
    },
    /// `online`'s worker is claiming the lease.
    Claiming,
    Held(Held),
}

type Shared = Arc<Mutex<Reservation>>;

fn lock_state(state: &Shared) -> MutexGuard<'_, Reservation> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One `disk` resource.
#[derive(Debug)]
pub struct Disk {
    ctx: ResourceContext,
    config: Config,
    state: Shared,
    /// The worker of a pending `online`, if any.
    claim: Mutex<Option<Worker>>,
    lane: Lane,
    fallback_logged: AtomicBool,
}

/// What the probe's helper thread found.
struct ProbeOutcome {
    record: AlignedBlock,
    /// Whether the record named us and the lease held, so the probe ran.
    probed: bool,
    /// The first byte where the read-back differs from the pattern.
    mismatch: Option<usize>,
}

/// A held reservation's parts a health check needs.
struct Snapshot {
    device: Arc<Device>,
    generation: u64,
}

impl Disk {
    pub(crate) fn new(ctx: ResourceContext, config: Config) -> Disk {
        Disk {
            ctx,
            config,
            state: Arc::new(Mutex::new(Reservation::Released { note: None })),
            claim: Mutex::new(None),
            lane: Lane::default(),
            fallback_logged: AtomicBool::new(false),
        }
    }

    fn path(&self) -> &Path {
        &self.config.path
    }

    fn state(&self) -> MutexGuard<'_, Reservation> {
        lock_state(&self.state)
    }

    /// Gives up the reservation, if held or being claimed: a claim in
    /// progress is abandoned, the renewal stops, and the lock is released
    /// when the returned value drops.
    fn take_held(&self) -> Option<Held> {
        let claim = self
            .claim
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(claim) = claim {
            // Every wait of the claim watches its stop flag: this is prompt.
            claim.stop_and_join();
        }
        match std::mem::replace(&mut *self.state(), Reservation::Released { note: None }) {
            Reservation::Held(held) => Some(held),
            Reservation::Released { .. } | Reservation::Claiming => None,
        }
    }

    fn open_device(&self) -> Result<Device> {
        let (device, fallback) = Device::open(self.path(), self.config.direct_io)?;
        if let Some(why) = fallback
            && !self.fallback_logged.swap(true, Ordering::Relaxed)
        {
            self.ctx.log().warn(format_args!(
                "disk {}: direct I/O is not available ({why}); using buffered I/O with fdatasync",
                self.path().display()
            ));
        }
        Ok(device)
    }

    /// Runs `job` on the device through the lane, with the `io_timeout`
    /// deadline.
    fn io<T: Send + 'static>(
        &self,
        what: &'static str,
        device: &Arc<Device>,
        job: impl FnOnce(&Device) -> T + Send + 'static,
    ) -> std::result::Result<T, LaneError> {
        let device = device.clone();
        self.lane.run(
            what,
            self.config.io_timeout,
            self.ctx.termination(),
            move || job(&device),
        )
    }

    fn read_record_on(
        &self,
        device: &Arc<Device>,
    ) -> Result<std::result::Result<(Record, layout::LeaseStamp), LayoutError>> {
        self.read_record_until(device, self.ctx.termination())
    }

    /// Reads block 0 within `io_timeout`, or until `stop` is raised.
    fn read_record_until(
        &self,
        device: &Arc<Device>,
        stop: &StopFlag,
    ) -> Result<std::result::Result<(Record, layout::LeaseStamp), LayoutError>> {
        let device = device.clone();
        let block = self
            .lane
            .run(
                "reading the reservation record",
                self.config.io_timeout,
                stop,
                move || device.read_block(RECORD_BLOCK),
            )
            .map_err(|e| e.into_error(self.path()))?
            .map_err(|e| read_error(self.path(), &e))?;
        Ok(Record::with_stamp_from_block(&block))
    }

    fn write_record_on(&self, device: &Arc<Device>, record: &Record) -> Result<()> {
        let mut block = AlignedBlock::zeroed();
        record.encode_into(layout::LeaseStamp::default(), &mut block)?;
        self.io("writing the reservation record", device, move |d| {
            d.write_block(RECORD_BLOCK, &block, true)
        })
        .map_err(|e| e.into_error(self.path()))?
        .map_err(|e| write_error(self.path(), &e))
    }

    fn owns(&self, record: &Record, generation: u64) -> bool {
        record.owner == self.config.owner && record.generation == generation
    }

    /// Holds `locked` at `generation`: starts the lease's renewal.
    fn hold(&self, locked: Locked, generation: u64) -> io::Result<Held> {
        let renewer = Renewer::start(
            locked.device.clone(),
            self.config.owner.clone(),
            generation,
            self.config.lease,
            self.ctx.log().clone(),
        )?;
        Ok(Held {
            renewer,
            locked,
            generation,
        })
    }

    /// `open` with `recover = true`: adopt the reservation when the record
    /// still names us; otherwise leave it released, saying why.
    pub(crate) fn reattach(&self) {
        let path = self.path().display();
        match self.try_reattach() {
            Ok(held) => {
                self.ctx.log().info(format_args!(
                    "re-attached to disk {path}: its record still names {} (generation {}); \
                     lock taken again, generation kept, lease renewed",
                    self.config.owner, held.generation
                ));
                *self.state() = Reservation::Held(held);
            }
            Err((level, why)) => {
                self.ctx.log().log(
                    level,
                    format_args!("not re-attaching to disk {path}: {why}; it stays released"),
                );
                *self.state() = Reservation::Released {
                    note: Some(format!("the re-attach did not adopt it: {why}")),
                };
            }
        }
    }

    fn try_reattach(&self) -> std::result::Result<Held, (Level, String)> {
        let warn = |why: String| (Level::Warn, why);
        let device = Arc::new(self.open_device().map_err(|e| warn(e.to_string()))?);
        match device::try_lock(&device.file) {
            Ok(true) => {}
            Ok(false) => {
                let holder = match self.read_record_on(&device) {
                    Ok(Ok((r, _))) => r.to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(warn(format!(
                    "another open of it on this host holds the lock (its record names {holder})"
                )));
            }
            Err(e) => return Err(warn(format!("locking it: {e}"))),
        }
        let locked = Locked { device };
        let generation = match self.read_record_on(&locked.device) {
            Ok(Ok((r, _))) if r.owner == self.config.owner => r.generation,
            Ok(Ok((r, _))) if r.is_free() => {
                return Err((
                    Level::Info,
                    format!(
                        "its record is free (generation {}): nothing to adopt",
                        r.generation
                    ),
                ));
            }
            Ok(Ok((r, _))) => {
                return Err(warn(format!(
                    "its record names {r}, not {}",
                    self.config.owner
                )));
            }
            Ok(Err(e)) => return Err(warn(e.to_string())),
            Err(e) => return Err(warn(e.to_string())),
        };
        self.hold(locked, generation)
            .map_err(|e| warn(format!("starting the lease renewal: {e}")))
    }

    /// The held reservation, or the failed health saying why there is none.
    fn snapshot(&self) -> std::result::Result<Snapshot, Health> {
        let path = self.path().display();
        match &*self.state() {
            Reservation::Held(held) => Ok(Snapshot {
                device: held.locked.device.clone(),
                generation: held.generation,
            }),
            Reservation::Claiming => Err(Health::failed(format!(
                "disk {path} is not reserved yet: online is still claiming its lease"
            ))),
            Reservation::Released { note: Some(note) } => Err(Health::failed(format!(
                "disk {path} is not reserved: {note}"
            ))),
            Reservation::Released { note: None } => Err(Health::failed(format!(
                "disk {path} is not reserved (it is offline)"
            ))),
        }
    }

    /// Why the held lease cannot be trusted any more, if so (asked after a
    /// check's I/O: a monitor stopped meanwhile has lost it by now).
    fn lease_failure(&self) -> Option<String> {
        match &*self.state() {
            Reservation::Held(held) => held.renewer.failure(),
            _ => None,
        }
    }

    /// A check whose I/O failed: a lost lease says more than the I/O error
    /// (an I/O that timed out while the monitor was stopped, say).
    fn io_failed(&self, why: String) -> Health {
        Health::failed(self.lease_failure().unwrap_or(why))
    }

    /// Whether the record in `block` still names us at `generation`, and
    /// then whether the lease still holds.
    fn judge_record(&self, block: &[u8], held: &Snapshot) -> Health {
        let path = self.path().display();
        let generation = held.generation;
        match Record::from_block(block) {
            Ok(r) if self.owns(&r, generation) => match self.lease_failure() {
                Some(failure) => Health::failed(failure),
                None => Health::Healthy,
            },
            Ok(r) => Health::failed(format!(
                "the reservation of disk {path} was taken over: its record names {r}, not {} \
                 (generation {generation})",
                self.config.owner
            )),
            Err(e) => Health::failed(format!(
                "the reservation record of disk {path} is gone: {e}"
            )),
        }
    }

    /// Writes the record free, if it still names us (the renewal must have
    /// stopped: it would write the lease back).
    fn clear_record(&self, device: &Arc<Device>, generation: u64) -> Result<()> {
        match self.read_record_on(device)? {
            Ok((r, _)) if self.owns(&r, generation) => {
                self.write_record_on(device, &Record::free(generation))
            }
            Ok((r, _)) => {
                self.ctx.log().warn(format_args!(
                    "not clearing the record of disk {}: it names {r}, not us",
                    self.path().display()
                ));
                Ok(())
            }
            Err(e) => {
                self.ctx.log().warn(format_args!(
                    "not clearing the record of disk {}: {e}",
                    self.path().display()
                ));
                Ok(())
            }
        }
    }

    fn reservation(&self) -> Result<Vec<u8>> {
        let (held, lease) = match &*self.state() {
            Reservation::Held(h) => {
                let lease = if h.renewer.failure().is_some() {
                    "lost"
                } else {
                    "held"
                };
                (Some((h.locked.device.clone(), h.generation)), lease)
            }
            Reservation::Claiming => (None, "claiming"),
            Reservation::Released { .. } => (None, "none"),
        };
        let device = match &held {
            Some((device, _)) => device.clone(),
            None => Arc::new(self.open_device()?),
        };
        // A control, not cut short by the termination flag, which stays
        // raised on a terminated resource until its next online or offline.
        let block0 = self.read_record_until(&device, &StopFlag::new())?;
        let mut out = Properties::new();
        out.insert("path", self.path().display().to_string());
        out.insert("formatted", block0.is_ok());
        let (record, stamp) = block0.unwrap_or_else(|_| (Record::free(0), Default::default()));
        let owned = held.as_ref().is_some_and(|(_, g)| self.owns(&record, *g));
        out.insert("held", owned && lease == "held");
        out.insert(
            "lease",
            if owned || held.is_none() {
                lease
            } else {
                "lost"
            },
        );
        out.insert("renewals", stamp.renewals);
        out.insert("owner", record.owner);
        out.insert("generation", record.generation);
        out.insert("direct_io", held.is_some() && device.direct);
        Ok(out.encode())
    }

    /// The claim `online` runs on its worker: on success the reservation is
    /// held (and renewed) before the host hears it is online.
    fn spawn_claim(&self, locked: Locked, previous: Record, status: StatusReporter) -> Result<()> {
        let state = self.state.clone();
        let config = self.config.clone();
        let log = self.ctx.log().clone();
        let worker = Worker::spawn("disk-claim", move |stop| {
            let won = Claim {
                device: &locked.device,
                owner: &config.owner,
                timing: config.lease,
                stop,
                status: &status,
                log: &log,
            }
            .run();
            let path = config.path.display();
            let mut current = lock_state(&state);
            if stop.is_raised() || !matches!(*current, Reservation::Claiming) {
                // Abandoned by `online`, `offline`, `terminate` or `close`,
                // which wait for this: the operation ends before they return.
                drop(current);
                drop(locked);
                status.complete(Err(Error::Terminated(format!(
                    "the claim of disk {path} was abandoned: the resource was taken offline, \
                     terminated or closed meanwhile"
                ))));
                return;
            }
            let outcome = won.and_then(|generation| {
                Renewer::start(
                    locked.device.clone(),
                    config.owner.clone(),
                    generation,
                    config.lease,
                    log.clone(),
                )
                .map(|renewer| (generation, renewer))
                .map_err(|e| Error::io(format_args!("starting the lease renewal of {path}"), &e))
            });
            match outcome {
                Ok((generation, renewer)) => {
                    log.info(format_args!(
                        "reserved disk {path} as {} (generation {generation}, {}); it was \
                         {previous}",
                        config.owner,
                        if locked.device.direct {
                            "direct I/O"
                        } else {
                            "buffered I/O"
                        },
                    ));
                    *current = Reservation::Held(Held {
                        renewer,
                        locked,
                        generation,
                    });
                    drop(current);
                    status.complete(Ok(()));
                }
                Err(e) => {
                    *current = Reservation::Released { note: None };
                    drop(current);
                    drop(locked);
                    status.complete(Err(e));
                }
            }
        })
        .map_err(|e| {
            Error::io(
                format_args!("starting a claim of {}", self.path().display()),
                &e,
            )
        })?;
        *self.claim.lock().unwrap_or_else(PoisonError::into_inner) = Some(worker);
        Ok(())
    }
}

impl Resource for Disk {
    /// Takes the local lock and checks the record at once (`Busy`, not
    /// formatted: immediate errors), then claims the lease on a worker and
    /// answers `Pending`: a claim waits at least twice `io_timeout`, and a
    /// lease held elsewhere is watched for up to `lease_timeout`.
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        // A reservation adopted by a re-attach (or left over): start afresh.
        drop(self.take_held());
        let path = self.path();
        let device = Arc::new(self.open_device()?);
        match device::try_lock(&device.file) {
            Ok(true) => {}
            Ok(false) => {
                let record = self
                    .read_record_on(&device)
                    .ok()
                    .map(|r| r.map(|(record, _)| record));
                return Err(busy_error(path, record));
            }
            Err(e) => return Err(Error::io(format_args!("locking {}", path.display()), &e)),
        }
        let locked = Locked { device };
        let (previous, _) = self
            .read_record_on(&locked.device)?
            .map_err(|e| layout_error(path, &e))?;
        *self.state() = Reservation::Claiming;
        if let Err(e) = self.spawn_claim(locked, previous, status) {
            *self.state() = Reservation::Released { note: None };
            return Err(e);
        }
        Ok(Transition::Pending)
    }

    fn offline(&self, _status: StatusReporter) -> Result<Transition> {
        let Some(Held {
            renewer,
            locked,
            generation,
        }) = self.take_held()
        else {
            return Ok(Transition::Done);
        };
        // The renewal stops first: it would write the lease back.
        drop(renewer);
        let cleared = self.clear_record(&locked.device, generation);
        drop(locked); // releases the lock, whatever happened
        cleared?;
        self.ctx.log().info(format_args!(
            "released disk {} (generation {generation})",
            self.path().display()
        ));
        Ok(Transition::Done)
    }

    fn terminate(&self) -> Result<()> {
        // No disk I/O here: the device may be the thing that hangs.
        if let Some(held) = self.take_held() {
            let generation = held.generation;
            drop(held);
            self.ctx.log().info(format_args!(
                "terminated: released the lock on disk {} (generation {generation}) without \
                 writing to it",
                self.path().display()
            ));
        }
        Ok(())
    }

    fn looks_alive(&self) -> Health {
        let held = match self.snapshot() {
            Ok(held) => held,
            Err(health) => return health,
        };
        if held.device.unlinked() {
            return Health::failed(format!("the image {} was deleted", self.path().display()));
        }
        match self.io("reading the reservation record", &held.device, |d| {
            d.read_block(RECORD_BLOCK)
        }) {
            Ok(Ok(block)) => self.judge_record(&block, &held),
            Ok(Err(e)) => self.io_failed(read_error(self.path(), &e).to_string()),
            Err(e) => self.io_failed(e.describe(self.path())),
        }
    }

    fn is_alive(&self) -> Health {
        let held = match self.snapshot() {
            Ok(held) => held,
            Err(health) => return health,
        };
        if held.device.unlinked() {
            return Health::failed(format!("the image {} was deleted", self.path().display()));
        }
        let owner = self.config.owner.clone();
        let generation = held.generation;
        // A lease that may have passed to another node: no more writes.
        let may_write = self.lease_failure().is_none();
        let seed = layout::fresh_seed();
        let outcome = self.io(
            "probe I/O",
            &held.device,
            move |d| -> io::Result<ProbeOutcome> {
                let record = d.read_block(RECORD_BLOCK)?;
                // Never write to a disk whose record names someone else.
                let ours = Record::from_block(&record)
                    .is_ok_and(|r| r.owner == owner && r.generation == generation);
                if !ours || !may_write {
                    return Ok(ProbeOutcome {
                        record,
                        probed: false,
                        mismatch: None,
                    });
                }
                let mut pattern = AlignedBlock::zeroed();
                layout::fill_probe(&mut pattern, seed);
                d.write_block(PROBE_BLOCK, &pattern, false)?;
                d.forget_cached(PROBE_BLOCK);
                let back = d.read_block(PROBE_BLOCK)?;
                Ok(ProbeOutcome {
                    record,
                    probed: true,
                    mismatch: pattern.iter().zip(back.iter()).position(|(a, b)| a != b),
                })
            },
        );
        let path = self.path().display();
        match outcome {
            Ok(Ok(outcome)) if !outcome.probed => self.judge_record(&outcome.record, &held),
            Ok(Ok(ProbeOutcome {
                mismatch: Some(at), ..
            })) => Health::failed(format!(
                "the probe block of disk {path} read back differs from what was written, from \
                 byte {at} on"
            )),
            Ok(Ok(_)) => Health::Healthy,
            Ok(Err(e)) => self.io_failed(format!("probe I/O on disk {path} failed: {e}")),
            Err(e) => self.io_failed(e.describe(self.path())),
        }
    }

    /// [`FORMAT`] (offline only) and [`RESERVATION`].
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            FORMAT => {
                if !matches!(*self.state(), Reservation::Released { .. }) {
                    return Err(Error::InvalidState(format!(
                        "resource `{}` holds disk {} (it is online): take it offline before \
                         FORMAT",
                        self.ctx.name(),
                        self.path().display()
                    )));
                }
                let options = decode_input(input, vec![force_spec()])?;
                format_disk(self.path(), options.bool("force")?)?;
                self.ctx
                    .log()
                    .info(format_args!("formatted disk {}", self.path().display()));
                Ok(Vec::new())
            }
            RESERVATION => self.reservation(),
            _ => Err(Error::unsupported(code)),
        }
    }

    fn close(self) -> Result<()> {
        drop(self.take_held());
        Ok(())
    }
}
