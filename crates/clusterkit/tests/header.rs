//! `include/clusterkit.h` must be what cbindgen generates from `src/ffi.rs`.
//! Regenerate it with `scripts/bless-header` (`CLUSTERKIT_BLESS=1`).

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header_path = crate_dir.join("../../include/clusterkit.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("reading cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi.rs"))
        .generate()
        .expect("cbindgen could not generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("cbindgen wrote UTF-8");

    if std::env::var_os("CLUSTERKIT_BLESS").is_some() {
        std::fs::write(&header_path, &generated).expect("writing include/clusterkit.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&header_path).unwrap_or_default();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "a length difference".to_owned(),
                |n| format!("line {}", n + 1),
            );
        panic!(
            "include/clusterkit.h is stale (first difference at {first_difference}): \
             src/ffi.rs changed without regenerating the header. Run scripts/bless-header \
             and commit the result."
        );
    }
}
