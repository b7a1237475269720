//! Every loader error, produced by a real bad file, with its message checked.

use std::path::Path;

use clusterkit::{ErrorCode, Logger};
use clusterkit_loader::{Library, LoadError};
use clusterkit_testkit::{TempDir, cdylib, compile_c_library};

fn load_err(path: &Path) -> LoadError {
    Library::load(path, Logger::discard()).expect_err("loading should fail")
}

#[test]
fn missing_file() {
    let path = Path::new("/nonexistent/libnothing.so");
    let err = load_err(path);
    assert!(matches!(err, LoadError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "resource library /nonexistent/libnothing.so: no such file"
    );
}

#[test]
fn a_library_for_another_machine_is_named_as_such() {
    let dir = TempDir::new("load-foreign");
    let path = dir.path().join("libforeign.so");
    // A real library's bytes, with its header saying aarch64 (EM_AARCH64,
    // 183): what a library built for another machine looks like.
    let mut bytes = std::fs::read(cdylib("clusterkit-example-dummy", "clusterkit_dummy")).unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let text = load_err(&path).to_string();
    assert!(
        text.contains("it is built for aarch64 (64-bit ELF), and this is x86-64 (64-bit)"),
        "{text}"
    );
    assert!(!text.contains("No such file"), "{text}");
}

#[test]
fn not_a_shared_library() {
    let dir = TempDir::new("load-not-elf");
    let path = dir.path().join("libtext.so");
    std::fs::write(&path, "this is a text file, not ELF\n").unwrap();
    let err = load_err(&path);
    assert!(matches!(err, LoadError::NotALibrary { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "resource library {}: not a loadable shared library: ",
            path.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("invalid ELF header") || text.contains("file too short"),
        "{text}"
    );
}

#[test]
fn library_without_clusterkit_startup() {
    let dir = TempDir::new("load-no-symbol");
    let path = dir.path().join("libplain.so");
    compile_c_library("int plain_function(void) { return 42; }\n", &path);
    let err = load_err(&path);
    assert!(matches!(err, LoadError::MissingStartup { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("does not export `clusterkit_startup`"),
        "{err}"
    );
}

/// A C library whose table claims ABI `major.minor` and `struct_size`.
fn c_library_with_table(
    dir: &TempDir,
    name: &str,
    abi: &str,
    struct_size: &str,
) -> std::path::PathBuf {
    let source = format!(
        r#"#include <stddef.h>
#include "clusterkit.h"
static void free_buffer(ck_buffer b) {{ (void)b; }}
static const ck_library table = {{
    .abi_version = {abi},
    .struct_size = {struct_size},
    .type_count = 0,
    .types = NULL,
    .free_buffer = free_buffer,
    .shutdown = NULL,
    .name = {{ (const uint8_t *)"", 0 }},
}};
const ck_library *clusterkit_startup(const ck_host *host, ck_error *error) {{
    (void)host; (void)error;
    return &table;
}}
"#
    );
    let path = dir.path().join(format!("lib{name}.so"));
    compile_c_library(&source, &path);
    path
}

#[test]
fn another_abi_major_is_refused_naming_both_versions() {
    let dir = TempDir::new("load-abi");
    let path = c_library_with_table(&dir, "future", "(99u << 16) | 3u", "sizeof(ck_library)");
    let err = load_err(&path);
    assert!(
        matches!(
            err,
            LoadError::AbiMismatch {
                library_major: 99,
                library_minor: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "resource library {}: built for clusterkit ABI 99.3, but this host speaks ABI 1.2; \
             rebuild the library against clusterkit ABI 1",
            path.display()
        )
    );
}

#[test]
fn a_same_major_table_loads_and_a_truncated_one_is_refused() {
    let dir = TempDir::new("load-size");
    let ok = c_library_with_table(&dir, "empty", "CK_ABI_VERSION", "sizeof(ck_library)");
    let library = Library::load(&ok, Logger::discard()).expect("an empty library loads");
    assert_eq!(library.types().count(), 0);
    assert_eq!(library.abi_version(), clusterkit::ffi::CK_ABI_VERSION);

    assert_eq!(
        library.identity(),
        Some((String::new(), String::new())),
        "empty name and version"
    );

    // A library built against ABI 1.0: its table ends before `name`.
    let old = c_library_with_table(&dir, "old", "(1u << 16) | 0u", "offsetof(ck_library, name)");
    let library =
        Library::load(&old, Logger::discard()).expect("a 1.0 library loads in a 1.2 host");
    assert_eq!(library.abi_version(), 1 << 16);
    assert!(library.identity().is_none());

    let short = c_library_with_table(&dir, "short", "CK_ABI_VERSION", "8");
    let err = load_err(&short);
    assert!(matches!(err, LoadError::InvalidTable { .. }), "{err:?}");
    let expected = format!(
        "invalid table: ck_library.struct_size is 8, ABI 1.0 needs at least {}",
        clusterkit::ffi::CK_LIBRARY_SIZE_1_0
    );
    assert!(err.to_string().ends_with(&expected), "{err}");
}

#[test]
fn a_type_with_a_null_entry_point_is_refused() {
    let dir = TempDir::new("load-null-fn");
    let source = r#"#include "clusterkit.h"
static void free_buffer(ck_buffer b) { (void)b; }
static const ck_type broken = {
    .struct_size = sizeof(ck_type),
    .name = { (const uint8_t *)"broken", 6 },
};
static const ck_type *const types[] = { &broken };
static const ck_library table = {
    .abi_version = CK_ABI_VERSION,
    .struct_size = sizeof(ck_library),
    .type_count = 1,
    .types = types,
    .free_buffer = free_buffer,
};
const ck_library *clusterkit_startup(const ck_host *host, ck_error *error) {
    (void)host; (void)error;
    return &table;
}
"#;
    let path = dir.path().join("libbroken.so");
    compile_c_library(source, &path);
    let err = load_err(&path);
    assert!(
        err.to_string()
            .ends_with("invalid table: type #0: type `broken`: entry point `open` is NULL"),
        "{err}"
    );
}

/// The fixture's startup obeys an environment variable, so these cases run
/// one after another in this one test.
#[test]
fn startup_that_fails_or_panics() {
    let path = cdylib("clusterkit-fixtures", "clusterkit_fixtures");
    for (mode, code, message) in [
        (
            "fail",
            ErrorCode::Failed,
            "failed: panicky: told to fail in startup",
        ),
        (
            "panic",
            ErrorCode::Panicked,
            "panicked: panicky: told to panic in startup",
        ),
    ] {
        // SAFETY: this test binary runs only this test that reads the variable.
        unsafe { std::env::set_var("CLUSTERKIT_FIXTURE_STARTUP", mode) };
        let err = load_err(&path);
        let LoadError::StartupFailed { source, .. } = &err else {
            panic!("expected StartupFailed, got {err:?}");
        };
        assert_eq!(source.code(), code);
        // A panic's message says where it happened.
        let text = err.to_string();
        let expected = format!(
            "resource library {}: startup failed: {message}",
            path.display()
        );
        if code == ErrorCode::Panicked {
            assert!(
                text.starts_with(&format!(
                    "{expected} (at crates/clusterkit-fixtures/src/lib.rs:"
                )),
                "{text}"
            );
        } else {
            assert_eq!(text, expected);
        }
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("CLUSTERKIT_FIXTURE_STARTUP") };
    Library::load(&path, Logger::discard()).expect("loads again once startup behaves");

    // SAFETY: as above.
    unsafe { std::env::set_var("CLUSTERKIT_FIXTURE_TYPE_CONTROL", "panic") };
    let library = Library::load(&path, Logger::discard()).unwrap();
    let err = library
        .resource_type("panicky")
        .unwrap()
        .control(clusterkit::ControlCode::TYPE_SPECIFIC_BASE, b"")
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("panicked: panicky: told to panic in type_control (at crates/clusterkit-fixtures/src/lib.rs:"),
        "{err}"
    );
}

/// A C library with one type `t` of one property `key`, whose `ck_type`
/// has `struct_size` and `property_extra_flags` as given.
fn c_library_with_type(
    dir: &TempDir,
    name: &str,
    type_size: &str,
    extra: &str,
) -> std::path::PathBuf {
    let source = format!(
        r#"#include <stddef.h>
#include "clusterkit.h"
static void free_buffer(ck_buffer b) {{ (void)b; }}
static int32_t open_fn(void *c, ck_str n, ck_bytes p, bool r, ck_logger l, void **res, ck_error *e) {{
    (void)c; (void)n; (void)p; (void)r; (void)l; (void)res; (void)e; return CK_E_UNSUPPORTED;
}}
static int32_t resource_fn(void *r, ck_error *e) {{ (void)r; (void)e; return CK_OK; }}
static int32_t transition_fn(void *r, ck_status_reporter s, uint32_t *st, ck_error *e) {{
    (void)r; (void)s; (void)st; (void)e; return CK_OK;
}}
static int32_t health_fn(void *r, ck_health *h, ck_error *e) {{ (void)r; (void)h; (void)e; return CK_OK; }}
static const uint32_t extra[] __attribute__((unused)) = {{ CK_PROPERTY_EXTRA_SECRET }};
static const ck_property_spec specs[] = {{
    {{ .name = {{ (const uint8_t *)"key", 3 }}, .kind = CK_KIND_STRING }},
}};
static const ck_type t = {{
    .struct_size = {type_size},
    .name = {{ (const uint8_t *)"t", 1 }},
    .properties = specs,
    .property_count = 1,
    .open = open_fn, .close = resource_fn, .online = transition_fn, .offline = transition_fn,
    .terminate = resource_fn, .looks_alive = health_fn, .is_alive = health_fn,
    .property_extra_flags = {extra},
}};
static const ck_type *const types[] = {{ &t }};
static const ck_library table = {{
    .abi_version = CK_ABI_VERSION,
    .struct_size = sizeof(ck_library),
    .type_count = 1,
    .types = types,
    .free_buffer = free_buffer,
}};
const ck_library *clusterkit_startup(const ck_host *host, ck_error *error) {{
    (void)host; (void)error;
    return &table;
}}
"#
    );
    let path = dir.path().join(format!("lib{name}.so"));
    compile_c_library(&source, &path);
    path
}

#[test]
fn property_extra_flags_are_read_only_when_the_type_is_long_enough() {
    let dir = TempDir::new("load-extra-flags");
    let secret_of = |path: &Path| {
        let library = Library::load(path, Logger::discard()).unwrap();
        let ty = library.resource_type("t").unwrap();
        ty.schema().spec("key").unwrap().is_secret()
    };
    let current = c_library_with_type(&dir, "current", "sizeof(ck_type)", "extra");
    assert!(secret_of(&current), "a 1.2 type marks `key` secret");
    let none = c_library_with_type(&dir, "none", "sizeof(ck_type)", "NULL");
    assert!(!secret_of(&none), "NULL extra flags: nothing is secret");
    // A 1.1 type ends before the field: whatever lies there is not read.
    let old = c_library_with_type(&dir, "old", "CK_TYPE_SIZE_1_0", "(const uint32_t *)1");
    assert!(!secret_of(&old), "a 1.1 type has no extra flags");
    let short = c_library_with_type(&dir, "short", "CK_TYPE_SIZE_1_0 - 8", "NULL");
    let err = load_err(&short);
    assert!(
        err.to_string().ends_with(&format!(
            "invalid table: type #0: ck_type.struct_size is {}, ABI 1.0 needs at least {}",
            clusterkit::ffi::CK_TYPE_SIZE_1_0 - 8,
            clusterkit::ffi::CK_TYPE_SIZE_1_0
        )),
        "{err}"
    );
}
