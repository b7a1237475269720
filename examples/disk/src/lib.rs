//! `disk`, a clusterkit resource type reserving a block device or a
//! file-backed image, like Windows' Physical Disk resource, made portable.
//!
//! - **online** opens the disk (with `O_DIRECT` where the filesystem supports
//!   it), takes an exclusive open-file-description lock on it
//!   ([`DiskLock`]; held elsewhere → [`Error::Busy`] naming the holder),
//!   verifies the signature in block 0 and writes the reservation
//!   [`Record`]: this resource's owner string with the next generation.
//! - **looks_alive** (cheap): the record still names this owner and
//!   generation (one read of block 0).
//! - **is_alive** (thorough): the same, then a fresh random pattern is
//!   written to the probe block (block 1), read back and compared.
//! - **offline** writes the record free (same generation) and releases the
//!   lock; **terminate** releases the lock without touching the disk.
//! - **Re-attach** (`REATTACH`): `open` with `recover = true` takes the lock
//!   again and keeps the generation when the record still names this owner;
//!   otherwise the reservation stays released and the first health check
//!   fails (see the README).
//!
//! Every health-check I/O runs on a helper thread with the `io_timeout`
//! deadline, so a hung device fails the check (`"probe I/O did not finish
//! within 500ms ..."`) instead of blocking it.
//!
//! A disk must be formatted once, with the [`FORMAT`] control code (on a
//! resource, or on the type with a property list naming `path`, or with
//! [`format_image`]). The layout, the properties and the limits of this
//! reservation scheme are in the `README.md` next to this crate; the layout
//! is also in [`Record`]'s documentation.
//!
//! Built as a `cdylib` (`libclusterkit_disk.so`) and an `rlib` (the helpers
//! [`format_image`], [`read_record`], [`DiskLock`], [`Record`] for tests and
//! tools).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use clusterkit::{
    Characteristics, ControlCode, Error, Health, Level, Logger, Properties, PropertyError,
    PropertyErrors, PropertySpec, Resource, ResourceContext, ResourceType, Result, Schema,
    StartupContext, StatusReporter, Transition, TypeDescription,
};

mod device;
mod lane;
mod layout;

use device::{AlignedBlock, Device, PathError};
use lane::{Lane, LaneError};

pub use device::DiskLock;
pub use layout::{
    BLOCK_SIZE, LayoutError, MAX_OWNER_LEN, MIN_DISK_SIZE, PROBE_BLOCK, PROBE_MAGIC, RECORD_BLOCK,
    Record, SIGNATURE,
};

/// The type's name, as hosts and configs refer to it.
pub const TYPE_NAME: &str = "disk";

/// FORMAT (`ControlCode::type_specific(1)`): writes the signature and a
/// free record (generation 0) to block 0 and zeroes the probe block; the
/// rest of the disk is not touched.
///
/// - On a **resource** (offline): formats its `path`. Input: empty, or an
///   encoded property list with `force` (bool).
/// - On the **type**: input is an encoded property list with `path`
///   (string, required) and `force` (bool, default false), so a disk can be
///   formatted before any resource exists.
///
/// Refused with [`Error::Busy`] while another open of the disk holds the
/// lock (a resource is online on it), with [`Error::InvalidState`] on an
/// online resource, and with [`Error::InvalidState`] when blocks 0–1 hold
/// something that is neither blank nor a clusterkit disk (a partition
/// table, a filesystem) unless `force = true`. Output: empty.
pub const FORMAT: ControlCode = ControlCode::type_specific(1);

/// RESERVATION (`ControlCode::type_specific(2)`, resources only): the disk's
/// record and this resource's view of it, as an encoded property list:
/// `path` (string), `formatted` (bool), `owner` (string; empty when free),
/// `generation` (u64), `held` (bool: this resource holds the lock),
/// `direct_io` (bool: direct I/O in use; false when not held).
pub const RESERVATION: ControlCode = ControlCode::type_specific(2);

/// The default `io_timeout`.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(500);

/// Formats the disk at `path` as [`FORMAT`] does (without `force`): the
/// signature and a free record at generation 0 in block 0, zeros in block 1.
///
/// ```
/// use clusterkit_disk::{Record, format_image, read_record};
///
/// let image = std::env::temp_dir().join(format!("disk-doc-{}.img", std::process::id()));
/// std::fs::File::create(&image).unwrap().set_len(1 << 20).unwrap();
/// format_image(&image).unwrap();
/// assert_eq!(read_record(&image).unwrap(), Record::free(0));
/// # std::fs::remove_file(image).unwrap();
/// ```
pub fn format_image(path: impl AsRef<Path>) -> Result<()> {
    format_disk(path.as_ref(), false)
}

/// Reads the reservation record of the disk at `path`, without locking it
/// (as a second node reading shared storage would). Errors name the file
/// and say what is wrong (not formatted, corrupt).
pub fn read_record(path: impl AsRef<Path>) -> Result<Record> {
    let path = path.as_ref();
    let (device, _) = Device::open(path, true)?;
    let block = device
        .read_block(RECORD_BLOCK)
        .map_err(|e| read_error(path, &e))?;
    Record::from_block(&block).map_err(|e| layout_error(path, &e))
}

fn read_error(path: &Path, e: &io::Error) -> Error {
    Error::io(format_args!("reading block 0 of {}", path.display()), e)
}

fn write_error(path: &Path, e: &io::Error) -> Error {
    Error::io(format_args!("writing block 0 of {}", path.display()), e)
}

/// The error for a disk whose block 0 holds no usable record.
fn layout_error(path: &Path, e: &LayoutError) -> Error {
    let advice = match e {
        LayoutError::NotFormatted { .. } => "run the FORMAT control code (type_specific(1)) first",
        LayoutError::Corrupt(_) => {
            "run the FORMAT control code (type_specific(1)) to reset it (this rewrites blocks 0 \
             and 1 only)"
        }
    };
    Error::InvalidState(format!(
        "disk {} (property `path`): {e}; {advice}",
        path.display()
    ))
}

/// The error for a disk whose lock another open holds, naming the holder
/// from its `record` when it could be read.
fn busy_error(path: &Path, record: Option<std::result::Result<Record, LayoutError>>) -> Error {
    let path = path.display();
    Error::Busy(match record {
        Some(Ok(r)) if !r.is_free() => format!(
            "disk {path} is reserved by {} (generation {})",
            r.owner, r.generation
        ),
        Some(Ok(r)) => format!(
            "disk {path} is locked by another open of it on this host (its record is free, \
             generation {}: a FORMAT or an online in progress?)",
            r.generation
        ),
        Some(Err(e)) => format!("disk {path} is locked by another open of it on this host ({e})"),
        None => format!(
            "disk {path} is locked by another open of it on this host (its record could not be \
             read)"
        ),
    })
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn format_disk(path: &Path, force: bool) -> Result<()> {
    let (device, _) = Device::open(path, true)?;
    match device::try_lock(&device.file) {
        Ok(true) => {}
        Ok(false) => {
            let record = device
                .read_block(RECORD_BLOCK)
                .ok()
                .map(|b| Record::from_block(&b));
            return Err(busy_error(path, record));
        }
        Err(e) => return Err(Error::io(format_args!("locking {}", path.display()), &e)),
    }
    // From here on, dropping `device` closes it and releases the lock.
    let block0 = device
        .read_block(RECORD_BLOCK)
        .map_err(|e| read_error(path, &e))?;
    let block1 = device
        .read_block(PROBE_BLOCK)
        .map_err(|e| Error::io(format_args!("reading block 1 of {}", path.display()), &e))?;
    let ours = block0[..SIGNATURE.len()] == SIGNATURE;
    let blank = block0.iter().chain(block1.iter()).all(|&b| b == 0);
    if !ours && !blank && !force {
        return Err(Error::InvalidState(format!(
            "disk {} holds data that is not a clusterkit disk (block 0 starts with {}): FORMAT \
             refuses to overwrite it; pass `force = true` to overwrite blocks 0 and 1",
            path.display(),
            hex_prefix(&block0)
        )));
    }
    let zeros = AlignedBlock::zeroed();
    device
        .write_block(PROBE_BLOCK, &zeros, false)
        .map_err(|e| Error::io(format_args!("writing block 1 of {}", path.display()), &e))?;
    let mut block = AlignedBlock::zeroed();
    Record::free(0).encode_into(&mut block)?;
    device
        .write_block(RECORD_BLOCK, &block, true)
        .map_err(|e| write_error(path, &e))?;
    let _ = device::unlock(&device.file);
    Ok(())
}

/// The options FORMAT takes on a resource.
fn force_spec() -> PropertySpec {
    PropertySpec::bool("force")
        .describe("Overwrite blocks 0 and 1 even when they hold something else")
        .default(false)
}

/// Decodes `input` (empty: no properties) and validates it against `specs`.
fn decode_input(input: &[u8], specs: Vec<PropertySpec>) -> Result<Properties> {
    let given = if input.is_empty() {
        Properties::new()
    } else {
        Properties::decode(input)?
    };
    Ok(Schema::new(specs).validate(&given)?)
}

/// A resource's validated configuration.
#[derive(Debug, Clone)]
struct Config {
    path: PathBuf,
    owner: String,
    io_timeout: Duration,
    direct_io: bool,
}

impl Config {
    fn from_properties(properties: &Properties, resource: &str) -> Result<Config> {
        let owner = match properties.str("owner")? {
            "" => format!("{}/{resource}", device::hostname()),
            owner => owner.to_owned(),
        };
        if owner.len() > MAX_OWNER_LEN {
            return Err(PropertyError::invalid(
                "owner",
                format!(
                    "the default owner {owner:?} (<hostname>/<resource name>) is {} bytes; at \
                     most {MAX_OWNER_LEN} fit in the record: set `owner`",
                    owner.len()
                ),
            )
            .into());
        }
        Ok(Config {
            path: PathBuf::from(properties.str("path")?),
            owner,
            io_timeout: properties.duration("io_timeout")?,
            direct_io: properties.bool("direct_io")?,
        })
    }
}

/// The `disk` type.
#[derive(Debug)]
pub struct DiskType {
    log: Logger,
}

impl ResourceType for DiskType {
    type Resource = Disk;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: TYPE_NAME.into(),
            description: "Reserves a block device or image file: an exclusive OFD lock plus an \
                          on-disk reservation record, checked by a write-read-verify probe"
                .into(),
            characteristics: Characteristics::REATTACH,
            schema: Schema::new(vec![
                PropertySpec::string("path")
                    .describe(
                        "Absolute path of the block device or image file (at least 8 KiB, \
                         formatted with the FORMAT control code)",
                    )
                    .required()
                    .unique()
                    .min(1),
                PropertySpec::string("owner")
                    .describe(
                        "Who the reservation record names (at most 255 bytes); empty: \
                         <hostname>/<resource name>",
                    )
                    .default("")
                    .max(MAX_OWNER_LEN as i128),
                PropertySpec::duration("io_timeout")
                    .describe(
                        "Deadline of the health checks' disk I/O (the is_alive probe's \
                         write-read-verify); past it the check fails",
                    )
                    .default(DEFAULT_IO_TIMEOUT)
                    .range(10, 60_000),
                PropertySpec::bool("direct_io")
                    .describe(
                        "Use O_DIRECT where the filesystem supports it; elsewhere (EINVAL) fall \
                         back to buffered I/O with fdatasync, logged once",
                    )
                    .default(true),
            ]),
        }
    }

    fn startup(ctx: &StartupContext) -> Result<DiskType> {
        ctx.log.debug(format_args!("disk type started"));
        Ok(DiskType {
            log: ctx.log.clone(),
        })
    }

    fn open(&self, ctx: ResourceContext, properties: &Properties, recover: bool) -> Result<Disk> {
        let config = Config::from_properties(properties, ctx.name())?;
        device::check_path(&config.path).map_err(PathError::into_error)?;
        let disk = Disk {
            ctx,
            config,
            state: Mutex::new(Reservation::Released { note: None }),
            lane: Lane::default(),
            fallback_logged: AtomicBool::new(false),
        };
        if recover {
            disk.reattach();
        }
        Ok(disk)
    }

    /// [`FORMAT`] with a property list naming `path`, and
    /// `VALIDATE_PROPERTIES` (the schema, then `path` and `owner` checked
    /// against the system); anything else is unsupported.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            FORMAT => {
                let path_spec = Self::describe()
                    .schema
                    .spec("path")
                    .cloned()
                    .expect("the schema declares path");
                let options = decode_input(input, vec![path_spec, force_spec()])?;
                let path = Path::new(options.str("path")?);
                device::check_path(path).map_err(PathError::into_error)?;
                format_disk(path, options.bool("force")?)?;
                self.log
                    .info(format_args!("formatted disk {}", path.display()));
                Ok(Vec::new())
            }
            ControlCode::VALIDATE_PROPERTIES => {
                let given = Properties::decode(input)?;
                let valid = Self::describe().schema.validate(&given)?;
                let mut errors = Vec::new();
                if let Err(Error::InvalidProperties(e)) = Config::from_properties(&valid, "x") {
                    errors.extend(e.0);
                }
                let path = Path::new(valid.str("path")?);
                match device::check_path(path) {
                    Err(e) => errors.push(e.into_property_error()),
                    // An unformatted or corrupt disk would fail every start.
                    Ok(()) => {
                        if let Err(e) = read_record(path) {
                            // The error already names `path`; said once is enough.
                            let why = e.message().replace(" (property `path`)", "");
                            errors.push(PropertyError::invalid("path", why));
                        }
                    }
                }
                if errors.is_empty() {
                    Ok(Vec::new())
                } else {
                    Err(PropertyErrors(errors).into())
                }
            }
            _ => Err(Error::unsupported(code)),
        }
    }
}

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

/// A held reservation.
#[derive(Debug)]
struct Held {
    locked: Locked,
    generation: u64,
}

#[derive(Debug)]
enum Reservation {
    /// Not held; `note` says why, when it is not simply offline.
    Released {
        note: Option<String>,
    },
    Held(Held),
}

/// One `disk` resource.
#[derive(Debug)]
pub struct Disk {
    ctx: ResourceContext,
    config: Config,
    state: Mutex<Reservation>,
    lane: Lane,
    fallback_logged: AtomicBool,
}

/// What the probe's helper thread found.
struct ProbeOutcome {
    record: AlignedBlock,
    /// Whether the record named us, so the probe ran.
    probed: bool,
    /// The first byte where the read-back differs from the pattern.
    mismatch: Option<usize>,
}

impl Disk {
    fn path(&self) -> &Path {
        &self.config.path
    }

    fn state(&self) -> MutexGuard<'_, Reservation> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives up the reservation, if held: the lock is released when the
    /// returned value drops.
    fn take_held(&self) -> Option<Held> {
        match std::mem::replace(&mut *self.state(), Reservation::Released { note: None }) {
            Reservation::Held(held) => Some(held),
            Reservation::Released { .. } => None,
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
    ) -> Result<std::result::Result<Record, LayoutError>> {
        let block = self
            .io("reading the reservation record", device, |d| {
                d.read_block(RECORD_BLOCK)
            })
            .map_err(|e| e.into_error(self.path()))?
            .map_err(|e| read_error(self.path(), &e))?;
        Ok(Record::from_block(&block))
    }

    fn write_record_on(&self, device: &Arc<Device>, record: &Record) -> Result<()> {
        let mut block = AlignedBlock::zeroed();
        record.encode_into(&mut block)?;
        self.io("writing the reservation record", device, move |d| {
            d.write_block(RECORD_BLOCK, &block, true)
        })
        .map_err(|e| e.into_error(self.path()))?
        .map_err(|e| write_error(self.path(), &e))
    }

    fn owns(&self, record: &Record, generation: u64) -> bool {
        record.owner == self.config.owner && record.generation == generation
    }

    /// `open` with `recover = true`: adopt the reservation when the record
    /// still names us; otherwise leave it released, saying why.
    fn reattach(&self) {
        let path = self.path().display();
        match self.try_reattach() {
            Ok(held) => {
                self.ctx.log().info(format_args!(
                    "re-attached to disk {path}: its record still names {} (generation {}); \
                     lock taken again, generation kept",
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
                    Ok(Ok(r)) => r.to_string(),
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
        match self.read_record_on(&locked.device) {
            Ok(Ok(r)) if r.owner == self.config.owner => Ok(Held {
                locked,
                generation: r.generation,
            }),
            Ok(Ok(r)) if r.is_free() => Err((
                Level::Info,
                format!(
                    "its record is free (generation {}): nothing to adopt",
                    r.generation
                ),
            )),
            Ok(Ok(r)) => Err(warn(format!(
                "its record names {r}, not {}",
                self.config.owner
            ))),
            Ok(Err(e)) => Err(warn(e.to_string())),
            Err(e) => Err(warn(e.to_string())),
        }
    }

    /// The held device and generation, or the failed health saying why not.
    fn snapshot(&self) -> std::result::Result<(Arc<Device>, u64), Health> {
        let path = self.path().display();
        match &*self.state() {
            Reservation::Held(held) => Ok((held.locked.device.clone(), held.generation)),
            Reservation::Released { note: Some(note) } => Err(Health::failed(format!(
                "disk {path} is not reserved: {note}"
            ))),
            Reservation::Released { note: None } => Err(Health::failed(format!(
                "disk {path} is not reserved (it is offline)"
            ))),
        }
    }

    /// Whether the record in `block` still names us at `generation`.
    fn judge_record(&self, block: &[u8], generation: u64) -> Health {
        let path = self.path().display();
        match Record::from_block(block) {
            Ok(r) if self.owns(&r, generation) => Health::Healthy,
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

    /// Writes the record free, if it still names us.
    fn clear_record(&self, held: &Held) -> Result<()> {
        let device = &held.locked.device;
        match self.read_record_on(device)? {
            Ok(r) if self.owns(&r, held.generation) => {
                self.write_record_on(device, &Record::free(held.generation))
            }
            Ok(r) => {
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
        let held = match &*self.state() {
            Reservation::Held(h) => Some((h.locked.device.clone(), h.generation)),
            Reservation::Released { .. } => None,
        };
        let device = match &held {
            Some((device, _)) => device.clone(),
            None => Arc::new(self.open_device()?),
        };
        let record = self.read_record_on(&device)?;
        let mut out = Properties::new();
        out.insert("path", self.path().display().to_string());
        out.insert("formatted", record.is_ok());
        let record = record.unwrap_or_else(|_| Record::free(0));
        out.insert(
            "held",
            held.as_ref().is_some_and(|(_, g)| self.owns(&record, *g)),
        );
        out.insert("owner", record.owner);
        out.insert("generation", record.generation);
        out.insert("direct_io", held.is_some() && device.direct);
        Ok(out.encode())
    }
}

impl Resource for Disk {
    fn online(&self, _status: StatusReporter) -> Result<Transition> {
        // A reservation adopted by a re-attach (or left over): start afresh.
        drop(self.take_held());
        let path = self.path();
        let device = Arc::new(self.open_device()?);
        match device::try_lock(&device.file) {
            Ok(true) => {}
            Ok(false) => return Err(busy_error(path, self.read_record_on(&device).ok())),
            Err(e) => return Err(Error::io(format_args!("locking {}", path.display()), &e)),
        }
        let locked = Locked { device };
        let previous = self
            .read_record_on(&locked.device)?
            .map_err(|e| layout_error(path, &e))?;
        let generation = previous.generation.checked_add(1).ok_or_else(|| {
            Error::Failed(format!(
                "disk {}: the generation cannot grow past {}; run FORMAT",
                path.display(),
                u64::MAX
            ))
        })?;
        self.write_record_on(&locked.device, &Record::new(&self.config.owner, generation))?;
        self.ctx.log().info(format_args!(
            "reserved disk {} as {} (generation {generation}, {}); it was {previous}",
            path.display(),
            self.config.owner,
            if locked.device.direct {
                "direct I/O"
            } else {
                "buffered I/O"
            },
        ));
        *self.state() = Reservation::Held(Held { locked, generation });
        Ok(Transition::Done)
    }

    fn offline(&self, _status: StatusReporter) -> Result<Transition> {
        let Some(held) = self.take_held() else {
            return Ok(Transition::Done);
        };
        let cleared = self.clear_record(&held);
        let generation = held.generation;
        drop(held); // releases the lock, whatever happened
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
        let (device, generation) = match self.snapshot() {
            Ok(held) => held,
            Err(health) => return health,
        };
        if device.unlinked() {
            return Health::failed(format!("the image {} was deleted", self.path().display()));
        }
        match self.io("reading the reservation record", &device, |d| {
            d.read_block(RECORD_BLOCK)
        }) {
            Ok(Ok(block)) => self.judge_record(&block, generation),
            Ok(Err(e)) => Health::failed(read_error(self.path(), &e).to_string()),
            Err(e) => Health::failed(e.describe(self.path())),
        }
    }

    fn is_alive(&self) -> Health {
        let (device, generation) = match self.snapshot() {
            Ok(held) => held,
            Err(health) => return health,
        };
        if device.unlinked() {
            return Health::failed(format!("the image {} was deleted", self.path().display()));
        }
        let owner = self.config.owner.clone();
        let seed = layout::fresh_seed();
        let outcome = self.io("probe I/O", &device, move |d| -> io::Result<ProbeOutcome> {
            let record = d.read_block(RECORD_BLOCK)?;
            // Never write to a disk whose record names someone else.
            let ours = Record::from_block(&record)
                .is_ok_and(|r| r.owner == owner && r.generation == generation);
            if !ours {
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
        });
        let path = self.path().display();
        match outcome {
            Ok(Ok(outcome)) if !outcome.probed => self.judge_record(&outcome.record, generation),
            Ok(Ok(ProbeOutcome {
                mismatch: Some(at), ..
            })) => Health::failed(format!(
                "the probe block of disk {path} read back differs from what was written, from \
                 byte {at} on"
            )),
            Ok(Ok(_)) => Health::Healthy,
            Ok(Err(e)) => Health::failed(format!("probe I/O on disk {path} failed: {e}")),
            Err(e) => Health::failed(e.describe(self.path())),
        }
    }

    /// [`FORMAT`] (offline only) and [`RESERVATION`].
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            FORMAT => {
                if matches!(*self.state(), Reservation::Held(_)) {
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

clusterkit::export_resource_types!(DiskType);
