//! The host ↔ monitor protocol: length-prefixed binary frames on a Unix
//! socket.
//!
//! A frame is a little-endian `u32` payload length followed by the payload;
//! a payload is a one-byte message tag followed by the message's fields
//! (integers little-endian, strings and byte strings as `u32` length plus
//! bytes). Frames over [`MAX_FRAME_LEN`] and any malformed payload are
//! errors that end the connection: the host treats the monitor as dead and
//! recovers, and never panics on what a monitor sends.

use std::io::{self, Read, Write};
use std::time::Duration;

use clusterkit::{
    Apply, Characteristics, Error, ErrorCode, Health, Properties, PropertyKind, PropertySpec,
    ResourceState, Schema, TypeDescription,
};

/// The protocol version exchanged in [`FromMonitor::Hello`].
pub const PROTOCOL_VERSION: u32 = 2;
/// The largest frame payload accepted (16 MiB plus headroom for fields).
pub const MAX_FRAME_LEN: usize = (16 << 20) + (64 << 10);

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed mid-frame.
    #[error("monitor connection: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection between frames.
    #[error("monitor connection closed")]
    Closed,
    /// The frame announced a payload over [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN}")]
    Oversized(usize),
    /// The payload is not a valid message.
    #[error("malformed frame at byte {offset}: {reason}")]
    Malformed {
        /// Where in the payload.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// An operation on a resource (or, for `LoadLibrary`, on the monitor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Load a resource library; replies [`Outcome::Types`].
    LoadLibrary {
        /// Host-chosen library id.
        library: u32,
        /// Where it is.
        path: String,
    },
    /// Open a resource; replies [`Outcome::Done`].
    Open {
        /// A library loaded before.
        library: u32,
        /// The type's name.
        type_name: String,
        /// The resource's name.
        name: String,
        /// Encoded property list.
        properties: Vec<u8>,
        /// Adopt a running workload.
        recover: bool,
    },
    /// `online`; replies [`Outcome::State`].
    Online,
    /// `offline`; replies [`Outcome::State`].
    Offline,
    /// `terminate`; runs even while another call is in flight.
    Terminate,
    /// `looks_alive`; replies [`Outcome::Health`].
    LooksAlive,
    /// `is_alive`; replies [`Outcome::Health`].
    IsAlive,
    /// `close`; replies [`Outcome::Done`].
    Close,
    /// `control`; replies [`Outcome::Bytes`].
    Control {
        /// The control code.
        code: u32,
        /// Its input.
        input: Vec<u8>,
    },
}

impl Op {
    /// The entry point's name, as in events.
    pub fn name(&self) -> &'static str {
        match self {
            Op::LoadLibrary { .. } => "startup",
            Op::Open { .. } => "open",
            Op::Online => "online",
            Op::Offline => "offline",
            Op::Terminate => "terminate",
            Op::LooksAlive => "looks_alive",
            Op::IsAlive => "is_alive",
            Op::Close => "close",
            Op::Control { .. } => "control",
        }
    }
}

/// A message from the host to a monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToMonitor {
    /// Run `op` on `resource` (0 for library operations); reply with `call`.
    Call {
        /// Host-chosen call id, echoed in the reply.
        call: u64,
        /// Host-chosen resource id.
        resource: u32,
        /// What to do.
        op: Op,
    },
    /// Exit now, leaving workloads running.
    Shutdown,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success with nothing to return.
    Done,
    /// `online`/`offline`: the state reached, or the pending one.
    State(ResourceState),
    /// A health check's result.
    Health(Health),
    /// Control output.
    Bytes(Vec<u8>),
    /// The types a library exports.
    Types(Vec<TypeDescription>),
    /// An error.
    Failed(Error),
}

/// A message from a monitor to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromMonitor {
    /// First message: who the monitor is.
    Hello {
        /// The monitor's process id.
        pid: u32,
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// The end of a call.
    Reply {
        /// The call's id.
        call: u64,
        /// How it ended.
        outcome: Outcome,
    },
    /// Progress of a pending operation.
    Report {
        /// The `online`/`offline` call that went pending.
        call: u64,
        /// The resource.
        resource: u32,
        /// The checkpoint.
        checkpoint: u32,
        /// When the next report is due.
        wait_hint_ms: u64,
    },
    /// The end of a pending operation: a `CK_STATE_*` or an error.
    Complete {
        /// The `online`/`offline` call that went pending.
        call: u64,
        /// The resource.
        resource: u32,
        /// Reached state, or the error.
        outcome: Result<ResourceState, Error>,
    },
    /// A log line (resource 0: the library or monitor itself).
    Log {
        /// The resource.
        resource: u32,
        /// `clusterkit::Level` as a number.
        level: u32,
        /// The line.
        message: String,
    },
    /// The monitor is crashing while running `call` (sent from a signal handler).
    Crashing {
        /// The call in flight on the crashing thread.
        call: u64,
        /// The signal number.
        signal: u32,
    },
}

// ---- encoding ----

/// Builds one payload.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.0.extend_from_slice(&b[..len as usize]);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn error(&mut self, e: &Error) {
        self.u32(e.code().as_i32() as u32);
        self.str(&e.message());
    }
}

/// Reads one payload, never past its end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Decoded<T> = Result<T, FrameError>;

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }
    fn fail<T>(&self, reason: impl Into<String>) -> Decoded<T> {
        Err(FrameError::Malformed {
            offset: self.pos,
            reason: reason.into(),
        })
    }
    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        if n > self.bytes.len() - self.pos {
            return self.fail(format!(
                "needs {n} bytes, {} remain",
                self.bytes.len() - self.pos
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }
    /// A resource state, checked: an unknown number is a malformed frame.
    fn state(&mut self) -> Decoded<ResourceState> {
        let value = self.u32()?;
        match ResourceState::from_u32(value) {
            Some(state) => Ok(state),
            None => self.fail(format!("unknown resource state {value}")),
        }
    }

    fn u32(&mut self) -> Decoded<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Decoded<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i128(&mut self) -> Decoded<i128> {
        Ok(i128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
    fn bool(&mut self) -> Decoded<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => self.fail(format!("boolean byte {b}")),
        }
    }
    fn bytes(&mut self) -> Decoded<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> Decoded<String> {
        let b = self.bytes()?;
        String::from_utf8(b).or_else(|_| self.fail("string is not UTF-8"))
    }
    fn error(&mut self) -> Decoded<Error> {
        let code = self.u32()? as i32;
        let message = self.str()?;
        Ok(match ErrorCode::from_i32(code) {
            Some(c) => Error::from_code(c, message),
            None => Error::Internal(format!("unknown error code {code}: {message}")),
        })
    }
    fn count(&mut self, min_item_len: usize) -> Decoded<usize> {
        let n = self.u32()? as usize;
        if n > (self.bytes.len() - self.pos) / min_item_len.max(1) {
            return self.fail(format!("count {n} cannot fit in the rest of the frame"));
        }
        Ok(n)
    }
    fn finish(&self) -> Decoded<()> {
        if self.pos != self.bytes.len() {
            return self.fail(format!("{} trailing bytes", self.bytes.len() - self.pos));
        }
        Ok(())
    }
}

impl ToMonitor {
    /// The payload (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_to(&mut w);
        w.0
    }

    /// Appends the whole frame (length prefix and payload) to `out`,
    /// without allocating beyond `out`'s growth: the host queues many calls
    /// in one buffer and writes them at once.
    pub fn encode_frame_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut w = Writer(std::mem::take(out));
        self.encode_to(&mut w);
        *out = w.0;
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn encode_to(&self, w: &mut Writer) {
        match self {
            ToMonitor::Call { call, resource, op } => {
                w.u8(1);
                w.u64(*call);
                w.u32(*resource);
                match op {
                    Op::LoadLibrary { library, path } => {
                        w.u8(1);
                        w.u32(*library);
                        w.str(path);
                    }
                    Op::Open {
                        library,
                        type_name,
                        name,
                        properties,
                        recover,
                    } => {
                        w.u8(2);
                        w.u32(*library);
                        w.str(type_name);
                        w.str(name);
                        w.bytes(properties);
                        w.u8(u8::from(*recover));
                    }
                    Op::Online => w.u8(3),
                    Op::Offline => w.u8(4),
                    Op::Terminate => w.u8(5),
                    Op::LooksAlive => w.u8(6),
                    Op::IsAlive => w.u8(7),
                    Op::Close => w.u8(8),
                    Op::Control { code, input } => {
                        w.u8(9);
                        w.u32(*code);
                        w.bytes(input);
                    }
                }
            }
            ToMonitor::Shutdown => w.u8(2),
        }
    }

    /// Decodes a payload.
    pub fn decode(payload: &[u8]) -> Result<ToMonitor, FrameError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8()? {
            1 => {
                let call = r.u64()?;
                let resource = r.u32()?;
                let op = match r.u8()? {
                    1 => Op::LoadLibrary {
                        library: r.u32()?,
                        path: r.str()?,
                    },
                    2 => Op::Open {
                        library: r.u32()?,
                        type_name: r.str()?,
                        name: r.str()?,
                        properties: r.bytes()?,
                        recover: r.bool()?,
                    },
                    3 => Op::Online,
                    4 => Op::Offline,
                    5 => Op::Terminate,
                    6 => Op::LooksAlive,
                    7 => Op::IsAlive,
                    8 => Op::Close,
                    9 => Op::Control {
                        code: r.u32()?,
                        input: r.bytes()?,
                    },
                    t => return r.fail(format!("unknown operation {t}")),
                };
                ToMonitor::Call { call, resource, op }
            }
            2 => ToMonitor::Shutdown,
            t => return r.fail(format!("unknown message tag {t}")),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn encode_health(w: &mut Writer, health: &Health) {
    let (status, reason) = match health {
        Health::Healthy => (0, ""),
        Health::Degraded(r) => (1, r.as_str()),
        Health::Failed(r) => (2, r.as_str()),
    };
    w.u8(status);
    w.str(reason);
}

fn decode_health(r: &mut Reader<'_>) -> Decoded<Health> {
    let status = r.u8()?;
    let reason = r.str()?;
    match status {
        0 => Ok(Health::Healthy),
        1 => Ok(Health::Degraded(reason)),
        2 => Ok(Health::Failed(reason)),
        s => r.fail(format!("unknown health status {s}")),
    }
}

fn encode_type(w: &mut Writer, t: &TypeDescription) {
    w.str(&t.name);
    w.str(&t.description);
    w.u64(t.characteristics.bits());
    w.u32(t.schema.specs().len() as u32);
    for spec in t.schema.specs() {
        w.str(&spec.name);
        w.str(&spec.description);
        w.u8(spec.kind as u8);
        let flags = u8::from(spec.required)
            | u8::from(spec.read_only) << 1
            | u8::from(spec.apply == Apply::Live) << 2
            | u8::from(spec.min.is_some()) << 3
            | u8::from(spec.max.is_some()) << 4
            | u8::from(spec.is_secret()) << 5;
        w.u8(flags);
        w.i128(spec.min.unwrap_or(0));
        w.i128(spec.max.unwrap_or(0));
        let mut default = Properties::new();
        if let Some(v) = &spec.default {
            default.insert(spec.name.as_ref(), v.clone());
        }
        w.bytes(&default.encode());
    }
}

fn decode_type(r: &mut Reader<'_>) -> Decoded<TypeDescription> {
    let name = r.str()?;
    let description = r.str()?;
    let characteristics = Characteristics::from_bits_retain(r.u64()?);
    let count = r.count(8)?;
    let mut specs = Vec::with_capacity(count);
    for _ in 0..count {
        let spec_name = r.str()?;
        let spec_description = r.str()?;
        let kind_byte = r.u8()?;
        let Some(kind) = PropertyKind::from_u8(kind_byte) else {
            return r.fail(format!("unknown property kind {kind_byte}"));
        };
        let flags = r.u8()?;
        let min = r.i128()?;
        let max = r.i128()?;
        let default_list = Properties::decode(&r.bytes()?).or_else(|e| r.fail(e.to_string()))?;
        let mut spec = PropertySpec::new(spec_name.clone(), kind).describe(spec_description);
        spec.required = flags & 1 != 0;
        spec.read_only = flags & 2 != 0;
        spec.apply = if flags & 4 != 0 {
            Apply::Live
        } else {
            Apply::NextOnline
        };
        spec.min = (flags & 8 != 0).then_some(min);
        spec.max = (flags & 16 != 0).then_some(max);
        spec.secret = flags & 32 != 0;
        spec.default = default_list.get(&spec_name).cloned();
        specs.push(spec);
    }
    Ok(TypeDescription {
        name: name.into(),
        description: description.into(),
        characteristics,
        schema: Schema::new(specs),
    })
}

impl FromMonitor {
    /// The payload (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write_payload(&mut w);
        w.0
    }

    /// Appends the whole frame (length prefix and payload) to `out`,
    /// allocating only if `out` has to grow: the monitor batches its
    /// replies in one reused buffer.
    pub(crate) fn append_frame(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut w = Writer(std::mem::take(out));
        self.write_payload(&mut w);
        *out = w.0;
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn write_payload(&self, w: &mut Writer) {
        match self {
            FromMonitor::Hello { pid, protocol } => {
                w.u8(1);
                w.u32(*pid);
                w.u32(*protocol);
            }
            FromMonitor::Reply { call, outcome } => {
                w.u8(2);
                w.u64(*call);
                match outcome {
                    Outcome::Done => w.u8(0),
                    Outcome::State(s) => {
                        w.u8(1);
                        w.u32(*s as u32);
                    }
                    Outcome::Health(h) => {
                        w.u8(2);
                        encode_health(w, h);
                    }
                    Outcome::Bytes(b) => {
                        w.u8(3);
                        w.bytes(b);
                    }
                    Outcome::Types(types) => {
                        w.u8(4);
                        w.u32(types.len() as u32);
                        for t in types {
                            encode_type(w, t);
                        }
                    }
                    Outcome::Failed(e) => {
                        w.u8(5);
                        w.error(e);
                    }
                }
            }
            FromMonitor::Report {
                call,
                resource,
                checkpoint,
                wait_hint_ms,
            } => {
                w.u8(3);
                w.u64(*call);
                w.u32(*resource);
                w.u32(*checkpoint);
                w.u64(*wait_hint_ms);
            }
            FromMonitor::Complete {
                call,
                resource,
                outcome,
            } => {
                w.u8(4);
                w.u64(*call);
                w.u32(*resource);
                match outcome {
                    Ok(state) => {
                        w.u8(0);
                        w.u32(*state as u32);
                    }
                    Err(e) => {
                        w.u8(1);
                        w.error(e);
                    }
                }
            }
            FromMonitor::Log {
                resource,
                level,
                message,
            } => {
                w.u8(5);
                w.u32(*resource);
                w.u32(*level);
                w.str(message);
            }
            FromMonitor::Crashing { call, signal } => {
                w.u8(6);
                w.u64(*call);
                w.u32(*signal);
            }
        }
    }

    /// Decodes a payload; anything malformed is an error, never a panic.
    pub fn decode(payload: &[u8]) -> Result<FromMonitor, FrameError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8()? {
            1 => FromMonitor::Hello {
                pid: r.u32()?,
                protocol: r.u32()?,
            },
            2 => {
                let call = r.u64()?;
                let outcome = match r.u8()? {
                    0 => Outcome::Done,
                    1 => Outcome::State(r.state()?),
                    2 => Outcome::Health(decode_health(&mut r)?),
                    3 => Outcome::Bytes(r.bytes()?),
                    4 => {
                        let n = r.count(20)?;
                        let mut types = Vec::with_capacity(n);
                        for _ in 0..n {
                            types.push(decode_type(&mut r)?);
                        }
                        Outcome::Types(types)
                    }
                    5 => Outcome::Failed(r.error()?),
                    t => return r.fail(format!("unknown outcome {t}")),
                };
                FromMonitor::Reply { call, outcome }
            }
            3 => FromMonitor::Report {
                call: r.u64()?,
                resource: r.u32()?,
                checkpoint: r.u32()?,
                wait_hint_ms: r.u64()?,
            },
            4 => {
                let call = r.u64()?;
                let resource = r.u32()?;
                let outcome = match r.u8()? {
                    0 => Ok(r.state()?),
                    1 => Err(r.error()?),
                    t => return r.fail(format!("unknown completion {t}")),
                };
                FromMonitor::Complete {
                    call,
                    resource,
                    outcome,
                }
            }
            5 => FromMonitor::Log {
                resource: r.u32()?,
                level: r.u32()?,
                message: r.str()?,
            },
            6 => FromMonitor::Crashing {
                call: r.u64()?,
                signal: r.u32()?,
            },
            t => return r.fail(format!("unknown message tag {t}")),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// The length of a [`crash_frame`].
pub(crate) const CRASH_FRAME_LEN: usize = 4 + 1 + 8 + 4;

/// The whole frame (length prefix included) of
/// [`FromMonitor::Crashing`], built without allocating: a monitor's crash
/// handler writes it from a signal handler, where only async-signal-safe
/// code may run.
pub(crate) fn crash_frame(call: u64, signal: u32) -> [u8; CRASH_FRAME_LEN] {
    let mut frame = [0u8; CRASH_FRAME_LEN];
    frame[..4].copy_from_slice(&((CRASH_FRAME_LEN - 4) as u32).to_le_bytes());
    frame[4] = 6;
    frame[5..13].copy_from_slice(&call.to_le_bytes());
    frame[13..17].copy_from_slice(&signal.to_le_bytes());
    frame
}

/// Writes one frame (length prefix and payload) in a single `write_all`.
pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    out.write_all(&frame)
}

/// Reads one frame's payload into `buf`.
pub fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    if let Err(e) = input.read_exact(&mut len[..1]) {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Closed
        } else {
            FrameError::Io(e)
        });
    }
    input.read_exact(&mut len[1..])?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized(len));
    }
    if len == 0 {
        return Err(FrameError::Malformed {
            offset: 0,
            reason: "empty frame".into(),
        });
    }
    // Grow with the data actually received: a lying length prefix costs
    // nothing until the bytes arrive.
    buf.clear();
    let read = input.take(len as u64).read_to_end(buf)?;
    if read < len {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame of {len} bytes ended after {read}"),
        )));
    }
    Ok(())
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
