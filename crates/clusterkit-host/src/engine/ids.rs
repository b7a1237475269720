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
