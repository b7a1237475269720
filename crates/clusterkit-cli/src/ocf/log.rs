//! Logging as Pacemaker's agents do it (`ocf-shellfuncs`' `ha_log`): to
//! `$HA_LOGFILE`, to syslog when `$HA_LOGFACILITY` names a facility, and
//! to stderr only when neither is set; debug lines only with `$HA_debug`.
//!
//! Pacemaker's executor logs whatever an agent writes to stderr, once per
//! action, so info lines on stderr would fill its log at every monitor. At
//! the default verbosity, stderr therefore carries warnings, errors and the
//! exit reason only.

use std::ffi::CString;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clusterkit::{Level, Logger};

/// Where an agent's log lines go, read from the `HA_*` environment.
#[derive(Debug)]
pub(crate) struct AgentLog {
    /// `$HA_LOGTAG`, or `clusterkit-<type>(<instance>)`.
    tag: String,
    file: Option<PathBuf>,
    debug_file: Option<PathBuf>,
    /// The syslog facility, when `$HA_LOGFACILITY` names one.
    facility: Option<libc::c_int>,
    debug: bool,
    /// Keeps the ident alive: `openlog` stores the pointer.
    ident: Mutex<Option<CString>>,
}

impl AgentLog {
    /// The log for the agent of `type_name`, from the environment.
    pub(crate) fn from_env(type_name: &str) -> Arc<AgentLog> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        // Pacemaker exports its PCMK_<option>s as HA_<option> (HA_logfile,
        // HA_logfacility, HA_debug); heartbeat-era tools use upper case.
        let ha = |upper: &str, lower: &str| var(upper).or_else(|| var(lower));
        let instance = var("OCF_RESOURCE_INSTANCE").unwrap_or_else(|| "-".into());
        let facility = ha("HA_LOGFACILITY", "HA_logfacility").and_then(|f| facility(&f));
        let debug = ha("HA_debug", "HA_DEBUG").is_some_and(|d| {
            !matches!(
                d.to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            )
        });
        Arc::new(AgentLog {
            tag: var("HA_LOGTAG").unwrap_or_else(|| format!("clusterkit-{type_name}({instance})")),
            file: ha("HA_LOGFILE", "HA_logfile").map(PathBuf::from),
            debug_file: ha("HA_DEBUGLOG", "HA_debuglog").map(PathBuf::from),
            facility,
            debug,
            ident: Mutex::new(None),
        })
    }

    /// A [`Logger`] writing here, for the library and the resource.
    pub(crate) fn logger(self: &Arc<Self>) -> Logger {
        let log = self.clone();
        Logger::from_fn(move |level, message| log.write(level, message))
    }

    /// Whether lines go to a file or syslog (else to stderr).
    fn has_destination(&self) -> bool {
        self.file.is_some() || self.facility.is_some()
    }

    /// Writes one line where the environment says.
    pub(crate) fn write(&self, level: Level, message: &str) {
        self.write_to(level, message, true);
    }

    /// Writes one line to the file and syslog only: for what the exit
    /// reason already says on stderr.
    pub(crate) fn write_quietly(&self, level: Level, message: &str) {
        self.write_to(level, message, false);
    }

    fn write_to(&self, level: Level, message: &str, stderr: bool) {
        if level >= Level::Debug && !self.debug {
            return;
        }
        let message = message.replace('\n', " ");
        let pid = std::process::id();
        if let Some(facility) = self.facility {
            self.syslog(facility, level, &message);
        }
        let file = if level >= Level::Debug {
            self.debug_file.as_ref().or(self.file.as_ref())
        } else {
            self.file.as_ref()
        };
        if let Some(path) = file {
            let line = format!("{} {}[{pid}]: {level}: {message}\n", timestamp(), self.tag);
            // A log that cannot be written must not fail the action.
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
        }
        if stderr && !self.has_destination() && (level <= Level::Warn || self.debug) {
            eprintln!("{}: {level}: {message}", self.tag);
        }
    }

    fn syslog(&self, facility: libc::c_int, level: Level, message: &str) {
        let priority = match level {
            Level::Error => libc::LOG_ERR,
            Level::Warn => libc::LOG_WARNING,
            Level::Info => libc::LOG_INFO,
            Level::Debug | Level::Trace => libc::LOG_DEBUG,
        };
        let Ok(text) = CString::new(message) else {
            return;
        };
        let mut ident = self.ident.lock().unwrap_or_else(|e| e.into_inner());
        if ident.is_none() {
            let Ok(tag) = CString::new(self.tag.as_str()) else {
                return;
            };
            // SAFETY: `tag` is stored in `self.ident` for as long as this
            // process logs, so the pointer openlog keeps stays valid.
            unsafe { libc::openlog(tag.as_ptr(), libc::LOG_PID, facility) };
            *ident = Some(tag);
        }
        // SAFETY: a constant format and a NUL-terminated argument.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
    }
}

/// The syslog facility `name` (`daemon`, `local0`…), as `HA_LOGFACILITY`
/// gives it; `none` and unknown names mean no syslog.
fn facility(name: &str) -> Option<libc::c_int> {
    Some(match name.to_ascii_lowercase().as_str() {
        "daemon" => libc::LOG_DAEMON,
        "user" => libc::LOG_USER,
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "syslog" => libc::LOG_SYSLOG,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return None,
    })
}

/// Local time as syslog writes it (`Dec  1 21:30:05`).
fn timestamp() -> String {
    // SAFETY: time(NULL), and localtime_r into a zeroed local struct.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        tm
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_follow_syslog_names() {
        assert_eq!(facility("daemon"), Some(libc::LOG_DAEMON));
        assert_eq!(facility("LOCAL7"), Some(libc::LOG_LOCAL7));
        assert_eq!(facility("none"), None);
        assert_eq!(facility("bogus"), None);
    }
}
