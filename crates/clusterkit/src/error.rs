//! Errors every entry point can return, each with a stable numeric code.

use crate::properties::PropertyErrors;

crate::stable_enum! {
    /// The stable numeric code of an [`Error`]; the C ABI carries this value.
    ///
    /// Codes are never renumbered or reused. `0` means success and is never
    /// the code of an `Error`. The names (`"invalid_properties"`) are stable
    /// too.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ErrorCode: i32 {
        /// The entry point or control code is not implemented; the host applies
        /// its default handling.
        Unsupported = 1, "unsupported";
        /// One or more properties failed validation against the schema.
        InvalidProperties = 2, "invalid_properties";
        /// Malformed input, such as a property list that does not decode.
        InvalidInput = 3, "invalid_input";
        /// Something the resource needs does not exist.
        NotFound = 4, "not_found";
        /// The resource is held by another owner (e.g. a disk reserved elsewhere).
        Busy = 5, "busy";
        /// An operation did not finish within its own deadline.
        Timeout = 6, "timeout";
        /// The call was ended because the host called `terminate`.
        Terminated = 7, "terminated";
        /// An operating-system I/O error.
        Io = 8, "io";
        /// The workload or its backend failed.
        Failed = 9, "failed";
        /// The entry point panicked; the panic was caught at the boundary.
        Panicked = 10, "panicked";
        /// The two sides speak different ABI major versions.
        Abi = 11, "abi";
        /// The call is not valid in the resource's current state.
        InvalidState = 12, "invalid_state";
        /// A bug or broken invariant inside the library or host.
        Internal = 13, "internal";
    }
}

impl ErrorCode {
    /// The numeric value carried across the C ABI.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }
}

/// An error returned by an entry point.
///
/// Every variant maps to one [`ErrorCode`]; [`Error::code`] gives it and
/// [`Error::from_code`] rebuilds an error from a code and message received
/// across the C ABI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorCode::Unsupported`].
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// See [`ErrorCode::InvalidProperties`].
    #[error("{0}")]
    InvalidProperties(PropertyErrors),
    /// See [`ErrorCode::InvalidInput`].
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// See [`ErrorCode::NotFound`].
    #[error("not found: {0}")]
    NotFound(String),
    /// See [`ErrorCode::Busy`].
    #[error("busy: {0}")]
    Busy(String),
    /// See [`ErrorCode::Timeout`].
    #[error("timed out: {0}")]
    Timeout(String),
    /// See [`ErrorCode::Terminated`].
    #[error("terminated: {0}")]
    Terminated(String),
    /// See [`ErrorCode::Io`].
    #[error("I/O error: {0}")]
    Io(String),
    /// See [`ErrorCode::Failed`].
    #[error("failed: {0}")]
    Failed(String),
    /// See [`ErrorCode::Panicked`].
    #[error("panicked: {0}")]
    Panicked(String),
    /// See [`ErrorCode::Abi`].
    #[error("ABI mismatch: {0}")]
    Abi(String),
    /// See [`ErrorCode::InvalidState`].
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// See [`ErrorCode::Internal`].
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable numeric code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Unsupported(_) => ErrorCode::Unsupported,
            Error::InvalidProperties(_) => ErrorCode::InvalidProperties,
            Error::InvalidInput(_) => ErrorCode::InvalidInput,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Busy(_) => ErrorCode::Busy,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::Terminated(_) => ErrorCode::Terminated,
            Error::Io(_) => ErrorCode::Io,
            Error::Failed(_) => ErrorCode::Failed,
            Error::Panicked(_) => ErrorCode::Panicked,
            Error::Abi(_) => ErrorCode::Abi,
            Error::InvalidState(_) => ErrorCode::InvalidState,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The message without the code's prefix: what [`Error::from_code`]
    /// needs to rebuild this error on the other side of the C ABI.
    pub fn message(&self) -> String {
        match self {
            Error::InvalidProperties(errors) => errors.to_string(),
            Error::Unsupported(m)
            | Error::InvalidInput(m)
            | Error::NotFound(m)
            | Error::Busy(m)
            | Error::Timeout(m)
            | Error::Terminated(m)
            | Error::Io(m)
            | Error::Failed(m)
            | Error::Panicked(m)
            | Error::Abi(m)
            | Error::InvalidState(m)
            | Error::Internal(m) => m.clone(),
        }
    }

    /// Rebuilds an error from its code and [`message`](Error::message).
    ///
    /// An invalid-properties message is parsed back into its
    /// [`PropertyErrors`], so the property names survive the C ABI.
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Error {
        let m = message.into();
        match code {
            ErrorCode::Unsupported => Error::Unsupported(m),
            ErrorCode::InvalidProperties => Error::InvalidProperties(PropertyErrors::parse(&m)),
            ErrorCode::InvalidInput => Error::InvalidInput(m),
            ErrorCode::NotFound => Error::NotFound(m),
            ErrorCode::Busy => Error::Busy(m),
            ErrorCode::Timeout => Error::Timeout(m),
            ErrorCode::Terminated => Error::Terminated(m),
            ErrorCode::Io => Error::Io(m),
            ErrorCode::Failed => Error::Failed(m),
            ErrorCode::Panicked => Error::Panicked(m),
            ErrorCode::Abi => Error::Abi(m),
            ErrorCode::InvalidState => Error::InvalidState(m),
            ErrorCode::Internal => Error::Internal(m),
        }
    }

    /// An [`Error::Unsupported`] naming what is not supported.
    pub fn unsupported(what: impl std::fmt::Display) -> Error {
        Error::Unsupported(what.to_string())
    }

    /// An [`Error::Io`] that says what was being done and on which path or object.
    ///
    /// ```
    /// let err = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    /// let e = clusterkit::Error::io("creating /var/lib/x.state", &err);
    /// assert!(e.to_string().starts_with("I/O error: creating /var/lib/x.state: "));
    /// ```
    pub fn io(context: impl std::fmt::Display, err: &std::io::Error) -> Error {
        Error::Io(format!("{context}: {err}"))
    }
}

impl From<PropertyErrors> for Error {
    fn from(errors: PropertyErrors) -> Error {
        Error::InvalidProperties(errors)
    }
}

impl From<crate::properties::PropertyError> for Error {
    fn from(error: crate::properties::PropertyError) -> Error {
        Error::InvalidProperties(error.into())
    }
}

impl From<crate::properties::DecodeError> for Error {
    fn from(err: crate::properties::DecodeError) -> Error {
        Error::InvalidInput(err.to_string())
    }
}

/// The result type of entry points.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code.as_i32(), i as i32 + 1);
            assert_eq!(ErrorCode::from_i32(code.as_i32()), Some(code));
            let e = Error::from_code(code, "why");
            assert_eq!(e.code(), code);
        }
        assert_eq!(ErrorCode::from_i32(0), None);
        assert_eq!(ErrorCode::from_i32(-4), None);
        assert_eq!(ErrorCode::from_i32(14), None);
    }
}
