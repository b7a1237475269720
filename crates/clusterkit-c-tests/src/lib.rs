//! Internal: the C side of the C ABI, driven from Rust tests.
//!
//! `tests/c_host.rs` compiles `examples/c-host/c_host.c` with the system C
//! compiler and runs it against Rust resource libraries (also under
//! valgrind); `tests/c_resource.rs` compiles
//! `examples/c-resource/pidfile_resource.c` and runs it in the Rust host.
