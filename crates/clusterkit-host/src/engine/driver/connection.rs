//! One monitor's socket as the engine thread sees it: a non-blocking
//! stream with a read buffer that frames are decoded from in place, and an
//! output buffer that a pass's frames are appended to and written from
//! with one `write`.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::protocol::{FrameError, MAX_FRAME_LEN, ToMonitor};

use super::super::ids::CallId;

/// How much one read asks for at least: a burst of replies (tens of bytes
/// each) arrives in one system call.
const READ_CHUNK: usize = 64 << 10;

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Bytes were added to the read buffer.
    Bytes,
    /// Nothing to read now.
    Nothing,
    /// The peer closed (or reset) the socket: a disconnect, not an error.
    Closed,
}

/// What a write of the output buffer did.
#[derive(Debug)]
pub(crate) enum Flushed {
    /// Everything went out.
    All,
    /// Some bytes wait for the socket to drain.
    Partly,
    /// The peer is gone; what waited is dropped (its exit drives recovery).
    PeerGone,
    /// The write failed other than by the peer going away.
    Failed(io::Error),
}

/// One monitor's socket and buffers.
pub(crate) struct Connection {
    /// None while the monitor is being spawned: frames queue meanwhile.
    pub(crate) socket: Option<UnixStream>,
    /// Read but not yet decoded; frames start at `decoded`.
    input: Vec<u8>,
    decoded: usize,
    /// Frames not yet written; bytes before `sent` went out.
    output: Vec<u8>,
    sent: usize,
    /// Calls in `output`, each with the offset its frame ends at: a call is
    /// written once `sent` reaches it.
    calls: Vec<(usize, CallId)>,
    /// Since when the output waits without the socket taking a byte.
    pub(crate) blocked_since: Option<Instant>,
    /// The socket ended or sent bytes that are not a frame: no more reads.
    pub(crate) reading: bool,
    /// A stuck write was reported; the monitor is being killed.
    pub(crate) write_failed: bool,
    /// Registered with the poller for writability.
    pub(crate) wants_write: bool,
}

impl Connection {
    /// A connection whose socket is not there yet.
    pub(crate) fn pending() -> Connection {
        Connection {
            socket: None,
            input: Vec::new(),
            decoded: 0,
            output: Vec::new(),
            sent: 0,
            calls: Vec::new(),
            blocked_since: None,
            reading: true,
            write_failed: false,
            wants_write: false,
        }
    }

    /// Appends a message's frame to the output; the caller writes it at the
    /// end of the pass.
    pub(crate) fn queue(&mut self, message: &ToMonitor) {
        message.encode_frame_into(&mut self.output);
        if let ToMonitor::Call { call, .. } = message {
            self.calls.push((self.output.len(), CallId(*call)));
        }
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_output(&self) -> bool {
        self.sent < self.output.len()
    }

    /// Writes what waits with one `write`; `written` hears each call whose
    /// frame went out completely, with the time the write returned.
    pub(crate) fn flush(&mut self, mut written: impl FnMut(CallId, Instant)) -> Flushed {
        let Some(socket) = &self.socket else {
            return Flushed::Partly;
        };
        let result = loop {
            match rustix::io::write(socket, &self.output[self.sent..]) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other,
            }
        };
        match result {
            Ok(n) => {
                let at = Instant::now();
                self.sent += n;
                let done = self.calls.partition_point(|(end, _)| *end <= self.sent);
                for (_, call) in self.calls.drain(..done) {
                    written(call, at);
                }
                if n > 0 {
                    self.blocked_since = None;
                }
                if self.sent == self.output.len() {
                    self.output.clear();
                    self.sent = 0;
                    Flushed::All
                } else {
                    Flushed::Partly
                }
            }
            Err(rustix::io::Errno::AGAIN) => Flushed::Partly,
            Err(e) => {
                self.output.clear();
                self.calls.clear();
                self.sent = 0;
                // The monitor closed its end: it is exiting. Its exit (and
                // the crash report it may have sent) drives recovery.
                if matches!(e, rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) {
                    Flushed::PeerGone
                } else {
                    Flushed::Failed(e.into())
                }
            }
        }
    }

    /// Reads once from the socket into the read buffer.
    pub(crate) fn receive(&mut self) -> Received {
        let Some(socket) = &self.socket else {
            return Received::Nothing;
        };
        if self.decoded == self.input.len() {
            self.input.clear();
            self.decoded = 0;
            // A burst once needed a large buffer; an idle monitor keeps a
            // small one.
            if self.input.capacity() > 4 * READ_CHUNK {
                self.input.shrink_to(READ_CHUNK);
            }
        } else if self.decoded > 0 {
            self.input.drain(..self.decoded);
            self.decoded = 0;
        }
        // Grows with the bytes that arrive, never with what a length prefix
        // claims: a lying prefix costs nothing until the bytes come.
        self.input.reserve(READ_CHUNK);
        loop {
            match rustix::io::read(socket, rustix::buffer::spare_capacity(&mut self.input)) {
                Ok(0) => return Received::Closed,
                Ok(_) => return Received::Bytes,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return Received::Nothing,
                // A reset or any other failure of the socket is its end,
                // as for a reader that saw it vanish.
                Err(_) => return Received::Closed,
            }
        }
    }

    /// Adds bytes to the read buffer as if read from the socket.
    #[cfg(test)]
    pub(crate) fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The next complete frame's payload in the read buffer, decoded in
    /// place; `None` until one is complete. An oversized or empty frame is
    /// an error that ends the connection.
    pub(crate) fn next_frame(&mut self) -> Option<Result<&[u8], FrameError>> {
        let waiting = &self.input[self.decoded..];
        let prefix: [u8; 4] = waiting.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(prefix) as usize;
        if len > MAX_FRAME_LEN {
            return Some(Err(FrameError::Oversized(len)));
        }
        if len == 0 {
            return Some(Err(FrameError::Malformed {
                offset: 0,
                reason: "empty frame".into(),
            }));
        }
        if waiting.len() < 4 + len {
            return None;
        }
        let start = self.decoded + 4;
        self.decoded = start + len;
        Some(Ok(&self.input[start..start + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FromMonitor, Op, Outcome};

    fn frame(message: &FromMonitor) -> Vec<u8> {
        let payload = message.encode();
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&payload);
        out
    }

    fn reply(call: u64) -> FromMonitor {
        FromMonitor::Reply {
            call,
            outcome: Outcome::Done,
        }
    }

    fn decode_all(connection: &mut Connection) -> Vec<FromMonitor> {
        let mut out = Vec::new();
        while let Some(payload) = connection.next_frame() {
            out.push(FromMonitor::decode(payload.unwrap()).unwrap());
        }
        out
    }

    #[test]
    fn every_frame_of_one_read_is_decoded_in_order() {
        let mut connection = Connection::pending();
        let bytes: Vec<u8> = (1..=500).flat_map(|call| frame(&reply(call))).collect();
        connection.push_input(&bytes);
        let calls: Vec<u64> = decode_all(&mut connection)
            .into_iter()
            .map(|m| match m {
                FromMonitor::Reply { call, .. } => call,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(calls, (1..=500).collect::<Vec<_>>());
    }

    #[test]
    fn a_frame_split_across_reads_waits_for_its_rest() {
        let mut connection = Connection::pending();
        let bytes = [frame(&reply(1)), frame(&reply(2))].concat();
        // Every split point, the length prefix's own bytes included.
        for cut in 1..bytes.len() {
            connection.push_input(&bytes[..cut]);
            let first = decode_all(&mut connection);
            connection.push_input(&bytes[cut..]);
            let rest = decode_all(&mut connection);
            assert_eq!(
                [first, rest].concat(),
                vec![reply(1), reply(2)],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_or_empty_frame_is_an_error() {
        let mut connection = Connection::pending();
        connection.push_input(&u32::MAX.to_le_bytes());
        let error = connection.next_frame().unwrap().unwrap_err();
        assert!(error.to_string().contains("exceeds the limit"), "{error}");
        let mut connection = Connection::pending();
        connection.push_input(&[0, 0, 0, 0]);
        let error = connection.next_frame().unwrap().unwrap_err();
        assert!(error.to_string().contains("empty frame"), "{error}");
    }

    #[test]
    fn queued_calls_go_out_in_one_write_and_are_noted_when_written() {
        let (host, monitor) = UnixStream::pair().unwrap();
        host.set_nonblocking(true).unwrap();
        let mut connection = Connection::pending();
        for call in 1..=3 {
            connection.queue(&ToMonitor::Call {
                call,
                resource: 1,
                op: Op::LooksAlive,
            });
        }
        connection.queue(&ToMonitor::Shutdown);
        let mut noted = Vec::new();
        // No socket yet (spawning): nothing goes out, nothing is noted.
        assert!(matches!(
            connection.flush(|c, _| noted.push(c)),
            Flushed::Partly
        ));
        assert!(noted.is_empty());
        connection.socket = Some(host);
        assert!(matches!(
            connection.flush(|c, _| noted.push(c)),
            Flushed::All
        ));
        assert_eq!(noted, [CallId(1), CallId(2), CallId(3)]);
        let mut reader = std::io::BufReader::new(monitor);
        let mut buf = Vec::new();
        for call in 1..=3 {
            crate::protocol::read_frame(&mut reader, &mut buf).unwrap();
            assert_eq!(
                ToMonitor::decode(&buf).unwrap(),
                ToMonitor::Call {
                    call,
                    resource: 1,
                    op: Op::LooksAlive
                }
            );
        }
        crate::protocol::read_frame(&mut reader, &mut buf).unwrap();
        assert_eq!(ToMonitor::decode(&buf).unwrap(), ToMonitor::Shutdown);
    }

    #[test]
    fn a_full_socket_keeps_the_rest_and_notes_only_what_went_out() {
        let (host, monitor) = UnixStream::pair().unwrap();
        host.set_nonblocking(true).unwrap();
        let mut connection = Connection::pending();
        connection.socket = Some(host);
        // Far more than a socket buffer holds.
        let input = vec![7u8; 8 << 20];
        connection.queue(&ToMonitor::Call {
            call: 1,
            resource: 1,
            op: Op::Control { code: 1, input },
        });
        connection.queue(&ToMonitor::Call {
            call: 2,
            resource: 1,
            op: Op::LooksAlive,
        });
        let mut noted = Vec::new();
        assert!(matches!(
            connection.flush(|c, _| noted.push(c)),
            Flushed::Partly
        ));
        assert!(connection.has_output());
        assert!(noted.is_empty(), "{noted:?}");
        // The monitor reads everything: the rest goes out.
        let reader = std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(monitor);
            let mut buf = Vec::new();
            let mut calls = Vec::new();
            for _ in 0..2 {
                crate::protocol::read_frame(&mut reader, &mut buf).unwrap();
                if let ToMonitor::Call { call, .. } = ToMonitor::decode(&buf).unwrap() {
                    calls.push(call);
                }
            }
            calls
        });
        let mut poll = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(connection.socket.as_ref().unwrap()),
            events: libc::POLLOUT,
            revents: 0,
        }];
        while connection.has_output() {
            // SAFETY: poll(2) on one valid pollfd.
            unsafe { libc::poll(poll.as_mut_ptr(), 1, 10_000) };
            connection.flush(|c, _| noted.push(c));
        }
        assert_eq!(noted, [CallId(1), CallId(2)]);
        assert_eq!(reader.join().unwrap(), [1, 2]);
    }
}
