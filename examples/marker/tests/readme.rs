//! The README's "Writing a resource" shows this crate whole: its `lib.rs`
//! verbatim, its `Cargo.toml` as an author outside this repository writes
//! it (no `path` to the workspace's `clusterkit`, and the release profile
//! that a workspace member may not set).

use std::path::Path;

/// The body of the fenced block of `lang` following `heading` in `text`.
fn block_after<'a>(text: &'a str, heading: &str, lang: &str) -> &'a str {
    let at = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading}"));
    let fence = format!("```{lang}\n");
    let start = at + text[at..].find(&fence).expect("a fenced block") + fence.len();
    let len = text[start..].find("```\n").expect("the block's end");
    &text[start..start + len]
}

#[test]
fn the_readme_shows_this_whole_crate() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(here.join("../../README.md")).unwrap();
    let lib = std::fs::read_to_string(here.join("src/lib.rs")).unwrap();
    let cargo = std::fs::read_to_string(here.join("Cargo.toml")).unwrap();
    assert_eq!(block_after(&readme, "`src/lib.rs`:", "rust"), lib);
    let shown = block_after(&readme, "`Cargo.toml`:", "toml");
    let (dependencies_and_all, profile) = shown
        .split_once("\n[profile.release]\n")
        .expect("README's Cargo.toml sets [profile.release]");
    assert_eq!(
        dependencies_and_all,
        cargo.replace("path = \"../../crates/clusterkit\", ", "")
    );
    assert!(profile.contains("panic = \"unwind\""), "{profile}");
    assert!(cargo.contains("crate-type = [\"cdylib\"]"), "{cargo}");
}
