//! Running one agent action: Pacemaker's environment, a process group of
//! its own, a deadline, and a guard that kills the group if the monitor
//! process dies first.
//!
//! The agent's output goes to anonymous memory files rather than pipes: an
//! agent that starts a daemon (`anything`, `apache`) leaves it holding the
//! agent's stdout, and a reader waiting for end-of-file would wait for the
//! daemon. The action ends when the agent process exits, as in Pacemaker.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The prefix Pacemaker asks agents to put before a failure's reason.
pub(crate) const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";

/// How often [`Action::run_ticking`] calls its tick.
pub(crate) const TICK: Duration = Duration::from_millis(500);

/// The most output kept from one action (meta-data included).
const OUTPUT_LIMIT: u64 = 1 << 20;

/// How one action ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The agent exited with this code.
    Exited {
        /// The OCF exit code.
        code: i32,
        /// What the agent wrote to stdout.
        stdout: String,
        /// The last `ocf-exit-reason:` line, without the prefix.
        reason: Option<String>,
    },
    /// The deadline passed; the agent's process group was killed.
    TimedOut(Duration),
    /// Someone (`terminate`) killed the group while it ran.
    Killed(String),
}

/// The process group of the action running now, so that `terminate` can
/// kill it from another thread.
#[derive(Debug, Default, Clone)]
pub(crate) struct Running(Arc<Mutex<Option<i32>>>);

impl Running {
    fn set(&self, pgid: Option<i32>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = pgid;
    }

    /// Kills the process group of the action in flight, if any.
    pub(crate) fn kill(&self) -> bool {
        let pgid = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        match pgid {
            Some(pgid) => {
                // SAFETY: kill(2) has no memory effects; a negative pid names
                // the group this crate created for the action.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                true
            }
            None => false,
        }
    }
}

/// One action to run.
pub(crate) struct Action<'a> {
    pub(crate) agent: &'a Path,
    pub(crate) action: &'a str,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) timeout: Duration,
}

impl Action<'_> {
    /// Runs the action to its end or its deadline. `running` records the
    /// group while it runs.
    pub(crate) fn run(&self, running: &Running) -> io::Result<Outcome> {
        self.run_ticking(running, &mut || true)
    }

    /// [`Action::run`], calling `tick` every [`TICK`] while the agent runs;
    /// when it answers `false` the group is killed.
    pub(crate) fn run_ticking(
        &self,
        running: &Running,
        tick: &mut dyn FnMut() -> bool,
    ) -> io::Result<Outcome> {
        let mut stdout = memory_file("ocf-stdout")?;
        let mut stderr = memory_file("ocf-stderr")?;
        let (guard_read, mut guard_write) = pipe()?;
        let guard_fd = guard_read.as_raw_fd();
        let mut command = Command::new(self.agent);
        command
            .arg(self.action)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(stdout.try_clone()?)
            .stderr(stderr.try_clone()?)
            .process_group(0);
        // SAFETY: the hook only makes async-signal-safe system calls
        // (prctl, fork, read, close_range, kill, _exit) and allocates nothing.
        unsafe { command.pre_exec(move || guard_hook(guard_fd)) };
        let started = Instant::now();
        let mut child = command.spawn()?;
        drop(guard_read);
        let pgid = child.id() as i32;
        running.set(Some(pgid));
        let deadline = started + self.timeout;
        let finished = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match wait_exit(&child, left.min(TICK)) {
                Ok(false) if !left.is_zero() && tick() => continue,
                Ok(false) if !left.is_zero() => break Ok(Some("stopped while running")),
                Ok(false) => break Ok(None),
                Ok(true) => break Ok(Some("")),
                Err(e) => break Err(e),
            }
        };
        running.set(None);
        let status = match finished {
            Ok(Some("")) => child.wait()?,
            _ => {
                // SAFETY: as in `Running::kill`.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                child.wait()?;
                return match finished? {
                    Some(why) => Ok(Outcome::Killed(why.to_owned())),
                    None => Ok(Outcome::TimedOut(started.elapsed())),
                };
            }
        };
        // The action is over: release the guard without killing anything
        // the agent left running on purpose (a daemon it started).
        let _ = guard_write.write_all(b"x");
        drop(guard_write);
        let out = read_all(&mut stdout)?;
        let err = read_all(&mut stderr)?;
        let reason = err
            .lines()
            .chain(out.lines())
            .filter_map(|line| line.trim().strip_prefix(EXIT_REASON_PREFIX))
            .map(|r| r.trim().to_owned())
            .next_back();
        match (status.code(), status.signal()) {
            (Some(code), _) => Ok(Outcome::Exited {
                code,
                stdout: out,
                reason,
            }),
            (None, Some(signal)) => Ok(Outcome::Killed(format!(
                "the agent was killed by signal {signal}"
            ))),
            (None, None) => Ok(Outcome::Killed("the agent ended without a status".into())),
        }
    }
}

/// In the forked child, before `exec`: die with the thread that spawned it,
/// and fork the guard, which kills the whole group if the monitor dies
/// before the action ends.
fn guard_hook(guard_fd: RawFd) -> io::Result<()> {
    // SAFETY: raw system calls on integers; no allocation, no locks.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => guard(guard_fd),
            _ => Ok(()),
        }
    }
}

/// The guard: it holds only the read end of a pipe whose write end only
/// the monitor holds. A byte means "the action ended, leave"; end-of-file
/// without one means the monitor died: kill the group (the guard's own).
fn guard(fd: RawFd) -> ! {
    // SAFETY: raw system calls; this process never returns to Rust code.
    unsafe {
        // Nothing of the monitor's stays open here: not its socket to the
        // host, nor another action's guard pipe (two guards holding each
        // other's write end would never see end-of-file).
        if fd > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (fd - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (fd + 1) as u32, u32::MAX, 0u32);
        let mut byte = 0u8;
        loop {
            let n = libc::read(fd, (&raw mut byte).cast(), 1);
            if n == 1 {
                libc::_exit(0);
            }
            if n == 0 || *libc::__errno_location() != libc::EINTR {
                libc::kill(0, libc::SIGKILL);
                libc::_exit(1);
            }
        }
    }
}

/// Waits up to `timeout` for `child` to exit, without reaping it. `false`
/// when the deadline passed.
fn wait_exit(child: &Child, timeout: Duration) -> io::Result<bool> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and is owned here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms.max(if left.is_zero() { 0 } else { 1 })) };
        match n {
            1.. => return Ok(true),
            0 if left.is_zero() || Instant::now() >= deadline => return Ok(false),
            0 => continue,
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

fn memory_file(name: &str) -> io::Result<File> {
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid C string; the result is a new descriptor we own.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned here.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn pipe() -> io::Result<(OwnedFd, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

fn read_all(file: &mut File) -> io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.take(OUTPUT_LIMIT).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
