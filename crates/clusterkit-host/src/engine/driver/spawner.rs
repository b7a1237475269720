//! Starting monitors off the engine thread: a fork/exec takes milliseconds,
//! during which the engine would fire no deadline and read no reply. The
//! spawner thread starts each monitor the engine asks for and hands back
//! its pid and socket as a [`Message::Spawned`]; a waiter thread per monitor
//! then reports its exit.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use super::Message;
use super::poller::EngineSender;
use crate::engine::core::Input;
use crate::engine::ids::MonitorId;
use crate::process::{self, MonitorProgram, ProcessControl};

/// A started monitor, or why it could not be started.
pub(crate) type SpawnResult = Result<(u32, UnixStream), String>;

/// Starts the spawner thread; monitors sent to the returned sender are
/// started in order. The thread ends when the sender is dropped.
pub(crate) fn start(
    program: MonitorProgram,
    control: Arc<dyn ProcessControl>,
    engine: EngineSender,
) -> std::io::Result<Sender<MonitorId>> {
    let (tx, rx) = mpsc::channel::<MonitorId>();
    std::thread::Builder::new()
        .name("ck-spawner".into())
        .spawn(move || {
            for monitor in rx {
                if !spawn(monitor, &program, control.as_ref(), &engine) {
                    return;
                }
            }
        })?;
    Ok(tx)
}

/// Starts one monitor; false once the engine has stopped.
fn spawn(
    monitor: MonitorId,
    program: &MonitorProgram,
    control: &dyn ProcessControl,
    engine: &EngineSender,
) -> bool {
    let spawned = match process::spawn_monitor(program, control) {
        Ok(s) => s,
        Err(e) => {
            let failed = Message::Spawned(monitor, Err(e.to_string()));
            return engine.send(failed).is_ok();
        }
    };
    let mut child = spawned.child;
    let pid = child.id();
    let socket = spawned.socket;
    if let Err(e) = socket.set_nonblocking(true) {
        let _ = control.kill(pid);
        let _ = child.wait();
        let error = format!("making the monitor's socket non-blocking: {e}");
        return engine.send(Message::Spawned(monitor, Err(error))).is_ok();
    }
    // Sent before the waiter starts: the engine hears of the monitor
    // before its exit.
    if engine
        .send(Message::Spawned(monitor, Ok((pid, socket))))
        .is_err()
    {
        // The engine stopped meanwhile: the monitor reads the end of its
        // socket and exits; reap it.
        let _ = child.wait();
        return false;
    }
    let engine = engine.clone();
    let _ = std::thread::Builder::new()
        .name(format!("ck-monitor-{monitor}-waiter"))
        .spawn(move || {
            use std::os::unix::process::ExitStatusExt;
            let (status, signal) = match child.wait() {
                Ok(s) => (s.to_string(), s.signal()),
                Err(e) => (format!("wait failed: {e}"), None),
            };
            let _ = engine.send(Message::Monitor(Input::Exited {
                monitor,
                status,
                signal,
            }));
        });
    true
}
