//! The clusterkit host: runs resources in isolated monitor processes.
//!
//! This is the portable, more robust equivalent of Windows' Resource Hosting
//! Subsystem. A [`Host`] starts monitor processes, loads resource libraries
//! in them, and drives every resource toward its desired state:
//!
//! - **Isolation.** Resources run in monitors, grouped by [`Placement`]
//!   (`core`, `storage`, `default`), or alone with `separate_monitor`.
//!   Within a monitor, calls to one resource are serialized (except
//!   `terminate`) and different resources run concurrently, so a slow check
//!   never delays another's.
//! - **Deadlines.** Every call has one (`deadlock_timeout`); a pending
//!   operation must report progress within `pending_timeout`.
//! - **Health polling.** `looks_alive` every `looks_alive_interval`,
//!   `is_alive` every `is_alive_interval` and at once after a failed
//!   `looks_alive`; a failed `is_alive` fails the resource. Timers run at a
//!   fixed rate and never pile up.
//! - **Restart policy** ([`RestartPolicy`]): terminate, restart after a
//!   delay (optionally backing off), and past the threshold emit
//!   `failover_requested` for the cluster engine.
//! - **Recovery.** A call past its deadline gets the monitor's thread
//!   diagnostics recorded, the monitor killed and replaced; co-hosted
//!   resources re-open with `recover = true` and `REATTACH` types resume
//!   online without a restart; the culprit is isolated in a monitor of its
//!   own. A monitor that will not die triggers the [`Escalation`].
//! - **Events** ([`Event`]) to subscribers, `tracing` and
//!   `<state-dir>/events.jsonl`; **state** (desired state, isolation,
//!   restart counters) persisted crash-safely in `<state-dir>/state.json`.
//!
//! # Monitor processes
//!
//! A host needs a monitor executable. Either ship this crate's
//! `clusterkit-monitor` binary and name it with [`MonitorProgram::Path`], or
//! let the host binary re-execute itself ([`MonitorProgram::CurrentExe`])
//! and call [`run_if_monitor`] first thing in `main`
//! (`examples/custom-host.rs` does this).
//!
//! # Example
//!
//! ```no_run
//! use clusterkit::ResourceState;
//! use clusterkit_host::{HostBuilder, MonitorProgram, ResourceConfig};
//! use std::time::Duration;
//!
//! clusterkit_host::run_if_monitor();
//! let host = HostBuilder::new("/var/lib/myhost", MonitorProgram::CurrentExe)
//!     .resource(
//!         ResourceConfig::new("web", "/usr/lib/clusterkit/libclusterkit_dummy.so", "dummy")
//!             .property("state_dir", "/run/myhost"),
//!     )
//!     .start()?;
//! host.online("web")?;
//! host.wait_for_state("web", ResourceState::Online, Duration::from_secs(10))?;
//! for status in host.status() {
//!     println!("{} {} pid={:?}", status.name, status.state, status.monitor_pid);
//! }
//! # Ok::<(), clusterkit_host::HostError>(())
//! ```

#![warn(missing_docs)]

mod config;
mod engine;
mod error;
mod escalation;
mod events;
mod host;
mod id_hash;
mod metrics;
mod monitor;
mod policy;
mod pool;
mod process;
pub mod protocol;
mod resolve;
mod state_file;
mod static_types;
mod status;
#[doc(hidden)]
pub mod testing;

pub use config::{
    Backoff, MIN_DEADLOCK_TIMEOUT, Placement, ResourceConfig, RestartAction, RestartPolicy, Timing,
    TimingOverrides,
};
pub use engine::reconfigure::{Applies, Reconfigured, ResourceChange};
pub use error::HostError;
pub use escalation::{ESCALATION_EXIT_CODE, Escalation};
pub use events::{Event, EventKind, EventLogLimits, event_log_files, rfc3339};
pub use host::{Host, HostBuilder, ResourceSet};
pub use metrics::{CHECK_LATENCY_BUCKETS_US, CheckKind, LatencySnapshot};
pub use monitor::{
    HOST_PID_ENV, MONITOR_ENV, MONITOR_FD, MONITOR_FD_ENV, run_if_monitor, run_monitor,
};
pub use policy::{Decision, RestartCounters};
pub use process::{
    MonitorProgram, ProcessControl, SystemProcesses, hand_socket_to_monitor, summarize_threads,
    thread_diagnostics,
};
pub use state_file::{ClockMark, Desired, PersistedResource, PersistedState};
pub use static_types::{STATIC_LIBRARY_PREFIX, register_static_library, static_library_path};
pub use status::{FailureRecord, ResourceStatus, StateCounts};
