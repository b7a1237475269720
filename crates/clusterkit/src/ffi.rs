//! The C ABI: the types of `include/clusterkit.h`.
//!
//! Rust authors never use this module directly: [`export_resource_types!`](crate::export_resource_types)
//! generates the exported symbol, and `clusterkit-loader` drives a loaded
//! library. It is public for hosts and tools that need the raw table.
//! `docs/C-API.md` is the long form of what follows.
//!
//! # The table
//!
//! A resource library exports one symbol, `clusterkit_startup` (type
//! [`ck_startup_fn`]). The host calls it once with a [`ck_host`]; it returns
//! a [`ck_library`] table, or NULL with the [`ck_error`] filled in. Both
//! structs start with `abi_version` (`major << 16 | minor`) and
//! `struct_size`. A reader refuses another major version; fields are only
//! ever appended within a major version, and a reader treats fields beyond
//! the other side's `struct_size` as absent. [`ck_type`] starts with its own
//! `struct_size` under the same rule.
//!
//! # Ownership
//!
//! | what | allocated by | valid until | freed by |
//! |---|---|---|---|
//! | `ck_library`, `ck_type`, property specs and their strings | library, in `clusterkit_startup` | `shutdown` returns | library, in `shutdown` |
//! | `ck_str`/`ck_bytes` arguments | caller | the call returns | caller |
//! | `ck_error`, `ck_health` | caller (host), usually on its stack | the call returns | caller |
//! | `ck_buffer` filled by `control`/`type_control` | library | host frees it | `ck_library.free_buffer` |
//! | resource handle (`void *`) from `open` | library | `close` returns (whatever its result) | library, in `close` |
//! | `ck_logger`, `ck_status_reporter`, `ck_lost_callback` contexts | host | `close` returns | host, after `close` |
//! | the `ck_host` logger context | host | `shutdown` returns | host |
//! | the `ck_error *` given to `complete` | library | `complete` returns | library |
//!
//! # Concurrency
//!
//! Calls to one resource are serialized by the host, except `terminate`,
//! which may run while any other call but `open`/`close` is in flight.
//! Calls to different resources run concurrently. The host's `log`,
//! `report`, `complete` and `lost` callbacks may be called from any thread.
//!
//! # Errors
//!
//! Every function returns [`CK_OK`] or an error code ([`ErrorCode`]) and
//! fills the `ck_error` it was given (if not NULL) with the code and a
//! UTF-8 message, truncated to [`CK_ERROR_MESSAGE_CAPACITY`] bytes on a
//! character boundary; on success with `CK_OK` and an empty message. Every
//! other output (`*resource`, `*state`, `*health`, `*output`) is written on
//! every path too: `docs/C-API.md`, "Guarantees on failure". A panic in a
//! Rust entry point is caught at the boundary and returned as
//! `CK_E_PANICKED`.

#![allow(non_camel_case_types)]

use std::ffi::c_void;
use std::time::Duration;

use crate::{Apply, Error, ErrorCode, Health, PropertyKind, PropertySpec, ResourceState, Value};

/// The major ABI version: a reader refuses a table of another major.
pub const CK_ABI_VERSION_MAJOR: u32 = 1;
/// The minor ABI version: raised when fields are appended.
pub const CK_ABI_VERSION_MINOR: u32 = 2;
/// `major << 16 | minor`, as stored in `abi_version` fields.
pub const CK_ABI_VERSION: u32 = (CK_ABI_VERSION_MAJOR << 16) | CK_ABI_VERSION_MINOR;

/// Success.
pub const CK_OK: i32 = 0;
/// Error: not implemented; the host applies its default handling.
pub const CK_E_UNSUPPORTED: i32 = 1;
/// Error: properties failed validation; the message names each one.
pub const CK_E_INVALID_PROPERTIES: i32 = 2;
/// Error: malformed input (a bad property list, a NULL pointer).
pub const CK_E_INVALID_INPUT: i32 = 3;
/// Error: something the resource needs does not exist.
pub const CK_E_NOT_FOUND: i32 = 4;
/// Error: held by another owner.
pub const CK_E_BUSY: i32 = 5;
/// Error: an operation passed its own deadline.
pub const CK_E_TIMEOUT: i32 = 6;
/// Error: ended because the host called `terminate`.
pub const CK_E_TERMINATED: i32 = 7;
/// Error: an operating-system I/O error.
pub const CK_E_IO: i32 = 8;
/// Error: the workload or its backend failed.
pub const CK_E_FAILED: i32 = 9;
/// Error: the entry point panicked; caught at the boundary.
pub const CK_E_PANICKED: i32 = 10;
/// Error: the two sides speak different ABI major versions.
pub const CK_E_ABI: i32 = 11;
/// Error: not valid in the current state.
pub const CK_E_INVALID_STATE: i32 = 12;
/// Error: a bug or broken invariant.
pub const CK_E_INTERNAL: i32 = 13;

/// State: opened, not yet online or offline.
pub const CK_STATE_INITIALIZING: u32 = 1;
/// State: online.
pub const CK_STATE_ONLINE: u32 = 2;
/// State: offline.
pub const CK_STATE_OFFLINE: u32 = 3;
/// State: coming online on a worker.
pub const CK_STATE_ONLINE_PENDING: u32 = 4;
/// State: going offline on a worker.
pub const CK_STATE_OFFLINE_PENDING: u32 = 5;
/// State: failed.
pub const CK_STATE_FAILED: u32 = 6;
/// State: unknown.
pub const CK_STATE_UNKNOWN: u32 = 7;

/// `ck_health.status`: healthy.
pub const CK_HEALTH_HEALTHY: u32 = 0;
/// `ck_health.status`: degraded, reason given.
pub const CK_HEALTH_DEGRADED: u32 = 1;
/// `ck_health.status`: failed, reason given.
pub const CK_HEALTH_FAILED: u32 = 2;

/// `report` answer: keep going.
pub const CK_REPLY_CONTINUE: u32 = 0;
/// `report` answer: stop at once.
pub const CK_REPLY_TERMINATE: u32 = 1;

/// Log level: error.
pub const CK_LOG_ERROR: u32 = 1;
/// Log level: warning.
pub const CK_LOG_WARN: u32 = 2;
/// Log level: information.
pub const CK_LOG_INFO: u32 = 3;
/// Log level: debug.
pub const CK_LOG_DEBUG: u32 = 4;
/// Log level: trace.
pub const CK_LOG_TRACE: u32 = 5;

/// `ck_value.kind` of an absent value.
pub const CK_KIND_NONE: u32 = 0;
/// Kind bool: `number` is 0 or 1.
pub const CK_KIND_BOOL: u32 = 1;
/// Kind u32: in `number`.
pub const CK_KIND_U32: u32 = 2;
/// Kind u64: in `number`.
pub const CK_KIND_U64: u32 = 3;
/// Kind i64: in `number`, two's complement.
pub const CK_KIND_I64: u32 = 4;
/// Kind string: UTF-8 in `data`.
pub const CK_KIND_STRING: u32 = 5;
/// Kind multistring: in `data`, each string followed by a NUL byte.
pub const CK_KIND_MULTI_STRING: u32 = 6;
/// Kind bytes: in `data`.
pub const CK_KIND_BYTES: u32 = 7;
/// Kind duration: milliseconds in `number`.
pub const CK_KIND_DURATION: u32 = 8;

/// `ck_property_spec.flags`: the property must be given.
pub const CK_PROPERTY_REQUIRED: u32 = 1;
/// `ck_property_spec.flags`: set at creation, never changed.
pub const CK_PROPERTY_READ_ONLY: u32 = 2;
/// `ck_property_spec.flags`: a change applies live (else after the next online).
pub const CK_PROPERTY_APPLY_LIVE: u32 = 4;
/// `ck_property_spec.flags`: `min` is set.
pub const CK_PROPERTY_HAS_MIN: u32 = 8;
/// `ck_property_spec.flags`: `max` is set.
pub const CK_PROPERTY_HAS_MAX: u32 = 16;

/// `ck_type.property_extra_flags` (since 1.2): the value is a secret (a key,
/// a password). A host never shows it: not in a log line, an event, a
/// listing or an error message. Readers ignore extra flags they do not know.
pub const CK_PROPERTY_EXTRA_SECRET: u32 = 1;
/// `ck_type.property_extra_flags` (since 1.2): no two resources may share the
/// value (a disk's path; OCF `unique`). An extra flag rather than a
/// `ck_property_spec.flags` bit, because 1.0 and 1.1 readers refuse unknown
/// bits there and would refuse the library.
pub const CK_PROPERTY_EXTRA_UNIQUE: u32 = 2;

/// The type arbitrates for quorum (`arbitrate`/`release`).
pub const CK_CHARACTERISTIC_QUORUM: u64 = 1 << 0;
/// The type adopts its running workload after a monitor restart.
pub const CK_CHARACTERISTIC_REATTACH: u64 = 1 << 1;
/// At most one resource of the type per group.
pub const CK_CHARACTERISTIC_SINGLE_GROUP_INSTANCE: u64 = 1 << 2;
/// Deleting a resource of the type needs every node up.
pub const CK_CHARACTERISTIC_DELETE_REQUIRES_ALL_NODES: u64 = 1 << 3;
/// Never taken offline to make room for another resource.
pub const CK_CHARACTERISTIC_NOT_PREEMPTABLE: u64 = 1 << 4;

/// Control: output the characteristics, 8 bytes little-endian.
pub const CK_CONTROL_GET_CHARACTERISTICS: u32 = 1;
/// Control: output the current properties as a property list.
pub const CK_CONTROL_GET_PROPERTIES: u32 = 2;
/// Control: input a property list; succeeds if valid.
pub const CK_CONTROL_VALIDATE_PROPERTIES: u32 = 3;
/// Control: input a partial property list to apply; output 1 byte, 1 = applies after the next online.
pub const CK_CONTROL_SET_PROPERTIES: u32 = 4;
/// Control: output a property list with a multi-string `types`.
pub const CK_CONTROL_GET_REQUIRED_DEPENDENCIES: u32 = 5;
/// Control (type-level): output the advised operation timeouts as a property
/// list of durations `start`, `stop`, `monitor`, `deep_monitor` (since 1.1).
pub const CK_CONTROL_GET_OPERATION_TIMEOUTS: u32 = 6;
/// Control: the first code available to resource types.
pub const CK_CONTROL_TYPE_SPECIFIC_BASE: u32 = 0x8000_0000u32;

/// Bytes of message a `ck_error` holds.
pub const CK_ERROR_MESSAGE_CAPACITY: usize = 1024;
/// Bytes of reason a `ck_health` holds.
pub const CK_HEALTH_REASON_CAPACITY: usize = 512;

/// A UTF-8 string with an explicit length, not NUL-terminated. Borrowed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_str {
    /// The first byte; may be NULL when `len` is 0.
    pub ptr: *const u8,
    /// The length in bytes.
    pub len: usize,
}

/// Bytes with an explicit length. Borrowed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_bytes {
    /// The first byte; may be NULL when `len` is 0.
    pub ptr: *const u8,
    /// The length in bytes.
    pub len: usize,
}

/// Bytes allocated by the library, freed by the host with
/// `ck_library.free_buffer`.
#[repr(C)]
#[derive(Debug)]
pub struct ck_buffer {
    /// The first byte, or NULL when empty.
    pub ptr: *mut u8,
    /// The length in bytes.
    pub len: usize,
}

/// An error: code and UTF-8 message, written by the callee into caller memory.
#[repr(C)]
#[derive(Clone)]
pub struct ck_error {
    /// [`CK_OK`] or one of the `CK_E_*` codes.
    pub code: i32,
    /// Bytes of `message` in use.
    pub message_len: u32,
    /// The message, UTF-8, not NUL-terminated.
    pub message: [u8; CK_ERROR_MESSAGE_CAPACITY],
}

/// A health-check result, written by the callee into caller memory.
#[repr(C)]
#[derive(Clone)]
pub struct ck_health {
    /// One of the `CK_HEALTH_*` values.
    pub status: u32,
    /// Bytes of `reason` in use.
    pub reason_len: u32,
    /// Why degraded or failed, UTF-8, not NUL-terminated.
    pub reason: [u8; CK_HEALTH_REASON_CAPACITY],
}

/// A property value in a schema (defaults). Borrowed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_value {
    /// One of the `CK_KIND_*` values; [`CK_KIND_NONE`] when absent.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
    /// The value of numeric, boolean and duration kinds.
    pub number: u64,
    /// The value of string, multi-string and bytes kinds.
    pub data: ck_bytes,
}

/// The declaration of one property.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_property_spec {
    /// The name: 1 to 255 bytes of UTF-8.
    pub name: ck_str,
    /// One line for people.
    pub description: ck_str,
    /// One of the `CK_KIND_*` values.
    pub kind: u32,
    /// `CK_PROPERTY_*` flags; readers refuse unknown bits, so newer,
    /// ignorable flags are in `ck_type.property_extra_flags`.
    pub flags: u32,
    /// Inclusive lower bound of the value (integers, durations in ms) or of
    /// the length (strings, bytes, multi-string entries); for `CK_KIND_I64`
    /// read as two's complement. Used when `CK_PROPERTY_HAS_MIN` is set.
    pub min: u64,
    /// Inclusive upper bound, like `min`. Used when `CK_PROPERTY_HAS_MAX` is set.
    pub max: u64,
    /// The default, or kind [`CK_KIND_NONE`].
    pub default_value: ck_value,
}

/// Writes a log line: `log(context, level, message)`. Thread-safe.
pub type ck_log_fn =
    Option<unsafe extern "C" fn(context: *mut c_void, level: u32, message: ck_str)>;

/// The host's logging callback, bound to one resource or type.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_logger {
    /// Passed back to `log`.
    pub context: *mut c_void,
    /// The callback; NULL drops lines.
    pub log: ck_log_fn,
}

/// Reports progress: returns [`CK_REPLY_CONTINUE`] or [`CK_REPLY_TERMINATE`].
pub type ck_report_fn = Option<
    unsafe extern "C" fn(
        context: *mut c_void,
        state: u32,
        checkpoint: u32,
        wait_hint_ms: u64,
    ) -> u32,
>;

/// Reports the end of a pending operation: `state` is `CK_STATE_ONLINE`,
/// `CK_STATE_OFFLINE` or `CK_STATE_FAILED` (then `error` is not NULL, and
/// valid only until the callback returns).
pub type ck_complete_fn =
    Option<unsafe extern "C" fn(context: *mut c_void, state: u32, error: *const ck_error)>;

/// How a pending `online`/`offline` reports progress and completion.
/// Copy it by value; its context lives until `close` returns. Both
/// callbacks are required (NULL is `CK_E_INVALID_INPUT`); give each
/// operation a context of its own, as reports carry no operation id.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_status_reporter {
    /// Passed back to the callbacks.
    pub context: *mut c_void,
    /// Progress callback.
    pub report: ck_report_fn,
    /// Completion callback; call it once per pending operation.
    pub complete: ck_complete_fn,
}

/// Tells the host a quorum resource lost ownership: `lost(context)`.
pub type ck_lost_fn = Option<unsafe extern "C" fn(context: *mut c_void)>;

/// Tells the host a quorum resource lost ownership.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_lost_callback {
    /// Passed back to `lost`.
    pub context: *mut c_void,
    /// The callback.
    pub lost: ck_lost_fn,
}

/// What the host gives `clusterkit_startup`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ck_host {
    /// The host's [`CK_ABI_VERSION`].
    pub abi_version: u32,
    /// `sizeof(ck_host)` as the host knows it; a library refuses less than
    /// `CK_HOST_SIZE_1_0` without reading past it.
    pub struct_size: u32,
    /// Lines logged by the library outside any resource (startup, types).
    pub logger: ck_logger,
}

/// `open(type_context, name, properties, recover, logger, &resource, error)`:
/// creates a resource from an encoded property list.
pub type ck_open_fn = Option<
    unsafe extern "C" fn(
        type_context: *mut c_void,
        name: ck_str,
        properties: ck_bytes,
        recover: bool,
        logger: ck_logger,
        resource: *mut *mut c_void,
        error: *mut ck_error,
    ) -> i32,
>;
/// `close`, `terminate`, `release`: a resource call with no other result.
pub type ck_resource_fn =
    Option<unsafe extern "C" fn(resource: *mut c_void, error: *mut ck_error) -> i32>;
/// `online`/`offline`: writes `CK_STATE_ONLINE`/`OFFLINE` when done, or the
/// pending state when it goes on through `reporter`.
pub type ck_transition_fn = Option<
    unsafe extern "C" fn(
        resource: *mut c_void,
        reporter: ck_status_reporter,
        state: *mut u32,
        error: *mut ck_error,
    ) -> i32,
>;
/// `looks_alive`/`is_alive`: writes the result into `health`; an error
/// return counts as failed.
pub type ck_health_fn = Option<
    unsafe extern "C" fn(
        resource: *mut c_void,
        health: *mut ck_health,
        error: *mut ck_error,
    ) -> i32,
>;
/// `arbitrate(resource, lost, error)`.
pub type ck_arbitrate_fn = Option<
    unsafe extern "C" fn(
        resource: *mut c_void,
        lost: ck_lost_callback,
        error: *mut ck_error,
    ) -> i32,
>;
/// `control(target, code, input, output, error)` for a resource or a type
/// context; `*output` is set to a library-allocated buffer (possibly empty)
/// on every path, error included, so the host may always free it.
pub type ck_control_fn = Option<
    unsafe extern "C" fn(
        target: *mut c_void,
        code: u32,
        input: ck_bytes,
        output: *mut ck_buffer,
        error: *mut ck_error,
    ) -> i32,
>;

/// One resource type and its entry points.
#[repr(C)]
#[derive(Debug)]
pub struct ck_type {
    /// `sizeof(ck_type)` as the library knows it.
    pub struct_size: u32,
    /// Zero.
    pub reserved: u32,
    /// The type's name.
    pub name: ck_str,
    /// One line for people.
    pub description: ck_str,
    /// `CK_CHARACTERISTIC_*` bits.
    pub characteristics: u64,
    /// The property schema: `property_count` specs.
    pub properties: *const ck_property_spec,
    /// The number of specs.
    pub property_count: usize,
    /// Passed to `open` and `type_control`.
    pub context: *mut c_void,
    /// Required.
    pub open: ck_open_fn,
    /// Required.
    pub close: ck_resource_fn,
    /// Required.
    pub online: ck_transition_fn,
    /// Required.
    pub offline: ck_transition_fn,
    /// Required.
    pub terminate: ck_resource_fn,
    /// Required.
    pub looks_alive: ck_health_fn,
    /// Required.
    pub is_alive: ck_health_fn,
    /// Optional (quorum types).
    pub arbitrate: ck_arbitrate_fn,
    /// Optional (quorum types).
    pub release: ck_resource_fn,
    /// Optional: resource control codes.
    pub control: ck_control_fn,
    /// Optional: type control codes, called with `context`.
    pub type_control: ck_control_fn,
    /// Since 1.2: NULL, or `property_count` words of `CK_PROPERTY_EXTRA_*`
    /// flags, one per spec in the same order. Flags that old readers must be
    /// free to ignore live here, not in `ck_property_spec.flags`, which
    /// 1.0 and 1.1 readers check strictly.
    pub property_extra_flags: *const u32,
}

/// Frees a buffer the library returned.
pub type ck_free_buffer_fn = Option<unsafe extern "C" fn(buffer: ck_buffer)>;
/// Releases the library table and everything it points to.
pub type ck_shutdown_fn = Option<unsafe extern "C" fn(library: *const ck_library)>;

/// The table `clusterkit_startup` returns.
#[repr(C)]
#[derive(Debug)]
pub struct ck_library {
    /// The library's [`CK_ABI_VERSION`].
    pub abi_version: u32,
    /// `sizeof(ck_library)` as the library knows it.
    pub struct_size: u32,
    /// The number of types.
    pub type_count: usize,
    /// `type_count` pointers to types.
    pub types: *const *const ck_type,
    /// Frees a buffer returned by a control call. Required.
    pub free_buffer: ck_free_buffer_fn,
    /// Releases the table and everything it points to. Optional.
    pub shutdown: ck_shutdown_fn,
    /// Since 1.1: the library's name, for diagnostics (may be empty).
    pub name: ck_str,
    /// Since 1.1: the library's version, for diagnostics (may be empty).
    pub version: ck_str,
}

/// `struct_size` of a 1.0 `ck_library`, which ends after `shutdown`: a
/// reader accepts it and treats `name` and `version` as absent. (The header
/// defines it with `offsetof`, as cbindgen cannot evaluate this.)
pub const CK_LIBRARY_SIZE_1_0: usize = std::mem::offset_of!(ck_library, name);

/// `struct_size` of a 1.0 (and 1.1) `ck_type`, which ends after
/// `type_control`: a reader treats `property_extra_flags` as absent.
pub const CK_TYPE_SIZE_1_0: usize = std::mem::offset_of!(ck_type, property_extra_flags);

/// `struct_size` of a 1.0 `ck_host` (still the current layout): a library
/// refuses a smaller one without reading past its end.
pub const CK_HOST_SIZE_1_0: usize = size_of::<ck_host>();

/// The type of the one exported symbol, `clusterkit_startup`.
pub type ck_startup_fn =
    unsafe extern "C" fn(host: *const ck_host, error: *mut ck_error) -> *const ck_library;

/// The exported symbol's name, NUL-terminated, for `dlsym`.
pub const STARTUP_SYMBOL: &[u8] = b"clusterkit_startup\0";

// ---- Helpers for both sides of the boundary (not part of the header) ----

/// Truncates `s` to at most `max` bytes on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads `len` bytes at `ptr`; NULL with length 0 is the empty slice.
///
/// # Safety
/// `ptr` must point to `len` readable bytes that stay valid for `'a`.
unsafe fn raw_slice<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::InvalidInput(format!(
            "NULL pointer with length {len}"
        )));
    }
    // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

impl ck_str {
    /// Borrows `s` for the duration of a call.
    pub fn borrow(s: &str) -> ck_str {
        ck_str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The string, checked to be UTF-8.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a`.
    pub unsafe fn as_str<'a>(&self) -> Result<&'a str, Error> {
        // SAFETY: forwarded from the caller.
        let bytes = unsafe { raw_slice(self.ptr, self.len)? };
        std::str::from_utf8(bytes)
            .map_err(|e| Error::InvalidInput(format!("string is not valid UTF-8: {e}")))
    }
}

impl ck_bytes {
    /// Borrows `b` for the duration of a call.
    pub fn from_slice(b: &[u8]) -> ck_bytes {
        ck_bytes {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a`.
    pub unsafe fn as_slice<'a>(&self) -> Result<&'a [u8], Error> {
        // SAFETY: forwarded from the caller.
        unsafe { raw_slice(self.ptr, self.len) }
    }
}

impl ck_buffer {
    /// An empty buffer (nothing to free).
    pub const EMPTY: ck_buffer = ck_buffer {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    /// Hands `bytes` over to the C side; free it with [`ck_buffer::free`].
    pub fn from_vec(bytes: Vec<u8>) -> ck_buffer {
        if bytes.is_empty() {
            return ck_buffer::EMPTY;
        }
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        ck_buffer {
            ptr: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }

    /// Frees a buffer made by [`ck_buffer::from_vec`] in this same library.
    ///
    /// # Safety
    /// `self` must come from `from_vec` and not have been freed.
    pub unsafe fn free(self) {
        if !self.ptr.is_null() && self.len != 0 {
            let slice = std::ptr::slice_from_raw_parts_mut(self.ptr, self.len);
            // SAFETY: the caller guarantees this is `from_vec`'s boxed slice.
            drop(unsafe { Box::from_raw(slice) });
        }
    }
}

impl Default for ck_error {
    fn default() -> ck_error {
        ck_error {
            code: CK_OK,
            message_len: 0,
            message: [0; CK_ERROR_MESSAGE_CAPACITY],
        }
    }
}

impl std::fmt::Debug for ck_error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ck_error")
            .field("code", &self.code)
            .field("message", &self.message_text())
            .finish()
    }
}

impl ck_error {
    /// Fills in `error`'s code and message.
    pub fn set(&mut self, error: &Error) {
        self.code = error.code().as_i32();
        let message = error.message();
        let text = truncate_utf8(&message, CK_ERROR_MESSAGE_CAPACITY);
        self.message[..text.len()].copy_from_slice(text.as_bytes());
        self.message_len = text.len() as u32;
    }

    /// The message, tolerating a bad length or bad UTF-8 from the other side.
    pub fn message_text(&self) -> String {
        let len = (self.message_len as usize).min(CK_ERROR_MESSAGE_CAPACITY);
        String::from_utf8_lossy(&self.message[..len]).into_owned()
    }

    /// The error a call returned with `code` means. An unknown code becomes
    /// an [`Error::Internal`] naming it, so a misbehaving library cannot
    /// confuse the host.
    pub fn to_error(&self, code: i32) -> Error {
        let message = self.message_text();
        match ErrorCode::from_i32(code) {
            Some(c) => Error::from_code(c, message),
            None => Error::Internal(format!("unknown error code {code}: {message}")),
        }
    }
}

impl Default for ck_health {
    fn default() -> ck_health {
        ck_health {
            status: CK_HEALTH_HEALTHY,
            reason_len: 0,
            reason: [0; CK_HEALTH_REASON_CAPACITY],
        }
    }
}

impl ck_health {
    /// Writes `health`, truncating the reason on a character boundary.
    pub fn set(&mut self, health: &Health) {
        self.status = match health {
            Health::Healthy => CK_HEALTH_HEALTHY,
            Health::Degraded(_) => CK_HEALTH_DEGRADED,
            Health::Failed(_) => CK_HEALTH_FAILED,
        };
        let text = truncate_utf8(health.reason(), CK_HEALTH_REASON_CAPACITY);
        self.reason[..text.len()].copy_from_slice(text.as_bytes());
        self.reason_len = text.len() as u32;
    }

    /// Reads the result; an unknown status is a failure that says so.
    pub fn to_health(&self) -> Health {
        let len = (self.reason_len as usize).min(CK_HEALTH_REASON_CAPACITY);
        let reason = String::from_utf8_lossy(&self.reason[..len]).into_owned();
        match self.status {
            CK_HEALTH_HEALTHY => Health::Healthy,
            CK_HEALTH_DEGRADED => Health::Degraded(reason),
            CK_HEALTH_FAILED => Health::Failed(reason),
            other => Health::Failed(format!(
                "library returned unknown health status {other} ({reason})"
            )),
        }
    }
}

/// The `CK_STATE_*` value of a state.
pub fn state_to_raw(state: ResourceState) -> u32 {
    state as u32
}

/// Storage for the bytes a [`ck_value`] points to; keep it alive as long as
/// the value.
#[derive(Debug, Default)]
pub struct ValueStorage(Vec<u8>);

impl ck_value {
    /// The absent value.
    pub const NONE: ck_value = ck_value {
        kind: CK_KIND_NONE,
        reserved: 0,
        number: 0,
        data: ck_bytes {
            ptr: std::ptr::null(),
            len: 0,
        },
    };

    /// Lays out `value`; returns the value and the storage it points into.
    pub fn from_value(value: &Value) -> (ck_value, ValueStorage) {
        let mut storage = ValueStorage::default();
        let mut number = 0u64;
        match value {
            Value::Bool(b) => number = u64::from(*b),
            Value::U32(v) => number = u64::from(*v),
            Value::U64(v) => number = *v,
            Value::I64(v) => number = *v as u64,
            Value::Duration(d) => number = u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Value::String(s) => storage.0 = s.as_bytes().to_vec(),
            Value::Bytes(b) => storage.0 = b.clone(),
            Value::MultiString(list) => {
                for s in list {
                    storage.0.extend_from_slice(s.as_bytes());
                    storage.0.push(0);
                }
            }
        }
        let v = ck_value {
            kind: value.kind() as u32,
            reserved: 0,
            number,
            data: ck_bytes::from_slice(&storage.0),
        };
        (v, storage)
    }

    /// Reads the value back; `None` for [`CK_KIND_NONE`].
    ///
    /// # Safety
    /// `data` must point to `data.len` readable bytes.
    pub unsafe fn to_value(&self) -> Result<Option<Value>, String> {
        if self.kind == CK_KIND_NONE {
            return Ok(None);
        }
        let kind = u8::try_from(self.kind)
            .ok()
            .and_then(PropertyKind::from_u8)
            .ok_or_else(|| format!("unknown value kind {}", self.kind))?;
        // SAFETY: forwarded from the caller.
        let data = unsafe { self.data.as_slice() }.map_err(|e| e.to_string())?;
        let utf8 = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| "string value is not valid UTF-8".to_string())
        };
        let n = self.number;
        Ok(Some(match kind {
            PropertyKind::Bool if n <= 1 => Value::Bool(n == 1),
            PropertyKind::Bool => return Err(format!("boolean value {n} is not 0 or 1")),
            PropertyKind::U32 => {
                Value::U32(u32::try_from(n).map_err(|_| format!("u32 value {n} is out of range"))?)
            }
            PropertyKind::U64 => Value::U64(n),
            PropertyKind::I64 => Value::I64(n as i64),
            PropertyKind::Duration => Value::Duration(Duration::from_millis(n)),
            PropertyKind::String => Value::String(utf8(data)?),
            PropertyKind::Bytes => Value::Bytes(data.to_vec()),
            PropertyKind::MultiString => {
                let Some(body) = data.strip_suffix(&[0]).or(data.is_empty().then_some(data)) else {
                    return Err("multi-string value does not end with a NUL byte".into());
                };
                if body.is_empty() && data.is_empty() {
                    Value::MultiString(Vec::new())
                } else {
                    Value::MultiString(
                        body.split(|b| *b == 0)
                            .map(utf8)
                            .collect::<Result<_, _>>()?,
                    )
                }
            }
        }))
    }
}

/// Storage behind a [`ck_property_spec`].
#[derive(Debug, Default)]
pub struct SpecStorage {
    _default: ValueStorage,
}

fn bound_to_raw(kind: PropertyKind, bound: Option<i128>) -> u64 {
    match (kind, bound) {
        (_, None) => 0,
        (PropertyKind::I64, Some(b)) => b.clamp(i64::MIN.into(), i64::MAX.into()) as i64 as u64,
        (_, Some(b)) => b.clamp(0, u64::MAX.into()) as u64,
    }
}

fn bound_from_raw(kind: PropertyKind, raw: u64) -> i128 {
    match kind {
        PropertyKind::I64 => i128::from(raw as i64),
        _ => i128::from(raw),
    }
}

impl ck_property_spec {
    /// Lays out `spec`; its strings are borrowed from `spec`, which must
    /// outlive the result, as must the returned storage.
    pub fn from_spec(spec: &PropertySpec) -> (ck_property_spec, SpecStorage) {
        let mut flags = 0;
        if spec.required {
            flags |= CK_PROPERTY_REQUIRED;
        }
        if spec.read_only {
            flags |= CK_PROPERTY_READ_ONLY;
        }
        if spec.apply == Apply::Live {
            flags |= CK_PROPERTY_APPLY_LIVE;
        }
        if spec.min.is_some() {
            flags |= CK_PROPERTY_HAS_MIN;
        }
        if spec.max.is_some() {
            flags |= CK_PROPERTY_HAS_MAX;
        }
        let (default_value, storage) = match &spec.default {
            Some(v) => ck_value::from_value(v),
            None => (ck_value::NONE, ValueStorage::default()),
        };
        let raw = ck_property_spec {
            name: ck_str::borrow(&spec.name),
            description: ck_str::borrow(&spec.description),
            kind: spec.kind as u32,
            flags,
            min: bound_to_raw(spec.kind, spec.min),
            max: bound_to_raw(spec.kind, spec.max),
            default_value,
        };
        (raw, SpecStorage { _default: storage })
    }

    /// Reads a spec from a library, rejecting anything malformed with a
    /// message that names the property.
    ///
    /// # Safety
    /// Every pointer in `self` must point to its stated number of bytes.
    pub unsafe fn to_spec(&self) -> Result<PropertySpec, String> {
        // SAFETY: forwarded from the caller.
        let name = unsafe { self.name.as_str() }
            .map_err(|e| format!("property name: {e}"))?
            .to_owned();
        let fail = |why: String| format!("property `{name}`: {why}");
        // SAFETY: forwarded from the caller.
        let description = unsafe { self.description.as_str() }
            .map_err(|e| fail(format!("description: {e}")))?
            .to_owned();
        let kind = u8::try_from(self.kind)
            .ok()
            .and_then(PropertyKind::from_u8)
            .ok_or_else(|| fail(format!("unknown kind {}", self.kind)))?;
        let known = CK_PROPERTY_REQUIRED
            | CK_PROPERTY_READ_ONLY
            | CK_PROPERTY_APPLY_LIVE
            | CK_PROPERTY_HAS_MIN
            | CK_PROPERTY_HAS_MAX;
        if self.flags & !known != 0 {
            return Err(fail(format!("unknown flags {:#x}", self.flags & !known)));
        }
        // SAFETY: forwarded from the caller.
        let default = unsafe { self.default_value.to_value() }
            .map_err(|e| fail(format!("default value: {e}")))?;
        let mut spec = PropertySpec::new(name.clone(), kind).describe(description);
        spec.default = default;
        spec.required = self.flags & CK_PROPERTY_REQUIRED != 0;
        spec.read_only = self.flags & CK_PROPERTY_READ_ONLY != 0;
        spec.apply = if self.flags & CK_PROPERTY_APPLY_LIVE != 0 {
            Apply::Live
        } else {
            Apply::NextOnline
        };
        spec.min = (self.flags & CK_PROPERTY_HAS_MIN != 0).then(|| bound_from_raw(kind, self.min));
        spec.max = (self.flags & CK_PROPERTY_HAS_MAX != 0).then(|| bound_from_raw(kind, self.max));
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_rust_enums() {
        for code in ErrorCode::ALL {
            let name = format!("CK_E_{}", code.name().to_uppercase());
            let value = match code {
                ErrorCode::Unsupported => CK_E_UNSUPPORTED,
                ErrorCode::InvalidProperties => CK_E_INVALID_PROPERTIES,
                ErrorCode::InvalidInput => CK_E_INVALID_INPUT,
                ErrorCode::NotFound => CK_E_NOT_FOUND,
                ErrorCode::Busy => CK_E_BUSY,
                ErrorCode::Timeout => CK_E_TIMEOUT,
                ErrorCode::Terminated => CK_E_TERMINATED,
                ErrorCode::Io => CK_E_IO,
                ErrorCode::Failed => CK_E_FAILED,
                ErrorCode::Panicked => CK_E_PANICKED,
                ErrorCode::Abi => CK_E_ABI,
                ErrorCode::InvalidState => CK_E_INVALID_STATE,
                ErrorCode::Internal => CK_E_INTERNAL,
            };
            assert_eq!(value, code.as_i32(), "{name}");
        }
        assert_eq!(CK_STATE_ONLINE_PENDING, ResourceState::OnlinePending as u32);
        assert_eq!(CK_STATE_UNKNOWN, ResourceState::Unknown as u32);
        assert_eq!(CK_KIND_DURATION, PropertyKind::Duration as u32);
        assert_eq!(
            CK_CHARACTERISTIC_NOT_PREEMPTABLE,
            crate::Characteristics::NOT_PREEMPTABLE.bits()
        );
        assert_eq!(
            CK_CONTROL_SET_PROPERTIES,
            crate::ControlCode::SET_PROPERTIES.0
        );
        assert_eq!(
            CK_CONTROL_GET_OPERATION_TIMEOUTS,
            crate::ControlCode::GET_OPERATION_TIMEOUTS.0
        );
    }

    #[test]
    fn error_message_is_truncated_on_a_char_boundary() {
        let mut raw = ck_error::default();
        let long = "é".repeat(CK_ERROR_MESSAGE_CAPACITY);
        raw.set(&Error::Failed(long));
        assert_eq!(raw.message_len as usize, CK_ERROR_MESSAGE_CAPACITY);
        let back = raw.to_error(raw.code);
        assert_eq!(back.code(), ErrorCode::Failed);
        assert_eq!(
            back.message().chars().count(),
            CK_ERROR_MESSAGE_CAPACITY / 2
        );
        raw.message_len = u32::MAX;
        assert_eq!(raw.message_text().len(), CK_ERROR_MESSAGE_CAPACITY);
        assert!(
            matches!(raw.to_error(99), Error::Internal(m) if m.starts_with("unknown error code 99"))
        );
    }

    #[test]
    fn specs_and_values_round_trip() {
        let specs = [
            PropertySpec::i64("offset").range(-5, 5).default(-2i64),
            PropertySpec::multi_string("servers").default(vec!["a".to_string(), "b".into()]),
            PropertySpec::multi_string("empty").default(Vec::<String>::new()),
            PropertySpec::string("name").required().read_only().min(1),
            PropertySpec::duration("t")
                .apply(Apply::Live)
                .default(Duration::from_millis(7)),
            PropertySpec::bytes("blob").default(vec![1u8, 0, 2]),
        ];
        for spec in specs {
            let (raw, _storage) = ck_property_spec::from_spec(&spec);
            // SAFETY: `raw` points into `spec` and `_storage`, both alive.
            let back = unsafe { raw.to_spec() }.unwrap();
            assert_eq!(back, spec);
        }
    }

    #[test]
    fn malformed_specs_name_the_property() {
        let spec = PropertySpec::u32("ttl");
        let (mut raw, _s) = ck_property_spec::from_spec(&spec);
        // SAFETY: `raw` points into `spec` and `_s`, both alive.
        let read = |raw: &ck_property_spec| unsafe { raw.to_spec() }.unwrap_err();
        raw.kind = 42;
        assert_eq!(read(&raw), "property `ttl`: unknown kind 42");
        raw.kind = CK_KIND_U32;
        raw.default_value = ck_value {
            kind: CK_KIND_U32,
            number: 1 << 40,
            ..ck_value::NONE
        };
        assert_eq!(
            read(&raw),
            "property `ttl`: default value: u32 value 1099511627776 is out of range"
        );
        raw.default_value = ck_value::NONE;
        raw.flags = 1 << 9;
        assert_eq!(read(&raw), "property `ttl`: unknown flags 0x200");
    }
}
