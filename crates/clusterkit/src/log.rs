//! The logging handle a resource writes through.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

crate::stable_enum! {
    /// The severity of a log line. Numeric values are stable and cross the
    /// C ABI.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Level: u32 {
        /// Something failed.
        Error = 1, "error";
        /// Something is wrong but handled.
        Warn = 2, "warn";
        /// Normal operation worth recording.
        Info = 3, "info";
        /// Detail for diagnosing problems.
        Debug = 4, "debug";
        /// Very fine detail.
        Trace = 5, "trace";
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where log lines go. The host implements this; each sink is bound to one
/// resource (or type), so lines are attributed without the resource naming
/// itself.
pub trait LogSink: Send + Sync {
    /// Records one line.
    fn log(&self, level: Level, message: &str);
}

/// A cheap, cloneable logging handle, bound to one resource by the host.
///
/// ```
/// use clusterkit::{Level, Logger};
/// use std::sync::{Arc, Mutex};
///
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let sink = lines.clone();
/// let log = Logger::from_fn(move |level, msg| sink.lock().unwrap().push(format!("{level} {msg}")));
/// log.info(format_args!("registered {} in {} ms", "web", 12));
/// assert_eq!(lines.lock().unwrap()[0], "info registered web in 12 ms");
/// ```
#[derive(Clone)]
pub struct Logger {
    sink: Option<Arc<dyn LogSink>>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger").finish_non_exhaustive()
    }
}

struct FnSink<F>(F);

impl<F: Fn(Level, &str) + Send + Sync> LogSink for FnSink<F> {
    fn log(&self, level: Level, message: &str) {
        (self.0)(level, message)
    }
}

impl Logger {
    /// A logger writing to `sink`.
    pub fn new(sink: Arc<dyn LogSink>) -> Logger {
        Logger { sink: Some(sink) }
    }

    /// A logger calling `f` for each line.
    pub fn from_fn(f: impl Fn(Level, &str) + Send + Sync + 'static) -> Logger {
        Logger::new(Arc::new(FnSink(f)))
    }

    /// A logger that drops every line.
    pub fn discard() -> Logger {
        Logger { sink: None }
    }

    /// Records one line at `level`.
    pub fn log(&self, level: Level, message: fmt::Arguments<'_>) {
        if let Some(sink) = &self.sink {
            match message.as_str() {
                Some(s) => sink.log(level, s),
                None => sink.log(level, &message.to_string()),
            }
        }
    }

    /// Records an error line.
    pub fn error(&self, message: fmt::Arguments<'_>) {
        self.log(Level::Error, message)
    }

    /// Records a warning line.
    pub fn warn(&self, message: fmt::Arguments<'_>) {
        self.log(Level::Warn, message)
    }

    /// Records an info line.
    pub fn info(&self, message: fmt::Arguments<'_>) {
        self.log(Level::Info, message)
    }

    /// Records a debug line.
    pub fn debug(&self, message: fmt::Arguments<'_>) {
        self.log(Level::Debug, message)
    }
}

thread_local! {
    /// The logger of the resource whose entry point runs on this thread.
    static CURRENT: RefCell<Option<Logger>> = const { RefCell::new(None) };
}

/// The library's own logger (from `startup`, until `shutdown`): where lines
/// logged on threads outside any entry point go, attributed to the library.
/// Cleared at `shutdown`: a host may unload the library after it, and a
/// logger left in a static would be a leak that outlives its code.
static LIBRARY: Mutex<Option<Logger>> = Mutex::new(None);

impl Logger {
    /// Makes this the [current](Self::current) logger of this thread until
    /// the returned scope is dropped (the previous one comes back then).
    ///
    /// The export glue enters the resource's logger around every entry
    /// point; a resource enters it on threads of its own (a worker), so
    /// that `tracing`/`log` lines logged there are attributed to it too.
    ///
    /// ```
    /// use clusterkit::{Level, Logger};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let lines = Arc::new(Mutex::new(Vec::new()));
    /// let sink = lines.clone();
    /// let log = Logger::from_fn(move |level, msg| sink.lock().unwrap().push(format!("{level} {msg}")));
    /// {
    ///     let _scope = log.enter();
    ///     Logger::current().unwrap().warn(format_args!("disk almost full"));
    /// }
    /// assert!(Logger::current().is_none());
    /// assert_eq!(lines.lock().unwrap()[0], "warn disk almost full");
    /// ```
    pub fn enter(&self) -> LogScope {
        // `try_with`: an entry point called from a thread's TLS destructors
        // logs nowhere rather than panicking.
        let previous = CURRENT
            .try_with(|current| current.replace(Some(self.clone())))
            .ok()
            .flatten();
        LogScope {
            previous,
            _not_send: PhantomData,
        }
    }

    /// The logger lines logged on this thread belong to: the resource whose
    /// entry point runs here (or that [entered](Self::enter) it), else the
    /// library's own (from `startup`), else none.
    pub fn current() -> Option<Logger> {
        entered().or_else(|| {
            LIBRARY
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// Makes this the library-wide fallback of [`current`](Self::current),
    /// until [`clear_library_fallback`](Self::clear_library_fallback).
    pub(crate) fn set_library_fallback(&self) {
        *LIBRARY.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.clone());
    }

    /// Forgets the library-wide fallback (the library shuts down).
    pub(crate) fn clear_library_fallback() {
        LIBRARY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// The logger entered on this thread, if any (not the library's fallback).
pub(crate) fn entered() -> Option<Logger> {
    CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()
}

/// While alive, a [`Logger`] is the current one of its thread; see
/// [`Logger::enter`]. Not `Send`: it restores the thread it was made on.
#[must_use = "the logger is current only while the scope lives"]
#[derive(Debug)]
pub struct LogScope {
    previous: Option<Logger>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LogScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
    }
}
