//! A monitor started the way the host starts one (a socket pair, the
//! monitor's end on fd 3, `CLUSTERKIT_MONITOR=1`, `CLUSTERKIT_HOST_PID`),
//! driven over the protocol directly: the smallest possible host.

use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use clusterkit::{Health, Properties};
use clusterkit_host::protocol::{self, FromMonitor, Op, Outcome, ToMonitor};
use clusterkit_host::{HOST_PID_ENV, MONITOR_ENV};

use crate::sys;

/// Starts `command` with `socket` on fd `MONITOR_FD` (3) and, if `cpus`
/// is given, pinned to those CPUs.
pub(crate) fn spawn_on_fd3(
    command: &mut Command,
    socket: UnixStream,
    cpus: Option<&[usize]>,
) -> io::Result<Child> {
    if let Some(cpus) = cpus {
        // SAFETY: the closure only calls sched_setaffinity (async-signal-safe).
        unsafe { command.pre_exec(sys::pin_in_child(cpus)) };
    }
    let fd = clusterkit_host::hand_socket_to_monitor(command, socket);
    let child = command.spawn()?;
    drop(fd);
    Ok(child)
}

/// A running monitor and the host's end of its socket.
pub(crate) struct MonitorLink {
    child: Child,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    buf: Vec<u8>,
    next_call: u64,
    /// The monitor's pid (from its hello; differs from the child's under a
    /// wrapper such as strace).
    pub(crate) pid: u32,
}

impl MonitorLink {
    /// Starts a monitor, optionally pinned to `cpus` and under `wrapper`
    /// (a command line such as `strace -f -c -o FILE`), and waits for its
    /// hello.
    pub(crate) fn spawn(
        monitor: &Path,
        cpus: Option<&[usize]>,
        wrapper: &[String],
    ) -> io::Result<MonitorLink> {
        let (host_end, monitor_end) = UnixStream::pair()?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(monitor);
                c
            }
            None => {
                let mut c = Command::new(monitor);
                // Under a wrapper the monitor's parent is the wrapper, so the
                // host-pid check would make it exit: only set it without one.
                c.env(HOST_PID_ENV, std::process::id().to_string());
                c
            }
        };
        command.env(MONITOR_ENV, "1");
        let child = spawn_on_fd3(&mut command, monitor_end, cpus)?;
        let reader = BufReader::with_capacity(64 << 10, host_end.try_clone()?);
        let mut link = MonitorLink {
            child,
            writer: host_end,
            reader,
            buf: Vec::with_capacity(256),
            next_call: 1,
            pid: 0,
        };
        match link.receive()? {
            FromMonitor::Hello { pid, .. } => link.pid = pid,
            other => return Err(io::Error::other(format!("expected hello, got {other:?}"))),
        }
        Ok(link)
    }

    fn receive(&mut self) -> io::Result<FromMonitor> {
        protocol::read_frame(&mut self.reader, &mut self.buf).map_err(io::Error::other)?;
        FromMonitor::decode(&self.buf).map_err(io::Error::other)
    }

    /// Sends a call and waits for its reply (log lines are skipped).
    pub(crate) fn call(&mut self, resource: u32, op: Op) -> io::Result<Outcome> {
        let call = self.next_call;
        self.next_call += 1;
        let payload = ToMonitor::Call { call, resource, op }.encode();
        protocol::write_frame(&mut self.writer, &payload)?;
        loop {
            match self.receive()? {
                FromMonitor::Reply { call: c, outcome } if c == call => return Ok(outcome),
                FromMonitor::Log { .. } | FromMonitor::Report { .. } => {}
                other => return Err(io::Error::other(format!("unexpected {other:?}"))),
            }
        }
    }

    /// Loads `library` as library 1 and opens resource 1 of `type_name`
    /// named `name` with `properties`, then brings it online.
    pub(crate) fn open_online(
        &mut self,
        library: &Path,
        type_name: &str,
        name: &str,
        properties: &Properties,
    ) -> io::Result<()> {
        self.load_library(library)?;
        let outcome = self.call(
            1,
            Op::Open {
                library: 1,
                type_name: type_name.into(),
                name: name.into(),
                properties: properties.encode(),
                recover: false,
            },
        )?;
        expect(outcome, |o| matches!(o, Outcome::Done), "open")?;
        let outcome = self.call(1, Op::Online)?;
        expect(
            outcome,
            |o| matches!(o, Outcome::State(clusterkit::ResourceState::Online)),
            "online",
        )
    }

    /// Loads `library` as library 1.
    pub(crate) fn load_library(&mut self, library: &Path) -> io::Result<()> {
        let outcome = self.call(
            0,
            Op::LoadLibrary {
                library: 1,
                path: library.to_string_lossy().into_owned(),
            },
        )?;
        expect(outcome, |o| matches!(o, Outcome::Types(_)), "load library")
    }

    /// One `looks_alive` of resource 1, which must be healthy.
    pub(crate) fn looks_alive(&mut self) -> io::Result<()> {
        match self.call(1, Op::LooksAlive)? {
            Outcome::Health(Health::Healthy) => Ok(()),
            other => Err(io::Error::other(format!("looks_alive answered {other:?}"))),
        }
    }

    /// Asks the monitor to exit and waits for it.
    pub(crate) fn shutdown(mut self) -> io::Result<()> {
        protocol::write_frame(&mut self.writer, &ToMonitor::Shutdown.encode())?;
        self.writer.flush()?;
        self.child.wait()?;
        Ok(())
    }
}

fn expect(outcome: Outcome, ok: impl Fn(&Outcome) -> bool, what: &str) -> io::Result<()> {
    if ok(&outcome) {
        Ok(())
    } else {
        Err(io::Error::other(format!("{what} answered {outcome:?}")))
    }
}
