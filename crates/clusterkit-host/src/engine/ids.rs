//! Identifiers as newtypes, so a resource index is never taken for a call id.

use std::fmt;

/// A resource: its index in configuration order. On the wire it is
/// `index + 1`, since 0 means "no resource".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ResourceId(pub(crate) usize);

impl ResourceId {
    /// The id a monitor knows the resource by.
    pub(crate) fn wire(self) -> u32 {
        u32::try_from(self.0 + 1).unwrap_or(u32::MAX)
    }

    /// The resource a monitor named, if the id is one at all.
    pub(crate) fn from_wire(id: u32) -> Option<ResourceId> {
        (id as usize).checked_sub(1).map(ResourceId)
    }
}

/// A monitor process, numbered from 1 in the order the engine asked for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MonitorId(pub(crate) u64);

impl fmt::Display for MonitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One call sent to a monitor; the monitor's reply names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CallId(pub(crate) u64);

/// A resource library, by its index in the order first named. On the wire
/// it is `index + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct LibraryId(pub(crate) usize);

impl LibraryId {
    /// The id a monitor knows the library by.
    pub(crate) fn wire(self) -> u32 {
        u32::try_from(self.0 + 1).unwrap_or(u32::MAX)
    }
}

/// An operator request waiting for its answer; the driver keeps the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RequestId(pub(crate) u64);

/// A fast hasher for the engine's maps keyed by ids and timer keys. The
/// keys come from the host itself, never from a peer, so SipHash's
/// protection against chosen keys buys nothing, and these maps are on the
/// path of every health check.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        // FxHash's step: rotate, mix in, multiply by an odd constant.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// `HashMap`s keyed by ids use [`IdHasher`].
pub(crate) type IdMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;
