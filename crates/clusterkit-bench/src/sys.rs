//! What the benchmarks read from the system: CPU time, RSS, CPU affinity,
//! where the release artifacts are, and percentiles.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// CPU time (user + system) of this whole process, every thread that ever
/// ran included, in nanoseconds (microsecond precision).
pub(crate) fn self_cpu_ns() -> u64 {
    rusage_ns(libc::RUSAGE_SELF)
}

/// CPU time of the children this process has waited for, in nanoseconds.
pub(crate) fn children_cpu_ns() -> u64 {
    rusage_ns(libc::RUSAGE_CHILDREN)
}

fn rusage_ns(who: libc::c_int) -> u64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of process `pid` from `/proc/<pid>/stat` (utime + stime, exited
/// threads included), in nanoseconds; clock-tick (10 ms) precision, so only
/// for long measurements.
pub(crate) fn proc_cpu_ns(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (utime, stime) = parse_stat_times(&stat)
        .ok_or_else(|| io::Error::other(format!("cannot parse /proc/{pid}/stat")))?;
    Ok((utime + stime) * 1_000_000_000 / clock_ticks())
}

/// `(utime, stime)` in ticks from a `stat` line (fields 14 and 15).
fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = after.split(' ');
    // `after` starts at field 3 (state); utime is field 14.
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// CPU time of process `pid` and of every child it has: its own
/// utime + stime (exited threads included), the children it has reaped
/// (cutime + cstime), and the live children's utime + stime, in
/// nanoseconds (clock-tick precision). A child that exits between two
/// readings moves from the live sum to the reaped one, so differences of
/// readings stay whole. Returns (the process, its children).
pub(crate) fn tree_cpu_ns(pid: u32) -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields = stat_fields(&stat)
        .ok_or_else(|| io::Error::other(format!("cannot parse /proc/{pid}/stat")))?;
    let own = fields.utime + fields.stime;
    let mut ticks = fields.cutime + fields.cstime;
    for child in children(pid) {
        // A child gone since the listing was reaped: its time is in cutime
        // at the next reading.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat"))
            && let Some(f) = stat_fields(&stat)
        {
            ticks += f.utime + f.stime;
        }
    }
    let ns = |t: u64| t * 1_000_000_000 / clock_ticks();
    Ok((ns(own), ns(ticks)))
}

/// The live children of process `pid` (every process whose parent it is).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| stat_fields(&s))
                .is_some_and(|f| f.ppid == pid)
        })
        .collect()
}

/// The fields of a `/proc/<pid>/stat` line that the benchmarks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

/// Fields 4 (ppid) and 14–17 (utime, stime, cutime, cstime, in ticks).
fn stat_fields(stat: &str) -> Option<StatFields> {
    let after = stat.get(stat.rfind(')')? + 2..)?;
    // `after` starts at field 3 (state).
    let f: Vec<&str> = after.split(' ').take(15).collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(StatFields {
        ppid: u32::try_from(num(1)?).ok()?,
        utime: num(11)?,
        stime: num(12)?,
        cutime: num(13)?,
        cstime: num(14)?,
    })
}

/// Resident set size of process `pid` now and at its peak, in KiB:
/// (VmRSS, VmHWM).
pub(crate) fn rss_and_peak_kib(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// CPU time of process `pid`'s live threads from
/// `/proc/<pid>/task/*/schedstat`, in nanoseconds (nanosecond precision).
/// Threads that exited are not counted: use for short measurements of a
/// process whose threads all live through it.
pub(crate) fn sched_cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(ns) = text.split(' ').next().and_then(|f| f.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Ok(total)
}

/// Resident set sizes of process `pid` in KiB: (VmRSS, RssAnon, RssFile).
pub(crate) fn rss_kib(pid: u32) -> io::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("RssAnon:"), field("RssFile:")))
}

/// Proportional set size of process `pid` in KiB (shared pages divided by
/// the processes sharing them), from `/proc/<pid>/smaps_rollup`.
pub(crate) fn pss_kib(pid: u32) -> io::Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok(rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0))
}

/// Resident KiB of process `pid` by mapping (file name, or `[anon]`,
/// `[stack]`, …), the largest first.
pub(crate) fn rss_by_mapping(pid: u32) -> io::Result<Vec<(String, u64)>> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: range perms offset dev inode [path].
            let name = fields.nth(4).unwrap_or("[anon]");
            current = Path::new(name)
                .file_name()
                .map_or(name.to_owned(), |f| f.to_string_lossy().into_owned());
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *by.entry(current.clone()).or_default() += kib;
        }
    }
    let mut rows: Vec<(String, u64)> = by.into_iter().filter(|(_, v)| *v > 0).collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    Ok(rows)
}

/// How many threads process `pid` has (0 if it cannot be read).
pub(crate) fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A CPU set of the given CPUs (empty: every CPU of the machine).
fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        if cpus.is_empty() {
            for cpu in 0..online_cpus() {
                libc::CPU_SET(cpu, &mut set);
            }
        } else {
            for &cpu in cpus {
                libc::CPU_SET(cpu, &mut set);
            }
        }
        set
    }
}

/// The load averages of `/proc/loadavg` (1, 5, 15 minutes).
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// How many CPUs are online.
pub(crate) fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling thread (and the threads and children it creates later)
/// to `cpus` (empty: every CPU).
pub(crate) fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    pin_tid(0, cpus)
}

fn pin_tid(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// For `pre_exec`: pins the child about to exec to `cpus`. Only calls
/// sched_setaffinity, which is async-signal-safe.
pub(crate) fn pin_in_child(cpus: &[usize]) -> impl FnMut() -> io::Result<()> + Send + Sync + use<> {
    let set = cpu_set(cpus);
    move || {
        // SAFETY: `set` is a valid cpu_set_t; sched_setaffinity is
        // async-signal-safe.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Where the release artifacts are: the directory of this executable
/// (`target/release`), unless `CK_BENCH_ARTIFACTS` says otherwise.
pub(crate) fn artifact_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CK_BENCH_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

/// An artifact that must exist, or an error saying how to build it.
pub(crate) fn artifact(name: &str) -> io::Result<PathBuf> {
    let path = artifact_dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::other(format!(
            "{} is missing: build it with `cargo build --release -p clusterkit-host \
             -p clusterkit-example-dummy -p clusterkit-example-fault-injection \
             -p clusterkit-bench` (scripts/bench does)",
            path.display()
        )))
    }
}

/// The monitor executable (`CK_BENCH_MONITOR` overrides, e.g. to compare an
/// older build).
pub(crate) fn monitor_path() -> io::Result<PathBuf> {
    match std::env::var_os("CK_BENCH_MONITOR") {
        Some(p) => Ok(PathBuf::from(p)),
        None => artifact("clusterkit-monitor"),
    }
}

/// `libclusterkit_dummy.so`.
pub(crate) fn dummy_library() -> io::Result<PathBuf> {
    artifact("libclusterkit_dummy.so")
}

/// `libclusterkit_fault_injection.so`.
pub(crate) fn fault_library() -> io::Result<PathBuf> {
    artifact("libclusterkit_fault_injection.so")
}

/// A fresh scratch directory for one benchmark.
pub(crate) fn scratch_dir(name: &str) -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ck-bench-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Percentiles of a sample, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

impl Summary {
    /// Summarizes durations as microseconds.
    pub(crate) fn of_durations(samples: &[Duration]) -> Summary {
        let us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        Summary::of(&us)
    }

    /// Summarizes values (nearest-rank percentiles).
    pub(crate) fn of(values: &[f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Summary {
            n: sorted.len(),
            p50: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        }
    }
}

/// The nearest-rank percentile `p` of an ascending, non-empty sample.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of some values (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.p50, s.p99, s.max, s.n), (50.0, 99.0, 100.0, 100));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(Summary::of(&[7.0]).p99, 7.0);
    }

    #[test]
    fn stat_times_survive_odd_command_names() {
        let line = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 1";
        assert_eq!(parse_stat_times(line), Some((111, 222)));
        assert_eq!(parse_stat_times("garbage"), None);
        let fields = stat_fields(line).unwrap();
        assert_eq!((fields.ppid, fields.utime, fields.cstime), (1, 111, 0));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap().0 > 0);
        proc_cpu_ns(pid).unwrap();
        sched_cpu_ns(pid).unwrap();
        tree_cpu_ns(pid).unwrap();
        let (rss, peak) = rss_and_peak_kib(pid).unwrap();
        assert!(rss > 0 && peak >= rss);
        assert!(self_cpu_ns() > 0);
    }
}
