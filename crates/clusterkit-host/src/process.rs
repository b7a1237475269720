//! Starting, killing and inspecting monitor processes.
//!
//! Process control goes through the [`ProcessControl`] trait so tests can
//! inject a process that will not die (the escalation path).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};

use serde_json::{Value, json};

use crate::monitor::{HOST_PID_ENV, MONITOR_ENV, MONITOR_FD, MONITOR_FD_ENV};

/// How the host starts monitor processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorProgram {
    /// A monitor executable, such as the `clusterkit-monitor` binary of this crate.
    Path(PathBuf),
    /// Re-execute the current program; its `main` must call
    /// [`run_if_monitor`](crate::run_if_monitor) first.
    CurrentExe,
}

/// Starts and kills processes. The default, [`SystemProcesses`], does it
/// for real; tests substitute one whose `kill` does nothing.
pub trait ProcessControl: Send + Sync + 'static {
    /// Starts `command`.
    fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        command.spawn()
    }

    /// Sends SIGKILL to `pid`.
    fn kill(&self, pid: u32) -> io::Result<()>;
}

/// Real process control.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemProcesses;

impl ProcessControl for SystemProcesses {
    fn kill(&self, pid: u32) -> io::Result<()> {
        let pid =
            rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).map_err(io::Error::from)
    }
}

/// A started monitor: the process and the host's end of its socket.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) socket: UnixStream,
}

/// Arranges for `command`'s process to get `socket` as [`MONITOR_FD`], with
/// an empty signal mask, as a monitor expects. Keep the returned descriptor
/// until the process is spawned, then drop it. Benchmarks and custom
/// launchers (a monitor under `strace`, pinned to a CPU) use this too.
pub fn hand_socket_to_monitor(command: &mut Command, socket: UnixStream) -> OwnedFd {
    let fd: OwnedFd = socket.into();
    let raw = fd.as_raw_fd();
    // SAFETY: the closure only calls sigemptyset, pthread_sigmask, dup2 and
    // fcntl, which are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            // A host may block signals it waits for (sigwait); a monitor
            // must not inherit that mask.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if raw == MONITOR_FD {
                // Already in place: only clear close-on-exec.
                if libc::fcntl(raw, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, MONITOR_FD) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    fd
}

/// Starts a monitor with its socket on [`MONITOR_FD`], in its own process
/// group (a terminal's Ctrl-C is for the host, not its monitors).
pub(crate) fn spawn_monitor(
    program: &MonitorProgram,
    control: &dyn ProcessControl,
) -> io::Result<Spawned> {
    let (host_end, monitor_end) = UnixStream::pair()?;
    let path = match program {
        MonitorProgram::Path(p) => p.clone(),
        MonitorProgram::CurrentExe => std::env::current_exe()?,
    };
    // The monitor inherits its end where it is (close-on-exec cleared) and
    // moves it to MONITOR_FD itself. No `pre_exec` hook: without one, std
    // starts the process with posix_spawn (a vfork) instead of forking the
    // host, whose page tables (tens of megabytes for thousands of
    // resources) a fork copies while the engine thread stalls on them.
    // (std also gives the child an empty signal mask.)
    rustix::io::fcntl_setfd(&monitor_end, rustix::io::FdFlags::empty())?;
    let mut command = Command::new(&path);
    command
        .env(MONITOR_ENV, "1")
        .env(HOST_PID_ENV, std::process::id().to_string())
        .env(MONITOR_FD_ENV, monitor_end.as_raw_fd().to_string())
        .process_group(0);
    let child = control.spawn(&mut command).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("starting monitor {}: {e}", path.display()),
        )
    })?;
    drop(monitor_end);
    Ok(Spawned {
        child,
        socket: host_end,
    })
}

/// One line naming what the threads of [`thread_diagnostics`] wait in
/// (`name state wchan`), for a message: at most six, those idling in an
/// event loop left out.
pub fn summarize_threads(threads: &Value) -> String {
    let Some(list) = threads.as_array() else {
        return threads["error"].as_str().unwrap_or("unknown").to_owned();
    };
    let busy: Vec<String> = list
        .iter()
        .filter(|t| !matches!(t["wchan"].as_str(), Some("do_epoll_wait" | "ep_poll")))
        .take(6)
        .map(|t| {
            format!(
                "{} {} {}",
                t["name"].as_str().unwrap_or("?"),
                t["state"].as_str().unwrap_or("?"),
                t["wchan"].as_str().unwrap_or("?")
            )
        })
        .collect();
    busy.join(", ")
}

/// Per-thread state of a process from `/proc/<pid>/task/*`: what each thread
/// was doing, to find the cause of a hang afterwards. Files that cannot be
/// read (kernel `stack` needs privileges) are reported as such.
pub fn thread_diagnostics(pid: u32) -> Value {
    let task_dir = format!("/proc/{pid}/task");
    let entries = match std::fs::read_dir(&task_dir) {
        Ok(e) => e,
        Err(e) => return json!({ "error": format!("{task_dir}: {e}") }),
    };
    let mut threads: Vec<(u64, Value)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let tid: u64 = entry.file_name().to_str()?.parse().ok()?;
            let path = entry.path();
            let read = |name: &str| match std::fs::read_to_string(path.join(name)) {
                Ok(text) => Value::String(text.trim_end().to_owned()),
                Err(e) => Value::String(format!("<unreadable: {e}>")),
            };
            let stat = read("stat");
            let (comm, state) = stat
                .as_str()
                .and_then(parse_stat)
                .unwrap_or_else(|| ("?".into(), "?".into()));
            Some((
                tid,
                json!({
                    "tid": tid,
                    "name": comm,
                    "state": state,
                    "wchan": read("wchan"),
                    "syscall": read("syscall"),
                    "stack": read("stack"),
                }),
            ))
        })
        .collect();
    threads.sort_by_key(|(tid, _)| *tid);
    Value::Array(threads.into_iter().map(|(_, v)| v).collect())
}

/// `(comm, state)` from a `stat` line; comm may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(String, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let state = stat.get(close + 2..)?.split(' ').next()?.to_owned();
    Some((comm, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_names() {
        assert_eq!(
            parse_stat("42 (a (b) c) S 1 2 3"),
            Some(("a (b) c".into(), "S".into()))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn diagnostics_of_this_process_list_its_threads() {
        let d = thread_diagnostics(std::process::id());
        let threads = d.as_array().expect("an array of threads");
        assert!(!threads.is_empty());
        assert!(
            threads
                .iter()
                .all(|t| t["wchan"].is_string() && t["state"].is_string())
        );
        let missing = thread_diagnostics(u32::MAX);
        assert!(
            missing["error"]
                .as_str()
                .unwrap()
                .contains("/proc/4294967295/task")
        );
    }
}
