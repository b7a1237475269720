//! Resource types linked into the host binary: a registry the monitor
//! resolves `static:NAME` library paths against.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock};

use clusterkit::export::StaticLibrary;

/// The prefix of a library "path" that names registered, linked-in types.
pub const STATIC_LIBRARY_PREFIX: &str = "static:";

static REGISTRY: RwLock<BTreeMap<String, &'static StaticLibrary>> = RwLock::new(BTreeMap::new());

/// Registers resource types compiled into this binary under `name`, so that
/// a resource whose library is [`static_library_path`]`(name)` runs them:
/// in a monitor process, isolated exactly like a loaded library, without a
/// shared object or `dlopen`.
///
/// A custom host binary registers every linked crate first thing in `main`,
/// before [`run_if_monitor`](crate::run_if_monitor): its monitors are the
/// same binary re-executed ([`MonitorProgram::CurrentExe`](crate::MonitorProgram::CurrentExe))
/// and resolve names in their own registry. Its crates are linked with
/// `clusterkit`'s `no-startup-symbol` feature (see
/// `clusterkit::export_resource_types!`). Registering a name again replaces
/// the entry.
///
/// ```no_run
/// use clusterkit_host::{HostBuilder, MonitorProgram, ResourceConfig};
/// # mod clusterkit_dummy { pub static CLUSTERKIT_LIBRARY: clusterkit::export::StaticLibrary =
/// #     clusterkit::export::StaticLibrary { name: "", version: "", startup: {
/// #         unsafe extern "C" fn s(_: *const clusterkit::ffi::ck_host, _: *mut clusterkit::ffi::ck_error)
/// #             -> *const clusterkit::ffi::ck_library { std::ptr::null() } s } }; }
///
/// clusterkit_host::register_static_library("dummy", &clusterkit_dummy::CLUSTERKIT_LIBRARY);
/// clusterkit_host::run_if_monitor();
/// let library = clusterkit_host::static_library_path("dummy"); // "static:dummy"
/// let host = HostBuilder::new("/var/lib/myhost", MonitorProgram::CurrentExe)
///     .resource(ResourceConfig::new("web", &library, "dummy").property("state_dir", "/run/web"))
///     .start()
///     .unwrap();
/// # drop(host);
/// ```
pub fn register_static_library(name: &str, library: &'static StaticLibrary) {
    REGISTRY
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_owned(), library);
}

/// The library path that names the types registered as `name`:
/// `static:NAME`, for [`ResourceConfig::new`](crate::ResourceConfig::new).
pub fn static_library_path(name: &str) -> PathBuf {
    PathBuf::from(format!("{STATIC_LIBRARY_PREFIX}{name}"))
}

/// For a `static:NAME` path, the registered types, or an error naming what
/// is registered; `None` for any other path.
pub(crate) fn resolve(path: &str) -> Option<Result<&'static StaticLibrary, String>> {
    let name = path.strip_prefix(STATIC_LIBRARY_PREFIX)?;
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    Some(registry.get(name).copied().ok_or_else(|| {
        let known: Vec<&str> = registry.keys().map(String::as_str).collect();
        format!(
            "resource library {path}: no types are registered as `{name}` in this binary \
             (registered: {}); a custom host calls \
             clusterkit_host::register_static_library before run_if_monitor",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_what_is_registered() {
        assert!(resolve("/usr/lib/libx.so").is_none());
        let err = resolve("static:nothing-here").unwrap().unwrap_err();
        assert!(
            err.starts_with(
                "resource library static:nothing-here: no types are registered as `nothing-here`"
            ),
            "{err}"
        );
        assert_eq!(static_library_path("dummy"), PathBuf::from("static:dummy"));
    }
}
