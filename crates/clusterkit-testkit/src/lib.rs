//! Internal helpers for clusterkit's tests: locate (building if needed) the
//! workspace's resource libraries, and compile C sources against the header.
//!
//! Tests fail, never skip, when a tool is missing; the message says what to
//! install.

pub mod bind;
pub mod crm_mon;
mod rng;
pub mod status;

pub use rng::XorShift;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit lives at crates/clusterkit-testkit")
        .to_owned()
}

/// The directory cargo builds the workspace's debug artifacts into.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// The header C code includes.
pub fn include_dir() -> PathBuf {
    workspace_root().join("include")
}

/// Runs `cargo build --quiet ARGS` in the workspace (a no-op when up to
/// date), failing the test with cargo's output if it fails.
fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    // Cargo sets these for this test, differently in each test binary; a
    // build script that watches one (ring's watches the package's name,
    // version and manifest directory) would rerun at each flip, and
    // everything depending on it be rebuilt (20 s each time).
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CARGO_PKG_")
            || name_text.starts_with("CARGO_MANIFEST_")
            || matches!(
                name_text.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            command.env_remove(&name);
        }
    }
    let output = command
        .current_dir(workspace_root())
        .args(["build", "--quiet"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `{cargo} build {}`: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`cargo build {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds `package` with cargo (a no-op when it is up to date) and returns
/// the path of its shared library `lib<lib_name>.so`. Once per process per
/// package.
pub fn cdylib(package: &str, lib_name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|p| p == package) {
        cargo_build(&["--lib", "-p", package]);
        built.push(package.to_owned());
    }
    let path = target_dir().join("debug").join(format!("lib{lib_name}.so"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds the example `name` of `package` (a no-op when up to date) and
/// returns the path of its executable.
pub fn example_binary(package: &str, name: &str) -> PathBuf {
    cargo_build(&["-p", package, "--example", name]);
    target_dir().join("debug").join("examples").join(name)
}

/// Builds the `clusterkit-monitor` binary (a no-op when up to date) and
/// returns its path, for tests outside the host crate that start a host.
pub fn monitor_binary() -> PathBuf {
    cargo_build(&["-p", "clusterkit-host", "--bin", "clusterkit-monitor"]);
    target_dir().join("debug").join("clusterkit-monitor")
}

/// The path of `program` on `PATH` (or in `/usr/sbin`, `/sbin`), or a panic
/// naming the Debian package to install. Tests never skip for a missing tool.
pub fn require_tool(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed: run `apt-get install {package}` (scripts/test does)"
            )
        })
}

/// Compiles `source` (C) into the shared library `out` with the system C
/// compiler, against `include/clusterkit.h`.
pub fn compile_c_library(source: &str, out: &Path) {
    let src = out.with_extension("c");
    std::fs::write(&src, source).expect("writing C source");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
        .arg(out)
        .arg("-I")
        .arg(include_dir())
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("running `cc` (install it with `apt-get install gcc`): {e}"));
    assert!(status.success(), "cc failed to compile {}", src.display());
}

/// Compiles the C program `source` (a file) into `out` against
/// `include/clusterkit.h`, linking with `-pthread -ldl`.
pub fn compile_c_program(source: &Path, out: &Path) {
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(out)
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("running `cc` (install it with `apt-get install gcc`): {e}"));
    assert!(
        status.success(),
        "cc failed to compile {}",
        source.display()
    );
}

/// Compiles the C file `source` into the shared library `out` against
/// `include/clusterkit.h`.
pub fn compile_c_file_library(source: &Path, out: &Path) {
    let status = Command::new("cc")
        .args([
            "-std=c11", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(out)
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("running `cc` (install it with `apt-get install gcc`): {e}"));
    assert!(
        status.success(),
        "cc failed to compile {}",
        source.display()
    );
}

/// A fresh, empty temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/clusterkit-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("clusterkit-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
