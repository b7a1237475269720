//! What the engine thread sleeps in: one epoll set holding every monitor
//! socket and an eventfd that whoever queues a [`Message`] writes, so
//! channel messages and socket bytes wake the same `epoll_wait`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};

use super::Message;
use crate::engine::ids::MonitorId;

/// The epoll token of the wake-up eventfd; monitors use their id (from 1).
const WAKE: u64 = 0;

/// Sends to the engine thread: queues the message, then wakes the engine.
#[derive(Clone)]
pub(crate) struct EngineSender {
    queue: SyncSender<Message>,
    wake: Arc<OwnedFd>,
}

impl EngineSender {
    /// Queues `message` and wakes the engine; once the engine has stopped,
    /// drops the message and fails.
    pub(crate) fn send(&self, message: Message) -> Result<(), EngineStopped> {
        self.queue.send(message).map_err(|_| EngineStopped)?;
        // The counter only saturates after 2^64 - 2 wake-ups; a failure
        // here leaves the message for the engine's next wake-up.
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        Ok(())
    }
}

/// The engine thread has stopped: nothing it is sent is received.
#[derive(Debug)]
pub(crate) struct EngineStopped;

/// The engine's inbox: a bounded channel (a flooding sender is slowed
/// down, the host's memory is not grown) plus its wake-up fd.
pub(crate) fn channel(capacity: usize) -> io::Result<(EngineSender, Inbox)> {
    let (queue, messages) = mpsc::sync_channel(capacity);
    let wake = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
    Ok((
        EngineSender {
            queue,
            wake: wake.clone(),
        },
        Inbox { messages, wake },
    ))
}

/// The receiving end of [`channel`].
pub(crate) struct Inbox {
    pub(crate) messages: Receiver<Message>,
    wake: Arc<OwnedFd>,
}

/// What woke the engine.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ready {
    /// Messages may wait in the inbox.
    Inbox,
    /// A monitor's socket: readable (or ended), writable.
    Monitor {
        monitor: MonitorId,
        readable: bool,
        writable: bool,
    },
}

/// The epoll set.
pub(crate) struct Poller {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
}

/// Room for what one `epoll_wait` reports; made on the engine thread
/// (epoll's event records are not `Send`).
pub(crate) struct Events(Vec<epoll::Event>);

impl Events {
    pub(crate) fn new() -> Events {
        Events(Vec::with_capacity(256))
    }
}

impl Poller {
    pub(crate) fn new(inbox: &Inbox) -> io::Result<Poller> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            &*inbox.wake,
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )?;
        Ok(Poller {
            epoll,
            wake: inbox.wake.clone(),
        })
    }

    /// Watches a monitor's socket for input (and output, if `write`).
    pub(crate) fn add(&self, monitor: MonitorId, socket: impl AsFd, write: bool) -> io::Result<()> {
        let data = epoll::EventData::new_u64(monitor.0);
        Ok(epoll::add(&self.epoll, socket, data, flags(true, write))?)
    }

    /// Changes what a monitor's socket is watched for.
    pub(crate) fn modify(
        &self,
        monitor: MonitorId,
        socket: impl AsFd,
        read: bool,
        write: bool,
    ) -> io::Result<()> {
        let data = epoll::EventData::new_u64(monitor.0);
        Ok(epoll::modify(
            &self.epoll,
            socket,
            data,
            flags(read, write),
        )?)
    }

    /// Stops watching a socket.
    pub(crate) fn remove(&self, socket: impl AsFd) {
        let _ = epoll::delete(&self.epoll, socket);
    }

    /// Sleeps until something is ready or `timeout` passes, then hands what
    /// is ready to `ready`.
    pub(crate) fn wait(
        &self,
        events: &mut Events,
        timeout: Duration,
        mut ready: impl FnMut(Ready),
    ) {
        // epoll_pwait2 (rustix's `linux_5_11`): nanoseconds, so a timer
        // is not pushed to the next millisecond.
        let timeout = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        events.0.clear();
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events.0),
            Some(&timeout),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return,
            Err(e) => {
                tracing::error!(target: "clusterkit::host", "epoll_wait: {e}");
                return;
            }
        }
        for event in &events.0 {
            let token = event.data.u64();
            let flags = event.flags;
            if token == WAKE {
                let mut count = [0u8; 8];
                let _ = rustix::io::read(&*self.wake, &mut count);
                ready(Ready::Inbox);
            } else {
                let ended = epoll::EventFlags::HUP | epoll::EventFlags::ERR;
                ready(Ready::Monitor {
                    monitor: MonitorId(token),
                    readable: flags.intersects(epoll::EventFlags::IN | ended),
                    writable: flags.intersects(epoll::EventFlags::OUT | ended),
                });
            }
        }
    }
}

fn flags(read: bool, write: bool) -> epoll::EventFlags {
    let mut flags = epoll::EventFlags::empty();
    if read {
        flags |= epoll::EventFlags::IN;
    }
    if write {
        flags |= epoll::EventFlags::OUT;
    }
    flags
}
