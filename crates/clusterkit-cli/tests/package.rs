//! The Debian package (`scripts/package`): built from the debug build the
//! suite has already made, checked by `lintian`, installed on this machine
//! with `dpkg -i`, used from the installed paths (`validate`, the demo, an
//! OCF agent, the completions, the unit), then removed (`dpkg -r`: only the
//! conffile stays) and purged (`dpkg -P`: nothing stays).
//!
//! It changes the machine: it refuses to start when a `clusterkit` package
//! is installed already, and purges its own whatever happens.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clusterkit_testkit::{TempDir, require_tool, workspace_root};

const PACKAGE: &str = "clusterkit";
const CONFFILE: &str = "/etc/clusterkit/clusterkit.toml";
/// Another engineer's `apt-get` may hold dpkg's lock for a while.
const LOCK_PATIENCE: Duration = Duration::from_secs(300);

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` and asserts it succeeds; returns its stdout.
fn succeed(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `dpkg ARGS`, waiting for dpkg's lock while someone else holds it.
fn dpkg(args: &[&str]) -> String {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        let out = run(Command::new("dpkg").args(args));
        let stderr = text(&out.stderr);
        if out.status.success() {
            return text(&out.stdout);
        }
        let locked = stderr.contains("lock");
        assert!(
            locked && Instant::now() < deadline,
            "dpkg {args:?} failed ({}):\n{}\n{stderr}",
            out.status,
            text(&out.stdout)
        );
        std::thread::sleep(Duration::from_secs(1)); // polling another process's lock
    }
}

/// dpkg's status of the package, e.g. `install ok installed`; empty when
/// dpkg does not know it.
fn status() -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]));
    text(&out.stdout).trim().to_owned()
}

/// Purges the package on drop, so that a failing test leaves the machine
/// as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if !status().is_empty() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        }
    }
}

#[test]
fn the_package_passes_lintian_installs_runs_the_demo_and_removes_cleanly() {
    require_tool("dpkg-deb", "dpkg");
    require_tool("dpkg-shlibdeps", "dpkg-dev");
    let lintian = require_tool("lintian", "lintian");
    require_tool("strip", "binutils");
    // The demo's backends.
    require_tool("named", "bind9");
    require_tool("dig", "bind9-dnsutils");
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let before = status();
    assert!(
        before.is_empty() || before.starts_with("unknown ok not-installed"),
        "a `{PACKAGE}` package is on this machine already ({before}); this test installs and \
         purges its own: remove it first (`dpkg --purge {PACKAGE}`)"
    );

    let dir = TempDir::new("package");
    let out = succeed(
        Command::new(workspace_root().join("scripts/package"))
            .args(["--profile", "dev", "--out"])
            .arg(dir.path()),
    );
    let deb = out.lines().last().expect("scripts/package prints the .deb");
    assert!(Path::new(deb).is_file(), "{deb} missing");

    // No errors and no warnings (information tags are allowed).
    let report = run(Command::new(lintian).args(["--fail-on", "error,warning", deb]));
    assert!(
        report.status.success(),
        "lintian:\n{}{}",
        text(&report.stdout),
        text(&report.stderr)
    );

    let installed = Installed;
    dpkg(&["-i", deb]);
    assert_eq!(status(), "install ok installed");
    let files: Vec<String> = dpkg(&["-L", PACKAGE]).lines().map(str::to_owned).collect();
    for path in [
        "/usr/bin/clusterkit",
        "/usr/lib/clusterkit/clusterkit-monitor",
        "/usr/lib/clusterkit/libclusterkit_dummy.so",
        "/usr/lib/systemd/system/clusterkit.service",
        "/usr/lib/ocf/resource.d/clusterkit/dummy",
        "/usr/share/man/man1/clusterkit.1.gz",
        "/usr/share/man/man1/clusterkit-run.1.gz",
        "/usr/share/bash-completion/completions/clusterkit",
        "/usr/share/zsh/vendor-completions/_clusterkit",
        "/usr/share/fish/vendor_completions.d/clusterkit.fish",
        CONFFILE,
    ] {
        assert!(files.iter().any(|f| f == path), "{path} not in the package");
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let conffiles = succeed(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(conffiles.contains(CONFFILE), "{conffiles}");

    // The installed command, with the installed config and libraries.
    let valid = succeed(Command::new("/usr/bin/clusterkit").arg("validate"));
    assert!(valid.contains(&format!("{CONFFILE}: ok")), "{valid}");
    let demo = succeed(Command::new("/usr/bin/clusterkit").arg("demo"));
    for line in [
        "legacy-app: isolated in a monitor of its own",
        "[ok] co-hosted resources restarted: 0",
        "every resource offline and closed, QEMU and BIND stopped, temp dir removed",
    ] {
        assert!(demo.contains(line), "missing {line:?} in:\n{demo}");
    }
    assert!(!demo.contains("[FAILED]"), "{demo}");
    monitors_run_the_packaged_monitor();
    let meta = succeed(
        Command::new("/usr/lib/ocf/resource.d/clusterkit/dummy")
            .arg("meta-data")
            .env("OCF_ROOT", "/usr/lib/ocf"),
    );
    assert!(meta.contains(r#"<resource-agent name="dummy""#), "{meta}");
    // bash loads the completion, and it completes subcommands.
    let completion = succeed(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/clusterkit && complete -p clusterkit",
    ]));
    assert!(completion.contains("clusterkit"), "{completion}");
    // systemd-analyze reports a setting it ignores on stderr only.
    let unit = run(
        Command::new(require_tool("systemd-analyze", "systemd")).args([
            "verify",
            "--man=no",
            "/usr/lib/systemd/system/clusterkit.service",
        ]),
    );
    let complaints = text(&unit.stderr);
    assert!(
        unit.status.success() && !complaints.contains("clusterkit.service"),
        "systemd-analyze verify: {complaints}"
    );

    // Removed: only the conffile stays.
    dpkg(&["-r", PACKAGE]);
    assert_eq!(status(), "deinstall ok config-files");
    for path in files.iter().map(Path::new) {
        if path == Path::new(CONFFILE) || path.is_dir() {
            continue;
        }
        assert!(!path.exists(), "{} left after dpkg -r", path.display());
    }
    for dir in [
        "/usr/lib/clusterkit",
        "/usr/lib/ocf/resource.d/clusterkit",
        "/var/lib/clusterkit",
    ] {
        assert!(!Path::new(dir).exists(), "{dir} left after dpkg -r");
    }
    assert!(Path::new(CONFFILE).exists(), "dpkg -r removed the conffile");

    // Purged: nothing stays.
    dpkg(&["-P", PACKAGE]);
    assert!(
        !Path::new("/etc/clusterkit").exists(),
        "/etc/clusterkit left after dpkg -P"
    );
    let after = status();
    assert!(
        after.is_empty() || after.starts_with("unknown ok not-installed"),
        "{after}"
    );
    drop(installed);
}

/// The installed config, its state moved to a temp dir, runs: its resource
/// comes online in a monitor that is the small `clusterkit-monitor` the
/// config names, not a copy of the whole command.
fn monitors_run_the_packaged_monitor() {
    let dir = TempDir::new("ck-package-run");
    let state = dir.path().join("state");
    let config = dir.path().join("clusterkit.toml");
    let conffile = std::fs::read_to_string(CONFFILE).unwrap();
    assert!(
        conffile.contains("monitor = \"/usr/lib/clusterkit/clusterkit-monitor\""),
        "{conffile}"
    );
    let workloads = dir.path().join("run");
    std::fs::create_dir_all(&workloads).unwrap();
    std::fs::write(
        &config,
        conffile
            .replace("/var/lib/clusterkit", &state.display().to_string())
            .replace(
                "state_dir = \"/run\"",
                &format!("state_dir = {workloads:?}"),
            ),
    )
    .unwrap();
    let mut host = Command::new("/usr/bin/clusterkit")
        .args(["run", "-c"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let out = run(Command::new("/usr/bin/clusterkit")
            .args(["status", "--json", "-c"])
            .arg(&config));
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let example = &status["resources"][0];
        if example["state"] == "online" {
            break example["monitor_pid"].as_u64().expect("a monitor pid");
        }
        assert!(
            Instant::now() < deadline,
            "the packaged config's resource not online within 30 s: {status} {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let _ = Command::new("kill").arg(host.id().to_string()).status();
    let _ = host.wait();
    assert_eq!(exe, Path::new("/usr/lib/clusterkit/clusterkit-monitor"));
}
