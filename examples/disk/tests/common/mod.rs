//! Shared by the disk tests: images in temp dirs, the library through the
//! loader, a host with short timings, event waits.
// Each test binary uses only some of these helpers, re-exported ones
// included.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clusterkit::{
    Level, Logger, Properties, Reply, Resource, ResourceState, StatusReporter, StatusSink,
    Transition,
};
use clusterkit_disk::{BLOCK_SIZE, Record, format_image, read_lease};
use clusterkit_host::testing::fast_timing_with_deadlines;
use clusterkit_host::{HostBuilder, MonitorProgram, ResourceConfig};
use clusterkit_loader::{Library, LoadedResource, ResourceTypeHandle};
use clusterkit_testkit::{TempDir, cdylib, monitor_binary};

pub use clusterkit_host::testing::{PATIENCE, is, wait_event};

/// The size of the images the tests make.
pub const IMAGE_SIZE: u64 = 8 << 20;

/// The `io_timeout` the tests give resources: generous, so a loaded
/// machine's slow `fdatasync` is no failure, yet below the host's deadline.
/// A claim waits twice it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// The lease timing the tests give resources: renewed every 200 ms,
/// expired after 4 s (four times [`IO_TIMEOUT`], the least allowed), so a
/// holder gives up after 2 s without a renewal. Production defaults: 2 s
/// and 10 s, with a 500 ms `io_timeout`.
pub const LEASE_RENEWAL: Duration = Duration::from_millis(200);
/// See [`LEASE_RENEWAL`].
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(4);

pub fn library() -> PathBuf {
    cdylib("clusterkit-example-disk", "clusterkit_disk")
}

/// The `disk` type, loaded in this process through the C table.
pub fn disk_type() -> ResourceTypeHandle {
    let library = Library::load(library(), Logger::discard()).expect("loading the library");
    library.resource_type("disk").expect("disk is exported")
}

/// A sparse, blank image of [`IMAGE_SIZE`] bytes in `dir`.
pub fn blank_image(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.path().join(name);
    File::create(&path)
        .and_then(|f| f.set_len(IMAGE_SIZE))
        .expect("creating an image");
    path
}

/// A blank image, formatted.
pub fn formatted_image(dir: &TempDir, name: &str) -> PathBuf {
    let path = blank_image(dir, name);
    format_image(&path).expect("formatting");
    path
}

/// Properties naming `image`.
pub fn props(image: &Path) -> Properties {
    let mut props = Properties::new();
    props.insert("path", image.to_str().unwrap());
    props.insert("io_timeout", IO_TIMEOUT);
    props.insert("lease_renewal", LEASE_RENEWAL);
    props.insert("lease_timeout", LEASE_TIMEOUT);
    props
}

/// Hands a pending operation's completion to a channel.
struct Completion(Mutex<mpsc::Sender<Result<ResourceState, clusterkit::Error>>>);

impl StatusSink for Completion {
    fn report(&self, _: ResourceState, _: u32, _: Duration) -> Reply {
        Reply::Continue
    }
    fn complete(&self, outcome: Result<ResourceState, clusterkit::Error>) {
        let _ = self.0.lock().unwrap().send(outcome);
    }
}

/// `online`, which must answer pending; the receiver gets its completion.
pub fn online_pending(
    resource: &LoadedResource,
) -> mpsc::Receiver<Result<ResourceState, clusterkit::Error>> {
    let (tx, rx) = mpsc::channel();
    let status = StatusReporter::online(Arc::new(Completion(Mutex::new(tx))));
    assert_eq!(
        resource.online(status).expect("online"),
        Transition::Pending
    );
    rx
}

/// `online`, waiting (up to [`PATIENCE`]) for a pending claim to end.
pub fn online_and_wait(resource: &LoadedResource) -> clusterkit::Result<()> {
    let (tx, rx) = mpsc::channel();
    let status = StatusReporter::online(Arc::new(Completion(Mutex::new(tx))));
    match resource.online(status)? {
        Transition::Done => Ok(()),
        Transition::Pending => rx
            .recv_timeout(PATIENCE)
            .expect("the pending online completes")
            .map(drop),
    }
}

/// Overwrites block 0 of `image` behind everyone's back, as another node
/// writing to shared storage would (no lock: OFD locks are advisory).
pub fn overwrite_block0(image: &Path, block: &[u8]) {
    let file = OpenOptions::new().write(true).open(image).unwrap();
    file.write_all_at(block, 0).unwrap();
    file.sync_data().unwrap();
}

/// Writes `block` at block `index` of `image`, through the page cache.
pub fn write_block(image: &Path, index: u64, block: &[u8]) {
    let file = OpenOptions::new().write(true).open(image).unwrap();
    file.write_all_at(block, index * BLOCK_SIZE as u64).unwrap();
    file.sync_data().unwrap();
}

/// Block `index` of `image`, read through the page cache.
pub fn read_block(image: &Path, index: u64) -> Vec<u8> {
    let mut block = vec![0; BLOCK_SIZE];
    File::open(image)
        .unwrap()
        .read_exact_at(&mut block, index * BLOCK_SIZE as u64)
        .unwrap();
    block
}

/// Waits until the lease on `image` has been renewed `count` times since
/// its claim, polling block 0.
pub fn wait_renewals(image: &Path, count: u64) {
    let deadline = Instant::now() + PATIENCE;
    while read_lease(image).unwrap().1.renewals < count {
        assert!(Instant::now() < deadline, "the lease was not renewed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Overwrites block 0 of `image` with `block` just after the holder renewed
/// its lease, so the write cannot land between a renewal's read and its
/// write (which would put the holder's record back: a thief that ignores
/// the lease is only detected if its write survives).
pub fn steal_after_a_renewal(image: &Path, block: &[u8]) {
    let renewals = read_lease(image).unwrap().1.renewals;
    wait_renewals(image, renewals + 1);
    overwrite_block0(image, block);
}

/// A thief's record, one generation ahead of `record`'s.
pub fn stolen(record: &Record) -> Vec<u8> {
    Record::new("node-x/thief", record.generation + 5)
        .to_block()
        .unwrap()
}

/// A logger that keeps its lines as `"<level> <message>"`.
pub fn recording_logger() -> (Logger, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let log = Logger::from_fn(move |level: Level, msg: &str| {
        sink.lock().unwrap().push(format!("{level} {msg}"))
    });
    (log, lines)
}

/// A host keeping its state in `state_dir`, running real monitor processes,
/// with the host tests' short timings but deadlines above [`IO_TIMEOUT`].
pub fn builder(state_dir: &Path) -> HostBuilder {
    HostBuilder::new(state_dir, MonitorProgram::Path(monitor_binary()))
        .defaults(fast_timing_with_deadlines(Duration::from_secs(5)))
}

/// A `disk` resource on `image`.
pub fn disk(name: &str, image: &Path) -> ResourceConfig {
    ResourceConfig::new(name, library(), "disk")
        .property("path", image.to_str().unwrap())
        .property("io_timeout", IO_TIMEOUT)
        .property("lease_renewal", LEASE_RENEWAL)
        .property("lease_timeout", LEASE_TIMEOUT)
}

/// The events of `<state_dir>/events.jsonl`, as JSON objects.
pub fn logged_events(state_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state_dir.join("events.jsonl"))
        .expect("reading events.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}
