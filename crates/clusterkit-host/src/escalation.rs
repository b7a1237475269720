//! What the host does when a killed monitor will not die.

use std::sync::Arc;

use crate::events::Event;

/// The exit code of a host whose escalation action is
/// [`Escalation::ExitProcess`]: a killed monitor did not exit within
/// 4 × `deadlock_timeout`. A cluster engine seeing it should fence the node
/// (the kernel may be wedged: a process in uninterruptible sleep).
pub const ESCALATION_EXIT_CODE: i32 = 86;

/// What the host does when a killed monitor will not die.
#[derive(Clone)]
pub enum Escalation {
    /// Exit the host process with [`ESCALATION_EXIT_CODE`].
    ExitProcess,
    /// Call a hook with the `escalation` event and carry on.
    Hook(Arc<dyn Fn(&Event) + Send + Sync>),
}

impl std::fmt::Debug for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Escalation::ExitProcess => f.write_str("ExitProcess"),
            Escalation::Hook(_) => f.write_str("Hook(..)"),
        }
    }
}
