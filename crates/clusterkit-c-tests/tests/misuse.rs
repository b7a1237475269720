//! The misuse suite: `c/misuse.c`, a C host written from
//! `include/clusterkit.h` and `docs/C-API.md` alone, misuses the Rust
//! resource libraries the ways outside hosts did, and checks every
//! documented promise. It runs twice per scenario: built with
//! AddressSanitizer and UndefinedBehaviorSanitizer, and plain under
//! valgrind (which also sees invalid reads inside the uninstrumented Rust
//! library, such as one past the end of a short `ck_host`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use clusterkit_testkit::{TempDir, cdylib, include_dir, require_tool, target_dir, workspace_root};

fn source() -> PathBuf {
    workspace_root().join("crates/clusterkit-c-tests/c/misuse.c")
}

/// Compiles `c/misuse.c` into `out` with `extra` flags; a compiler or a
/// sanitizer runtime that is missing fails the test, naming the package.
fn compile(out: &Path, extra: &[&str]) {
    let cc = require_tool("cc", "gcc");
    let output = Command::new(cc)
        .args([
            "-std=c11", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread",
        ])
        .args(extra)
        .arg("-I")
        .arg(include_dir())
        .arg("-o")
        .arg(out)
        .arg(source())
        .arg("-ldl")
        .output()
        .expect("running cc");
    assert!(
        output.status.success(),
        "cc {} failed (the sanitizer runtimes libasan and libubsan come with \
         `apt-get install gcc`):\n{}",
        extra.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The two builds, made once per test process under the target directory.
fn programs() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = target_dir()
            .join("misuse")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("creating the build directory");
        let sanitized = dir.join("misuse-asan");
        compile(
            &sanitized,
            &[
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer",
            ],
        );
        let plain = dir.join("misuse");
        compile(&plain, &[]);
        (sanitized, plain)
    })
}

struct Run {
    stdout: String,
    stderr: String,
}

fn check(what: &str, output: std::process::Output) -> Run {
    let run = Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        run.stdout,
        run.stderr
    );
    run
}

/// Runs one scenario in the sanitized build, then under valgrind; returns
/// both runs' output. `RUST_BACKTRACE=1` throughout: a panic must neither
/// print a backtrace nor leave the symbolizer's cache behind at `dlclose`.
fn scenario(name: &str, library: &Path) -> [Run; 2] {
    let (sanitized, plain) = programs();
    let dir = TempDir::new(&format!("misuse-{name}"));
    let sanitized_run = check(
        &format!("{name} (ASan + UBSan)"),
        Command::new(sanitized)
            .args([name.as_ref(), library.as_os_str(), dir.path().as_os_str()])
            .env("RUST_BACKTRACE", "1")
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=0:exitcode=97",
            )
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
            .output()
            .expect("running the sanitized misuse program"),
    );
    assert!(
        sanitized_run.stdout.contains(&format!("ok {name}")),
        "{}",
        sanitized_run.stdout
    );
    let valgrind = require_tool("valgrind", "valgrind");
    let valgrind_run = check(
        &format!("{name} (valgrind)"),
        Command::new(valgrind)
            .args([
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=99",
            ])
            .arg(plain)
            .args([name.as_ref(), library.as_os_str(), dir.path().as_os_str()])
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("running valgrind"),
    );
    assert!(
        valgrind_run.stderr.contains("ERROR SUMMARY: 0 errors"),
        "{}",
        valgrind_run.stderr
    );
    assert!(
        valgrind_run.stderr.contains("definitely lost: 0 bytes")
            || valgrind_run.stderr.contains("All heap blocks were freed"),
        "{}",
        valgrind_run.stderr
    );
    [sanitized_run, valgrind_run]
}

fn dummy() -> PathBuf {
    cdylib("clusterkit-example-dummy", "clusterkit_dummy")
}

#[test]
fn a_host_struct_below_the_1_0_layout_is_refused_without_reading_past_it() {
    scenario("host-size", &dummy());
}

#[test]
fn every_output_is_written_on_every_path() {
    scenario("outputs", &dummy());
}

#[test]
fn resource_names_outside_the_documented_alphabet_are_refused() {
    scenario("names", &dummy());
}

#[test]
fn a_reporter_with_null_callbacks_is_refused() {
    scenario("reporter", &dummy());
}

#[test]
fn pending_operations_end_before_the_call_that_replaces_them_returns() {
    scenario("pending", &dummy());
}

#[test]
fn startup_and_free_buffer_are_thread_safe() {
    scenario("threads", &dummy());
}

#[test]
fn a_panic_reaches_the_host_as_an_error_and_never_its_stderr() {
    let library = cdylib(
        "clusterkit-example-fault-injection",
        "clusterkit_fault_injection",
    );
    for run in scenario("panic", &library) {
        for noise in ["panicked at", "stack backtrace", "told to panic"] {
            assert!(
                !run.stderr.contains(noise),
                "{noise:?} on the host's stderr:\n{}",
                run.stderr
            );
        }
    }
}

#[test]
fn a_secret_property_is_flagged_in_the_schema() {
    let library = cdylib("clusterkit-example-network-name", "clusterkit_network_name");
    scenario("secret", &library);
}

/// The header in C++: it compiles cleanly, and the `extern "C"` block
/// spans every typedef (function-pointer types then have C language
/// linkage; GCC does not tell the two apart, so the block is checked in the
/// text).
#[test]
fn the_header_is_valid_cpp_with_every_typedef_inside_extern_c() {
    let header = std::fs::read_to_string(include_dir().join("clusterkit.h")).unwrap();
    let open = header
        .find("extern \"C\" {")
        .expect("an extern \"C\" block");
    let close = header.rfind("#ifdef __cplusplus\n}").expect("its end");
    for (at, line) in header.match_indices("typedef ") {
        assert!(
            open < at && at < close,
            "typedef outside extern \"C\": {}",
            &header[at..][..line.len() + 40]
        );
    }
    let dir = TempDir::new("header-cpp");
    let source = dir.path().join("use.cpp");
    std::fs::write(
        &source,
        "#include \"clusterkit.h\"\n\
         #include <type_traits>\n\
         static_assert(std::is_unsigned<decltype(CK_CONTROL_TYPE_SPECIFIC_BASE)>::value, \"unsigned\");\n\
         static_assert(CK_LIBRARY_SIZE_1_0 == offsetof(ck_library, name), \"1.0 size\");\n\
         int main() { ck_startup_fn f = clusterkit_startup; return f == nullptr; }\n",
    )
    .unwrap();
    let output = Command::new(require_tool("g++", "g++"))
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-c",
            "-I",
        ])
        .arg(include_dir())
        .arg(&source)
        .arg("-o")
        .arg(dir.path().join("use.o"))
        .output()
        .expect("running g++");
    assert!(
        output.status.success(),
        "the header does not compile as C++:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
