//! The TOML configuration of `clusterkit run` and `clusterkit validate`.
//!
//! Every error names the file, the line and column, and the key. Unknown
//! keys are errors. `docs/CONFIG.md` is the reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clusterkit::{Properties, Value};
use clusterkit_host::{Backoff, Placement, ResourceConfig, RestartAction, Timing, TimingOverrides};
use serde::Deserialize;
use toml::Spanned;

/// The default state directory.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/clusterkit";
/// The default configuration file.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/clusterkit/clusterkit.toml";

/// The environment variable naming the config file when `-c` does not.
pub(crate) const CONFIG_ENV: &str = "CLUSTERKIT_CONFIG";

/// The config file to use: `-c`'s, else `$CLUSTERKIT_CONFIG`'s, else
/// [`DEFAULT_CONFIG`].
pub(crate) fn config_path(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| {
            std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| DEFAULT_CONFIG.into())
}

/// Loads the config `-c` (or the environment, or the default) names; a
/// missing file is an error that says how to name another.
pub(crate) fn load_explained(given: Option<PathBuf>) -> Result<Config, String> {
    check_exists(given.clone())?;
    Config::load(&config_path(given)).map_err(|e| e.to_string())
}

/// An error saying how to name another config when the one `given` (or
/// the environment's, or the default) does not exist.
pub(crate) fn check_exists(given: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = config_path(given.clone());
    if let Err(e) = std::fs::metadata(&path)
        && e.kind() == std::io::ErrorKind::NotFound
    {
        let from = match (&given, std::env::var_os(CONFIG_ENV)) {
            (Some(_), _) => "given with -c".to_owned(),
            (None, Some(v)) if !v.is_empty() => format!("named by ${CONFIG_ENV}"),
            _ => "the default".to_owned(),
        };
        return Err(format!(
            "{}: no such config file ({from}); name yours with -c/--config FILE or \
             ${CONFIG_ENV}=FILE (docs/CONFIG.md)",
            path.display()
        ));
    }
    Ok(path)
}

/// A configuration error: where and what.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.located())]
pub(crate) struct ConfigError {
    /// The file.
    pub(crate) file: String,
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column.
    pub(crate) column: usize,
    /// What is wrong, naming the key.
    pub(crate) message: String,
}

impl ConfigError {
    /// `file:line:column: message`; `file: message` for the whole file.
    fn located(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file, self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// A duration in a config: `"500ms"`, `"5s"`, `"2m"`, `"1h"`, or an
/// integer number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ConfigDuration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
            // Anything else (a negative or fractional number, a table): an
            // error that says what a duration is, not serde's "did not
            // match any variant".
            Other(toml::Value),
        }
        let spec = clusterkit::PropertySpec::duration("duration");
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(ConfigDuration(Duration::from_millis(ms))),
            Raw::Text(text) => match spec.parse(&text) {
                Ok(Value::Duration(d)) => Ok(ConfigDuration(d)),
                _ => Err(serde::de::Error::custom(format!(
                    "{text:?} is not a duration (milliseconds, or a number with ms, s, m or h)"
                ))),
            },
            Raw::Other(other) => Err(serde::de::Error::custom(format!(
                "{} is not a duration: a whole number of milliseconds (0 or more), or a \
                 text such as \"500ms\", \"5s\", \"2m\" or \"1h\"",
                shown(&other)
            ))),
        }
    }
}

/// A config value as written, for an error message.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::String(s) => format!("{s:?}"),
        other => format!("a {}", other.type_str()),
    }
}

/// `restart_backoff_factor`: a whole number (2 doubles the delay each time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffFactor(u32);

impl<'de> Deserialize<'de> for BackoffFactor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BackoffFactor, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Whole(u32),
            Other(toml::Value),
        }
        match Raw::deserialize(d)? {
            Raw::Whole(n) => Ok(BackoffFactor(n)),
            Raw::Other(other) => Err(serde::de::Error::custom(format!(
                "{} is not a backoff factor: a whole number, such as 2 (each restart \
                 waits twice as long as the one before)",
                shown(&other)
            ))),
        }
    }
}

/// Timing settings, all optional (names as in `docs/CONFIG.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimingConfig {
    looks_alive_interval: Option<ConfigDuration>,
    is_alive_interval: Option<ConfigDuration>,
    deadlock_timeout: Option<ConfigDuration>,
    pending_timeout: Option<ConfigDuration>,
    restart_action: Option<RestartAction>,
    restart_threshold: Option<u32>,
    restart_period: Option<ConfigDuration>,
    restart_delay: Option<ConfigDuration>,
    restart_backoff_factor: Option<BackoffFactor>,
    restart_backoff_cap: Option<ConfigDuration>,
    restart_backoff_reset_after: Option<ConfigDuration>,
    retry_period_on_failure: Option<ConfigDuration>,
}

impl TimingConfig {
    fn overrides(&self) -> TimingOverrides {
        let d = |v: Option<ConfigDuration>| v.map(|c| c.0);
        let backoff = self
            .restart_backoff_factor
            .map(|BackoffFactor(factor)| Backoff {
                factor,
                cap: d(self.restart_backoff_cap).unwrap_or(Duration::from_secs(60)),
                reset_after: d(self.restart_backoff_reset_after)
                    .unwrap_or(Duration::from_secs(600)),
            });
        TimingOverrides {
            looks_alive_interval: d(self.looks_alive_interval),
            is_alive_interval: d(self.is_alive_interval),
            deadlock_timeout: d(self.deadlock_timeout),
            pending_timeout: d(self.pending_timeout),
            restart_action: self.restart_action,
            restart_threshold: self.restart_threshold,
            restart_period: d(self.restart_period),
            restart_delay: d(self.restart_delay),
            restart_backoff: backoff,
            retry_period_on_failure: d(self.retry_period_on_failure),
        }
    }
}

/// One `[[resource]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceSection {
    /// Unique name.
    pub(crate) name: Spanned<String>,
    /// A key of `[libraries]`.
    pub(crate) library: Spanned<String>,
    /// The type's name in that library.
    #[serde(rename = "type")]
    pub(crate) type_name: Spanned<String>,
    /// Group (default `"default"`).
    #[serde(default)]
    pub(crate) group: Option<String>,
    /// Resources of the same group to bring online first.
    #[serde(default)]
    pub(crate) depends_on: Vec<String>,
    /// `core`, `storage` or `default`.
    #[serde(default)]
    pub(crate) placement: Placement,
    /// Run in a monitor of its own.
    #[serde(default)]
    pub(crate) separate_monitor: bool,
    /// Bring online when first seen (later, the persisted desired state wins).
    #[serde(default = "yes")]
    pub(crate) autostart: bool,
    /// The type's properties.
    #[serde(default)]
    pub(crate) properties: BTreeMap<String, Spanned<toml::Value>>,
    /// Timing overrides.
    #[serde(default)]
    pub(crate) timing: TimingConfig,
}

fn yes() -> bool {
    true
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    state_dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    monitor: Option<PathBuf>,
    #[serde(default)]
    defaults: TimingConfig,
    #[serde(default)]
    libraries: BTreeMap<String, PathBuf>,
    #[serde(default)]
    types: BTreeMap<String, TimingConfig>,
    #[serde(default, rename = "resource")]
    resources: Vec<ResourceSection>,
    metrics: Option<crate::metrics::MetricsSection>,
    #[serde(default, rename = "alert")]
    alerts: Vec<crate::alerts::AlertSection>,
    #[serde(default)]
    event_log: EventLogConfig,
}

/// `[event_log]`: when `events.jsonl` is rotated.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLogConfig {
    /// Rotate past this many bytes (0: never).
    max_bytes: Option<u64>,
    /// Rotated files kept.
    keep: Option<u32>,
}

/// A loaded, resolved configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Where it came from.
    pub(crate) path: PathBuf,
    text: String,
    /// The state directory.
    pub(crate) state_dir: PathBuf,
    /// The control socket.
    pub(crate) control_socket: PathBuf,
    /// The monitor program (`None`: the clusterkit binary itself).
    pub(crate) monitor: Option<PathBuf>,
    /// Host-wide timing defaults.
    pub(crate) defaults: Timing,
    /// Per-type timing overrides.
    pub(crate) type_timing: BTreeMap<String, TimingOverrides>,
    /// Libraries by name, resolved against the config file's directory.
    pub(crate) libraries: BTreeMap<String, PathBuf>,
    /// The resources.
    pub(crate) resources: Vec<ResourceSection>,
    /// `[metrics]`, if the file has it.
    metrics: Option<crate::metrics::MetricsSection>,
    /// `[[alert]]` entries.
    alerts: Vec<crate::alerts::AlertSection>,
    /// The config file's directory: relative alert paths start there.
    base: PathBuf,
    /// When the event log is rotated.
    pub(crate) event_log: clusterkit_host::EventLogLimits,
}

/// Converts a TOML value to a property value; integers and strings are
/// converted to the declared kinds later (`Schema::coerce`).
fn property_value(value: &toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::I64(*i),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(items) => Value::MultiString(
            items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "list items must be strings, found {}",
                        other.type_str()
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("{} values are not supported", other.type_str())),
    })
}

/// The text of the file at `path`.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })
}

impl Config {
    /// Reads and checks `path`.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(path, read(path)?)
    }

    /// Checks `text` as if read from `path`.
    pub(crate) fn parse(path: &Path, text: String) -> Result<Config, ConfigError> {
        let config = Config::parse_unchecked(path, text)?;
        config.check()?;
        Ok(config)
    }

    /// Parses `text` as if read from `path`, without the checks beyond
    /// the file's syntax and keys.
    fn parse_unchecked(path: &Path, text: String) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_column(&text, s.start));
            ConfigError {
                file: path.display().to_string(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        // A bare file name's parent is "": relative paths then resolve
        // against the current directory, never through the loader's search
        // path (a bare `libz.so.1` would load the system's).
        let base = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let beside_config = |p: PathBuf| {
            let joined = base.join(p);
            std::path::absolute(&joined).unwrap_or(joined)
        };
        let state_dir = file.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        let control_socket = file
            .control_socket
            .unwrap_or_else(|| state_dir.join("control.sock"));
        let config = Config {
            path: path.to_owned(),
            defaults: file.defaults.overrides().apply(&Timing::default()),
            type_timing: file
                .types
                .iter()
                .map(|(k, v)| (k.clone(), v.overrides()))
                .collect(),
            libraries: file
                .libraries
                .into_iter()
                .map(|(k, p)| (k, if p.is_relative() { beside_config(p) } else { p }))
                .collect(),
            resources: file.resources,
            metrics: file.metrics,
            alerts: file.alerts,
            base: std::path::absolute(base).unwrap_or_else(|_| base.to_owned()),
            event_log: {
                let default = clusterkit_host::EventLogLimits::default();
                clusterkit_host::EventLogLimits {
                    max_bytes: file.event_log.max_bytes.unwrap_or(default.max_bytes),
                    keep: file.event_log.keep.unwrap_or(default.keep),
                }
            },
            monitor: file.monitor,
            state_dir,
            control_socket,
            text,
        };
        Ok(config)
    }

    /// Reads `path` and returns it with its problems (empty when
    /// [`load`](Self::load) would accept it), so that `validate` goes on to
    /// the libraries and reports everything in one run; only a file that
    /// cannot be read or parsed stops it.
    pub(crate) fn load_with_problems(
        path: &Path,
    ) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let config = Config::parse_unchecked(path, read(path)?)?;
        let problems = config.problems();
        Ok((config, problems))
    }

    /// An error at byte `offset` of the file.
    pub(crate) fn error_at(&self, offset: usize, message: String) -> ConfigError {
        let (line, column) = line_column(&self.text, offset);
        ConfigError {
            file: self.path.display().to_string(),
            line,
            column,
            message,
        }
    }

    /// Every problem of the file, not only the first: one run of `validate`
    /// shows them all (the first error carries the others, one per line).
    fn check(&self) -> Result<(), ConfigError> {
        let mut problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let mut first = problems.remove(0);
        for more in problems {
            first.message.push_str(&format!("\n{more}"));
        }
        Err(first)
    }

    fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Err(problem) = self.defaults.check() {
            problems.push(self.error_at(0, format!("[defaults]: {problem}")));
        }
        if let Some(monitor) = &self.monitor {
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(monitor) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
                Ok(_) => problems.push(self.error_at(
                    0,
                    format!(
                        "key `monitor`: {} is not an executable file",
                        monitor.display()
                    ),
                )),
                Err(e) => problems
                    .push(self.error_at(0, format!("key `monitor`: {}: {e}", monitor.display()))),
            }
        }
        // A Unix socket's path has 108 bytes, the terminating NUL included.
        let socket_len = self.control_socket.as_os_str().len();
        if socket_len > 107 {
            problems.push(self.error_at(
                0,
                format!(
                    "control socket {}: a path of {socket_len} bytes is longer than a Unix \
                     socket allows (107); set `control_socket` to a shorter one",
                    self.control_socket.display()
                ),
            ));
        }
        if let Some(Err((at, problem))) = self.metrics.as_ref().map(|m| m.address()) {
            problems.push(self.error_at(at, problem));
        }
        if let Err(more) = self.alerts() {
            problems.extend(more);
        }
        let mut seen = BTreeMap::new();
        for r in &self.resources {
            if let Some(first) = seen.insert(r.name.get_ref().clone(), r.name.span().start) {
                let (line, _) = line_column(&self.text, first);
                problems.push(self.error_at(
                    r.name.span().start,
                    format!(
                        "resource `{}` is already declared at line {line}",
                        r.name.get_ref()
                    ),
                ));
            }
            if let Err(e) = clusterkit::validate_resource_name(r.name.get_ref()) {
                problems.push(self.error_at(r.name.span().start, format!("key `name`: {e}")));
            }
            if !self.libraries.contains_key(r.library.get_ref()) {
                problems.push(self.error_at(
                    r.library.span().start,
                    format!(
                        "resource `{}`: key `library`: `{}` is not in [libraries] (known: {})",
                        r.name.get_ref(),
                        r.library.get_ref(),
                        self.libraries
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            for (key, value) in &r.properties {
                if let Err(problem) = property_value(value.get_ref()) {
                    problems.push(self.error_at(
                        value.span().start,
                        format!(
                            "resource `{}`: property `{key}`: {problem}",
                            r.name.get_ref()
                        ),
                    ));
                }
            }
        }
        problems
    }

    /// Where `[metrics]` listens, if the file has it.
    pub(crate) fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.address().ok())
    }

    /// The `[[alert]]` entries, checked: every problem, located.
    pub(crate) fn alerts(&self) -> Result<Vec<crate::alerts::Alert>, Vec<ConfigError>> {
        let names: std::collections::HashSet<&str> = self
            .resources
            .iter()
            .map(|r| r.name.get_ref().as_str())
            .collect();
        let mut alerts = Vec::new();
        let mut problems = Vec::new();
        for section in &self.alerts {
            match section.check(&self.base, &names) {
                Ok(alert) => alerts.push(alert),
                Err(more) => problems.extend(
                    more.into_iter()
                        .map(|(at, problem)| self.error_at(at, problem)),
                ),
            }
        }
        if problems.is_empty() {
            Ok(alerts)
        } else {
            Err(problems)
        }
    }

    /// The host's view of every resource.
    pub(crate) fn resource_configs(&self) -> Vec<ResourceConfig> {
        self.resources
            .iter()
            .map(|r| {
                let mut c = ResourceConfig::new(
                    r.name.get_ref().clone(),
                    // An unknown library is a problem `validate` reports.
                    self.libraries
                        .get(r.library.get_ref())
                        .cloned()
                        .unwrap_or_default(),
                    r.type_name.get_ref().clone(),
                );
                c.properties = self.properties(r);
                c.group = r.group.clone().unwrap_or_else(|| "default".into());
                c.depends_on = r.depends_on.clone();
                c.placement = r.placement;
                c.separate_monitor = r.separate_monitor;
                c.timing = r.timing.overrides();
                c
            })
            .collect()
    }

    /// A resource's properties, as given (before coercion to the schema).
    pub(crate) fn properties(&self, r: &ResourceSection) -> Properties {
        r.properties
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    property_value(v.get_ref()).expect("checked at load"),
                )
            })
            .collect()
    }
}

/// 1-based line and column of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/ck.toml"), text.to_owned())
    }

    #[test]
    fn a_full_config_resolves() {
        let c = parse(
            r#"
state_dir = "/tmp/ck"
[defaults]
looks_alive_interval = "2s"
deadlock_timeout = 10000
[libraries]
dummy = "lib/libclusterkit_dummy.so"
[types.dummy]
is_alive_interval = "1m"
[[resource]]
name = "web"
library = "dummy"
type = "dummy"
depends_on = []
placement = "core"
[resource.properties]
state_dir = "/run/web"
[resource.timing]
restart_threshold = 5
"#,
        )
        .unwrap();
        assert_eq!(c.control_socket, Path::new("/tmp/ck/control.sock"));
        assert_eq!(c.defaults.looks_alive_interval, Duration::from_secs(2));
        assert_eq!(c.defaults.deadlock_timeout, Duration::from_secs(10));
        assert_eq!(
            c.libraries["dummy"],
            Path::new("/etc/lib/libclusterkit_dummy.so")
        );
        let r = &c.resource_configs()[0];
        assert_eq!(r.placement, Placement::Core);
        assert_eq!(r.timing.restart_threshold, Some(5));
        assert_eq!(r.properties.str("state_dir").unwrap(), "/run/web");
    }

    #[test]
    fn bad_durations_and_factors_say_what_is_expected() {
        let cases = [
            (
                "[defaults]\nlooks_alive_interval = -1\n",
                "-1 is not a duration: a whole number of milliseconds",
            ),
            (
                "[defaults]\nlooks_alive_interval = 1.5\n",
                "1.5 is not a duration",
            ),
            (
                "[defaults]\nrestart_backoff_factor = 1.5\n",
                "1.5 is not a backoff factor: a whole number",
            ),
        ];
        for (text, wanted) in cases {
            let e = Config::parse(Path::new("/etc/ck.toml"), text.to_owned()).unwrap_err();
            assert!(e.to_string().contains(wanted), "{text}: {e}");
            assert!(!e.to_string().contains("untagged"), "{e}");
        }
        let ok = "[defaults]\nrestart_backoff_factor = 2\nrestart_delay = 250\n";
        assert!(Config::parse(Path::new("/etc/ck.toml"), ok.to_owned()).is_ok());
    }

    #[test]
    fn relative_libraries_resolve_beside_the_config_even_for_a_bare_file_name() {
        let text = "[libraries]\nz = \"libz.so.1\"\nd = \"lib/libd.so\"\n".to_owned();
        let cwd = std::env::current_dir().unwrap();
        let bare = Config::parse(Path::new("rel.toml"), text.clone()).unwrap();
        assert_eq!(bare.libraries["z"], cwd.join("libz.so.1"));
        let nested = Config::parse(Path::new("conf/ck.toml"), text.clone()).unwrap();
        assert_eq!(nested.libraries["d"], cwd.join("conf/lib/libd.so"));
        let absolute = Config::parse(Path::new("/etc/ck/ck.toml"), text).unwrap();
        assert_eq!(absolute.libraries["z"], Path::new("/etc/ck/libz.so.1"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e =
            parse("[[resource]]\nname = \"a\"\nlibrary = \"x\"\ntype = \"t\"\ncolour = \"red\"\n")
                .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/ck.toml:5:1: unknown field `colour`"),
            "{e}"
        );

        let e = parse("[defaults]\nlooks_alive_interval = \"soon\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 24), "{e}");
        assert!(e.message.contains("\"soon\" is not a duration"), "{e}");

        let e =
            parse("[[resource]]\nname = \"a\"\nlibrary = \"nope\"\ntype = \"t\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/ck.toml:3:11: resource `a`: key `library`: `nope` is not in [libraries] (known: )"
        );

        let e = parse(
            "[libraries]\nx = \"/x.so\"\n[[resource]]\nname = \"a\"\nlibrary = \"x\"\ntype = \"t\"\n[resource.properties]\nratio = 0.5\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/ck.toml:8:9: resource `a`: property `ratio`: float values are not supported"
        );

        let e = parse("[defaults]\ndeadlock_timeout = 10\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("deadlock_timeout is 10 ms, the minimum is 1000 ms"),
            "{e}"
        );
    }

    #[test]
    fn metrics_and_alert_problems_are_located() {
        let c = parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n[[alert]]\npath = \"/bin/true\"\n")
            .unwrap();
        assert_eq!(c.metrics_address().unwrap().port(), 9464);
        assert_eq!(c.alerts().unwrap().len(), 1);
        assert!(parse("").unwrap().metrics_address().is_none());

        let e = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/ck.toml:2:10: [metrics] key `listen`: \"localhost\" is not an address and \
             port, such as \"127.0.0.1:9464\" or \"[::1]:9464\""
        );
        let e = parse("[metrics]\nport = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `port`"), "{e}");

        let e = parse(
            "[[alert]]\npath = \"/proc/version\"\nkinds = [\"resource_failed\", \"exploded\"]\n\
             resources = [\"db\"]\ntimeout = 0\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "/etc/ck.toml:2:8: [[alert]] key `path`: /proc/version: not an executable file"
            ),
            "{text}"
        );
        assert!(
            text.contains("/etc/ck.toml:3:29: [[alert]] key `kinds`: no event kind `exploded` (kinds: resource_online,"),
            "{text}"
        );
        assert!(
            text.contains(
                "/etc/ck.toml:4:14: [[alert]] key `resources`: no resource `db` is declared"
            ),
            "{text}"
        );
        assert!(
            text.contains("/etc/ck.toml:5:11: [[alert]] key `timeout`: must be above zero"),
            "{text}"
        );
    }
}
