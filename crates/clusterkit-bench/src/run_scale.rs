//! `clusterkit-bench run-scale`: the real `clusterkit run`, as an operator
//! starts it, with N `dummy` resources from a config file. What it costs
//! is read from outside: CPU of the host process and every monitor child
//! from `/proc`, RSS from `/proc/<pid>/status`, the checks and their
//! latency from the host's own `[metrics]` endpoint, the cold start from
//! its event log. Beside it, in the same invocation, fork/exec of OCF
//! `Dummy monitor` (Pacemaker's model).

use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::scrape::{CheckMetrics, get_metrics};
use crate::sys;

/// Options of `run-scale`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Dummy resources in the config.
    #[arg(long, default_value_t = 10_000)]
    resources: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// `looks_alive_interval` of every resource (`1s`, `200ms`).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// The `clusterkit` executable to run (default: the one beside this
    /// benchmark). Its `libclusterkit_dummy.so` is the one beside it, and
    /// so is its monitor when it uses one: an older build is measured with
    /// everything of its own.
    #[arg(long)]
    clusterkit: Option<PathBuf>,
    /// The config's `monitor` key (default: none, what an operator gets).
    #[arg(long)]
    monitor: Option<PathBuf>,
    /// Wait this long after the last resource is online before the window
    /// (default: 3 s, or 2 intervals if longer).
    #[arg(long)]
    settle_seconds: Option<u64>,
    /// fork/execs of OCF `Dummy monitor` after the host is stopped (0: none).
    #[arg(long, default_value_t = 300)]
    execs: usize,
    /// A name for the build measured, kept in the result (`before 3f2b622`).
    #[arg(long)]
    label: Option<String>,
    /// Give up when not every resource is online after this many seconds.
    #[arg(long, default_value_t = 600)]
    start_timeout: u64,
}

/// `1s`, `200ms`, `2.5s`: an interval for the config.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Duration::from_secs_f64(v * unit)),
        _ => Err(format!(
            "{text:?} is not an interval such as \"1s\" or \"200ms\""
        )),
    }
}

/// The host process; killed and reaped when dropped, so an error on the
/// way never leaves 100 000 resources running.
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the host has exited, with the end of what it said.
    fn check_alive(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                let said = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                let tail: Vec<&str> = said.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(io::Error::other(format!(
                    "clusterkit run exited ({status}) before the measurement ended; its last \
                     words:\n{}",
                    tail.join("\n")
                )))
            }
        }
    }

    /// SIGTERM, then up to a minute for a clean exit, then SIGKILL.
    fn stop(&mut self) -> io::Result<()> {
        // SAFETY: kill has no memory effects; the pid is our own child,
        // not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait().map(drop)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port for `[metrics]` (bound, read, released).
fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The config of N dummies in one `default` monitor.
fn config_text(
    opts: &Options,
    state: &Path,
    files: &Path,
    library: &Path,
    metrics: SocketAddr,
) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "state_dir = {state:?}\n{}\n[defaults]\nlooks_alive_interval = \"{}ms\"\n\
         is_alive_interval = \"1h\"\n\n[libraries]\ndummy = {library:?}\n\n[metrics]\n\
         listen = \"{metrics}\"\n",
        opts.monitor
            .as_ref()
            .map(|m| format!("monitor = {m:?}\n"))
            .unwrap_or_default(),
        opts.interval.as_millis(),
    );
    for i in 0..opts.resources {
        let _ = write!(
            text,
            "\n[[resource]]\nname = \"d{i}\"\nlibrary = \"dummy\"\ntype = \"dummy\"\n\
             [resource.properties]\nstate_dir = {files:?}\n"
        );
    }
    text
}

/// Follows `events.jsonl` as it grows (and through its rotations: the
/// open file is read to its end before the new one is opened) and counts
/// `resource_online` events, keeping the time of the last one.
struct EventTail {
    path: PathBuf,
    file: Option<File>,
    partial: String,
    online: usize,
    last_online_ts: Option<String>,
}

impl EventTail {
    fn new(state: &Path) -> EventTail {
        EventTail {
            path: state.join("events.jsonl"),
            file: None,
            partial: String::new(),
            online: 0,
            last_online_ts: None,
        }
    }

    fn read_new(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.drain()?;
        let rotated = match (std::fs::metadata(&self.path), &self.file) {
            (Ok(now), Some(open)) => now.ino() != open.metadata()?.ino(),
            _ => false,
        };
        if rotated {
            self.file = None;
            self.read_new()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let complete = self.partial.rfind('\n').map_or(0, |i| i + 1);
        for line in self.partial[..complete].lines() {
            if line.contains("\"resource_online\"") {
                self.online += 1;
                if let Ok(event) = serde_json::from_str::<Value>(line)
                    && let Some(ts) = event["ts"].as_str()
                {
                    self.last_online_ts = Some(ts.to_owned());
                }
            }
        }
        self.partial.drain(..complete);
        Ok(())
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the event log
/// writes it (`2026-01-02T03:04:05.678Z`).
fn rfc3339_ms(ts: &str) -> Option<i64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + ms)
}

/// RSS now and at peak, in KiB, of the host and (summed) its monitors.
fn memory(host: u32) -> io::Result<Value> {
    let (host_rss, host_peak) = sys::rss_and_peak_kib(host)?;
    let (mut rss, mut peak, mut each) = (0, 0, Vec::new());
    for child in sys::children(host) {
        if let Ok((r, p)) = sys::rss_and_peak_kib(child) {
            rss += r;
            peak += p;
            each.push(r);
        }
    }
    Ok(json!({
        "host_rss_kib": host_rss,
        "host_peak_rss_kib": host_peak,
        "monitors_rss_kib": rss,
        "monitors_peak_rss_kib": peak,
        "monitor_rss_kib": each,
        "total_rss_kib": host_rss + rss,
    }))
}

/// Runs the benchmark.
pub(crate) fn run(opts: &Options) -> io::Result<Value> {
    let clusterkit = match &opts.clusterkit {
        Some(p) => p
            .canonicalize()
            .map_err(|e| io::Error::new(e.kind(), format!("--clusterkit {}: {e}", p.display())))?,
        None => sys::artifact("clusterkit")?,
    };
    let library = clusterkit.with_file_name("libclusterkit_dummy.so");
    if !library.exists() {
        return Err(io::Error::other(format!(
            "{} is missing: build the dummy beside {} (cargo build --release -p \
             clusterkit-example-dummy)",
            library.display(),
            clusterkit.display()
        )));
    }
    let dir = sys::scratch_dir(&format!("run-scale-{}", opts.resources))?;
    // The dummies' state files on tmpfs: the figure is the host's, not the
    // file system's (see scripts/bench-cold-start).
    let files = PathBuf::from(format!(
        "/dev/shm/ck-bench-{}-run-scale",
        std::process::id()
    ));
    std::fs::create_dir_all(&files)?;
    let result = measure(opts, &clusterkit, &library, &dir, &files);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&files);
    result
}

fn measure(
    opts: &Options,
    clusterkit: &Path,
    library: &Path,
    dir: &Path,
    files: &Path,
) -> io::Result<Value> {
    let state = dir.join("state");
    let metrics = free_port()?;
    let config = dir.join("clusterkit.toml");
    std::fs::write(&config, config_text(opts, &state, files, library, metrics))?;
    let stderr = dir.join("clusterkit.stderr");
    let started_wall = SystemTime::now();
    let started = Instant::now();
    let child = Command::new(clusterkit)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr)?)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", clusterkit.display())))?;
    let mut host = Running { child, stderr };

    let mut events = EventTail::new(&state);
    let deadline = started + Duration::from_secs(opts.start_timeout);
    while events.online < opts.resources {
        host.check_alive()?;
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{} of {} resources online after {} s",
                events.online, opts.resources, opts.start_timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
        events.read_new()?;
    }
    let seen_online = started.elapsed();
    let epoch_ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    // The log's own time of the last online, to the millisecond; the
    // polling time if the log's is unreadable.
    let cold_start_s = events
        .last_online_ts
        .as_deref()
        .and_then(rfc3339_ms)
        .map_or(seen_online.as_secs_f64(), |ms| {
            (ms - epoch_ms(started_wall)) as f64 / 1000.0
        });

    let settle = opts.settle_seconds.map_or(
        Duration::from_secs(3).max(opts.interval * 2),
        Duration::from_secs,
    );
    std::thread::sleep(settle);
    host.check_alive()?;
    let pid = host.pid();

    // CPU is read after the first scrape has been answered and before the
    // second is asked, so rendering the metrics is outside the window;
    // checks per second come from the scrapes' own times, CPU per second
    // from the CPU readings' times.
    let (scrape0_at, before) = (Instant::now(), get_metrics(metrics)?);
    let (cpu0_at, cpu0) = (Instant::now(), sys::tree_cpu_ns(pid)?);
    std::thread::sleep(Duration::from_secs(opts.seconds));
    let (cpu1_at, cpu1) = (Instant::now(), sys::tree_cpu_ns(pid)?);
    let monitors = sys::children(pid).len();
    let threads: Vec<u64> = sys::children(pid).into_iter().map(sys::threads).collect();
    let memory = memory(pid)?;
    let (scrape1_at, after) = (Instant::now(), get_metrics(metrics)?);
    host.check_alive()?;
    host.stop()?;

    let looks_alive = CheckMetrics::parse(&after, "looks_alive")?
        .since(&CheckMetrics::parse(&before, "looks_alive")?);
    let checks_per_s = looks_alive.checks as f64 / (scrape1_at - scrape0_at).as_secs_f64();
    let cpu_window = cpu1_at - cpu0_at;
    let per_s = |ns: u64| ns as f64 / cpu_window.as_secs_f64();
    let (host_per_s_ns, monitors_per_s_ns) = (per_s(cpu1.0 - cpu0.0), per_s(cpu1.1 - cpu0.1));
    let cpu_per_s_ns = host_per_s_ns + monitors_per_s_ns;
    let per_check_us = |per_s_ns: f64| per_s_ns / checks_per_s.max(f64::MIN_POSITIVE) / 1000.0;
    let cpu_per_check_us = per_check_us(cpu_per_s_ns);
    let bounds: Vec<f64> = looks_alive.buckets.iter().map(|b| b.0).collect();

    let fork_exec = if opts.execs > 0 {
        let (wall, cpu) = crate::roundtrip::pacemaker(&files.join("ocf-dummy.state"), opts.execs)?;
        json!({
            "execs": opts.execs,
            "wall_us": wall,
            "cpu_per_check_us": cpu / 1000.0,
            "cpu_over_clusterkit_run": cpu / 1000.0 / cpu_per_check_us,
        })
    } else {
        Value::Null
    };

    Ok(json!({
        "resources": opts.resources,
        "interval_s": opts.interval.as_secs_f64(),
        "clusterkit": clusterkit.display().to_string(),
        "label": opts.label,
        "monitor": opts.monitor.as_ref().map(|m| m.display().to_string()),
        "cold_start_s": cold_start_s,
        "settle_s": settle.as_secs_f64(),
        "window_s": cpu_window.as_secs_f64(),
        "checks": looks_alive.checks,
        "checks_per_s": checks_per_s,
        "cpu_share_of_one_core_pct": 100.0 * cpu_per_s_ns / 1e9,
        "cpu_per_check_us": cpu_per_check_us,
        "host_cpu_per_check_us": per_check_us(host_per_s_ns),
        "monitors_cpu_per_check_us": per_check_us(monitors_per_s_ns),
        "monitors": monitors,
        "monitor_threads": threads,
        "memory": memory,
        "latency_us": {
            "p50": looks_alive.percentile_us(50.0),
            "p99": looks_alive.percentile_us(99.0),
            "bucket_bounds_us": bounds,
            "method": "the delta of clusterkit_health_check_duration_seconds{check=\"looks_alive\"} \
                       over the window, linearly interpolated inside the bucket",
        },
        "fork_exec": fork_exec,
    }))
}

/// The artifacts this benchmark needs, for a clear error up front.
pub(crate) fn required(opts: &Options) -> io::Result<()> {
    if opts.clusterkit.is_none() {
        sys::artifact("clusterkit")?;
    }
    if opts.execs > 0 && !Path::new(crate::roundtrip::OCF_DUMMY).exists() {
        return Err(io::Error::other(format!(
            "{} is missing: install resource-agents (source scripts/lib/deps.sh; \
             ensure_packages ocf), or pass --execs 0",
            crate::roundtrip::OCF_DUMMY
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_log_times_are_read_to_the_millisecond() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(rfc3339_ms("1970-01-02T00:00:01.5Z"), Some(86_401_500));
        // `date -u -d 2026-12-02T02:09:08Z +%s`
        assert_eq!(
            rfc3339_ms("2026-12-02T02:09:08.123Z"),
            Some(1_796_177_348_123)
        );
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn intervals_read_as_the_config_writes_them() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("200ms"), Ok(Duration::from_millis(200)));
        assert!(parse_interval("soon").unwrap_err().contains("soon"));
        assert!(parse_interval("0s").is_err());
    }
}
