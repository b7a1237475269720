//! Control codes: the extensible `control` entry point.

use std::fmt;

/// A control code. Codes below [`ControlCode::TYPE_SPECIFIC_BASE`] are
/// defined by clusterkit; types define their own at and above it.
///
/// A resource answers the codes it knows and returns
/// [`Error::Unsupported`](crate::Error::Unsupported) for the others; the host
/// then applies its default handling (for example, validating properties
/// against the type's schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControlCode(pub u32);

impl ControlCode {
    /// Output: the characteristics, as 8 bytes little-endian.
    pub const GET_CHARACTERISTICS: ControlCode = ControlCode(1);
    /// Output: the current properties, as an encoded property list.
    pub const GET_PROPERTIES: ControlCode = ControlCode(2);
    /// Input: an encoded property list; succeeds if it is valid.
    pub const VALIDATE_PROPERTIES: ControlCode = ControlCode(3);
    /// Input: an encoded partial property list to apply. Output: one byte,
    /// 0 = applied live or unchanged, 1 = applies after the next online.
    pub const SET_PROPERTIES: ControlCode = ControlCode(4);
    /// Output: type names this resource needs a dependency on, as an encoded
    /// property list with one multi-string `types`.
    pub const GET_REQUIRED_DEPENDENCIES: ControlCode = ControlCode(5);
    /// Type-level. Output: the type's advised
    /// [`OperationTimeouts`](crate::OperationTimeouts), as an encoded
    /// property list ([`OperationTimeouts::to_properties`](crate::OperationTimeouts::to_properties)).
    /// Rust types answer it from
    /// [`ResourceType::operation_timeouts`](crate::ResourceType::operation_timeouts)
    /// without implementing `control`.
    pub const GET_OPERATION_TIMEOUTS: ControlCode = ControlCode(6);
    /// The first code available to resource types.
    pub const TYPE_SPECIFIC_BASE: ControlCode = ControlCode(0x8000_0000);

    /// The type-specific code `n` (`TYPE_SPECIFIC_BASE + n`).
    ///
    /// ```
    /// const FORMAT: clusterkit::ControlCode = clusterkit::ControlCode::type_specific(1);
    /// assert!(FORMAT.is_type_specific());
    /// ```
    pub const fn type_specific(n: u32) -> ControlCode {
        ControlCode(Self::TYPE_SPECIFIC_BASE.0 | n)
    }

    /// Whether this code belongs to a resource type rather than clusterkit.
    pub const fn is_type_specific(self) -> bool {
        self.0 >= Self::TYPE_SPECIFIC_BASE.0
    }
}

impl fmt::Display for ControlCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            ControlCode::GET_CHARACTERISTICS => "get_characteristics",
            ControlCode::GET_PROPERTIES => "get_properties",
            ControlCode::VALIDATE_PROPERTIES => "validate_properties",
            ControlCode::SET_PROPERTIES => "set_properties",
            ControlCode::GET_REQUIRED_DEPENDENCIES => "get_required_dependencies",
            ControlCode::GET_OPERATION_TIMEOUTS => "get_operation_timeouts",
            code if code.is_type_specific() => {
                return write!(f, "type_specific({})", code.0 - Self::TYPE_SPECIFIC_BASE.0);
            }
            ControlCode(n) => return write!(f, "control({n})"),
        };
        f.write_str(name)
    }
}
