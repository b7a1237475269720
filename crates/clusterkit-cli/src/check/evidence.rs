//! What a library's file tells about its panics, without running it.
//!
//! A Rust library's export glue catches every panic at the C boundary, but
//! only when the library is built with `panic = "unwind"`: with `"abort"`,
//! `catch_unwind` catches nothing and a panic ends the monitor process. An
//! arbitrary library cannot be made to panic on demand, so the checker
//! reads the evidence in the file instead:
//!
//! - rustc writes `rustc version …` into the `.comment` section of what it
//!   links: its absence means a library in C (or another language), where
//!   no Rust panic can happen;
//! - the unwinding panic runtime (`panic_unwind`) is the only part of a
//!   Rust program that calls `_Unwind_RaiseException` (libgcc's, imported
//!   through the dynamic symbol table, which stripping keeps): with
//!   `panic = "abort"`, nothing imports it.
//!
//! Both survive `strip`. A panic actually observed during the checks (an
//! entry point that returns a `panicked` error) is direct evidence, and
//! the supervisor reports it as such.

use std::path::Path;

/// The panic evidence in one library file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PanicEvidence {
    /// rustc linked it.
    pub(crate) rust: bool,
    /// It imports the unwinder's `_Unwind_RaiseException`.
    pub(crate) unwinds: bool,
}

/// Reads `path`'s panic evidence.
pub(crate) fn panic_evidence(path: &Path) -> std::io::Result<PanicEvidence> {
    let bytes = std::fs::read(path)?;
    Ok(PanicEvidence {
        rust: contains(&bytes, b"rustc version "),
        unwinds: contains(&bytes, b"_Unwind_RaiseException\0"),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny cdylib with `rustc -C panic=STRATEGY` (and `strip`).
    fn cdylib(dir: &Path, strategy: &str) -> std::path::PathBuf {
        let source = dir.join("lib.rs");
        std::fs::write(
            &source,
            "#[unsafe(no_mangle)] pub extern \"C\" fn f(x: i32) -> i32 { \
             std::panic::catch_unwind(|| if x > 3 { panic!(\"x\") } else { x }).unwrap_or(0) }",
        )
        .unwrap();
        let out = dir.join(format!("lib{strategy}.so"));
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
        let status = std::process::Command::new(&rustc)
            .args([
                "--edition=2024",
                "--crate-type=cdylib",
                "-C",
                "strip=symbols",
                "-C",
            ])
            .arg(format!("panic={strategy}"))
            .arg("-o")
            .arg(&out)
            .arg(&source)
            .status()
            .unwrap_or_else(|e| panic!("running {rustc}: {e}"));
        assert!(status.success(), "{rustc} failed");
        out
    }

    #[test]
    fn the_panic_strategy_of_a_stripped_rust_library_is_read_from_its_file() {
        let dir = std::env::temp_dir().join(format!("ck-evidence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unwind = panic_evidence(&cdylib(&dir, "unwind")).unwrap();
        let abort = panic_evidence(&cdylib(&dir, "abort")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            unwind,
            PanicEvidence {
                rust: true,
                unwinds: true
            }
        );
        assert_eq!(
            abort,
            PanicEvidence {
                rust: true,
                unwinds: false
            }
        );
    }

    #[test]
    fn strings_are_found_only_whole() {
        assert!(contains(
            b"..._Unwind_RaiseException\0...",
            b"_Unwind_RaiseException\0"
        ));
        assert!(!contains(
            b"_Unwind_RaiseException_Phase2\0",
            b"_Unwind_RaiseException\0"
        ));
    }
}
