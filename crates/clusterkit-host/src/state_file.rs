//! The persisted host state: per resource, the desired state,
//! `separate_monitor` and restart counters; written crash-safely.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::RestartCounters;

/// The state file's format version.
const VERSION: u32 = 1;

/// What the operator wants a resource to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Online.
    Online,
    /// Offline.
    #[default]
    Offline,
}

/// One resource's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedResource {
    /// What the operator wants.
    pub desired: Desired,
    /// Whether it runs in a monitor of its own (set by isolation).
    pub separate_monitor: bool,
    /// Restart bookkeeping.
    pub restarts: RestartCounters,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedState {
    /// Format version.
    pub version: u32,
    /// By resource name.
    pub resources: BTreeMap<String, PersistedResource>,
    /// The clocks when the file was written: restart times are re-based on
    /// the next start, so a wall-clock step while the host was down does
    /// not move them (`ClockMark`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockMark>,
}

/// One moment on two clocks, and the boot it belongs to. Within one boot,
/// `CLOCK_BOOTTIME` runs steadily whatever happens to the wall clock, so the
/// wall-clock step between two marks is exactly known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockMark {
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), 0 if unknown.
    pub boot_id: u128,
    /// `CLOCK_BOOTTIME`, in milliseconds.
    pub boot_ms: u64,
    /// The wall clock, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl ClockMark {
    /// The wall-clock times `times`, written at `saved`, as seen from `now`:
    /// in the same boot, shifted by the wall-clock step between the two
    /// marks (so they keep their age exactly); across a reboot the age is
    /// unknown, so a time that lies in the future is taken as now.
    pub fn rebase(saved: Option<ClockMark>, now: ClockMark, times: &mut [u64]) {
        match saved {
            Some(saved) if saved.boot_id != 0 && saved.boot_id == now.boot_id => {
                for t in times.iter_mut() {
                    let boot = (*t as i128) - (saved.unix_ms as i128) + (saved.boot_ms as i128);
                    let unix = boot - (now.boot_ms as i128) + (now.unix_ms as i128);
                    *t = unix.clamp(0, now.unix_ms as i128) as u64;
                }
            }
            _ => {
                for t in times.iter_mut() {
                    *t = (*t).min(now.unix_ms);
                }
            }
        }
    }
}

/// A state directory held by one host: an exclusive lock on
/// `<state-dir>/lock`, which holds the holder's pid. Released when dropped,
/// and by the kernel when the process dies however it dies.
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the directory, or says which process holds it.
    pub(crate) fn acquire(state_dir: &Path) -> Result<StateLock, String> {
        let path = state_dir.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("process {holder}")
                };
                return Err(format!(
                    "{} is held by {who}: another host runs on this state directory",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("{}: locking: {e}", path.display())),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(StateLock { _file: file })
    }
}

/// The state file of a state directory.
pub(crate) struct StateFile {
    path: PathBuf,
    temp: PathBuf,
}

impl StateFile {
    pub(crate) fn new(state_dir: &Path) -> StateFile {
        StateFile {
            path: state_dir.join("state.json"),
            temp: state_dir.join("state.json.tmp"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file; a missing file is an empty state.
    pub(crate) fn load(&self) -> Result<PersistedState, String> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PersistedState {
                    version: VERSION,
                    ..PersistedState::default()
                });
            }
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let state: PersistedState =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", self.path.display()))?;
        if state.version != VERSION {
            return Err(format!(
                "{}: version {} is not supported (expected {VERSION})",
                self.path.display(),
                state.version
            ));
        }
        Ok(state)
    }

    /// Writes the file crash-safely: a temporary file, fsync, rename over
    /// the old one, fsync the directory. A reader sees the old or the new
    /// state, never a mix.
    pub(crate) fn save(&self, state: &PersistedState) -> std::io::Result<()> {
        let mut state = state.clone();
        state.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?;
        let written = File::create(&self.temp).and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
        if let Err(e) = written {
            // A full disk leaves no half-written temporary file behind.
            let _ = fs::remove_file(&self.temp);
            return Err(e);
        }
        fs::rename(&self.temp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_times_keep_their_age_across_a_wall_clock_step() {
        const DAY: u64 = 86_400_000;
        let saved = ClockMark {
            boot_id: 7,
            boot_ms: 1_000_000,
            unix_ms: 50 * DAY,
        };
        // Two restarts 10 s and 60 s before the file was written.
        let times = [50 * DAY - 10_000, 50 * DAY - 60_000];
        // The host starts again 5 s later (boot clock), but the wall clock
        // was stepped a day back, or a day forward, meanwhile.
        for step in [-(DAY as i64), DAY as i64] {
            let now = ClockMark {
                boot_id: 7,
                boot_ms: saved.boot_ms + 5_000,
                unix_ms: (saved.unix_ms as i64 + 5_000 + step) as u64,
            };
            let mut t = times;
            ClockMark::rebase(Some(saved), now, &mut t);
            assert_eq!(
                t,
                [now.unix_ms - 15_000, now.unix_ms - 65_000],
                "step {step}"
            );
        }
        // After a reboot nothing is known: future times count as now.
        let rebooted = ClockMark {
            boot_id: 8,
            boot_ms: 3_000,
            unix_ms: 49 * DAY,
        };
        let mut t = times;
        ClockMark::rebase(Some(saved), rebooted, &mut t);
        assert_eq!(t, [49 * DAY, 49 * DAY]);
        // An old file without a mark: the same.
        let mut t = times;
        ClockMark::rebase(None, rebooted, &mut t);
        assert_eq!(t, [49 * DAY, 49 * DAY]);
    }

    #[test]
    fn a_state_directory_is_held_by_one_host_at_a_time() {
        let dir = std::env::temp_dir().join(format!("ck-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let held = StateLock::acquire(&dir).unwrap();
        // flock locks belong to the open file: a second open is refused
        // within one process too.
        let e = StateLock::acquire(&dir).unwrap_err();
        assert!(
            e.contains(&format!("held by process {}", std::process::id())),
            "{e}"
        );
        drop(held);
        StateLock::acquire(&dir).expect("free again once dropped");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trips_and_rejects_garbage_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("ck-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(&dir);
        assert!(file.load().unwrap().resources.is_empty());
        let mut state = PersistedState::default();
        state.resources.insert(
            "web".into(),
            PersistedResource {
                desired: Desired::Online,
                separate_monitor: true,
                restarts: RestartCounters {
                    recent: vec![5],
                    backoff_step: 1,
                    total: 2,
                },
            },
        );
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap().resources, state.resources);
        fs::write(file.path(), "{ not json").unwrap();
        let e = file.load().unwrap_err();
        assert!(
            e.starts_with(&format!("{}: ", file.path().display())),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
