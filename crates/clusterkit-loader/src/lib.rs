//! Loads clusterkit resource libraries and drives them from Rust.
//!
//! A resource library is a shared object exporting `clusterkit_startup`
//! (see [`clusterkit::ffi`]). [`Library::load`] opens it, calls startup,
//! checks the ABI version, table sizes and every type's schema, and gives
//! a clear [`LoadError`] for each way this can fail. A loaded type opens
//! [`LoadedResource`]s, which implement [`clusterkit::Resource`], so a host
//! drives a resource the same way whether it is written in Rust or in C.
//!
//! Everything the library returns is checked: unknown error codes, health
//! values or states become errors that say so; nothing a library returns
//! makes this crate panic.
//!
//! ```no_run
//! use clusterkit::{Logger, Properties, Resource, StatusReporter};
//! use clusterkit_loader::Library;
//!
//! let library = Library::load("target/debug/libclusterkit_dummy.so", Logger::discard())?;
//! let dummy = library.resource_type("dummy").expect("the library exports `dummy`");
//! let mut props = Properties::new();
//! props.insert("state_dir", "/tmp");
//! let resource = dummy.open("web", &props, false, Logger::discard())?;
//! resource.online(StatusReporter::detached_online())?;
//! println!("{}", resource.looks_alive());
//! resource.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod callbacks;
mod library;
mod resource;

pub use library::{Library, LoadError, ResourceTypeHandle};
pub use resource::LoadedResource;
