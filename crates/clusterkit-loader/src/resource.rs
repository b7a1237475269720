//! A resource opened in a loaded library.

use std::ffi::c_void;
use std::sync::{Mutex, PoisonError};

use clusterkit::ffi::{self, ck_error, ck_health};
use clusterkit::{
    ControlCode, Error, Health, Logger, LostOwnership, Properties, Resource, ResourceState, Result,
    StatusReporter, Transition,
};

use crate::callbacks::{LostContext, ReporterContext, raw_logger};
use crate::library::{LibraryInner, ResourceTypeHandle};

/// Turns a call's return code and error into a `Result`.
fn check(code: i32, error: &ck_error) -> Result<()> {
    if code == ffi::CK_OK {
        Ok(())
    } else {
        Err(error.to_error(code))
    }
}

/// Runs a control call and takes ownership of its output buffer.
pub(crate) fn call_control(
    library: &LibraryInner,
    call: impl FnOnce(*mut ffi::ck_buffer, *mut ck_error) -> i32,
) -> Result<Vec<u8>> {
    let mut output = ffi::ck_buffer::EMPTY;
    let mut error = ck_error::default();
    let code = call(&mut output, &mut error);
    // Free whatever the library handed out, even alongside an error.
    let bytes = library.free_buffer(output);
    check(code, &error)?;
    Ok(bytes)
}

/// Contexts the library may call back into until `close` returns.
#[derive(Default)]
#[allow(
    clippy::vec_box,
    reason = "the library holds pointers to these contexts: they must not move when the Vec grows"
)]
struct Callbacks {
    reporters: Vec<Box<ReporterContext>>,
    lost: Vec<Box<LostContext>>,
}

/// A resource opened through a library's C table.
///
/// Implements [`Resource`]; calls go straight to the library. The handle is
/// closed by [`Resource::close`], or on drop if never closed.
pub struct LoadedResource {
    name: String,
    handle: *mut c_void,
    closed: bool,
    callbacks: Mutex<Callbacks>,
    /// The `ck_logger` context given to `open`; must outlive `close`.
    _log: Box<Logger>,
    /// Last: may hold the last reference to the library, whose code must
    /// stay loaded until everything above is dropped.
    type_handle: ResourceTypeHandle,
}

// SAFETY: the ABI allows calls to one resource from any thread, and
// `terminate` concurrently with other calls; the handle is only a token.
unsafe impl Send for LoadedResource {}
// SAFETY: as above.
unsafe impl Sync for LoadedResource {}

impl std::fmt::Debug for LoadedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedResource")
            .field("name", &self.name)
            .field("type", &self.type_handle.name())
            .finish()
    }
}

impl LoadedResource {
    pub(crate) fn open(
        type_handle: ResourceTypeHandle,
        name: &str,
        properties: &Properties,
        recover: bool,
        log: Logger,
    ) -> Result<LoadedResource> {
        let log = Box::new(log);
        let encoded = properties.encode();
        let open = type_handle.raw().open.expect("checked at load");
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut error = ck_error::default();
        // SAFETY: every pointer is valid for the call; the logger context
        // lives in `log`, kept until after close.
        let code = unsafe {
            open(
                type_handle.raw().context,
                ffi::ck_str::borrow(name),
                ffi::ck_bytes::from_slice(&encoded),
                recover,
                raw_logger(&log),
                &mut handle,
                &mut error,
            )
        };
        check(code, &error)?;
        if handle.is_null() {
            return Err(Error::Internal(format!(
                "type `{}` returned success from open but no resource handle",
                type_handle.name()
            )));
        }
        Ok(LoadedResource {
            type_handle,
            name: name.to_owned(),
            handle,
            closed: false,
            callbacks: Mutex::default(),
            _log: log,
        })
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource's type.
    pub fn resource_type(&self) -> &ResourceTypeHandle {
        &self.type_handle
    }

    fn callbacks(&self) -> std::sync::MutexGuard<'_, Callbacks> {
        self.callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn simple_call(&self, f: ffi::ck_resource_fn, what: &str) -> Result<()> {
        let Some(f) = f else {
            return Err(Error::unsupported(what));
        };
        let mut error = ck_error::default();
        // SAFETY: a live handle and a valid error slot.
        let code = unsafe { f(self.handle, &mut error) };
        check(code, &error)
    }

    fn transition(&self, status: StatusReporter, going_online: bool) -> Result<Transition> {
        let raw = self.type_handle.raw();
        let f = if going_online {
            raw.online
        } else {
            raw.offline
        }
        .expect("checked at load");
        let context = ReporterContext::new(status);
        let reporter = context.raw();
        // Kept until close: the library may report from a worker long after this returns.
        self.callbacks().reporters.push(context);
        let mut state = 0u32;
        let mut error = ck_error::default();
        // SAFETY: a live handle; `reporter`'s context is kept until close.
        let code = unsafe { f(self.handle, reporter, &mut state, &mut error) };
        check(code, &error)?;
        let (done, pending) = if going_online {
            (ResourceState::Online, ResourceState::OnlinePending)
        } else {
            (ResourceState::Offline, ResourceState::OfflinePending)
        };
        match ResourceState::from_u32(state) {
            Some(s) if s == done => Ok(Transition::Done),
            Some(s) if s == pending => Ok(Transition::Pending),
            _ => Err(Error::Internal(format!(
                "type `{}` returned state {state} from {}; expected {} or {}",
                self.type_handle.name(),
                if going_online { "online" } else { "offline" },
                done as u32,
                pending as u32
            ))),
        }
    }

    fn health(&self, f: ffi::ck_health_fn, what: &str) -> Health {
        let f = f.expect("checked at load");
        let mut health = ck_health::default();
        let mut error = ck_error::default();
        // SAFETY: a live handle and valid out-slots.
        let code = unsafe { f(self.handle, &mut health, &mut error) };
        match check(code, &error) {
            Ok(()) => health.to_health(),
            Err(e) => Health::Failed(format!("{what} returned an error: {e}")),
        }
    }
}

impl Resource for LoadedResource {
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        self.transition(status, true)
    }

    fn offline(&self, status: StatusReporter) -> Result<Transition> {
        self.transition(status, false)
    }

    fn terminate(&self) -> Result<()> {
        self.simple_call(self.type_handle.raw().terminate, "terminate")
    }

    fn looks_alive(&self) -> Health {
        self.health(self.type_handle.raw().looks_alive, "looks_alive")
    }

    fn is_alive(&self) -> Health {
        self.health(self.type_handle.raw().is_alive, "is_alive")
    }

    fn arbitrate(&self, lost: LostOwnership) -> Result<()> {
        let Some(f) = self.type_handle.raw().arbitrate else {
            return Err(Error::unsupported("arbitrate"));
        };
        let context = Box::new(LostContext(lost));
        let raw = context.raw();
        self.callbacks().lost.push(context);
        let mut error = ck_error::default();
        // SAFETY: a live handle; the callback context is kept until close.
        let code = unsafe { f(self.handle, raw, &mut error) };
        check(code, &error)
    }

    fn release(&self) -> Result<()> {
        self.simple_call(self.type_handle.raw().release, "release")
    }

    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        let Some(control) = self.type_handle.raw().control else {
            return Err(Error::unsupported(format_args!("control {code}")));
        };
        call_control(&self.type_handle.library, |output, error| {
            // SAFETY: a live handle and valid pointers for the call's duration.
            unsafe {
                control(
                    self.handle,
                    code.0,
                    ffi::ck_bytes::from_slice(input),
                    output,
                    error,
                )
            }
        })
    }

    fn close(mut self) -> Result<()> {
        self.close_handle()
    }
}

impl LoadedResource {
    fn close_handle(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        self.simple_call(self.type_handle.raw().close, "close")
    }
}

impl Drop for LoadedResource {
    fn drop(&mut self) {
        // The handle is invalid after close whatever it returned; the
        // callback contexts are freed only now, after close.
        let _ = self.close_handle();
    }
}
