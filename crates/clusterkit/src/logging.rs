//! Routes the `tracing` and `log` macros of a resource library to the host.
//!
//! With the cargo feature `tracing` (or `log`), a library built with
//! [`export_resource_types!`](crate::export_resource_types) installs, at
//! `startup`, a subscriber (`HostTracing`) or logger (`HostLog`) that
//! sends each record to [`Logger::current`](crate::Logger::current): the resource whose entry point
//! runs on this thread (the export glue [enters](crate::Logger::enter) its logger
//! around every call), else the library's own logger. The host receives each
//! line with its level, as if logged through
//! [`ResourceContext::log`](crate::ResourceContext::log).
//!
//! A [`Worker`](crate::Worker) spawned in an entry point logs for the same
//! resource; on other threads of the resource's own, enter its logger first
//! (`let _scope = ctx.log().enter();`), or lines go to the library's logger.
//!
//! Only the `clusterkit_startup` symbol a host finds with `dlopen` installs
//! them: a host that links resource types into itself
//! (`clusterkit_loader::Library::from_static`) keeps its own subscriber and
//! logger.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::Level;
#[cfg(any(feature = "tracing", feature = "log"))]
use crate::Logger;

/// The most detailed level the bridges forward; `Info` until changed.
static MAX_LEVEL: AtomicU32 = AtomicU32::new(Level::Info as u32);

/// Sets the most detailed level of `tracing` / `log` records sent to the
/// host (default [`Level::Info`]): each record forwarded is a message to the
/// host and a line of its event log, and dependencies log per packet at
/// `debug` and `trace`. [`ResourceContext::log`](crate::ResourceContext::log)
/// is not filtered.
///
/// ```
/// use clusterkit::{Level, logging};
/// logging::set_max_level(Level::Debug); // e.g. from a property, in `startup`
/// assert_eq!(logging::max_level(), Level::Debug);
/// # logging::set_max_level(Level::Info);
/// ```
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u32, Ordering::Relaxed);
}

/// The most detailed level forwarded; see [`set_max_level`].
pub fn max_level() -> Level {
    Level::from_u32(MAX_LEVEL.load(Ordering::Relaxed)).unwrap_or(Level::Info)
}

/// Whether a record at `level` is forwarded.
#[cfg(any(feature = "tracing", feature = "log"))]
fn forwarded(level: Level) -> bool {
    level as u32 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Installs what the enabled features provide, once; a subscriber or logger
/// set before (by this library) stays. Called by the `clusterkit_startup`
/// that [`export_resource_types!`](crate::export_resource_types) defines.
#[doc(hidden)]
pub fn install() {
    #[cfg(feature = "tracing")]
    let _ = tracing::subscriber::set_global_default(HostTracing::default());
    #[cfg(feature = "log")]
    if log::set_logger(&HostLog).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// Sends `message` to the current logger, if any and if `level` is forwarded.
#[cfg(any(feature = "tracing", feature = "log"))]
fn send(level: Level, message: std::fmt::Arguments<'_>) {
    if !forwarded(level) {
        return;
    }
    if let Some(logger) = Logger::current() {
        logger.log(level, message);
    }
}

/// A `tracing` subscriber sending every event to [`Logger::current`], its
/// fields after the message as ` key=value`. Spans are accepted and ignored.
#[cfg(feature = "tracing")]
#[derive(Debug, Default)]
pub struct HostTracing {
    next_span: std::sync::atomic::AtomicU64,
}

#[cfg(feature = "tracing")]
impl tracing::Subscriber for HostTracing {
    // Asked each time (a relaxed load): the level can change at run time.
    fn register_callsite(
        &self,
        _metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        forwarded(level_of(metadata.level()))
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        use std::sync::atomic::Ordering;
        // Span ids must not be zero.
        tracing::span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let level = level_of(event.metadata().level());
        if !forwarded(level) {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        send(level, format_args!("{}{}", line.message, line.fields));
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

#[cfg(feature = "tracing")]
fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::TRACE => Level::Trace,
    }
}

/// An event's message and its other fields.
#[cfg(feature = "tracing")]
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

#[cfg(feature = "tracing")]
impl tracing::field::Visit for Line {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields
                .push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message.push_str(&format!("{value:?}"));
        } else {
            self.fields
                .push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

/// A `log` logger sending every record to [`Logger::current`].
#[cfg(feature = "log")]
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLog;

#[cfg(feature = "log")]
impl log::Log for HostLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        forwarded(log_level(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        send(log_level(record.level()), *record.args());
    }

    fn flush(&self) {}
}

#[cfg(feature = "log")]
fn log_level(level: log::Level) -> Level {
    match level {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

#[cfg(all(test, feature = "tracing", feature = "log"))]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn tracing_and_log_records_reach_the_current_logger_with_their_level() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let logger =
            Logger::from_fn(move |level, msg| sink.lock().unwrap().push(format!("{level} {msg}")));
        let scope = logger.enter();
        tracing::subscriber::with_default(HostTracing::default(), || {
            tracing::warn!(disk = "sda", "almost full");
            tracing::debug!("not forwarded: below the default level");
            set_max_level(Level::Debug);
            tracing::debug!("checked");
            tracing::trace!("not forwarded either");
            set_max_level(Level::Info);
        });
        log::Log::log(
            &HostLog,
            &log::Record::builder()
                .level(log::Level::Error)
                .args(format_args!("gone"))
                .build(),
        );
        drop(scope);
        // Outside any scope (and no library logger in this test): dropped.
        log::Log::log(
            &HostLog,
            &log::Record::builder().args(format_args!("lost")).build(),
        );
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "warn almost full disk=\"sda\"",
                "debug checked",
                "error gone"
            ]
        );
    }
}
