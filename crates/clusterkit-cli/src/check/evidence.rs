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
