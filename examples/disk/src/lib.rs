//! `disk`, a clusterkit resource type reserving a block device or a
//! file-backed image, like Windows' Physical Disk resource, made portable.
//!
//! - **online** opens the disk (with `O_DIRECT` where the filesystem supports
//!   it), takes an exclusive open-file-description lock on it
//!   ([`DiskLock`]; held elsewhere on this host → [`Error::Busy`] naming
//!   the holder) and verifies the signature in block 0, then answers
//!   *pending* and claims the **on-disk lease** on a worker, in the manner
//!   of sanlock's delta leases: another owner's lease is watched for
//!   `lease_timeout` (renewed meanwhile → `Busy` naming its holder; standing
//!   still → taken over), then the reservation [`Record`] is written with
//!   this owner and the next generation, and read back after twice
//!   `io_timeout` to detect a rival that claimed at the same time.
//! - While held, a worker **renews** the lease every `lease_renewal`
//!   (rewrites block 0 with a higher [`LeaseStamp::renewals`]); it stops
//!   writing once the record names someone else, or once it has gone half
//!   the lease timeout without a renewal.
//! - **looks_alive** (cheap): the record still names this owner and
//!   generation (one read of block 0), and the lease is neither lost nor
//!   lapsed.
//! - **is_alive** (thorough): the same, then a fresh random pattern is
//!   written to the probe block (block 1), read back and compared.
//! - **offline** stops the renewal, writes the record free (same
//!   generation) and releases the lock; **terminate** stops the renewal and
//!   releases the lock without touching the disk.
//! - **Re-attach** (`REATTACH`): `open` with `recover = true` takes the lock
//!   again, keeps the generation and resumes renewing when the record still
//!   names this owner; otherwise the reservation stays released and the
//!   first health check fails (see the README).
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
//! [`format_image`], [`read_record`], [`read_lease`], [`DiskLock`],
//! [`Record`] for tests and tools).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clusterkit::{
    Characteristics, ControlCode, Error, Logger, Properties, PropertyError, PropertyErrors,
    PropertySpec, ResourceContext, ResourceType, Result, Schema, StartupContext, TypeDescription,
};

mod device;
mod format;
mod lane;
mod layout;
mod lease;
mod resource;

use device::{Device, PathError};
use format::{decode_input, force_spec, format_disk};
use lease::LeaseTiming;

pub use device::DiskLock;
pub use layout::{
    BLOCK_SIZE, LayoutError, LeaseStamp, MAX_OWNER_LEN, MIN_DISK_SIZE, OLD_SIGNATURE, PROBE_BLOCK,
    PROBE_MAGIC, RECORD_BLOCK, Record, SIGNATURE,
};
pub use resource::Disk;

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
/// `generation` (u64), `renewals` (u64: the lease's renewal counter on
/// disk), `held` (bool: this resource holds the lock, the record names it
/// and its lease holds), `lease` (string: `none`, `claiming`, `held` or
/// `lost`), `direct_io` (bool: direct I/O in use; false when not held).
pub const RESERVATION: ControlCode = ControlCode::type_specific(2);

/// The default `io_timeout`.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(500);

/// The default `lease_renewal`: how often the holder renews its lease.
pub const DEFAULT_LEASE_RENEWAL: Duration = Duration::from_secs(2);

/// The default `lease_timeout`: how long a lease must go unrenewed before
/// another owner takes the disk.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(10);

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
    read_lease(path).map(|(record, _)| record)
}

/// Reads the reservation record of the disk at `path` with its lease stamp,
/// without locking it, as [`read_record`] does. Reading it twice, a lease
/// renewal period apart, tells whether its holder is alive.
///
/// ```
/// use clusterkit_disk::{LeaseStamp, Record, format_image, read_lease};
///
/// let image = std::env::temp_dir().join(format!("disk-lease-doc-{}.img", std::process::id()));
/// std::fs::File::create(&image).unwrap().set_len(1 << 20).unwrap();
/// format_image(&image).unwrap();
/// let (record, stamp) = read_lease(&image).unwrap();
/// assert_eq!(record, Record::free(0));
/// assert_eq!(stamp, LeaseStamp::default(), "nobody renews a free disk");
/// # std::fs::remove_file(image).unwrap();
/// ```
pub fn read_lease(path: impl AsRef<Path>) -> Result<(Record, LeaseStamp)> {
    let path = path.as_ref();
    let (device, _) = Device::open(path, true)?;
    let block = device
        .read_block(RECORD_BLOCK)
        .map_err(|e| read_error(path, &e))?;
    Record::with_stamp_from_block(&block).map_err(|e| layout_error(path, &e))
}

pub(crate) fn read_error(path: &Path, e: &io::Error) -> Error {
    Error::io(format_args!("reading block 0 of {}", path.display()), e)
}

pub(crate) fn write_error(path: &Path, e: &io::Error) -> Error {
    Error::io(format_args!("writing block 0 of {}", path.display()), e)
}

/// The error for a disk whose block 0 holds no usable record.
pub(crate) fn layout_error(path: &Path, e: &LayoutError) -> Error {
    let advice = match e {
        LayoutError::NotFormatted { .. } => "run the FORMAT control code (type_specific(1)) first",
        LayoutError::OldLayout => {
            "run the FORMAT control code (type_specific(1)) to rewrite blocks 0 and 1 in \
             layout 2 (the workload's data from byte 8192 on is kept)"
        }
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
pub(crate) fn busy_error(
    path: &Path,
    record: Option<std::result::Result<Record, LayoutError>>,
) -> Error {
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

/// A resource's validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) path: PathBuf,
    pub(crate) owner: String,
    pub(crate) io_timeout: Duration,
    pub(crate) direct_io: bool,
    pub(crate) lease: LeaseTiming,
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
        let io_timeout = properties.duration("io_timeout")?;
        let lease = LeaseTiming {
            renewal: properties.duration("lease_renewal")?,
            timeout: properties.duration("lease_timeout")?,
            io_timeout,
        };
        // A holder gives its lease up after half the timeout without a
        // renewal: it needs room for at least one missed renewal. A claimant
        // waits twice `io_timeout` before its first renewal: a rival watching
        // the claim must not see it stand still for a whole timeout.
        if lease.timeout < lease.renewal * 3 {
            return Err(PropertyError::invalid(
                "lease_timeout",
                format!(
                    "{:?} is less than three times `lease_renewal` ({:?}): the holder would give \
                     the lease up after a single late renewal",
                    lease.timeout, lease.renewal
                ),
            )
            .into());
        }
        if lease.timeout < io_timeout * 4 {
            return Err(PropertyError::invalid(
                "lease_timeout",
                format!(
                    "{:?} is less than four times `io_timeout` ({io_timeout:?}): a claim waits \
                     twice `io_timeout` before its first renewal, and another node could take \
                     a lease that is being claimed",
                    lease.timeout
                ),
            )
            .into());
        }
        Ok(Config {
            path: PathBuf::from(properties.str("path")?),
            owner,
            io_timeout,
            direct_io: properties.bool("direct_io")?,
            lease,
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
            description: "Reserves a block device or image file: an exclusive OFD lock on this \
                          node plus an on-disk reservation record whose lease is renewed against \
                          other nodes, checked by a write-read-verify probe"
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
                PropertySpec::duration("lease_renewal")
                    .describe(
                        "How often the holder renews its on-disk lease (rewrites block 0 with a \
                         higher renewal counter)",
                    )
                    .default(DEFAULT_LEASE_RENEWAL)
                    .range(10, 60_000),
                PropertySpec::duration("lease_timeout")
                    .describe(
                        "How long another owner's lease must go unrenewed before online takes \
                         the disk over; the holder gives its lease up (looks_alive fails) after \
                         half of it without a renewal. At least 3 x lease_renewal and 4 x \
                         io_timeout",
                    )
                    .default(DEFAULT_LEASE_TIMEOUT)
                    .range(30, 3_600_000),
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
        let disk = Disk::new(ctx, config);
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

clusterkit::export_resource_types!(DiskType);
