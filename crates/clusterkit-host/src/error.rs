//! The host's errors.

use std::time::Duration;

use clusterkit::{Error, PropertyErrors, ResourceState};

/// Why the host could not do what was asked. Every message names the
/// resource, file or setting concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A resource library did not load; `problem` names the file.
    #[error("{problem}")]
    Library {
        /// The library.
        path: String,
        /// Why.
        problem: String,
    },
    /// A resource names a type its library does not export.
    #[error(
        "resource `{resource}`: type `{type_name}` is not exported by {library} (it exports: {})",
        available.join(", ")
    )]
    UnknownType {
        /// The resource.
        resource: String,
        /// The type asked for.
        type_name: String,
        /// The library.
        library: String,
        /// What it does export.
        available: Vec<String>,
    },
    /// A resource's properties do not fit its type's schema.
    #[error("resource `{resource}`: {errors}")]
    Properties {
        /// The resource.
        resource: String,
        /// Every bad property.
        errors: PropertyErrors,
    },
    /// A monitor could not be started.
    #[error("monitor: {0}")]
    Monitor(String),
    /// The state file or directory is unusable.
    #[error("state: {problem}")]
    StateFile {
        /// What is wrong, naming the file.
        problem: String,
    },
    /// No resource has this name.
    #[error("no resource named `{0}`")]
    UnknownResource(String),
    /// The resource is in a state where this cannot be done.
    #[error("resource `{resource}` is {state}")]
    InvalidState {
        /// The resource.
        resource: String,
        /// Its state.
        state: ResourceState,
    },
    /// The resource's call returned an error.
    #[error(transparent)]
    Call(Error),
    /// A wait ended before its condition held.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// The host has stopped.
    #[error("the host has stopped")]
    Stopped,
    /// A reconfiguration was refused whole: nothing changed.
    #[error("refused, nothing changed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<HostError>),
}
