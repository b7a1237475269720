//! Shared by the CLI's integration tests.

pub mod cli;
pub mod pacemaker;
