//! Shared by the CLI's integration tests.

pub mod pacemaker;
