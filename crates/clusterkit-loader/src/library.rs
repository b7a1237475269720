//! Opening a library and checking its table.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clusterkit::ffi::{self, ck_error, ck_library, ck_type};
use clusterkit::{
    Characteristics, ControlCode, Error, Logger, Properties, Result, Schema, TypeDescription,
};

use crate::callbacks::raw_logger;
use crate::resource::LoadedResource;

/// The most types one library may export; more is taken as a corrupt table.
const MAX_TYPES: usize = 1024;
/// The most properties one type may declare.
const MAX_PROPERTIES: usize = 4096;
/// `struct_size` of a version 1.0 `ck_library`: the smallest table accepted.
const MIN_LIBRARY_SIZE: u32 = ffi::CK_LIBRARY_SIZE_1_0 as u32;
/// `struct_size` of a version 1.0 `ck_type`.
const MIN_TYPE_SIZE: u32 = ffi::CK_TYPE_SIZE_1_0 as u32;

/// Why a resource library could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// There is no file at the path.
    #[error("resource library {path}: no such file")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but the dynamic loader refused it.
    #[error("resource library {path}: not a loadable shared library: {reason}")]
    NotALibrary {
        /// The path given.
        path: PathBuf,
        /// The dynamic loader's explanation.
        reason: String,
    },
    /// The library does not export `clusterkit_startup`.
    #[error(
        "resource library {path}: does not export `clusterkit_startup` \
         (is it a clusterkit resource library? Rust libraries export it with \
         `clusterkit::export_resource_types!`)"
    )]
    MissingStartup {
        /// The path given.
        path: PathBuf,
    },
    /// The library speaks another major ABI version.
    #[error(
        "resource library {path}: built for clusterkit ABI {library_major}.{library_minor}, \
         but this host speaks ABI {host_major}.{host_minor}; rebuild the library against \
         clusterkit ABI {host_major}"
    )]
    AbiMismatch {
        /// The path given.
        path: PathBuf,
        /// The library's major version.
        library_major: u32,
        /// The library's minor version.
        library_minor: u32,
        /// This host's major version.
        host_major: u32,
        /// This host's minor version.
        host_minor: u32,
    },
    /// `clusterkit_startup` returned an error or panicked.
    #[error("resource library {path}: startup failed: {source}")]
    StartupFailed {
        /// The path given.
        path: PathBuf,
        /// What startup returned (a panic is [`Error::Panicked`]).
        source: Error,
    },
    /// The table is malformed.
    #[error("resource library {path}: invalid table: {problem}")]
    InvalidTable {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// A loaded library: the dynamic object, its table and its checked types.
pub(crate) struct LibraryInner {
    pub(crate) path: PathBuf,
    pub(crate) table: *const ck_library,
    pub(crate) types: Vec<TypeEntry>,
    /// The `ck_host` logger context; must outlive `shutdown`.
    _host_log: Box<Logger>,
    /// Dropped last: unloading the code must come after `shutdown`. None
    /// for types linked into this binary ([`Library::from_static`]).
    _library: Option<libloading::Library>,
}

// SAFETY: the ABI makes every table function callable from any thread; the
// table itself is immutable after startup.
unsafe impl Send for LibraryInner {}
// SAFETY: as above.
unsafe impl Sync for LibraryInner {}

impl Drop for LibraryInner {
    fn drop(&mut self) {
        // SAFETY: `table` came from this library's startup and is used no more.
        if let Some(shutdown) = unsafe { (*self.table).shutdown } {
            // SAFETY: as above; called once.
            unsafe { shutdown(self.table) };
        }
    }
}

impl LibraryInner {
    pub(crate) fn free_buffer(&self, buffer: ffi::ck_buffer) -> Vec<u8> {
        if buffer.ptr.is_null() || buffer.len == 0 {
            return Vec::new();
        }
        // SAFETY: the library returned this buffer; it stays valid until freed.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.len) }.to_vec();
        // SAFETY: `free_buffer` was checked non-NULL at load; the buffer is freed once.
        if let Some(free) = unsafe { (*self.table).free_buffer } {
            // SAFETY: as above.
            unsafe { free(buffer) };
        }
        bytes
    }
}

/// One type of a loaded library, checked at load.
pub(crate) struct TypeEntry {
    pub(crate) description: TypeDescription,
    pub(crate) raw: *const ck_type,
}

/// A resource library, loaded and checked. Cheap to clone; the code stays
/// loaded while any clone, type handle or resource exists.
#[derive(Clone)]
pub struct Library {
    inner: Arc<LibraryInner>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.inner.path)
            .field(
                "types",
                &self
                    .types()
                    .map(|t| t.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn table_problem(path: &Path, problem: impl Into<String>) -> LoadError {
    LoadError::InvalidTable {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

impl Library {
    /// Loads the library at `path`: opens it (binding every symbol now),
    /// calls `clusterkit_startup`, and checks the ABI version, the table and
    /// every type. `log` receives the lines the library logs outside any
    /// resource.
    pub fn load(path: impl AsRef<Path>, log: Logger) -> Result<Library, LoadError> {
        let path = path.as_ref().to_owned();
        if !path.exists() {
            return Err(LoadError::NotFound { path });
        }
        // dlopen reports a library built for another machine as "No such
        // file or directory": say what it is instead.
        if let Some(reason) = foreign_elf(&path) {
            return Err(LoadError::NotALibrary { path, reason });
        }
        // SAFETY: loading runs the library's initializers; loading a library
        // is inherently trusting it, and monitors isolate the host from it.
        let os_library = unsafe {
            libloading::os::unix::Library::open(
                Some(&path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map_err(|e| LoadError::NotALibrary {
            path: path.clone(),
            reason: dl_reason(&e),
        })?;
        let library = libloading::Library::from(os_library);
        // SAFETY: the symbol's type is fixed by the ABI (ck_startup_fn).
        let startup = unsafe { library.get::<ffi::ck_startup_fn>(ffi::STARTUP_SYMBOL) }
            .map(|symbol| *symbol)
            .map_err(|_| LoadError::MissingStartup { path: path.clone() })?;
        Library::start(path, startup, Some(library), log)
    }

    /// Opens resource types linked into this binary: the
    /// `CLUSTERKIT_LIBRARY` that `clusterkit::export_resource_types!`
    /// defines in their crate. Everything after `dlopen` is as in
    /// [`load`](Self::load): the same startup, checks and C table. Its
    /// [`path`](Self::path) is `static:<crate name>`.
    ///
    /// ```no_run
    /// # use clusterkit::Logger;
    /// # use clusterkit_loader::Library;
    /// # fn demo(linked: &'static clusterkit::export::StaticLibrary) {
    /// // `linked` is e.g. `&clusterkit_dummy::CLUSTERKIT_LIBRARY`.
    /// let library = Library::from_static(linked, Logger::discard()).unwrap();
    /// assert_eq!(library.path().to_str(), Some(format!("static:{}", linked.name).as_str()));
    /// # }
    /// ```
    pub fn from_static(
        linked: &'static clusterkit::export::StaticLibrary,
        log: Logger,
    ) -> Result<Library, LoadError> {
        let path = PathBuf::from(format!("static:{}", linked.name));
        Library::start(path, linked.startup, None, log)
    }

    /// Calls `startup` and checks the table it returns.
    fn start(
        path: PathBuf,
        startup: ffi::ck_startup_fn,
        library: Option<libloading::Library>,
        log: Logger,
    ) -> Result<Library, LoadError> {
        let host_log = Box::new(log);
        let host = ffi::ck_host {
            abi_version: ffi::CK_ABI_VERSION,
            struct_size: size_of::<ffi::ck_host>() as u32,
            logger: raw_logger(&host_log),
        };
        let mut error = ck_error::default();
        // SAFETY: `host` and `error` are valid for the call; the logger
        // context lives in `host_log`, kept until after shutdown.
        let table = unsafe { startup(&host, &mut error) };
        if table.is_null() {
            let source = if error.code == ffi::CK_OK {
                Error::Internal("clusterkit_startup returned NULL without an error".into())
            } else {
                error.to_error(error.code)
            };
            return Err(LoadError::StartupFailed { path, source });
        }
        // SAFETY: a non-NULL table from startup; its first two fields are
        // `abi_version` and `struct_size` in every ABI version.
        let (abi_version, struct_size) = unsafe { ((*table).abi_version, (*table).struct_size) };
        let library_major = abi_version >> 16;
        if library_major != ffi::CK_ABI_VERSION_MAJOR {
            // The rest of the table's layout is unknown: never touch it, nor
            // unload code it may still reference.
            std::mem::forget(library);
            return Err(LoadError::AbiMismatch {
                path,
                library_major,
                library_minor: abi_version & 0xffff,
                host_major: ffi::CK_ABI_VERSION_MAJOR,
                host_minor: ffi::CK_ABI_VERSION_MINOR,
            });
        }
        if struct_size < MIN_LIBRARY_SIZE {
            std::mem::forget(library);
            return Err(table_problem(
                &path,
                format!(
                    "ck_library.struct_size is {struct_size}, ABI 1.0 needs at least {MIN_LIBRARY_SIZE}"
                ),
            ));
        }
        let mut inner = LibraryInner {
            path,
            table,
            types: Vec::new(),
            _host_log: host_log,
            _library: library,
        };
        // From here on, dropping `inner` calls shutdown, then unloads.
        inner.types = read_types(&inner.path, table)?;
        Ok(Library {
            inner: Arc::new(inner),
        })
    }

    /// The path it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The library's ABI version, `major << 16 | minor`.
    pub fn abi_version(&self) -> u32 {
        // SAFETY: the table stays valid while `inner` lives.
        unsafe { (*self.inner.table).abi_version }
    }

    /// The library's name and version (ABI 1.1), when its table has them.
    pub fn identity(&self) -> Option<(String, String)> {
        // SAFETY: the table stays valid while `inner` lives; the fields are
        // read only when the library's struct_size covers them.
        let table = unsafe { &*self.inner.table };
        let end = std::mem::offset_of!(ck_library, version) + size_of::<ffi::ck_str>();
        if (table.struct_size as usize) < end {
            return None;
        }
        // SAFETY: covered by struct_size; strings valid until shutdown.
        let read = |s: &ffi::ck_str| unsafe { s.as_str() }.map(str::to_owned).ok();
        Some((read(&table.name)?, read(&table.version)?))
    }

    /// Its resource types, in the library's order.
    pub fn types(&self) -> impl Iterator<Item = ResourceTypeHandle> + '_ {
        (0..self.inner.types.len()).map(|index| ResourceTypeHandle {
            library: self.inner.clone(),
            index,
        })
    }

    /// The type called `name`.
    pub fn resource_type(&self, name: &str) -> Option<ResourceTypeHandle> {
        self.types().find(|t| t.name() == name)
    }
}

/// Why an ELF file cannot load on this machine (another architecture or
/// word size), if it is one; `None` for a loadable file or one that is no
/// ELF at all (dlopen explains those well).
fn foreign_elf(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    if &header[..4] != b"\x7fELF" {
        return None;
    }
    let bits = match header[4] {
        1 => 32,
        2 => 64,
        _ => 0,
    };
    let machine = u16::from_le_bytes([header[18], header[19]]);
    let name = |m: u16| match m {
        3 => "x86 (32-bit)",
        40 => "ARM (32-bit)",
        62 => "x86-64",
        183 => "aarch64",
        243 => "RISC-V",
        21 => "PowerPC 64",
        22 => "s390",
        _ => "another machine",
    };
    let (here, here_bits) = if cfg!(target_arch = "x86_64") {
        (62, 64)
    } else if cfg!(target_arch = "aarch64") {
        (183, 64)
    } else {
        return None;
    };
    (machine != here || bits != here_bits).then(|| {
        format!(
            "it is built for {} ({bits}-bit ELF), and this is {} ({here_bits}-bit)",
            name(machine),
            name(here)
        )
    })
}

fn dl_reason(error: &libloading::Error) -> String {
    use std::error::Error as _;
    match error.source() {
        Some(source) => source.to_string(),
        None => error.to_string(),
    }
}

fn read_types(path: &Path, table: *const ck_library) -> Result<Vec<TypeEntry>, LoadError> {
    // SAFETY: the table's struct_size covers every 1.0 field (checked by the caller).
    let table = unsafe { &*table };
    if table.free_buffer.is_none() {
        return Err(table_problem(path, "ck_library.free_buffer is NULL"));
    }
    if table.type_count > MAX_TYPES {
        return Err(table_problem(
            path,
            format!(
                "type_count {} exceeds the limit of {MAX_TYPES}",
                table.type_count
            ),
        ));
    }
    if table.type_count > 0 && table.types.is_null() {
        return Err(table_problem(path, "ck_library.types is NULL"));
    }
    let mut types: Vec<TypeEntry> = Vec::with_capacity(table.type_count);
    for index in 0..table.type_count {
        // SAFETY: `types` points to `type_count` pointers (the ABI's promise).
        let raw = unsafe { *table.types.add(index) };
        let entry = read_type(raw)
            .map_err(|problem| table_problem(path, format!("type #{index}: {problem}")))?;
        if types
            .iter()
            .any(|t| t.description.name == entry.description.name)
        {
            return Err(table_problem(
                path,
                format!("type `{}` is exported twice", entry.description.name),
            ));
        }
        types.push(entry);
    }
    Ok(types)
}

fn read_type(raw: *const ck_type) -> Result<TypeEntry, String> {
    // SAFETY: a pointer from the library's type array; checked for NULL here.
    let ty = unsafe { raw.as_ref() }.ok_or("NULL type pointer")?;
    if ty.struct_size < MIN_TYPE_SIZE {
        return Err(format!(
            "ck_type.struct_size is {}, ABI 1.0 needs at least {MIN_TYPE_SIZE}",
            ty.struct_size
        ));
    }
    // SAFETY: the library's strings stay valid until shutdown.
    let name = unsafe { ty.name.as_str() }
        .map_err(|e| format!("name: {e}"))?
        .to_owned();
    if name.is_empty() {
        return Err("empty type name".into());
    }
    let problem = |what: String| format!("type `{name}`: {what}");
    // SAFETY: as above.
    let description = unsafe { ty.description.as_str() }
        .map_err(|e| problem(format!("description: {e}")))?
        .to_owned();
    let required = [
        ("open", ty.open.is_some()),
        ("close", ty.close.is_some()),
        ("online", ty.online.is_some()),
        ("offline", ty.offline.is_some()),
        ("terminate", ty.terminate.is_some()),
        ("looks_alive", ty.looks_alive.is_some()),
        ("is_alive", ty.is_alive.is_some()),
    ];
    if let Some((missing, _)) = required.iter().find(|(_, present)| !present) {
        return Err(problem(format!("entry point `{missing}` is NULL")));
    }
    if ty.property_count > MAX_PROPERTIES {
        return Err(problem(format!(
            "property_count {} exceeds the limit of {MAX_PROPERTIES}",
            ty.property_count
        )));
    }
    if ty.property_count > 0 && ty.properties.is_null() {
        return Err(problem("properties is NULL".into()));
    }
    // Since 1.2; absent (NULL) when the library's ck_type ends before it.
    let extra_flags = if ty.struct_size as usize >= size_of::<ck_type>() {
        ty.property_extra_flags
    } else {
        std::ptr::null()
    };
    let mut specs = Vec::with_capacity(ty.property_count);
    for i in 0..ty.property_count {
        // SAFETY: `properties` points to `property_count` specs, valid until shutdown.
        let mut spec = unsafe { (*ty.properties.add(i)).to_spec() }.map_err(problem)?;
        if !extra_flags.is_null() {
            // SAFETY: a non-NULL `property_extra_flags` has `property_count` words.
            let flags = unsafe { *extra_flags.add(i) };
            spec.secret = flags & ffi::CK_PROPERTY_EXTRA_SECRET != 0;
            spec.unique = flags & ffi::CK_PROPERTY_EXTRA_UNIQUE != 0;
        }
        specs.push(spec);
    }
    let schema = Schema::new(specs);
    schema
        .check_self()
        .map_err(|e| problem(format!("invalid schema: {e}")))?;
    Ok(TypeEntry {
        description: TypeDescription {
            name: name.into(),
            description: description.into(),
            characteristics: Characteristics::from_bits_retain(ty.characteristics),
            schema,
        },
        raw,
    })
}

/// One resource type of a loaded library.
#[derive(Clone)]
pub struct ResourceTypeHandle {
    pub(crate) library: Arc<LibraryInner>,
    pub(crate) index: usize,
}

impl std::fmt::Debug for ResourceTypeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceTypeHandle")
            .field("name", &self.name())
            .field("library", &self.library.path)
            .finish()
    }
}

impl ResourceTypeHandle {
    pub(crate) fn entry(&self) -> &TypeEntry {
        &self.library.types[self.index]
    }

    pub(crate) fn raw(&self) -> &ck_type {
        // SAFETY: checked at load; valid until shutdown, which waits for this Arc.
        unsafe { &*self.entry().raw }
    }

    /// The type's name.
    pub fn name(&self) -> &str {
        &self.entry().description.name
    }

    /// Name, description, characteristics and schema, as the library declared them.
    pub fn description(&self) -> &TypeDescription {
        &self.entry().description
    }

    /// The type's characteristics.
    pub fn characteristics(&self) -> Characteristics {
        self.entry().description.characteristics
    }

    /// The type's property schema.
    pub fn schema(&self) -> &Schema {
        &self.entry().description.schema
    }

    /// Opens the resource `name`. The name
    /// ([`clusterkit::validate_resource_name`]) and `properties` are
    /// validated here (defaults filled in) before the library sees them, so
    /// a C library gets the same checks as a Rust one. `log` receives the
    /// resource's log lines.
    pub fn open(
        &self,
        name: &str,
        properties: &Properties,
        recover: bool,
        log: Logger,
    ) -> Result<LoadedResource> {
        clusterkit::validate_resource_name(name)?;
        let validated = self.schema().validate(properties)?;
        LoadedResource::open(self.clone(), name, &validated, recover, log)
    }

    /// The operation timeouts the type advises
    /// ([`ControlCode::GET_OPERATION_TIMEOUTS`]); the defaults when the type
    /// does not answer (a C type without that code) or answers garbage.
    pub fn operation_timeouts(&self) -> clusterkit::OperationTimeouts {
        self.control(ControlCode::GET_OPERATION_TIMEOUTS, &[])
            .ok()
            .and_then(|out| Properties::decode(&out).ok())
            .map(|p| clusterkit::OperationTimeouts::from_properties(&p))
            .unwrap_or_default()
    }

    /// Sends a type-level control code. Unsupported when the type has no
    /// `type_control`.
    pub fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        let Some(type_control) = self.raw().type_control else {
            return Err(Error::unsupported(format_args!("type control {code}")));
        };
        let context: *mut c_void = self.raw().context;
        crate::resource::call_control(&self.library, |output, error| {
            // SAFETY: valid context and pointers for the call's duration.
            unsafe {
                type_control(
                    context,
                    code.0,
                    ffi::ck_bytes::from_slice(input),
                    output,
                    error,
                )
            }
        })
    }
}
