//! The logging handle a resource writes through.

use std::fmt;
use std::sync::Arc;

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
