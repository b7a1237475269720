//! The validated configuration of one `virtual-machine` resource: its
//! properties, its paths, and the QEMU command line built from them.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clusterkit::{Error, Properties, PropertyError, Result};

use crate::{pid_file, qmp_socket};

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes,
/// with the terminating NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// `extra_args` entries that would break how the resource finds and
/// controls its QEMU.
const RESERVED_ARGS: [&str; 4] = ["-daemonize", "-pidfile", "--daemonize", "--pidfile"];

/// The `secret_args` property: given to QEMU, shown as `<secret>` in the
/// logged command line and in `Debug` output.
#[derive(Clone, Default)]
pub(crate) struct SecretArgs(pub(crate) Vec<String>);

impl std::fmt::Debug for SecretArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secret argument(s)>", self.0.len())
    }
}

/// What identifies *our* QEMU among all processes: its argv names the
/// binary and listens for QMP on our socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The file name of the QEMU binary (`qemu-system-x86_64`).
    binary_name: OsString,
    /// The `-qmp` argument, without options: `unix:<socket path>`, with
    /// commas doubled as QEMU's option syntax wants.
    qmp_arg: Vec<u8>,
}

impl Identity {
    /// Whether `argv` (from `/proc/<pid>/cmdline`) is our QEMU: `argv[0]`
    /// names the binary, and a `-qmp` option names our socket.
    pub(crate) fn matches(&self, argv: &[Vec<u8>]) -> bool {
        let Some(argv0) = argv.first() else {
            return false;
        };
        let binary_matches =
            Path::new(OsStr::from_bytes(argv0)).file_name() == Some(self.binary_name.as_os_str());
        let qmp_matches = argv.windows(2).any(|pair| {
            matches!(pair[0].as_slice(), b"-qmp" | b"--qmp")
                && pair[1]
                    .strip_prefix(self.qmp_arg.as_slice())
                    .is_some_and(|rest| {
                        // Our path, then end or the next option: not a longer
                        // path sharing our prefix (`vm.qmp2`). A doubled comma
                        // is part of the path.
                        rest.is_empty() || (rest.starts_with(b",") && !rest.starts_with(b",,"))
                    })
        });
        binary_matches && qmp_matches
    }
}

/// One resource's settings, read from its validated properties.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `qemu_binary` as given: a name looked up on `PATH`, or a path.
    pub(crate) qemu_binary: String,
    pub(crate) machine: String,
    pub(crate) memory_mb: u32,
    pub(crate) extra_args: Vec<String>,
    /// `secret_args`: passed to QEMU, never shown.
    pub(crate) secret_args: SecretArgs,
    /// `run_dir`, made absolute (QEMU changes to `/` when it daemonizes).
    pub(crate) run_dir: PathBuf,
    pub(crate) pid_file: PathBuf,
    pub(crate) qmp_socket: PathBuf,
    pub(crate) qmp_timeout: Duration,
    pub(crate) powerdown_grace: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) identity: Identity,
}

impl Config {
    /// Reads the properties of resource `name`; checks what the schema
    /// cannot (the name makes safe file names, `run_dir` is a directory and
    /// short enough for a socket path, `extra_args` does not fight ours).
    pub(crate) fn from_properties(name: &str, properties: &Properties) -> Result<Config> {
        if name.is_empty() || name.contains('/') || name.contains('\0') || name.starts_with('.') {
            return Err(Error::InvalidInput(format!(
                "resource name {name:?} cannot name files in run_dir: it must be non-empty, \
                 not start with `.` and contain no `/`"
            )));
        }
        let given = properties.str("run_dir")?;
        let run_dir = std::path::absolute(given)
            .map_err(|e| PropertyError::invalid("run_dir", format!("{given:?}: {e}")))?;
        check_run_dir(&run_dir)?;
        let qmp_socket = qmp_socket(&run_dir, name);
        let socket_len = qmp_socket.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(PropertyError::invalid(
                "run_dir",
                format!(
                    "the QMP socket path {} is {socket_len} bytes long, and a Unix socket path \
                     holds at most {MAX_SOCKET_PATH}: choose a shorter run_dir",
                    qmp_socket.display()
                ),
            )
            .into());
        }
        let extra_args = properties.strings("extra_args")?.to_vec();
        let secret_args = match properties.strings("secret_args") {
            Ok(args) => args.to_vec(),
            Err(e) if e.problem == clusterkit::Problem::Missing => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for (property, args) in [("extra_args", &extra_args), ("secret_args", &secret_args)] {
            if let Some(bad) = args.iter().find(|a| {
                let option = a.split('=').next().unwrap_or_default();
                RESERVED_ARGS.contains(&option)
            }) {
                // The option alone: a secret argument's value is never shown.
                let shown = if property == "secret_args" {
                    bad.split('=').next().unwrap_or_default()
                } else {
                    bad
                };
                return Err(PropertyError::invalid(
                    property,
                    format!(
                        "{shown:?} is set by the resource itself (it launches QEMU with \
                         -daemonize and -pidfile <run_dir>/<name>.pid)"
                    ),
                )
                .into());
            }
        }
        let qemu_binary = properties.str("qemu_binary")?.to_owned();
        let identity = Identity {
            binary_name: Path::new(&qemu_binary)
                .file_name()
                .map(OsStr::to_owned)
                .ok_or_else(|| {
                    PropertyError::invalid(
                        "qemu_binary",
                        format!("{qemu_binary:?} does not name a file"),
                    )
                })?,
            qmp_arg: qmp_option_prefix(&qmp_socket),
        };
        Ok(Config {
            qemu_binary,
            machine: properties.str("machine")?.to_owned(),
            memory_mb: properties.u32("memory_mb")?,
            extra_args,
            secret_args: SecretArgs(secret_args),
            pid_file: pid_file(&run_dir, name),
            qmp_socket,
            run_dir,
            qmp_timeout: properties.duration("qmp_timeout")?,
            powerdown_grace: properties.duration("powerdown_grace")?,
            start_timeout: properties.duration("start_timeout")?,
            identity,
        })
    }

    /// The QEMU arguments after the program: ours, then `extra_args`, each
    /// its own argv entry (no shell ever sees them).
    pub(crate) fn qemu_args(&self) -> Vec<OsString> {
        let mut qmp = OsString::from(OsStr::from_bytes(&self.identity.qmp_arg));
        qmp.push(",server=on,wait=off");
        let mut args: Vec<OsString> = vec![
            "-daemonize".into(),
            "-pidfile".into(),
            self.pid_file.clone().into(),
            "-qmp".into(),
            qmp,
            "-display".into(),
            "none".into(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-machine".into(),
            self.machine.clone().into(),
            "-accel".into(),
            "tcg".into(),
            "-m".into(),
            self.memory_mb.to_string().into(),
        ];
        args.extend(self.extra_args.iter().map(OsString::from));
        args.extend(self.secret_args.0.iter().map(OsString::from));
        args
    }

    /// The QEMU binary to run: `qemu_binary` if it is a path, else the first
    /// match on `PATH`. The error names `qemu_binary` and what is wrong.
    pub(crate) fn resolve_binary(&self) -> Result<PathBuf> {
        let invalid = |why: String| Error::from(PropertyError::invalid("qemu_binary", why));
        if self.qemu_binary.contains('/') {
            let path = std::path::absolute(&self.qemu_binary)
                .map_err(|e| invalid(format!("{:?}: {e}", self.qemu_binary)))?;
            return match executable(&path) {
                Ok(()) => Ok(path),
                Err(why) => Err(invalid(format!("{}: {why}", path.display()))),
            };
        }
        let search = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&search)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(&self.qemu_binary))
            .find(|candidate| executable(candidate).is_ok())
            .ok_or_else(|| {
                invalid(format!(
                    "{:?} is not an executable on PATH ({}); install QEMU (Debian: \
                     qemu-system-x86) or give its full path",
                    self.qemu_binary,
                    search.to_string_lossy()
                ))
            })
    }

    /// The whole command line, for logs: program and arguments, each quoted
    /// when it is not plain.
    pub(crate) fn describe_command(&self, binary: &Path) -> String {
        let shown = self.qemu_args().len() - self.secret_args.0.len();
        std::iter::once(binary.as_os_str().to_owned())
            .chain(self.qemu_args().into_iter().take(shown))
            .map(|a| {
                let a = a.to_string_lossy().into_owned();
                if !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=+@".contains(&b))
                {
                    a
                } else {
                    format!("{a:?}")
                }
            })
            .chain(self.secret_args.0.iter().map(|_| "<secret>".to_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }
}

/// `run_dir` must be an existing directory.
pub(crate) fn check_run_dir(run_dir: &Path) -> Result<()> {
    match std::fs::metadata(run_dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(PropertyError::invalid(
            "run_dir",
            format!("{} is not a directory", run_dir.display()),
        )
        .into()),
        Err(e) => Err(PropertyError::invalid(
            "run_dir",
            format!(
                "{} is not a usable directory ({e}); create it first",
                run_dir.display()
            ),
        )
        .into()),
    }
}

/// Whether `path` is a regular file someone may execute.
fn executable(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err("not a regular file".into()),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("not executable".into()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("does not exist".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `unix:<path>` with every comma doubled: QEMU's option syntax would read
/// a single comma as the start of the next option.
fn qmp_option_prefix(socket: &Path) -> Vec<u8> {
    let mut arg = b"unix:".to_vec();
    for &b in socket.as_os_str().as_bytes() {
        arg.push(b);
        if b == b',' {
            arg.push(b',');
        }
    }
    arg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_args_reach_qemu_but_never_the_logged_command_line() {
        let dir = std::env::temp_dir();
        let schema = <crate::VirtualMachineType as clusterkit::ResourceType>::describe().schema;
        let mut input = Properties::new();
        input.insert("run_dir", dir.to_str().unwrap());
        input.insert("extra_args", vec!["-name".to_owned(), "web".into()]);
        input.insert(
            "secret_args",
            vec!["-object".to_owned(), "secret,id=s0,data=hunter2".into()],
        );
        let props = schema.validate(&input).unwrap();
        let config = Config::from_properties("web", &props).unwrap();
        let args = config.qemu_args();
        assert!(args.iter().any(|a| a == "secret,id=s0,data=hunter2"));
        let shown = config.describe_command(Path::new("/usr/bin/qemu-system-x86_64"));
        assert!(shown.ends_with(" -name web <secret> <secret>"), "{shown}");
        for text in [shown, format!("{config:?}"), format!("{props:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
        }

        input.insert("secret_args", vec!["-pidfile=hunter2".to_owned()]);
        let props = schema.validate(&input).unwrap();
        let err = Config::from_properties("web", &props)
            .unwrap_err()
            .to_string();
        assert!(err.contains("property `secret_args`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    fn identity(socket: &str) -> Identity {
        Identity {
            binary_name: "qemu-system-x86_64".into(),
            qmp_arg: qmp_option_prefix(Path::new(socket)),
        }
    }

    fn argv(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn identity_needs_the_binary_and_our_socket() {
        let id = identity("/run/vm/web.qmp");
        let ours = [
            "/usr/bin/qemu-system-x86_64",
            "-daemonize",
            "-qmp",
            "unix:/run/vm/web.qmp,server=on,wait=off",
        ];
        assert!(id.matches(&argv(&ours)));
        let mut bare = ours;
        bare[0] = "qemu-system-x86_64";
        assert!(id.matches(&argv(&bare)));
        let mut other_binary = ours;
        other_binary[0] = "/usr/bin/sleep";
        assert!(!id.matches(&argv(&other_binary)));
        let mut longer = ours;
        longer[3] = "unix:/run/vm/web.qmp2,server=on";
        assert!(!id.matches(&argv(&longer)));
        let mut not_qmp = ours;
        not_qmp[2] = "-serial";
        assert!(!id.matches(&argv(&not_qmp)));
        assert!(!id.matches(&[]));
        assert!(!id.matches(&argv(&["sleep", "1000"])));
    }

    #[test]
    fn commas_in_the_socket_path_are_doubled() {
        let id = identity("/run/a,b/web.qmp");
        assert_eq!(id.qmp_arg, b"unix:/run/a,,b/web.qmp");
        assert!(id.matches(&argv(&[
            "qemu-system-x86_64",
            "-qmp",
            "unix:/run/a,,b/web.qmp,server=on,wait=off",
        ])));
        let plain = identity("/run/a");
        assert!(!plain.matches(&argv(&[
            "qemu-system-x86_64",
            "-qmp",
            "unix:/run/a,,b/web.qmp,server=on",
        ])));
    }
}
