//! The host's engine, in two layers.
//!
//! - [`core`]: every decision, without I/O. Inputs (monitor frames, monitor
//!   deaths, operator commands) come in with the time; actions (send a
//!   frame, spawn or kill a monitor, emit, persist, reply) come out. Its
//!   parts: [`lifecycle`] (a resource's phases), [`monitors`] (placement,
//!   libraries, validation, kills), [`frames`] (what monitors say),
//!   [`commands`] (what operators ask), [`cleanup`] (an operator's
//!   cleanup after failures), [`transitions`] (open, online,
//!   offline, pending, terminate, failure, restart policy), [`health`]
//!   (polling), [`recovery`] (deadlines, deaths, blame, isolation),
//!   [`calls`] and [`timers`] (the tables of what is in flight and what is
//!   due), [`decide`] (the pure decisions, table-tested), [`publish`]
//!   (statuses and the persisted state) and [`reconfigure`] (resources
//!   added, changed and removed while the host runs).
//! - [`driver`]: the engine thread. It reads the clock, carries out the
//!   core's actions, and owns the monitor processes and their sockets, the
//!   event log, the state file and the published statuses.
//!
//! The simulation (`engine/simulation`, tests only) drives the same core
//! with simulated monitors and a simulated clock. `docs/ARCHITECTURE.md`
//! shows how a health check and a recovery travel through these layers.

pub(crate) mod calls;
pub(crate) mod cleanup;
pub(crate) mod commands;
pub(crate) mod core;
pub(crate) mod decide;
pub(crate) mod driver;
pub(crate) mod frames;
pub(crate) mod health;
pub(crate) mod ids;
pub(crate) mod lifecycle;
pub(crate) mod monitors;
pub(crate) mod publish;
pub(crate) mod reconfigure;
pub(crate) mod recovery;
pub(crate) mod timers;
pub(crate) mod transitions;

#[cfg(test)]
mod simulation;
