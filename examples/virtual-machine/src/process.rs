//! QEMU processes: launching one, telling ours from a stranger, watching
//! and killing it.
//!
//! QEMU runs with `-daemonize`, so it is not our child: it is watched
//! through a pidfd where the kernel has them (Linux 5.3+), which also makes
//! a reused pid harmless; elsewhere through `kill(pid, 0)` plus a look at
//! `/proc/<pid>/cmdline`, which must still name the binary and our QMP
//! socket (a zombie's is empty, so it counts as gone).

use std::ffi::OsString;
use std::fs;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};

use crate::config::Identity;

/// How long one wait for a process's exit sleeps before looking at its
/// stop conditions again.
const SLICE: Duration = Duration::from_millis(20);

/// What a pid turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Alive, and our QEMU.
    Ours,
    /// No such process, or it has exited (a zombie): why, in words.
    Gone(String),
    /// Alive, but some other program: what it is, in words.
    Stranger(String),
}

impl Probe {
    /// What the pid turned out to be, in words.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Probe::Ours => "it is this resource's QEMU",
            Probe::Gone(why) | Probe::Stranger(why) => why,
        }
    }
}

/// The arguments of process `pid`, from `/proc/<pid>/cmdline`; empty for a
/// zombie.
fn cmdline(pid: i32) -> io::Result<Vec<Vec<u8>>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Up to a few arguments of `argv`, for messages.
fn show(argv: &[Vec<u8>]) -> String {
    let mut shown: Vec<String> = argv
        .iter()
        .take(6)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if argv.len() > 6 {
        shown.push("…".into());
    }
    format!("`{}`", shown.join(" "))
}

/// Whether `pid` is alive and our QEMU, as described by `identity`.
pub(crate) fn probe(pid: i32, identity: &Identity) -> Probe {
    let Some(raw) = Pid::from_raw(pid) else {
        return Probe::Gone(format!("{pid} is not a process id"));
    };
    match rustix::process::test_kill_process(raw) {
        Err(rustix::io::Errno::SRCH) => return Probe::Gone(format!("no process {pid} exists")),
        // EPERM: it exists, and belongs to another user: not a QEMU we started.
        Err(e) => return Probe::Stranger(format!("process {pid} cannot be signalled ({e})")),
        Ok(()) => {}
    }
    match cmdline(pid) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Probe::Gone(format!("no process {pid} exists"))
        }
        Err(e) => Probe::Stranger(format!(
            "the command line of process {pid} is unreadable ({e})"
        )),
        Ok(argv) if argv.is_empty() => Probe::Gone(format!("process {pid} has exited")),
        Ok(argv) if identity.matches(&argv) => Probe::Ours,
        Ok(argv) => Probe::Stranger(format!("process {pid} is {}", show(&argv))),
    }
}

/// Reads a QEMU pidfile: `Ok(None)` when it does not exist.
pub(crate) fn read_pid_file(path: &Path) -> io::Result<Option<i32>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(Some(pid)),
        _ => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("{:?} is not a process id", text.trim()),
        )),
    }
}

/// Removes `path`, ignoring its absence.
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A running QEMU of this resource: its pid and, where available, a pidfd.
#[derive(Debug)]
pub(crate) struct Vm {
    pid: i32,
    pidfd: Option<OwnedFd>,
    identity: Identity,
}

impl Vm {
    /// Takes hold of `pid` if it is alive and our QEMU; else says what it
    /// is. The pidfd is opened *before* the check, so the process checked
    /// is the one held even if the pid is reused right after.
    pub(crate) fn adopt(pid: i32, identity: &Identity) -> Result<Vm, Probe> {
        let Some(raw) = Pid::from_raw(pid) else {
            return Err(Probe::Gone(format!("{pid} is not a process id")));
        };
        let pidfd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::SRCH) => {
                return Err(Probe::Gone(format!("no process {pid} exists")));
            }
            // ENOSYS (before Linux 5.3) and the like: watch by pid instead.
            Err(_) => None,
        };
        match probe(pid, identity) {
            Probe::Ours => {}
            other => return Err(other),
        }
        let vm = Vm {
            pid,
            pidfd,
            identity: identity.clone(),
        };
        if vm.has_exited() {
            return Err(Probe::Gone(format!("process {pid} has exited")));
        }
        Ok(vm)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process has exited (or, without a pidfd, is no longer
    /// our QEMU). Cheap: one `poll`, or one `kill` and one small read.
    pub(crate) fn has_exited(&self) -> bool {
        match &self.pidfd {
            Some(fd) => pidfd_exited(fd, Duration::ZERO),
            None => probe(self.pid, &self.identity) != Probe::Ours,
        }
    }

    /// Waits up to `timeout` for the process to exit, calling `tick` every
    /// few milliseconds (it may report progress, or end the wait with an
    /// error). Returns whether it exited.
    pub(crate) fn wait_exit<E>(
        &self,
        timeout: Duration,
        tick: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        let deadline = Instant::now() + timeout;
        loop {
            tick()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(SLICE);
            let exited = match &self.pidfd {
                Some(fd) => pidfd_exited(fd, slice),
                None => {
                    if self.has_exited() {
                        true
                    } else {
                        std::thread::sleep(slice);
                        self.has_exited()
                    }
                }
            };
            if exited {
                return Ok(true);
            }
            if left.is_zero() {
                return Ok(false);
            }
        }
    }

    /// Sends SIGKILL. Through the pidfd it can only reach this very
    /// process; without one, only after checking it is still our QEMU.
    pub(crate) fn kill(&self) -> io::Result<()> {
        let result = match &self.pidfd {
            Some(fd) => rustix::process::pidfd_send_signal(fd, Signal::KILL),
            None if probe(self.pid, &self.identity) == Probe::Ours => {
                let pid = Pid::from_raw(self.pid).expect("checked by probe");
                rustix::process::kill_process(pid, Signal::KILL)
            }
            None => Ok(()),
        };
        match result {
            Err(rustix::io::Errno::SRCH) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether the process of `pidfd` exits within `timeout` (a pidfd becomes
/// readable when its process exits, reaped or not).
fn pidfd_exited(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut pollfd = libc::pollfd {
        fd: pidfd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pollfd` is one valid, initialized pollfd, and nfds is 1.
    let ready = unsafe { libc::poll(&mut pollfd, 1, ms) };
    ready > 0 && pollfd.revents != 0
}

/// A QEMU being launched: the short-lived process that daemonizes it.
///
/// With `-daemonize`, the process we start forks the real QEMU and exits
/// once QEMU has initialized (pidfile written, QMP listening, guest
/// started), with status 0, or 1 if initialization failed. Killing it
/// before that makes QEMU exit at the end of its initialization, since it
/// can no longer report success: this is how a launch is abandoned.
#[derive(Debug)]
pub(crate) struct Launcher {
    child: Child,
}

impl Launcher {
    /// Starts `binary` with `args`: stdin and stdout on `/dev/null`, stderr
    /// on a pipe (QEMU's start-up errors; read it with [`read_errors`]),
    /// and no other file descriptor inherited, whatever the calling process
    /// left open (QEMU outlives it and must not keep its sockets).
    pub(crate) fn spawn(binary: &Path, args: &[OsString]) -> io::Result<(Launcher, ChildStderr)> {
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure makes one raw system call, which is
        // async-signal-safe, and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // Mark every descriptor from 3 up close-on-exec (Linux 5.11+;
                // on older kernels the call fails and only the descriptors
                // already marked are closed).
                libc::syscall(
                    libc::SYS_close_range,
                    3 as libc::c_uint,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        rustix::fs::fcntl_setfl(&stderr, rustix::fs::OFlags::NONBLOCK)?;
        Ok((Launcher { child }, stderr))
    }

    /// The launcher's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The launcher's exit status, once it has exited (then it is reaped).
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Kills and reaps the launcher. Returns whether it had already exited
    /// successfully, which means QEMU is up and must be stopped by pid.
    pub(crate) fn abandon(mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.success();
        }
        let _ = self.child.kill();
        self.child.wait().is_ok_and(|s| s.success())
    }
}

/// Appends what is waiting on QEMU's stderr pipe to `collected`, keeping at
/// most 4 KiB. Never blocks.
pub(crate) fn read_errors(stderr: &mut ChildStderr, collected: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let room = 4096usize.saturating_sub(collected.len());
                collected.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return, // WouldBlock: nothing more for now
        }
    }
}
