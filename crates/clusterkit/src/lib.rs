//! The clusterkit resource contract.
//!
//! A *resource* is something a high-availability cluster brings online,
//! watches and recovers: an IP address, a DNS name, a disk, a virtual
//! machine. This crate defines what a resource must do, the equivalent of a
//! Windows Failover Clustering resource DLL, in portable Rust:
//!
//! - [`ResourceType`]: a factory living once per monitor process; it
//!   describes itself ([`TypeDescription`]: name, [`Characteristics`],
//!   property [`Schema`]) and opens resources.
//! - [`Resource`]: the entry points the host calls: `online`, `offline`,
//!   `terminate`, `looks_alive` (cheap, frequent), `is_alive` (thorough,
//!   rarer), optional `arbitrate`/`release`, `control` and `close`.
//! - [`export_resource_types!`]: exports types from a `cdylib` through the
//!   versioned C table of [`ffi`], with a panic boundary on every entry point.
//!
//! # Writing a resource, in one page
//!
//! A "marker" resource that is online while a file exists:
//!
//! ```
//! use clusterkit::*;
//! use std::path::PathBuf;
//!
//! pub struct MarkerType;
//!
//! pub struct Marker {
//!     ctx: ResourceContext,
//!     path: PathBuf,
//! }
//!
//! impl ResourceType for MarkerType {
//!     type Resource = Marker;
//!
//!     fn describe() -> TypeDescription {
//!         TypeDescription {
//!             name: "marker".into(),
//!             description: "Online while its marker file exists".into(),
//!             characteristics: Characteristics::REATTACH,
//!             schema: Schema::new(vec![
//!                 PropertySpec::string("path").describe("The marker file").required().min(1),
//!             ]),
//!         }
//!     }
//!
//!     fn startup(_ctx: &StartupContext) -> Result<Self> {
//!         Ok(MarkerType)
//!     }
//!
//!     // `properties` were validated against the schema, defaults filled in.
//!     fn open(&self, ctx: ResourceContext, properties: &Properties, _recover: bool) -> Result<Marker> {
//!         let path = PathBuf::from(properties.str("path")?);
//!         Ok(Marker { ctx, path })
//!     }
//! }
//!
//! impl Resource for Marker {
//!     fn online(&self, _status: StatusReporter) -> Result<Transition> {
//!         std::fs::write(&self.path, self.ctx.name())
//!             .map_err(|e| Error::io(format_args!("creating {}", self.path.display()), &e))?;
//!         self.ctx.log().info(format_args!("online at {}", self.path.display()));
//!         Ok(Transition::Done)
//!     }
//!
//!     fn offline(&self, _status: StatusReporter) -> Result<Transition> {
//!         match std::fs::remove_file(&self.path) {
//!             Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
//!                 Err(Error::io(format_args!("removing {}", self.path.display()), &e))
//!             }
//!             _ => Ok(Transition::Done),
//!         }
//!     }
//!
//!     fn terminate(&self) -> Result<()> {
//!         self.offline(StatusReporter::detached_online()).map(drop)
//!     }
//!
//!     fn looks_alive(&self) -> Health {
//!         if self.path.exists() { Health::Healthy } else { Health::failed("marker file is gone") }
//!     }
//!
//!     fn is_alive(&self) -> Health {
//!         match std::fs::read_to_string(&self.path) {
//!             Ok(owner) if owner == self.ctx.name() => Health::Healthy,
//!             Ok(owner) => Health::failed(format!("marker file belongs to {owner:?}")),
//!             Err(e) => Health::failed(format!("reading marker file: {e}")),
//!         }
//!     }
//! }
//!
//! // In a `cdylib` crate, this one line exports the type through the C ABI:
//! clusterkit::export_resource_types!(MarkerType);
//!
//! # fn main() -> Result<()> {
//! // A host drives it; here, directly:
//! let dir = std::env::temp_dir().join(format!("marker-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let mut props = Properties::new();
//! props.insert("path", dir.join("m").to_str().unwrap());
//! let props = MarkerType::describe().schema.validate(&props)?;
//! let ty = MarkerType::startup(&StartupContext { log: Logger::discard() })?;
//! let ctx = ResourceContext::new("web", Logger::discard(), StopFlag::new());
//! let marker = ty.open(ctx, &props, false)?;
//! assert_eq!(marker.online(StatusReporter::detached_online())?, Transition::Done);
//! assert_eq!(marker.is_alive(), Health::Healthy);
//! marker.offline(StatusReporter::detached_online())?;
//! assert!(marker.looks_alive().is_failed());
//! marker.close()?;
//! # std::fs::remove_dir_all(dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # Rules every resource follows
//!
//! - **Budgets.** `open`, `close`, `online`, `offline`, `control` return
//!   within 300 ms; `terminate` within 1 s; `looks_alive` in about 50 ms;
//!   `is_alive` in a few hundred. A host kills a monitor whose call passes
//!   its deadline, so anything slow (a DNS update, a VM boot) runs on a
//!   [`Worker`]: `online` returns [`Transition::Pending`] and the worker
//!   reports through its [`StatusReporter`].
//! - **Concurrency.** Calls to one resource are serialized, except
//!   `terminate`, which can arrive during any other call; entry points take
//!   `&self`. Calls to different resources run concurrently.
//! - **Termination.** `terminate` raises [`ResourceContext::termination`];
//!   long calls wait on that flag instead of sleeping, so they end promptly.
//! - **Health.** [`Health::Degraded`] is reported and counted but never
//!   recovered; [`Health::Failed`] starts recovery. A health check that
//!   panics counts as failed.
//! - **Errors** are [`Error`]s with stable [`ErrorCode`]s; property errors
//!   name the property ([`PropertyErrors`]).
//! - **Logging** goes through [`ResourceContext::log`], or, with the
//!   features `tracing` / `log`, through those crates' macros ([`logging`]);
//!   the host attributes every line to the resource.
//! - **Secrets.** Keys and passwords are declared [`PropertySpec::secret`]:
//!   hosts and this crate then keep their values out of every message, and
//!   a resource never logs them either (show lists with [`Schema::redact`]).
//! - **Names** follow [`validate_resource_name`]; the C ABI refuses others.

#![warn(missing_docs)]

mod characteristics;
mod control;
mod error;
pub mod export;
pub mod ffi;
mod log;
pub mod logging;
mod name;
pub mod properties;
mod resource;
mod stable_enum;
mod state;
mod status;
mod worker;

pub use characteristics::Characteristics;
pub use control::ControlCode;
pub use error::{Error, ErrorCode, Result};
pub use log::{Level, LogScope, LogSink, Logger};
pub use name::{MAX_RESOURCE_NAME_LEN, validate_resource_name};
pub use properties::{
    Apply, DecodeError, Problem, Properties, PropertyError, PropertyErrors, PropertyKind,
    PropertySpec, Redacted, Schema, UpdateEffect, Value,
};
pub use resource::{
    LostOwnership, OperationTimeouts, Resource, ResourceContext, ResourceType, StartupContext,
    TypeDescription,
};
pub use state::{Health, ResourceState, Transition};
pub use status::{Reply, StatusReporter, StatusSink};
pub use worker::{StopFlag, Worker};
