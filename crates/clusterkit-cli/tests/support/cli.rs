//! The real `clusterkit` binary, as the CLI's tests drive it: a command, its
//! output, and a running host polled through `status --json`.
// Each test binary uses only some of these helpers.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The guard on every wait: far above what any step takes.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn clusterkit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clusterkit"))
}

/// Runs `cmd`: whether it succeeded, its stdout and its stderr.
pub fn output(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running clusterkit");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The head of a test config: the state directory `dir/state`, fast checks
/// (100 ms / 300 ms), 1 s deadlines, 50 ms restarts, and a `[libraries]`
/// naming the example dummy as `dummy`, and `more` (name, path).
pub fn config_head(dir: &Path, more: &[(&str, &Path)]) -> String {
    let mut head = format!(
        r#"state_dir = "{state}"
[defaults]
looks_alive_interval = "100ms"
is_alive_interval = "300ms"
deadlock_timeout = "1s"
restart_delay = "50ms"
[libraries]
dummy = "{dummy}"
"#,
        state = dir.join("state").display(),
        dummy =
            clusterkit_testkit::cdylib("clusterkit-example-dummy", "clusterkit_dummy").display(),
    );
    for (name, path) in more {
        head += &format!("{name} = \"{}\"\n", path.display());
    }
    head
}

/// Writes `text` as `dir/clusterkit.toml` and returns its path.
pub fn write_config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("clusterkit.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `clusterkit run`; dropping it kills it (a test that fails midway
/// leaves no host behind).
pub struct Running {
    /// The `clusterkit run` process.
    pub child: Child,
    /// Its config.
    pub config: PathBuf,
}

impl Running {
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Running {
        let mut cmd = clusterkit();
        cmd.args(["run", "--config"]).arg(config);
        Running::spawn(cmd, config, env)
    }

    /// Runs `cmd` (a `clusterkit run` of `config`, perhaps through a shell)
    /// and waits for every resource to be online.
    pub fn spawn(mut cmd: Command, config: &Path, env: &[(&str, &str)]) -> Running {
        let child = cmd
            .envs(env.iter().copied())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running {
            child,
            config: config.to_owned(),
        };
        running.wait_status(|s| s.iter().all(|r| r["state"] == "online"));
        running
    }

    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        output(clusterkit().args(args).arg("--config").arg(&self.config))
    }

    pub fn status(&self) -> Option<Vec<Value>> {
        let (ok, out, _) = self.cli(&["status", "--json"]);
        ok.then(|| {
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["schema"], 1, "{v}");
            serde_json::from_value(v["resources"].clone()).unwrap()
        })
    }

    /// Waits for a condition on `status --json`; the CLI is the probe.
    pub fn wait_status(&self, mut pred: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.status()
                && pred(&s)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached: {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(20)); // polling a separate process
        }
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a valid pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    /// A test that fails midway leaves no host behind (after `stop`, the
    /// child is reaped already and this does nothing).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
