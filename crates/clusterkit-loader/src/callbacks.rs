//! The host side of the C callbacks: logging, status reports, lost ownership.
//!
//! Each callback catches panics from the Rust code it calls, since a panic
//! must never unwind into the library's C frames.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clusterkit::ffi::{self, ck_error, ck_str};
use clusterkit::{Error, Level, Logger, LostOwnership, Reply, StatusReporter};

/// A `Logger` behind a `ck_logger` context.
pub(crate) fn raw_logger(logger: &Logger) -> ffi::ck_logger {
    ffi::ck_logger {
        context: std::ptr::from_ref(logger).cast_mut().cast(),
        log: Some(host_log),
    }
}

unsafe extern "C" fn host_log(context: *mut c_void, level: u32, message: ck_str) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `context` is a `Logger` the loader keeps alive (see `raw_logger`).
        let Some(logger) = (unsafe { context.cast::<Logger>().as_ref() }) else {
            return;
        };
        let level = Level::from_u32(level).unwrap_or(Level::Info);
        // SAFETY: the library passes a valid string for the call's duration.
        match unsafe { message.as_str() } {
            Ok(text) => logger.log(level, format_args!("{text}")),
            Err(e) => logger.log(level, format_args!("<unreadable log line: {e}>")),
        }
    }));
}

/// The context behind one `ck_status_reporter`: one pending operation.
pub(crate) struct ReporterContext {
    reporter: StatusReporter,
    completed: AtomicBool,
}

impl ReporterContext {
    pub(crate) fn new(reporter: StatusReporter) -> Box<ReporterContext> {
        Box::new(ReporterContext {
            reporter,
            completed: AtomicBool::new(false),
        })
    }

    pub(crate) fn raw(&self) -> ffi::ck_status_reporter {
        ffi::ck_status_reporter {
            context: std::ptr::from_ref(self).cast_mut().cast(),
            report: Some(host_report),
            complete: Some(host_complete),
        }
    }
}

unsafe extern "C" fn host_report(
    context: *mut c_void,
    _state: u32,
    checkpoint: u32,
    wait_hint_ms: u64,
) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a `ReporterContext` kept alive until the resource is closed.
        let Some(ctx) = (unsafe { context.cast::<ReporterContext>().as_ref() }) else {
            return ffi::CK_REPLY_TERMINATE;
        };
        if ctx.completed.load(Ordering::Acquire) {
            return ffi::CK_REPLY_TERMINATE;
        }
        match ctx
            .reporter
            .report(checkpoint, Duration::from_millis(wait_hint_ms))
        {
            Reply::Continue => ffi::CK_REPLY_CONTINUE,
            Reply::Terminate => ffi::CK_REPLY_TERMINATE,
        }
    }))
    .unwrap_or(ffi::CK_REPLY_TERMINATE)
}

unsafe extern "C" fn host_complete(context: *mut c_void, state: u32, error: *const ck_error) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a `ReporterContext` kept alive until the resource is closed.
        let Some(ctx) = (unsafe { context.cast::<ReporterContext>().as_ref() }) else {
            return;
        };
        if ctx.completed.swap(true, Ordering::AcqRel) {
            return; // a second completion is ignored: the first one stands
        }
        let target = ctx.reporter.target() as u32;
        let outcome = if state == target {
            Ok(())
        } else if state == ffi::CK_STATE_FAILED {
            // SAFETY: the library passes NULL or a valid ck_error.
            Err(match unsafe { error.as_ref() } {
                Some(e) => e.to_error(e.code),
                None => Error::Failed("the pending operation failed without an error".into()),
            })
        } else {
            Err(Error::Internal(format!(
                "library completed a pending operation with state {state}, expected {target} or {}",
                ffi::CK_STATE_FAILED
            )))
        };
        ctx.reporter.complete(outcome);
    }));
}

/// The context behind a `ck_lost_callback`.
pub(crate) struct LostContext(pub(crate) LostOwnership);

impl LostContext {
    pub(crate) fn raw(&self) -> ffi::ck_lost_callback {
        ffi::ck_lost_callback {
            context: std::ptr::from_ref(self).cast_mut().cast(),
            lost: Some(host_lost),
        }
    }
}

unsafe extern "C" fn host_lost(context: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a `LostContext` kept alive until the resource is closed.
        if let Some(ctx) = unsafe { context.cast::<LostContext>().as_ref() } {
            ctx.0.notify();
        }
    }));
}
