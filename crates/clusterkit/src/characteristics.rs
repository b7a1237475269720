//! What a resource type can do, as bit flags.

bitflags::bitflags! {
    /// Capabilities and rules of a resource type. Bit positions are stable
    /// and cross the C ABI; unknown bits received from a library are kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Characteristics: u64 {
        /// The type can arbitrate for quorum (`arbitrate` / `release`).
        const QUORUM = 1 << 0;
        /// The type can adopt its running workload after its monitor
        /// restarts (`open` with `recover = true`), without a restart.
        const REATTACH = 1 << 1;
        /// At most one resource of this type per group.
        const SINGLE_GROUP_INSTANCE = 1 << 2;
        /// Deleting a resource of this type needs every node up.
        const DELETE_REQUIRES_ALL_NODES = 1 << 3;
        /// The resource is never taken offline to make room for another.
        const NOT_PREEMPTABLE = 1 << 4;
        // Bits 5..=47 are reserved for clusterkit; 48..=63 are free for vendors.
        const _ = !0;
    }
}
