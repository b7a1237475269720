//! What to inject where: entry points, actions, the fault set, and the
//! control file that adds faults at run time.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use clusterkit::{Logger, Properties, PropertyError, PropertyErrors};

/// An entry point a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryPoint {
    Open,
    Close,
    Online,
    Offline,
    Terminate,
    LooksAlive,
    IsAlive,
    Control,
}

impl EntryPoint {
    pub(crate) const ALL: [EntryPoint; 8] = [
        EntryPoint::Open,
        EntryPoint::Close,
        EntryPoint::Online,
        EntryPoint::Offline,
        EntryPoint::Terminate,
        EntryPoint::LooksAlive,
        EntryPoint::IsAlive,
        EntryPoint::Control,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            EntryPoint::Open => "open",
            EntryPoint::Close => "close",
            EntryPoint::Online => "online",
            EntryPoint::Offline => "offline",
            EntryPoint::Terminate => "terminate",
            EntryPoint::LooksAlive => "looks_alive",
            EntryPoint::IsAlive => "is_alive",
            EntryPoint::Control => "control",
        }
    }

    fn parse(name: &str) -> Option<EntryPoint> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }

    const fn is_health_check(self) -> bool {
        matches!(self, EntryPoint::LooksAlive | EntryPoint::IsAlive)
    }
}

/// What a fault does. Declared in the order [`inject`] applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Slow,
    Hang,
    Abort,
    Panic,
    Fail,
    Degrade,
    Garbage,
}

impl Action {
    pub(crate) const ALL: [Action; 7] = [
        Action::Slow,
        Action::Garbage,
        Action::Hang,
        Action::Abort,
        Action::Panic,
        Action::Fail,
        Action::Degrade,
    ];

    const fn name(self) -> &'static str {
        match self {
            Action::Slow => "slow",
            Action::Hang => "hang",
            Action::Abort => "abort",
            Action::Panic => "panic",
            Action::Fail => "fail",
            Action::Degrade => "degrade",
            Action::Garbage => "garbage",
        }
    }

    /// The property listing the entry points this action applies to.
    pub(crate) const fn property(self) -> &'static str {
        match self {
            Action::Slow => "slow_in",
            Action::Hang => "hang_in",
            Action::Abort => "abort_in",
            Action::Panic => "panic_in",
            Action::Fail => "fail_in",
            Action::Degrade => "degrade_in",
            Action::Garbage => "garbage_in",
        }
    }

    fn parse(name: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The valid entry-point names, comma-separated, for messages.
fn entry_point_list() -> String {
    EntryPoint::ALL.map(EntryPoint::name).join(", ")
}

/// The entry point `name` if `action` may apply to it, or why not.
fn target(action: Action, name: &str) -> Result<EntryPoint, String> {
    let entry_point = EntryPoint::parse(name).ok_or_else(|| {
        format!(
            "unknown entry point {name:?}; valid entry points: {}",
            entry_point_list()
        )
    })?;
    if action == Action::Degrade && !entry_point.is_health_check() {
        return Err(format!(
            "{name:?}: degrade applies to the health checks only (looks_alive, is_alive)"
        ));
    }
    Ok(entry_point)
}

/// A set of (action, entry point) faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Faults([u8; Action::ALL.len()]);

impl Faults {
    fn add(&mut self, action: Action, entry_point: EntryPoint) {
        self.0[action as usize] |= entry_point.bit();
    }

    pub(crate) fn has(self, action: Action, entry_point: EntryPoint) -> bool {
        self.0[action as usize] & entry_point.bit() != 0
    }

    pub(crate) fn union(mut self, other: Faults) -> Faults {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine |= theirs;
        }
        self
    }

    /// The faults configured by the `*_in` properties (already validated
    /// against the schema), naming every property with a bad entry point.
    pub(crate) fn from_properties(properties: &Properties) -> Result<Faults, PropertyErrors> {
        let mut faults = Faults::default();
        let mut errors = Vec::new();
        for action in Action::ALL {
            let property = action.property();
            let names = properties.strings(property).map_err(PropertyErrors::from)?;
            let mut problems = Vec::new();
            for name in names {
                match target(action, name) {
                    Ok(entry_point) => faults.add(action, entry_point),
                    Err(why) => problems.push(why),
                }
            }
            if !problems.is_empty() {
                errors.push(PropertyError::invalid(property, problems.join("; ")));
            }
        }
        if errors.is_empty() {
            Ok(faults)
        } else {
            Err(PropertyErrors(errors))
        }
    }
}

/// The outcome of [`inject`] when the entry point returns rather than
/// hanging, aborting or panicking.
#[derive(Debug)]
pub(crate) enum Injected {
    /// No fault: do the normal thing.
    Nothing,
    /// Return this failure.
    Fail(String),
    /// Health checks: return this degradation.
    Degrade(String),
}

/// Applies `faults` to `entry_point`, in the order of [`Action::ALL`]:
/// sleep `slow_for`, then hang, abort, panic, or report a failure or a
/// degradation.
pub(crate) fn inject(
    faults: Faults,
    entry_point: EntryPoint,
    slow_for: Duration,
    log: &Logger,
) -> Injected {
    let ep = entry_point.name();
    if faults.has(Action::Slow, entry_point) {
        std::thread::sleep(slow_for);
    }
    if faults.has(Action::Garbage, entry_point) {
        log.warn(format_args!(
            "fault-injection: told to write garbage to the monitor socket in {ep}"
        ));
        write_garbage();
    }
    if faults.has(Action::Hang, entry_point) {
        log.warn(format_args!(
            "fault-injection: told to hang in {ep}: blocking forever"
        ));
        hang();
    }
    if faults.has(Action::Abort, entry_point) {
        log.warn(format_args!(
            "fault-injection: told to abort in {ep}: aborting the process"
        ));
        std::process::abort();
    }
    if faults.has(Action::Panic, entry_point) {
        panic!("fault-injection: told to panic in {ep}");
    }
    if faults.has(Action::Fail, entry_point) {
        return Injected::Fail(format!("fault-injection: told to fail in {ep}"));
    }
    if faults.has(Action::Degrade, entry_point) {
        return Injected::Degrade(format!("fault-injection: told to degrade in {ep}"));
    }
    Injected::Nothing
}

/// The file descriptor of a clusterkit monitor's host socket
/// (`clusterkit_host::MONITOR_FD`).
const MONITOR_FD: i32 = 3;

/// Writes a frame header announcing 2 GiB, then junk, to the monitor's
/// host socket: a lying resource corrupting the host protocol.
fn write_garbage() {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: fd 3 is the monitor's socket while this library runs in a
    // monitor; ManuallyDrop keeps it open afterwards.
    let mut socket = std::mem::ManuallyDrop::new(unsafe { fs::File::from_raw_fd(MONITOR_FD) });
    let _ = socket.write_all(b"\xff\xff\xff\x7fthis is not a clusterkit frame");
}

/// Blocks the calling thread forever in a real blocking system call
/// (`recvfrom` on a UDP socket nobody sends to), ignoring `terminate`, as a
/// resource stuck on the network would.
fn hang() -> ! {
    if let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
        let mut buffer = [0u8; 1];
        loop {
            // Whatever arrives (or fails), block again.
            let _ = socket.recv(&mut buffer);
        }
    }
    loop {
        std::thread::park();
    }
}

/// What identifies one version of the control file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

#[derive(Debug, Default)]
struct ControlState {
    /// The version the faults were parsed from; `None` when the file is
    /// missing or unreadable.
    stamp: Option<Stamp>,
    faults: Faults,
    /// Problems already logged, so each is logged once.
    warned: HashSet<String>,
}

/// The control file: directives `<action> <entry point>`, one a line, that
/// add to the configured faults. Re-read only when it changes.
#[derive(Debug)]
pub(crate) struct ControlFile {
    path: PathBuf,
    state: Mutex<ControlState>,
}

impl ControlFile {
    pub(crate) fn new(path: PathBuf) -> ControlFile {
        ControlFile {
            path,
            state: Mutex::default(),
        }
    }

    /// The faults the file asks for now: none when it is missing. Costs one
    /// `stat` when the file has not changed since the last call.
    pub(crate) fn faults(&self, log: &Logger) -> Faults {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) => {
                if e.kind() != ErrorKind::NotFound {
                    self.unreadable(&mut state, log, &e);
                }
                state.stamp = None;
                state.faults = Faults::default();
                return state.faults;
            }
        };
        let stamp = Stamp::of(&meta);
        if state.stamp == Some(stamp) {
            return state.faults;
        }
        // Read after the stat: the text is at least as new as the stamp, so
        // a change racing with this read is seen at the next call.
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                state.faults = self.parse(&text, &mut state, log);
                state.stamp = Some(stamp);
            }
            Err(e) => {
                self.unreadable(&mut state, log, &e);
                state.faults = Faults::default();
                state.stamp = None;
            }
        }
        state.faults
    }

    fn unreadable(&self, state: &mut ControlState, log: &Logger, e: &std::io::Error) {
        state.warn_once(
            log,
            format!("unreadable: {e}"),
            format_args!(
                "control file {}: {e}; no faults from it",
                self.path.display()
            ),
        );
    }

    fn parse(&self, text: &str, state: &mut ControlState, log: &Logger) -> Faults {
        let mut faults = Faults::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let directive = match words[..] {
                [action, entry_point] => Action::parse(action)
                    .ok_or_else(|| {
                        format!(
                            "unknown action {action:?}; valid actions: {}",
                            Action::ALL.map(Action::name).join(", ")
                        )
                    })
                    .and_then(|action| Ok((action, target(action, entry_point)?))),
                _ => Err("expected `<action> <entry point>`".to_owned()),
            };
            match directive {
                Ok((action, entry_point)) => faults.add(action, entry_point),
                // Keyed by the line's text: lines inserted above it do not
                // make it logged again.
                Err(why) => state.warn_once(
                    log,
                    format!("line: {line}"),
                    format_args!(
                        "control file {}, line {}: {why}: {line:?} is ignored",
                        self.path.display(),
                        index + 1
                    ),
                ),
            }
        }
        faults
    }
}

impl ControlState {
    /// Logs `message` at warn level unless a message with the same `key`
    /// was logged before.
    fn warn_once(&mut self, log: &Logger, key: String, message: fmt::Arguments<'_>) {
        if self.warned.insert(key) {
            log.warn(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse_and_bad_lines_are_reported() {
        let file = ControlFile::new(PathBuf::from("/ctl"));
        let mut state = ControlState::default();
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let log = Logger::from_fn(move |_, m| sink.lock().unwrap().push(m.to_owned()));
        let faults = file.parse(
            "# a comment\n\n  fail   online  # trailing\nslow is_alive\n\
             degrade online\nexplode close\nhang\npanic onlien\n",
            &mut state,
            &log,
        );
        assert!(faults.has(Action::Fail, EntryPoint::Online));
        assert!(faults.has(Action::Slow, EntryPoint::IsAlive));
        assert!(!faults.has(Action::Degrade, EntryPoint::Online));
        assert!(!faults.has(Action::Fail, EntryPoint::Offline));
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].contains("line 5: \"online\": degrade applies to the health checks only"));
        assert!(lines[1].contains("line 6: unknown action \"explode\""));
        assert!(lines[2].contains("line 7: expected `<action> <entry point>`: \"hang\""));
        assert!(lines[3].contains("line 8: unknown entry point \"onlien\"; valid entry points: open, close, online, offline, terminate, looks_alive, is_alive, control"));
    }

    #[test]
    fn union_keeps_both_sides() {
        let mut a = Faults::default();
        a.add(Action::Hang, EntryPoint::Open);
        let mut b = Faults::default();
        b.add(Action::Hang, EntryPoint::Control);
        b.add(Action::Panic, EntryPoint::Close);
        let both = a.union(b);
        assert!(both.has(Action::Hang, EntryPoint::Open));
        assert!(both.has(Action::Hang, EntryPoint::Control));
        assert!(both.has(Action::Panic, EntryPoint::Close));
        assert!(!both.has(Action::Panic, EntryPoint::Open));
    }
}
