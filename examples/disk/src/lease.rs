//! The on-disk lease, in the manner of sanlock's delta leases: what keeps two
//! nodes that see the same disk from both holding it, where the node-local
//! OFD lock cannot.
//!
//! - **Claim** (`online`, on a worker): read block 0. A record naming another
//!   owner is watched for the lease timeout; if it or its renewal counter
//!   changes, its holder is alive and the claim fails naming it. A record
//!   that stayed still that long (a stale lease), a free record, or one
//!   naming this owner is claimed: this owner, the next generation, written
//!   durably. Then the claimant waits twice the I/O timeout (any contender
//!   that read block 0 before our write has written its own claim by then)
//!   and reads again: still ours, the claim is won; someone else's, it lost
//!   the race and fails naming the winner.
//! - **Renewal** (a worker per held disk): every renewal interval, read
//!   block 0; if it still names this owner and generation, write it back
//!   with the renewal counter one higher. A record naming someone else means
//!   the lease was lost; a lease not renewed for half the lease timeout
//!   (renewals failing, or the whole monitor stopped) is given up. Either
//!   way the worker stops writing and `looks_alive` fails.
//!
//! Every duration is measured with the monotonic clock of the host that
//! measures it; no clock is compared across nodes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clusterkit::{Error, Logger, Reply, StatusReporter, StopFlag, Worker};

use crate::device::{AlignedBlock, Device};
use crate::lane::Lane;
use crate::layout::{LayoutError, LeaseStamp, RECORD_BLOCK, Record};

/// A resource's lease timing, from its properties.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseTiming {
    /// How often the holder renews.
    pub(crate) renewal: Duration,
    /// How long a lease must stay still before a newcomer takes it.
    pub(crate) timeout: Duration,
    /// The deadline of each disk I/O.
    pub(crate) io_timeout: Duration,
}

impl LeaseTiming {
    /// How long a claimant waits between writing its claim and checking it
    /// is still there: twice the I/O timeout, as sanlock's delta leases do,
    /// so a contender that read block 0 before our write has finished
    /// writing its own claim.
    pub(crate) fn claim_wait(&self) -> Duration {
        self.io_timeout * 2
    }

    /// How long the holder goes without a successful renewal before it
    /// gives the lease up: half the lease timeout, well before a newcomer,
    /// which waits the whole timeout, may take it.
    pub(crate) fn give_up_after(&self) -> Duration {
        self.timeout / 2
    }

    /// How often a claimant watching a lease reads it again.
    fn watch_poll(&self) -> Duration {
        self.renewal.min(self.timeout / 4)
    }

    fn timeout_ms(&self) -> u32 {
        u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX)
    }
}

/// Block 0 as read: the record and its stamp, or why there is none.
type Block0 = std::result::Result<(Record, LeaseStamp), LayoutError>;

fn read_block0(device: &Device) -> io::Result<Block0> {
    let block = device.read_block(RECORD_BLOCK)?;
    Ok(Record::with_stamp_from_block(&block))
}

fn write_block0(
    device: &Device,
    record: &Record,
    stamp: LeaseStamp,
    durable: bool,
) -> io::Result<()> {
    let mut block = AlignedBlock::zeroed();
    record
        .encode_into(stamp, &mut block)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    device.write_block(RECORD_BLOCK, &block, durable)
}

/// What a claim needs besides the device.
pub(crate) struct Claim<'a> {
    pub(crate) device: &'a Arc<Device>,
    pub(crate) owner: &'a str,
    pub(crate) timing: LeaseTiming,
    /// Raised to abandon the claim (`terminate`, `offline`, `close`).
    pub(crate) stop: &'a StopFlag,
    pub(crate) status: &'a StatusReporter,
    pub(crate) log: &'a Logger,
}

impl Claim<'_> {
    fn path(&self) -> &Path {
        &self.device.path
    }

    fn io<T: Send + 'static>(
        &self,
        lane: &Lane,
        what: &'static str,
        job: impl FnOnce(&Device) -> io::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let device = self.device.clone();
        lane.run(what, self.timing.io_timeout, self.stop, move || {
            job(&device)
        })
        .map_err(|e| e.into_error(self.path()))?
        .map_err(|e| Error::io(format_args!("{what} of {}", self.path().display()), &e))
    }

    fn read(&self, lane: &Lane) -> Result<(Record, LeaseStamp), Error> {
        self.io(lane, "reading block 0", read_block0)?
            .map_err(|e| crate::layout_error(self.path(), &e))
    }

    /// Waits `pause` (cut short by the stop flag), reporting progress.
    fn pause(&self, checkpoint: &mut u32, pause: Duration) -> Result<(), Error> {
        *checkpoint += 1;
        // The next report comes after the pause and at most two I/Os.
        let hint = pause + self.timing.io_timeout * 2 + Duration::from_secs(1);
        if self.status.report(*checkpoint, hint) == Reply::Terminate
            || self.stop.wait_timeout(pause)
        {
            return Err(Error::Terminated(format!(
                "claiming disk {} was cut short",
                self.path().display()
            )));
        }
        Ok(())
    }

    /// Claims the disk, as the module documentation describes; returns the
    /// generation won.
    pub(crate) fn run(&self) -> Result<u64, Error> {
        let lane = Lane::default();
        let path = self.path().display();
        let mut checkpoint = 0;
        loop {
            let mut read_at = Instant::now();
            let (mut seen, stamp) = self.read(&lane)?;
            if !seen.is_free() && seen.owner != self.owner {
                // Someone else's lease: watch it for the longer timeout.
                let wait = self
                    .timing
                    .timeout
                    .max(Duration::from_millis(stamp.timeout_ms.into()));
                self.log.info(format_args!(
                    "disk {path} is leased to {seen}: watching its lease for {wait:?} before \
                     taking it over"
                ));
                let watching = Instant::now();
                loop {
                    self.pause(&mut checkpoint, self.timing.watch_poll())?;
                    read_at = Instant::now();
                    let now = self.read(&lane)?;
                    if now.0.is_free() {
                        seen = now.0; // released meanwhile: claim it
                        break;
                    }
                    if now != (seen.clone(), stamp) {
                        return Err(Error::Busy(format!(
                            "disk {path} is reserved by {} (generation {}): its lease is live \
                             (renewed within {:.1?} of watching)",
                            now.0.owner,
                            now.0.generation,
                            watching.elapsed()
                        )));
                    }
                    if watching.elapsed() >= wait {
                        self.log.warn(format_args!(
                            "the lease of disk {path} held by {seen} was not renewed for \
                             {wait:?}: taking it over"
                        ));
                        break;
                    }
                }
            }
            if read_at.elapsed() > self.timing.io_timeout {
                // Too long since the read to trust it: a contender may
                // have claimed meanwhile. Read again.
                self.pause(&mut checkpoint, Duration::ZERO)?;
                continue;
            }
            let generation = seen.generation.checked_add(1).ok_or_else(|| {
                Error::Failed(format!(
                    "disk {path}: the generation cannot grow past {}; run FORMAT",
                    u64::MAX
                ))
            })?;
            let claim = Record::new(self.owner, generation);
            let mine = LeaseStamp {
                renewals: 0,
                timeout_ms: self.timing.timeout_ms(),
            };
            let written = claim.clone();
            self.io(&lane, "writing the claim to block 0", move |d| {
                write_block0(d, &written, mine, true)
            })?;
            self.pause(&mut checkpoint, self.timing.claim_wait())?;
            let (after, _) = self.read(&lane)?;
            if after == claim {
                return Ok(generation);
            }
            return Err(Error::Busy(format!(
                "disk {path} is reserved by {after}: it claimed the disk at the same time as \
                 {} (generation {generation}), and its claim was written last",
                self.owner
            )));
        }
    }
}

/// What the renewal worker has seen.
#[derive(Debug, Clone)]
pub(crate) struct LeaseView {
    /// Successful renewals by this holder.
    pub(crate) renewals: u64,
    /// When the last successful renewal started (or the lease was claimed
    /// or adopted).
    pub(crate) last_renewed: Instant,
    /// Why the last renewal failed, if it did.
    pub(crate) last_error: Option<String>,
    /// Why the lease is lost, once it is: the worker stopped writing.
    pub(crate) lost: Option<String>,
}

/// The worker renewing a held lease; dropping it stops it.
pub(crate) struct Renewer {
    view: Arc<Mutex<LeaseView>>,
    timing: LeaseTiming,
    path: PathBuf,
    // Last: dropping it raises its flag and joins the thread.
    _worker: Worker,
}

impl std::fmt::Debug for Renewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewer")
            .field("view", &self.view())
            .finish_non_exhaustive()
    }
}

/// One renewal's outcome, decided on the I/O thread.
enum Renewal {
    Renewed,
    Lost(String),
    Stopped,
}

impl Renewer {
    /// Starts renewing the lease `owner` holds at `generation` on `device`.
    pub(crate) fn start(
        device: Arc<Device>,
        owner: String,
        generation: u64,
        timing: LeaseTiming,
        log: Logger,
    ) -> io::Result<Renewer> {
        let view = Arc::new(Mutex::new(LeaseView {
            renewals: 0,
            last_renewed: Instant::now(),
            last_error: None,
            lost: None,
        }));
        let shared = view.clone();
        let path = device.path.clone();
        let worker = Worker::spawn("disk-lease", move |stop| {
            let lane = Lane::default();
            let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
            // The first renewal comes at once: a claim has just waited.
            let mut pause = Duration::ZERO;
            while !stop.wait_timeout(pause) {
                pause = timing.renewal;
                let last_renewed = lock().last_renewed;
                let lapsed = last_renewed.elapsed();
                if lapsed > timing.give_up_after() {
                    let mut view = lock();
                    let why = view.last_error.clone().unwrap_or_else(|| {
                        "no renewal ran: the monitor was stopped or starved".into()
                    });
                    view.lost = Some(format!(
                        "it was last renewed {lapsed:.1?} ago, more than half the lease timeout \
                         ({:?}), so another node may have taken the disk over ({why})",
                        timing.timeout
                    ));
                    break;
                }
                let started = Instant::now();
                let give_up_at = last_renewed + timing.give_up_after();
                let (on, owner, io_stop) = (device.clone(), owner.clone(), stop.clone());
                let outcome = lane.run("renewing the lease", timing.io_timeout, stop, move || {
                    renew_once(&on, &owner, generation, timing, give_up_at, &io_stop)
                });
                let mut view = lock();
                match outcome {
                    Ok(Ok(Renewal::Renewed)) => {
                        view.renewals += 1;
                        view.last_renewed = started;
                        view.last_error = None;
                    }
                    Ok(Ok(Renewal::Lost(why))) => {
                        log.warn(format_args!(
                            "lost the lease on disk {}: {why}",
                            device.path.display()
                        ));
                        view.lost = Some(why);
                        break;
                    }
                    Ok(Ok(Renewal::Stopped)) => break,
                    Ok(Err(e)) => {
                        view.last_error = Some(format!("renewing the lease: {e}"));
                    }
                    Err(e) => view.last_error = Some(e.describe(&device.path)),
                }
            }
        })?;
        Ok(Renewer {
            view,
            timing,
            path,
            _worker: worker,
        })
    }

    /// What the worker has seen so far.
    pub(crate) fn view(&self) -> LeaseView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the lease cannot be trusted any more, if so: lost, or not
    /// renewed for longer than the holder may go without.
    pub(crate) fn failure(&self) -> Option<String> {
        let view = self.view();
        let path = self.path.display();
        if let Some(lost) = view.lost {
            return Some(format!("the lease on disk {path} is lost: {lost}"));
        }
        let lapsed = view.last_renewed.elapsed();
        (lapsed > self.timing.give_up_after()).then(|| {
            format!(
                "the lease on disk {path} has not been renewed for {lapsed:.1?}, more than half \
                 the lease timeout ({:?}){}",
                self.timing.timeout,
                view.last_error
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        })
    }
}

/// One renewal: block 0 must still name `owner` at `generation`; then it is
/// written back with the counter one higher, unless the holder has already
/// gone past `give_up_at` (a monitor stopped between the read and the write
/// must not overwrite a newcomer's claim).
fn renew_once(
    device: &Device,
    owner: &str,
    generation: u64,
    timing: LeaseTiming,
    give_up_at: Instant,
    stop: &StopFlag,
) -> io::Result<Renewal> {
    let (record, stamp) = match read_block0(device)? {
        Ok(read) => read,
        Err(e) => {
            return Ok(Renewal::Lost(format!(
                "block 0 no longer holds its record: {e}"
            )));
        }
    };
    if record.owner != owner || record.generation != generation {
        return Ok(Renewal::Lost(format!(
            "its record names {record}, not {owner} (generation {generation})"
        )));
    }
    if Instant::now() >= give_up_at {
        return Ok(Renewal::Lost(format!(
            "the renewal came later than half the lease timeout ({:?})",
            timing.timeout
        )));
    }
    if stop.is_raised() {
        return Ok(Renewal::Stopped);
    }
    let renewed = LeaseStamp {
        renewals: stamp.renewals.wrapping_add(1),
        timeout_ms: timing.timeout_ms(),
    };
    // Not durable: a direct write has reached the device, where every node
    // reads it; a buffered one (no O_DIRECT here) is synced anyway.
    write_block0(device, &record, renewed, false)?;
    Ok(Renewal::Renewed)
}
