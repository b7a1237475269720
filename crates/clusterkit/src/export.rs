//! The glue behind [`export_resource_types!`](crate::export_resource_types): Rust types behind the C table.
//!
//! Every function here that C calls runs its body inside `guard`, the one
//! panic boundary: a panic becomes `CK_E_PANICKED` with the panic message,
//! never an unwind across `extern "C"`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use crate::ffi::{
    self, ck_bytes, ck_error, ck_health, ck_host, ck_library, ck_property_spec, ck_str, ck_type,
};
use crate::{
    ControlCode, Error, Level, LogSink, Logger, LostOwnership, Properties, Reply, Resource,
    ResourceContext, ResourceState, ResourceType, Result, Schema, StartupContext, StatusReporter,
    StatusSink, StopFlag, Transition, TypeDescription,
};

/// Turns a panic payload into its message.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic with a non-string payload".to_owned(),
        },
    }
}

thread_local! {
    /// Whether this thread runs inside `guard`: its panics become errors.
    static IN_BOUNDARY: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic inside `guard` happened, for its error message.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per copy of std (each cdylib has its own), a panic hook
/// that keeps panics inside boundary calls off the host's stderr: their
/// message and location reach the host as the `CK_E_PANICKED` error instead.
/// Panics anywhere else go to the hook that was installed before, so a host
/// that links resource types statically keeps its own hook for its own
/// panics; a hook the host sets later replaces this one (the host decides).
/// No backtrace is captured inside boundary calls: std's symbolizer cache
/// lives in the library's copy of std and would be lost at `dlclose`.
fn install_panic_hook() {
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
    // The previous hook lives in a static and the new hook captures
    // nothing, so installing it allocates nothing that `dlclose` would leak.
    static PREVIOUS: OnceLock<Hook> = OnceLock::new();
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = PREVIOUS.set(std::panic::take_hook());
        std::panic::set_hook(Box::new(|info| {
            let inside = IN_BOUNDARY.try_with(Cell::get).unwrap_or(false);
            if !inside {
                if let Some(previous) = PREVIOUS.get() {
                    previous(info);
                }
                return;
            }
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let _ = PANIC_LOCATION.try_with(|slot| *slot.borrow_mut() = location);
        }));
    });
}

/// Runs `f` as a boundary call, turning a panic into [`Error::Panicked`]
/// with the panic's message and location.
fn catch_panics<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    // `try_with`: a call made from a thread's TLS destructors must not
    // panic here, outside `catch_unwind`; its panics are still caught, only
    // printed by the previous hook.
    let outer = IN_BOUNDARY.try_with(|b| b.replace(true)).unwrap_or(false);
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let _ = IN_BOUNDARY.try_with(|b| b.set(outer));
    outcome.unwrap_or_else(|payload| {
        let message = panic_message(payload);
        let location = PANIC_LOCATION
            .try_with(|slot| slot.borrow_mut().take())
            .ok()
            .flatten();
        Err(Error::Panicked(match location {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }))
    })
}

/// Runs `f`, catching panics; writes the outcome into `error` (if not NULL):
/// `CK_OK` with an empty message on success, so a host may read `*error`
/// after every call; returns the code.
fn guard(error: *mut ck_error, f: impl FnOnce() -> Result<()>) -> i32 {
    let outcome = catch_panics(f);
    // SAFETY: the C caller passes NULL or a valid, writable ck_error.
    let slot = unsafe { error.as_mut() };
    match outcome {
        Ok(()) => {
            if let Some(slot) = slot {
                slot.code = ffi::CK_OK;
                slot.message_len = 0;
            }
            ffi::CK_OK
        }
        Err(e) => {
            if let Some(slot) = slot {
                slot.set(&e);
            }
            e.code().as_i32()
        }
    }
}

/// Writes `value` through an out-pointer the C caller gave.
fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<()> {
    if out.is_null() {
        return Err(Error::InvalidInput(format!("NULL {what} pointer")));
    }
    // SAFETY: not NULL; the C caller guarantees it is valid and writable.
    unsafe { out.write(value) };
    Ok(())
}

struct FfiLogSink(ffi::ck_logger);
// SAFETY: the ABI requires the host's log callback to be thread-safe.
unsafe impl Send for FfiLogSink {}
// SAFETY: as above.
unsafe impl Sync for FfiLogSink {}

impl LogSink for FfiLogSink {
    fn log(&self, level: Level, message: &str) {
        if let Some(log) = self.0.log {
            // SAFETY: the host keeps the context valid while the resource exists.
            unsafe { log(self.0.context, level as u32, ck_str::borrow(message)) }
        }
    }
}

fn logger_from(raw: ffi::ck_logger) -> Logger {
    match raw.log {
        Some(_) => Logger::new(Arc::new(FfiLogSink(raw))),
        None => Logger::discard(),
    }
}

struct FfiStatusSink(ffi::ck_status_reporter);
// SAFETY: the ABI requires the host's report/complete callbacks to be thread-safe.
unsafe impl Send for FfiStatusSink {}
// SAFETY: as above.
unsafe impl Sync for FfiStatusSink {}

impl StatusSink for FfiStatusSink {
    fn report(&self, state: ResourceState, checkpoint: u32, wait_hint: Duration) -> Reply {
        let Some(report) = self.0.report else {
            return Reply::Continue;
        };
        let ms = u64::try_from(wait_hint.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: the host keeps the context valid until `close` returns.
        match unsafe { report(self.0.context, state as u32, checkpoint, ms) } {
            ffi::CK_REPLY_CONTINUE => Reply::Continue,
            _ => Reply::Terminate,
        }
    }

    fn complete(&self, outcome: Result<ResourceState, Error>) {
        let Some(complete) = self.0.complete else {
            return;
        };
        match outcome {
            // SAFETY: as above.
            Ok(state) => unsafe { complete(self.0.context, state as u32, std::ptr::null()) },
            Err(e) => {
                let mut raw = ck_error::default();
                raw.set(&e);
                // SAFETY: as above; `raw` outlives the call.
                unsafe { complete(self.0.context, ffi::CK_STATE_FAILED, &raw) }
            }
        }
    }
}

/// A Rust resource type ready to be laid out in a C table; built by
/// [`export_resource_types!`](crate::export_resource_types) with [`TypeExport::of`].
#[derive(Debug, Clone, Copy)]
pub struct TypeExport {
    build: fn(&StartupContext) -> Result<TypeState>,
}

impl TypeExport {
    /// The export of `T`.
    pub const fn of<T: ResourceType>() -> TypeExport {
        TypeExport {
            build: build_type::<T>,
        }
    }
}

/// One type's table and everything it points to.
#[doc(hidden)]
pub struct TypeState {
    table: ck_type,
    _description: TypeDescription,
    _specs: Vec<ck_property_spec>,
    _extra_flags: Vec<u32>,
    _storage: Vec<ffi::SpecStorage>,
    drop_context: unsafe fn(*mut c_void),
}

impl std::fmt::Debug for TypeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeState")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Drop for TypeState {
    fn drop(&mut self) {
        // SAFETY: `context` was made by `build_type` for this `drop_context`.
        unsafe { (self.drop_context)(self.table.context) }
    }
}

/// The type instance plus its schema, behind `ck_type.context`.
struct TypeHolder<T> {
    instance: T,
    schema: Schema,
}

/// One open resource, behind the `void *` handle.
struct ResourceHolder<R> {
    resource: R,
    termination: StopFlag,
    /// Entered around each entry point: `tracing`/`log` lines go to it.
    log: Logger,
}

unsafe fn drop_type_holder<T: ResourceType>(context: *mut c_void) {
    // SAFETY: made by `Box::into_raw` in `build_type::<T>`.
    drop(unsafe { Box::from_raw(context.cast::<TypeHolder<T>>()) });
}

fn build_type<T: ResourceType>(ctx: &StartupContext) -> Result<TypeState> {
    let description = T::describe();
    description.schema.check_self().map_err(|errors| {
        Error::Internal(format!(
            "type `{}` declares a bad schema: {errors}",
            description.name
        ))
    })?;
    let instance = T::startup(ctx)?;
    let holder = Box::new(TypeHolder {
        instance,
        schema: description.schema.clone(),
    });
    let extra_flags: Vec<u32> = description
        .schema
        .specs()
        .iter()
        .map(|spec| {
            let secret = if spec.is_secret() {
                ffi::CK_PROPERTY_EXTRA_SECRET
            } else {
                0
            };
            let unique = if spec.unique {
                ffi::CK_PROPERTY_EXTRA_UNIQUE
            } else {
                0
            };
            secret | unique
        })
        .collect();
    let (specs, storage): (Vec<_>, Vec<_>) = description
        .schema
        .specs()
        .iter()
        .map(ck_property_spec::from_spec)
        .unzip();
    let table = ck_type {
        struct_size: size_of::<ck_type>() as u32,
        reserved: 0,
        name: ck_str::borrow(&description.name),
        description: ck_str::borrow(&description.description),
        characteristics: description.characteristics.bits(),
        properties: specs.as_ptr(),
        property_count: specs.len(),
        context: Box::into_raw(holder).cast(),
        open: Some(open::<T>),
        close: Some(close::<T>),
        online: Some(online::<T>),
        offline: Some(offline::<T>),
        terminate: Some(terminate::<T>),
        looks_alive: Some(looks_alive::<T>),
        is_alive: Some(is_alive::<T>),
        arbitrate: Some(arbitrate::<T>),
        release: Some(release::<T>),
        control: Some(control::<T>),
        type_control: Some(type_control::<T>),
        property_extra_flags: extra_flags.as_ptr(),
    };
    // The strings and specs live on the heap, so moving `description` and
    // `specs` keeps every pointer in `table` valid.
    Ok(TypeState {
        table,
        _description: description,
        _specs: specs,
        _extra_flags: extra_flags,
        _storage: storage,
        drop_context: drop_type_holder::<T>,
    })
}

/// The library: its table first, so a `*const ck_library` is a `*const LibraryState`.
#[repr(C)]
struct LibraryState {
    table: ck_library,
    /// Never grown after startup, so `type_pointers` stay valid.
    types: Vec<TypeState>,
    type_pointers: Vec<*const ck_type>,
    _host_log: Logger,
}

/// Reads the host's `ck_host`, checking its version and size before
/// touching anything past `struct_size`.
fn read_host(host: *const ck_host) -> Result<ck_host> {
    if host.is_null() {
        return Err(Error::InvalidInput("clusterkit_startup: NULL host".into()));
    }
    // SAFETY: every ck_host layout starts with these two u32 fields, and
    // they are read one by one, never as a whole struct that may be shorter.
    let (abi_version, struct_size) = unsafe {
        (
            std::ptr::addr_of!((*host).abi_version).read_unaligned(),
            std::ptr::addr_of!((*host).struct_size).read_unaligned(),
        )
    };
    let host_major = abi_version >> 16;
    if host_major != ffi::CK_ABI_VERSION_MAJOR {
        return Err(Error::Abi(format!(
            "clusterkit_startup: the host speaks clusterkit ABI {}.{}, this library {}.{}",
            host_major,
            abi_version & 0xffff,
            ffi::CK_ABI_VERSION_MAJOR,
            ffi::CK_ABI_VERSION_MINOR
        )));
    }
    if (struct_size as usize) < ffi::CK_HOST_SIZE_1_0 {
        return Err(Error::InvalidInput(format!(
            "clusterkit_startup: ck_host.struct_size is {struct_size}, \
             ABI 1.0 needs at least {} (set it to sizeof(struct ck_host))",
            ffi::CK_HOST_SIZE_1_0
        )));
    }
    // SAFETY: struct_size covers the whole 1.0 layout, which is all of
    // ck_host this library knows.
    Ok(unsafe { host.read_unaligned() })
}

/// The body of the generated `clusterkit_startup`.
///
/// # Safety
/// `host` must be NULL or point to a valid `ck_host`; `error` must be NULL
/// or point to a writable `ck_error`.
pub unsafe fn startup(
    host: *const ck_host,
    error: *mut ck_error,
    types: &[TypeExport],
    identity: (&'static str, &'static str),
) -> *const ck_library {
    install_panic_hook();
    let mut library: *const ck_library = std::ptr::null();
    guard(error, || {
        let host = read_host(host)?;
        let log = logger_from(host.logger);
        log.set_library_fallback();
        let ctx = StartupContext { log: log.clone() };
        let types = types
            .iter()
            .map(|t| (t.build)(&ctx))
            .collect::<Result<Vec<_>>>()?;
        let type_pointers: Vec<*const ck_type> =
            types.iter().map(|t| &t.table as *const ck_type).collect();
        let mut state = Box::new(LibraryState {
            table: ck_library {
                abi_version: ffi::CK_ABI_VERSION,
                struct_size: size_of::<ck_library>() as u32,
                type_count: types.len(),
                types: std::ptr::null(),
                free_buffer: Some(free_buffer),
                shutdown: Some(shutdown),
                name: ck_str::borrow(identity.0),
                version: ck_str::borrow(identity.1),
            },
            types,
            type_pointers,
            _host_log: log,
        });
        state.table.types = state.type_pointers.as_ptr();
        library = Box::into_raw(state).cast::<ck_library>();
        Ok(())
    });
    library
}

unsafe extern "C" fn shutdown(library: *const ck_library) {
    guard(std::ptr::null_mut(), || {
        if !library.is_null() {
            // SAFETY: `library` is the table `startup` leaked from a LibraryState.
            drop(unsafe { Box::from_raw(library.cast::<LibraryState>().cast_mut()) });
        }
        crate::log::Logger::clear_library_fallback();
        Ok(())
    });
}

unsafe extern "C" fn free_buffer(buffer: ffi::ck_buffer) {
    guard(std::ptr::null_mut(), || {
        // SAFETY: every buffer this library hands out comes from `from_vec`.
        unsafe { buffer.free() };
        Ok(())
    });
}

/// # Safety
/// `handle` must be an `open::<T>` handle that `close` has not consumed.
unsafe fn holder<'a, T: ResourceType>(
    handle: *mut c_void,
) -> Result<&'a ResourceHolder<T::Resource>> {
    // SAFETY: forwarded from the caller.
    unsafe { handle.cast::<ResourceHolder<T::Resource>>().as_ref() }
        .ok_or_else(|| Error::InvalidInput("NULL resource handle".into()))
}

unsafe extern "C" fn open<T: ResourceType>(
    context: *mut c_void,
    name: ck_str,
    properties: ck_bytes,
    recover: bool,
    logger: ffi::ck_logger,
    resource: *mut *mut c_void,
    error: *mut ck_error,
) -> i32 {
    if !resource.is_null() {
        // SAFETY: not NULL; the host passes a writable handle slot. Set
        // first, so a failed open leaves NULL, never an old handle.
        unsafe { resource.write(std::ptr::null_mut()) };
    }
    guard(error, || {
        if resource.is_null() {
            return Err(Error::InvalidInput("open: NULL resource pointer".into()));
        }
        // SAFETY: `context` is the TypeHolder<T> from `build_type::<T>`.
        let ty = unsafe { context.cast::<TypeHolder<T>>().as_ref() }
            .ok_or_else(|| Error::InvalidInput("NULL type context".into()))?;
        // SAFETY: the host passes valid strings for the call's duration.
        let name = unsafe { name.as_str() }
            .map_err(|e| Error::InvalidInput(format!("open: resource name: {e}")))?;
        crate::validate_resource_name(name)?;
        // SAFETY: as above.
        let input = Properties::decode(unsafe { properties.as_slice() }?)?;
        let validated = ty.schema.validate(&input)?;
        let termination = StopFlag::new();
        let log = logger_from(logger);
        let _log = log.enter();
        let ctx = ResourceContext::new(name, log.clone(), termination.clone());
        let opened = ty.instance.open(ctx, &validated, recover)?;
        let handle = Box::into_raw(Box::new(ResourceHolder {
            resource: opened,
            termination,
            log,
        }));
        write_out(resource, handle.cast(), "resource").inspect_err(|_| {
            // SAFETY: just made by Box::into_raw and never shared.
            drop(unsafe { Box::from_raw(handle) });
        })
    })
}

unsafe extern "C" fn close<T: ResourceType>(handle: *mut c_void, error: *mut ck_error) -> i32 {
    guard(error, || {
        if handle.is_null() {
            return Err(Error::InvalidInput("NULL resource handle".into()));
        }
        // SAFETY: the host hands back an `open::<T>` handle, once.
        let holder = unsafe { Box::from_raw(handle.cast::<ResourceHolder<T::Resource>>()) };
        let _log = holder.log.enter();
        holder.resource.close()
    })
}

fn transition<T: ResourceType>(
    handle: *mut c_void,
    reporter: ffi::ck_status_reporter,
    out: *mut u32,
    error: *mut ck_error,
    going_online: bool,
) -> i32 {
    let what = if going_online { "online" } else { "offline" };
    let code = guard(error, || {
        // SAFETY: the host passes a live handle.
        let holder = unsafe { holder::<T>(handle) }?;
        let _log = holder.log.enter();
        if out.is_null() {
            return Err(Error::InvalidInput(format!("{what}: NULL state pointer")));
        }
        // A pending operation can only end through these callbacks; without
        // them the host would never learn its result.
        if reporter.report.is_none() || reporter.complete.is_none() {
            return Err(Error::InvalidInput(format!(
                "{what}: the status reporter's `{}` callback is NULL; both `report` \
                 and `complete` are required",
                if reporter.report.is_none() {
                    "report"
                } else {
                    "complete"
                }
            )));
        }
        holder.termination.lower();
        let sink = Arc::new(FfiStatusSink(reporter));
        let (status, done, pending) = if going_online {
            (
                StatusReporter::online(sink),
                ResourceState::Online,
                ResourceState::OnlinePending,
            )
        } else {
            (
                StatusReporter::offline(sink),
                ResourceState::Offline,
                ResourceState::OfflinePending,
            )
        };
        let result = if going_online {
            holder.resource.online(status)
        } else {
            holder.resource.offline(status)
        }?;
        let state = match result {
            Transition::Done => done,
            Transition::Pending => pending,
        };
        write_out(out, state as u32, "state")
    });
    if code != ffi::CK_OK && !out.is_null() {
        // SAFETY: not NULL; the host passes a writable u32.
        unsafe { out.write(ffi::CK_STATE_FAILED) };
    }
    code
}

unsafe extern "C" fn online<T: ResourceType>(
    handle: *mut c_void,
    reporter: ffi::ck_status_reporter,
    state: *mut u32,
    error: *mut ck_error,
) -> i32 {
    transition::<T>(handle, reporter, state, error, true)
}

unsafe extern "C" fn offline<T: ResourceType>(
    handle: *mut c_void,
    reporter: ffi::ck_status_reporter,
    state: *mut u32,
    error: *mut ck_error,
) -> i32 {
    transition::<T>(handle, reporter, state, error, false)
}

unsafe extern "C" fn terminate<T: ResourceType>(handle: *mut c_void, error: *mut ck_error) -> i32 {
    guard(error, || {
        // SAFETY: the host passes a live handle.
        let holder = unsafe { holder::<T>(handle) }?;
        let _log = holder.log.enter();
        holder.termination.raise();
        holder.resource.terminate()
    })
}

fn health_check<T: ResourceType>(
    handle: *mut c_void,
    out: *mut ck_health,
    error: *mut ck_error,
    check: fn(&T::Resource) -> crate::Health,
) -> i32 {
    let code = guard(error, || {
        // SAFETY: the host passes a live handle.
        let holder = unsafe { holder::<T>(handle) }?;
        let _log = holder.log.enter();
        if out.is_null() {
            return Err(Error::InvalidInput("NULL health pointer".into()));
        }
        let health = check(&holder.resource);
        // SAFETY: not NULL; the host passes a writable ck_health.
        unsafe { &mut *out }.set(&health);
        Ok(())
    });
    if code != ffi::CK_OK && !out.is_null() {
        // An error counts as failed: say so in `*health` too, with the
        // error's message as the reason.
        // SAFETY: not NULL; the host passes a writable ck_health; `error`
        // is NULL or the ck_error `guard` just wrote.
        let reason = unsafe { error.as_ref() }
            .map(ck_error::message_text)
            .unwrap_or_else(|| format!("the health check returned error {code}"));
        // SAFETY: as above.
        unsafe { &mut *out }.set(&crate::Health::Failed(reason));
    }
    code
}

unsafe extern "C" fn looks_alive<T: ResourceType>(
    handle: *mut c_void,
    health: *mut ck_health,
    error: *mut ck_error,
) -> i32 {
    health_check::<T>(handle, health, error, |r| r.looks_alive())
}

unsafe extern "C" fn is_alive<T: ResourceType>(
    handle: *mut c_void,
    health: *mut ck_health,
    error: *mut ck_error,
) -> i32 {
    health_check::<T>(handle, health, error, |r| r.is_alive())
}

struct FfiLost(ffi::ck_lost_callback);
// SAFETY: the ABI requires the host's `lost` callback to be thread-safe.
unsafe impl Send for FfiLost {}
// SAFETY: as above.
unsafe impl Sync for FfiLost {}

impl FfiLost {
    fn fire(&self) {
        if let Some(lost) = self.0.lost {
            // SAFETY: the host keeps the context valid until `close` returns.
            unsafe { lost(self.0.context) }
        }
    }
}

unsafe extern "C" fn arbitrate<T: ResourceType>(
    handle: *mut c_void,
    lost: ffi::ck_lost_callback,
    error: *mut ck_error,
) -> i32 {
    guard(error, || {
        // SAFETY: the host passes a live handle.
        let holder = unsafe { holder::<T>(handle) }?;
        let _log = holder.log.enter();
        let raw = FfiLost(lost);
        let callback = LostOwnership::new(move || raw.fire());
        holder.resource.arbitrate(callback)
    })
}

unsafe extern "C" fn release<T: ResourceType>(handle: *mut c_void, error: *mut ck_error) -> i32 {
    guard(error, || {
        // SAFETY: the host passes a live handle.
        let holder = unsafe { holder::<T>(handle) }?;
        let _log = holder.log.enter();
        holder.resource.release()
    })
}

fn run_control(
    input: ck_bytes,
    output: *mut ffi::ck_buffer,
    error: *mut ck_error,
    call: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> i32 {
    // Set before anything can fail, so a host may free `*output` after
    // every call, whatever its result.
    if !output.is_null() {
        // SAFETY: not NULL; the host passes a writable ck_buffer.
        unsafe { output.write(ffi::ck_buffer::EMPTY) };
    }
    guard(error, || {
        if output.is_null() {
            return Err(Error::InvalidInput("NULL output buffer pointer".into()));
        }
        // SAFETY: the host passes valid input bytes for the call's duration.
        let bytes = call(unsafe { input.as_slice() }?)?;
        write_out(output, ffi::ck_buffer::from_vec(bytes), "output")
    })
}

unsafe extern "C" fn control<T: ResourceType>(
    handle: *mut c_void,
    code: u32,
    input: ck_bytes,
    output: *mut ffi::ck_buffer,
    error: *mut ck_error,
) -> i32 {
    run_control(input, output, error, |bytes| {
        // SAFETY: the host passes a live handle.
        let holder = unsafe { holder::<T>(handle) }?;
        let _log = holder.log.enter();
        holder.resource.control(ControlCode(code), bytes)
    })
}

unsafe extern "C" fn type_control<T: ResourceType>(
    context: *mut c_void,
    code: u32,
    input: ck_bytes,
    output: *mut ffi::ck_buffer,
    error: *mut ck_error,
) -> i32 {
    run_control(input, output, error, |bytes| {
        // SAFETY: `context` is the TypeHolder<T> from `build_type::<T>`.
        let ty = unsafe { context.cast::<TypeHolder<T>>().as_ref() }
            .ok_or_else(|| Error::InvalidInput("NULL type context".into()))?;
        match ControlCode(code) {
            // Answered from the trait, so no type has to implement `control`
            // for it; a type's own answer could only disagree.
            ControlCode::GET_OPERATION_TIMEOUTS => {
                Ok(T::operation_timeouts().to_properties().encode())
            }
            code => ty.instance.control(code, bytes),
        }
    })
}

/// The resource types of one crate, for a host that links the crate into
/// its own binary instead of loading it as a shared library.
///
/// [`export_resource_types!`](crate::export_resource_types) defines one as
/// `CLUSTERKIT_LIBRARY` in the crate that uses it; a Rust host opens it with
/// `clusterkit_loader::Library::from_static` and drives the types exactly
/// as if it had loaded the crate's cdylib: the same C table, the same panic
/// boundary.
#[derive(Debug, Clone, Copy)]
pub struct StaticLibrary {
    /// The crate's package name (`CARGO_PKG_NAME`).
    pub name: &'static str,
    /// The crate's version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// What the cdylib exports as `clusterkit_startup`.
    pub startup: ffi::ck_startup_fn,
}

/// Defines the unmangled `clusterkit_startup` (unless the `no-startup-symbol`
/// feature of `clusterkit` is on); used by `export_resource_types!`.
#[cfg(not(feature = "no-startup-symbol"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __clusterkit_startup_symbol {
    () => {
        /// The clusterkit C ABI entry point, generated by
        /// `clusterkit::export_resource_types!`.
        ///
        /// # Safety
        /// `host` must be NULL or a valid `ck_host`; `error` NULL or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn clusterkit_startup(
            host: *const $crate::ffi::ck_host,
            error: *mut $crate::ffi::ck_error,
        ) -> *const $crate::ffi::ck_library {
            // Only here, in the symbol a host finds with `dlopen`: a library
            // linked into a host must not take over the host's logging.
            $crate::logging::install();
            // SAFETY: the caller's guarantees are forwarded unchanged.
            unsafe { __clusterkit_library_startup(host, error) }
        }
    };
}

/// With the `no-startup-symbol` feature, no unmangled symbol: several crates
/// exporting types can then be linked into one binary.
#[cfg(feature = "no-startup-symbol")]
#[doc(hidden)]
#[macro_export]
macro_rules! __clusterkit_startup_symbol {
    () => {};
}

/// Exports resource types from a `cdylib` as the `clusterkit_startup`
/// symbol of the C ABI, and as a [`StaticLibrary`] named
/// `CLUSTERKIT_LIBRARY` for hosts that link the crate in.
///
/// Put it once in the library crate, naming every exported type, as in
/// `clusterkit::export_resource_types!(DiskType, NetworkNameType);`. The
/// [crate documentation](crate) has a complete, compiled example.
///
/// The crate's `Cargo.toml` needs `crate-type = ["cdylib"]` (add `"rlib"`
/// to also use the types from Rust, or to link them into a host).
///
/// `clusterkit_startup` is an unmangled symbol, so two crates that define it
/// cannot be linked into one binary. A host binary that links several
/// resource crates turns on `clusterkit`'s `no-startup-symbol` feature:
/// the macro then defines only the mangled `CLUSTERKIT_LIBRARY` (and
/// `clusterkit_library()`), which the host registers (see
/// `clusterkit_host::register_static_library`). Cargo unifies features
/// within one build, so build such a host in a cargo invocation (or a
/// workspace) of its own: cdylibs built alongside it would lack
/// `clusterkit_startup`. `docs/decisions/0033-resource-types-linked-into-a-host.md`
/// says why.
///
/// ```standalone_crate
/// # use clusterkit::*;
/// # pub struct NoopType;
/// # pub struct Noop;
/// # impl ResourceType for NoopType {
/// #     type Resource = Noop;
/// #     fn describe() -> TypeDescription {
/// #         TypeDescription { name: "noop".into(), description: "".into(),
/// #             characteristics: Characteristics::empty(), schema: Schema::default() }
/// #     }
/// #     fn startup(_: &StartupContext) -> Result<Self> { Ok(NoopType) }
/// #     fn open(&self, _: ResourceContext, _: &Properties, _: bool) -> Result<Noop> { Ok(Noop) }
/// # }
/// # impl Resource for Noop {
/// #     fn online(&self, _: StatusReporter) -> Result<Transition> { Ok(Transition::Done) }
/// #     fn offline(&self, _: StatusReporter) -> Result<Transition> { Ok(Transition::Done) }
/// #     fn terminate(&self) -> Result<()> { Ok(()) }
/// #     fn looks_alive(&self) -> Health { Health::Healthy }
/// #     fn is_alive(&self) -> Health { Health::Healthy }
/// # }
/// clusterkit::export_resource_types!(NoopType);
///
/// // What a host linking this crate registers:
/// let library: &'static clusterkit::export::StaticLibrary = clusterkit_library();
/// assert_eq!(library.name, CLUSTERKIT_LIBRARY.name);
/// ```
#[macro_export]
macro_rules! export_resource_types {
    ($($resource_type:ty),+ $(,)?) => {
        /// The body of this crate's `clusterkit_startup`, under a mangled
        /// name. Generated by `clusterkit::export_resource_types!`.
        ///
        /// # Safety
        /// `host` must be NULL or a valid `ck_host`; `error` NULL or writable.
        #[doc(hidden)]
        pub unsafe extern "C" fn __clusterkit_library_startup(
            host: *const $crate::ffi::ck_host,
            error: *mut $crate::ffi::ck_error,
        ) -> *const $crate::ffi::ck_library {
            // SAFETY: the caller's guarantees are forwarded unchanged.
            unsafe {
                $crate::export::startup(
                    host,
                    error,
                    &[$($crate::export::TypeExport::of::<$resource_type>()),+],
                    (env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
                )
            }
        }

        /// This crate's resource types, for a host that links them into its
        /// binary. Generated by `clusterkit::export_resource_types!`.
        pub static CLUSTERKIT_LIBRARY: $crate::export::StaticLibrary =
            $crate::export::StaticLibrary {
                name: env!("CARGO_PKG_NAME"),
                version: env!("CARGO_PKG_VERSION"),
                startup: __clusterkit_library_startup,
            };

        /// This crate's resource types ([`CLUSTERKIT_LIBRARY`]). Generated by
        /// `clusterkit::export_resource_types!`.
        pub fn clusterkit_library() -> &'static $crate::export::StaticLibrary {
            &CLUSTERKIT_LIBRARY
        }

        $crate::__clusterkit_startup_symbol!();
    };
}
