//! The `disk` library loaded in this process through the C table, on real
//! image files: schema, type-level controls, the reservation (OFD lock and
//! record), health checks, re-attach semantics. The host tests
//! (`tests/host.rs`) run the same resource in real monitor processes.

mod common;

use std::time::Duration;

use clusterkit::{
    Characteristics, ControlCode, ErrorCode, Health, Logger, Properties, PropertyKind, Resource,
    StatusReporter, Transition, Value,
};
use clusterkit_disk::{
    DiskLock, FORMAT, LeaseStamp, MIN_DISK_SIZE, OLD_SIGNATURE, PROBE_MAGIC, RESERVATION, Record,
    read_lease, read_record,
};
use clusterkit_loader::LoadedResource;
use clusterkit_testkit::TempDir;
use common::*;

fn open(props: &Properties, name: &str) -> LoadedResource {
    disk_type()
        .open(name, props, false, Logger::discard())
        .unwrap()
}

fn online(resource: &LoadedResource) {
    online_and_wait(resource).unwrap();
}

/// A claim in progress (here: watching another owner's lease) is ended by
/// the next `online` or by `close` before they return, as `Terminated`, and
/// leaves the disk untouched and unlocked.
#[test]
fn a_pending_claim_ends_before_the_next_call_returns() {
    let dir = TempDir::new("disk-claim-abandoned");
    let image = formatted_image(&dir, "data.img");
    let held = Record::new("node-b/data", 3).to_block().unwrap();
    overwrite_block0(&image, &held);
    let mut props = props(&image);
    props.insert("owner", "node-a/data");
    let disk = open(&props, "data");
    let first = online_pending(&disk);
    assert!(failed(disk.looks_alive()).contains("online is still claiming its lease"));
    assert_eq!(reservation(&disk).str("lease").unwrap(), "claiming");
    let second = online_pending(&disk);
    let ended = first
        .try_recv()
        .expect("the first claim ended")
        .unwrap_err();
    assert_eq!(ended.code(), ErrorCode::Terminated, "{ended}");
    assert!(
        ended.to_string().contains("the claim of disk") && ended.to_string().contains("abandoned"),
        "{ended}"
    );
    disk.close().unwrap();
    let ended = second
        .try_recv()
        .expect("close ended the claim")
        .unwrap_err();
    assert_eq!(ended.code(), ErrorCode::Terminated, "{ended}");
    assert_eq!(read_block(&image, 0)[..512], held[..512], "nothing written");
    assert!(
        DiskLock::try_acquire(&image).unwrap().is_some(),
        "lock released"
    );
}

/// Two claims written at once: the claim written last wins, and the other
/// claimant, reading block 0 back after its wait, fails naming the winner
/// and keeps nothing.
#[test]
fn a_claim_overwritten_by_a_rival_loses_naming_it() {
    let dir = TempDir::new("disk-claim-race");
    let image = formatted_image(&dir, "data.img");
    let mut props = props(&image);
    props.insert("owner", "node-a/data");
    let disk = open(&props, "data");
    let completion = online_pending(&disk);
    // The claim is written, then waited on for 2 x io_timeout: a rival
    // that read the free record before it writes its own claim now.
    let deadline = std::time::Instant::now() + PATIENCE;
    while read_record(&image).unwrap() != Record::new("node-a/data", 1) {
        assert!(std::time::Instant::now() < deadline, "no claim written");
        std::thread::sleep(Duration::from_millis(5));
    }
    let rival = LeaseStamp {
        renewals: 0,
        timeout_ms: 4000,
    };
    overwrite_block0(
        &image,
        &Record::new("node-b/data", 1).to_block_with(rival).unwrap(),
    );
    let err = completion
        .recv_timeout(PATIENCE)
        .expect("the claim ends")
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Busy);
    assert_eq!(
        err.to_string(),
        format!(
            "busy: disk {} is reserved by node-b/data (generation 1): it claimed the disk at the \
             same time as node-a/data (generation 1), and its claim was written last",
            image.display()
        )
    );
    assert!(failed(disk.looks_alive()).contains("is not reserved (it is offline)"));
    assert!(
        DiskLock::try_acquire(&image).unwrap().is_some(),
        "lock released"
    );
    assert_eq!(
        read_lease(&image).unwrap(),
        (Record::new("node-b/data", 1), rival),
        "the loser wrote nothing more"
    );
    disk.close().unwrap();
}

fn offline(resource: &LoadedResource) {
    assert_eq!(
        resource.offline(StatusReporter::detached_online()).unwrap(),
        Transition::Done
    );
}

fn failed(health: Health) -> String {
    match health {
        Health::Failed(reason) => reason,
        other => panic!("expected a failed health, got {other:?}"),
    }
}

fn reservation(resource: &LoadedResource) -> Properties {
    Properties::decode(&resource.control(RESERVATION, b"").unwrap()).unwrap()
}

fn format_input(path: &str) -> Vec<u8> {
    let mut input = Properties::new();
    input.insert("path", path);
    input.encode()
}

#[test]
fn describes_itself_with_a_documented_schema() {
    let ty = disk_type();
    assert_eq!(ty.name(), "disk");
    assert_eq!(ty.characteristics(), Characteristics::REATTACH);
    let schema = ty.schema();
    let path = schema.spec("path").unwrap();
    assert_eq!(path.kind, PropertyKind::String);
    assert!(path.required);
    assert_eq!(path.min, Some(1));
    let default = |name: &str| schema.spec(name).unwrap().default.clone();
    assert_eq!(default("owner"), Some(Value::String(String::new())));
    assert_eq!(
        default("io_timeout"),
        Some(Duration::from_millis(500).into())
    );
    assert_eq!(default("direct_io"), Some(true.into()));
    assert_eq!(
        default("lease_renewal"),
        Some(Duration::from_secs(2).into())
    );
    assert_eq!(
        default("lease_timeout"),
        Some(Duration::from_secs(10).into())
    );
    assert_eq!(schema.specs().len(), 6);
    for spec in schema.specs() {
        assert!(!spec.description.is_empty(), "{} is described", spec.name);
    }
    assert_eq!(FORMAT, ControlCode::type_specific(1));
}

#[test]
fn type_level_validation_names_the_property_and_the_problem() {
    let dir = TempDir::new("disk-validate");
    let ty = disk_type();
    let validate = |props: &Properties| {
        ty.control(ControlCode::VALIDATE_PROPERTIES, &props.encode())
            .map(drop)
    };
    let check = |props: &Properties, expected: &str| {
        let err = validate(props).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidProperties, "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    };

    check(
        &Properties::new(),
        "property `path`: required but not given",
    );
    let missing = dir.path().join("missing.img");
    check(
        &props(&missing),
        &format!(
            "property `path`: {} does not exist (expected a block device or an image file)",
            missing.display()
        ),
    );
    check(
        &props(dir.path()),
        &format!(
            "property `path`: {} is a directory, not a block device or an image file",
            dir.path().display()
        ),
    );
    let small = dir.path().join("small.img");
    std::fs::write(&small, [0u8; 100]).unwrap();
    check(
        &props(&small),
        &format!(
            "property `path`: {} is 100 bytes; a disk needs at least {MIN_DISK_SIZE}",
            small.display()
        ),
    );
    let mut relative = Properties::new();
    relative.insert("path", "disks/data.img");
    check(
        &relative,
        "property `path`: disks/data.img is a relative path",
    );
    let image = blank_image(&dir, "ok.img");
    let mut bad_timeout = props(&image);
    bad_timeout.insert("io_timeout", Duration::ZERO);
    bad_timeout.insert("owner", "x".repeat(300));
    let err = validate(&bad_timeout).unwrap_err().to_string();
    assert!(
        err.contains("property `io_timeout`: 0 is below the minimum 10"),
        "{err}"
    );
    assert!(
        err.contains("property `owner`: 300 is above the maximum 255"),
        "{err}"
    );
    // A blank image would fail every online: refused, saying what to run.
    let err = validate(&props(&image)).unwrap_err().to_string();
    assert!(
        err.contains("property `path`: disk ")
            && err.contains("it is not formatted")
            && err.contains("run the FORMAT control code"),
        "{err}"
    );
    clusterkit_disk::format_image(&image).unwrap();
    validate(&props(&image)).unwrap();

    // The lease's timing must leave room for a late renewal and a claim.
    let mut tight = props(&image);
    tight.insert("lease_renewal", Duration::from_millis(500));
    tight.insert("lease_timeout", Duration::from_secs(1));
    check(
        &tight,
        "property `lease_timeout`: 1s is less than three times `lease_renewal` (500ms)",
    );
    let mut hasty = props(&image);
    hasty.insert("io_timeout", Duration::from_millis(500));
    hasty.insert("lease_timeout", Duration::from_secs(1));
    check(
        &hasty,
        "property `lease_timeout`: 1s is less than four times `io_timeout` (500ms): a claim \
         waits twice `io_timeout` before its first renewal",
    );

    // Opening a resource on a missing image fails the same way.
    let err = ty
        .open("data", &props(&missing), false, Logger::discard())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    assert!(err.to_string().contains("property `path`"), "{err}");
    assert!(err.to_string().contains("missing.img"), "{err}");
}

#[test]
fn type_level_format_prepares_a_disk_before_any_resource_exists() {
    let dir = TempDir::new("disk-type-format");
    let ty = disk_type();
    let image = blank_image(&dir, "data.img");

    let err = ty.control(FORMAT, &Properties::new().encode()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidProperties);
    assert!(
        err.to_string()
            .contains("property `path`: required but not given"),
        "{err}"
    );
    let mut unknown = Properties::new();
    unknown.insert("path", image.to_str().unwrap());
    unknown.insert("colour", "blue");
    let err = ty.control(FORMAT, &unknown.encode()).unwrap_err();
    assert!(
        err.to_string()
            .contains("property `colour`: unknown property"),
        "{err}"
    );
    let missing = dir.path().join("missing.img");
    let err = ty
        .control(FORMAT, &format_input(missing.to_str().unwrap()))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(
        err.to_string().contains("property `path`") && err.to_string().contains("missing.img"),
        "{err}"
    );
    let err = ty.control(FORMAT, b"not a property list").unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);

    let err = read_record(&image).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidState);
    assert!(
        err.to_string()
            .contains("is not formatted (block 0 is blank)"),
        "{err}"
    );
    ty.control(FORMAT, &format_input(image.to_str().unwrap()))
        .unwrap();
    assert_eq!(read_record(&image).unwrap(), Record::free(0));
    assert_eq!(&read_block(&image, 0)[..8], b"CKDISK02");

    // Layout 1 (an older version's record, without a lease) is refused with
    // a clear error, and FORMAT rewrites it without `force`, keeping the
    // workload's blocks.
    let old = formatted_image(&dir, "layout1.img");
    let mut block = vec![0u8; 512];
    block[..8].copy_from_slice(&OLD_SIGNATURE);
    overwrite_block0(&old, &block);
    write_block(&old, 2, &[0x5a; 4096]);
    let err = read_record(&old).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid state: disk {} (property `path`): it has layout 1 (signature CKDISK01, a \
             record without a lease), written by an older version of the disk type; run the \
             FORMAT control code (type_specific(1)) to rewrite blocks 0 and 1 in layout 2 (the \
             workload's data from byte 8192 on is kept)",
            old.display()
        )
    );
    let resource = open(&props(&old), "data");
    let refused = online_and_wait(&resource).unwrap_err();
    assert_eq!(refused.to_string(), err.to_string());
    ty.control(FORMAT, &format_input(old.to_str().unwrap()))
        .unwrap();
    assert_eq!(read_record(&old).unwrap(), Record::free(0));
    assert_eq!(read_block(&old, 2), vec![0x5a; 4096]);
    resource.close().unwrap();

    // Something that is not a clusterkit disk is not overwritten unless forced.
    let foreign = blank_image(&dir, "mbr.img");
    let mut mbr = vec![0u8; 512];
    mbr[0] = 0xeb;
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    overwrite_block0(&foreign, &mbr);
    let err = ty
        .control(FORMAT, &format_input(foreign.to_str().unwrap()))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidState);
    assert!(
        err.to_string().contains("not a clusterkit disk")
            && err.to_string().contains("block 0 starts with eb00")
            && err.to_string().contains("force = true"),
        "{err}"
    );
    assert_eq!(read_block(&foreign, 0)[..512], mbr[..]);
    let mut forced = Properties::new();
    forced.insert("path", foreign.to_str().unwrap());
    forced.insert("force", true);
    ty.control(FORMAT, &forced.encode()).unwrap();
    assert_eq!(read_record(&foreign).unwrap(), Record::free(0));

    assert_eq!(
        ty.control(ControlCode::type_specific(9), b"")
            .unwrap_err()
            .code(),
        ErrorCode::Unsupported
    );
}

/// online → healthy → offline, with direct I/O and with buffered I/O.
#[test]
fn a_lifecycle_reserves_probes_and_releases() {
    for direct_io in [true, false] {
        let dir = TempDir::new("disk-lifecycle");
        let image = formatted_image(&dir, "data.img");
        let mut props = props(&image);
        props.insert("direct_io", direct_io);
        props.insert("owner", "node-a/data");
        let (log, lines) = recording_logger();
        let disk = disk_type().open("data", &props, false, log).unwrap();
        assert!(failed(disk.looks_alive()).contains("is not reserved (it is offline)"));
        assert!(DiskLock::try_acquire(&image).unwrap().is_some());

        online(&disk);
        assert_eq!(read_record(&image).unwrap(), Record::new("node-a/data", 1));
        assert!(
            DiskLock::try_acquire(&image).unwrap().is_none(),
            "online holds the lock"
        );
        assert_eq!(disk.looks_alive(), Health::Healthy);
        assert_eq!(disk.is_alive(), Health::Healthy);
        let probe = read_block(&image, 1);
        assert_eq!(probe[..8], PROBE_MAGIC);
        assert_eq!(disk.is_alive(), Health::Healthy);
        assert_ne!(
            read_block(&image, 1),
            probe,
            "each probe writes a fresh pattern"
        );
        let mode = if direct_io {
            "direct I/O"
        } else {
            "buffered I/O"
        };
        assert!(
            lines.lock().unwrap().iter().any(|l| l
                == &format!(
                    "info reserved disk {} as node-a/data (generation 1, {mode}); it was \
                     nobody (free, generation 0)",
                    image.display()
                )),
            "{:?}",
            lines.lock().unwrap()
        );

        let r = reservation(&disk);
        assert_eq!(r.str("owner").unwrap(), "node-a/data");
        assert_eq!(r.u64("generation").unwrap(), 1);
        assert!(r.bool("held").unwrap());
        assert!(r.bool("formatted").unwrap());
        assert_eq!(r.bool("direct_io").unwrap(), direct_io);
        assert_eq!(r.str("path").unwrap(), image.to_str().unwrap());

        offline(&disk);
        assert_eq!(read_record(&image).unwrap(), Record::free(1));
        assert!(DiskLock::try_acquire(&image).unwrap().is_some());
        assert!(failed(disk.is_alive()).contains("is not reserved"));
        assert!(!reservation(&disk).bool("held").unwrap());

        online(&disk);
        assert_eq!(read_record(&image).unwrap(), Record::new("node-a/data", 2));
        disk.terminate().unwrap();
        assert!(DiskLock::try_acquire(&image).unwrap().is_some());
        assert_eq!(
            read_record(&image).unwrap(),
            Record::new("node-a/data", 2),
            "terminate does not write to the disk"
        );
        disk.close().unwrap();
    }
}

#[test]
fn the_default_owner_is_hostname_slash_resource() {
    let dir = TempDir::new("disk-owner");
    let image = formatted_image(&dir, "data.img");
    let disk = open(&props(&image), "data");
    online(&disk);
    let owner = read_record(&image).unwrap().owner;
    let (host, name) = owner.split_once('/').unwrap();
    assert!(!host.is_empty(), "{owner}");
    assert_eq!(name, "data");
    disk.terminate().unwrap();
    disk.close().unwrap();
}

/// OFD locks belong to an open of the file, not to the process: two
/// resources in one process (one monitor) conflict.
#[test]
fn a_second_resource_in_the_same_process_is_busy() {
    let dir = TempDir::new("disk-busy");
    let image = formatted_image(&dir, "data.img");
    let mut first = props(&image);
    first.insert("owner", "node-a/data");
    let a = open(&first, "data");
    let b = open(&props(&image), "intruder");
    online(&a);

    let err = b.online(StatusReporter::detached_online()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Busy);
    assert_eq!(
        err.to_string(),
        format!(
            "busy: disk {} is reserved by node-a/data (generation 1)",
            image.display()
        )
    );
    let err = b.control(FORMAT, b"").unwrap_err();
    assert_eq!(err.code(), ErrorCode::Busy, "{err}");
    let err = a.control(FORMAT, b"").unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidState);
    assert!(
        err.to_string().contains("take it offline before FORMAT"),
        "{err}"
    );
    assert_eq!(read_record(&image).unwrap(), Record::new("node-a/data", 1));

    offline(&a);
    online(&b);
    assert_eq!(read_record(&image).unwrap().generation, 2);
    let err = a.online(StatusReporter::detached_online()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Busy);
    offline(&b);
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn an_unformatted_disk_says_to_run_format() {
    let dir = TempDir::new("disk-unformatted");
    let image = blank_image(&dir, "data.img");
    let disk = open(&props(&image), "data");
    let err = disk.online(StatusReporter::detached_online()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidState);
    assert_eq!(
        err.to_string(),
        format!(
            "invalid state: disk {} (property `path`): it is not formatted (block 0 is blank); \
             run the FORMAT control code (type_specific(1)) first",
            image.display()
        )
    );
    assert!(
        DiskLock::try_acquire(&image).unwrap().is_some(),
        "a failed online keeps no lock"
    );
    disk.control(FORMAT, b"").unwrap();
    online(&disk);
    assert_eq!(read_record(&image).unwrap().generation, 1);
    offline(&disk);
    disk.close().unwrap();
}

#[test]
fn a_record_taken_over_or_damaged_fails_both_checks() {
    let dir = TempDir::new("disk-stolen");
    let image = formatted_image(&dir, "data.img");
    let mut props = props(&image);
    props.insert("owner", "node-a/data");
    // After its first renewal (at once), the next is a minute away: the
    // writes below cannot meet a renewal, which would write the record back.
    props.insert("lease_renewal", Duration::from_secs(60));
    props.insert("lease_timeout", Duration::from_secs(180));
    let disk = open(&props, "data");
    online(&disk);
    wait_renewals(&image, 1);
    assert_eq!(disk.is_alive(), Health::Healthy);
    let record = read_record(&image).unwrap();

    overwrite_block0(&image, &stolen(&record));
    let probe_before = read_block(&image, 1);
    let expected = format!(
        "the reservation of disk {} was taken over: its record names node-x/thief (generation \
         6), not node-a/data (generation 1)",
        image.display()
    );
    assert_eq!(failed(disk.looks_alive()), expected);
    assert_eq!(failed(disk.is_alive()), expected);
    assert_eq!(
        read_block(&image, 1),
        probe_before,
        "no probe is written to a disk someone else holds"
    );

    overwrite_block0(&image, &[0xffu8; 4096]);
    let reason = failed(disk.looks_alive());
    assert!(
        reason.contains("record of disk") && reason.contains("is gone: it is not formatted"),
        "{reason}"
    );
    let mut corrupt = record.to_block().unwrap();
    corrupt[30] ^= 1;
    overwrite_block0(&image, &corrupt);
    assert!(failed(disk.is_alive()).contains("checksum mismatch"));

    // Offline does not clear a record that is not ours.
    overwrite_block0(&image, &stolen(&record));
    offline(&disk);
    assert_eq!(read_record(&image).unwrap().owner, "node-x/thief");
    disk.close().unwrap();
}

#[test]
fn a_deleted_image_fails_the_checks() {
    let dir = TempDir::new("disk-deleted");
    let image = formatted_image(&dir, "data.img");
    let disk = open(&props(&image), "data");
    online(&disk);
    std::fs::remove_file(&image).unwrap();
    assert!(failed(disk.looks_alive()).contains("was deleted"));
    assert!(failed(disk.is_alive()).contains("was deleted"));
    disk.terminate().unwrap();
    disk.close().unwrap();
}

/// What the host does after a monitor died: `open` with `recover = true`.
/// The dead monitor's lock is gone; its record still names the owner.
#[test]
fn recover_adopts_only_a_record_naming_this_owner() {
    let dir = TempDir::new("disk-recover");
    let image = formatted_image(&dir, "data.img");
    let mut props = props(&image);
    props.insert("owner", "node-a/data");
    let before = open(&props, "data");
    online(&before);
    // Like the monitor's death: the lock goes, the record stays.
    before.terminate().unwrap();
    before.close().unwrap();
    assert_eq!(read_record(&image).unwrap(), Record::new("node-a/data", 1));

    let (log, lines) = recording_logger();
    let adopted = disk_type().open("data", &props, true, log).unwrap();
    assert!(
        DiskLock::try_acquire(&image).unwrap().is_none(),
        "the lock is taken again"
    );
    assert_eq!(adopted.looks_alive(), Health::Healthy, "no online needed");
    assert_eq!(adopted.is_alive(), Health::Healthy);
    assert_eq!(
        read_record(&image).unwrap(),
        Record::new("node-a/data", 1),
        "the generation is kept"
    );
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("info re-attached to disk") && l.contains("generation 1")),
        "{:?}",
        lines.lock().unwrap()
    );
    // A second recover while it is held: not adopted, and it says why.
    let twin = disk_type()
        .open("data", &props, true, Logger::discard())
        .unwrap();
    let reason = failed(twin.looks_alive());
    assert!(
        reason.contains(
            "the re-attach did not adopt it: another open of it on this host holds the lock"
        ),
        "{reason}"
    );
    twin.close().unwrap();
    adopted.terminate().unwrap();
    adopted.close().unwrap();

    // Someone else's record: not adopted, the lock stays free.
    overwrite_block0(&image, &Record::new("node-b/data", 4).to_block().unwrap());
    let (log, lines) = recording_logger();
    let other = disk_type().open("data", &props, true, log).unwrap();
    assert!(DiskLock::try_acquire(&image).unwrap().is_some());
    let reason = failed(other.looks_alive());
    assert_eq!(
        reason,
        format!(
            "disk {} is not reserved: the re-attach did not adopt it: its record names \
             node-b/data (generation 4), not node-a/data",
            image.display()
        )
    );
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("warn not re-attaching")),
        "{:?}",
        lines.lock().unwrap()
    );
    // The host would restart it: online takes it over with the next generation.
    online(&other);
    assert_eq!(read_record(&image).unwrap(), Record::new("node-a/data", 5));
    offline(&other);

    // A free record (a clean offline before the crash): nothing to adopt.
    let (log, lines) = recording_logger();
    let free = disk_type().open("data", &props, true, log).unwrap();
    assert!(failed(free.looks_alive()).contains("its record is free (generation 5)"));
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("info not re-attaching")),
        "{:?}",
        lines.lock().unwrap()
    );
    free.close().unwrap();
    other.close().unwrap();
}
