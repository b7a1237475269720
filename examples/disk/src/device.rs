//! The device: opening it (direct I/O where supported), block I/O with
//! aligned buffers, and the exclusive open-file-description lock.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Seek, SeekFrom};
use std::ops::{Deref, DerefMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use clusterkit::{Error, PropertyError, Result};

use crate::layout::{BLOCK_SIZE, MIN_DISK_SIZE, RECORD_BLOCK};

/// One block in memory, aligned to [`BLOCK_SIZE`] as `O_DIRECT` requires.
pub(crate) struct AlignedBlock {
    ptr: NonNull<u8>,
}

// SAFETY: the block owns its allocation exclusively, like a `Box<[u8]>`.
unsafe impl Send for AlignedBlock {}
// SAFETY: shared access only reads, like `&[u8]`.
unsafe impl Sync for AlignedBlock {}

impl AlignedBlock {
    fn layout() -> Layout {
        Layout::from_size_align(BLOCK_SIZE, BLOCK_SIZE).expect("4096 is a power of two")
    }

    /// A block of zeros.
    pub(crate) fn zeroed() -> AlignedBlock {
        let layout = Self::layout();
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBlock { ptr }
    }
}

impl Deref for AlignedBlock {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to BLOCK_SIZE initialised bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), BLOCK_SIZE) }
    }
}

impl DerefMut for AlignedBlock {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), BLOCK_SIZE) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout()) }
    }
}

/// What is wrong with the property `path`; messages name the file.
#[derive(Debug)]
pub(crate) enum PathError {
    /// The file does not exist.
    Missing(String),
    /// It exists but cannot be a disk.
    Invalid(String),
    /// It could not be looked at.
    Io(String),
}

impl PathError {
    /// [`Error::NotFound`], [`Error::InvalidProperties`] or [`Error::Io`],
    /// each naming the property.
    pub(crate) fn into_error(self) -> Error {
        match self {
            PathError::Missing(m) => Error::NotFound(format!("property `path`: {m}")),
            PathError::Invalid(m) => PropertyError::invalid("path", m).into(),
            PathError::Io(m) => Error::Io(format!("property `path`: {m}")),
        }
    }

    /// The problem as a property error (for `VALIDATE_PROPERTIES`).
    pub(crate) fn into_property_error(self) -> PropertyError {
        match self {
            PathError::Missing(m) | PathError::Invalid(m) | PathError::Io(m) => {
                PropertyError::invalid("path", m)
            }
        }
    }
}

fn too_small(path: &Path, size: u64) -> String {
    format!(
        "{} is {size} bytes; a disk needs at least {MIN_DISK_SIZE} \
         (block 0: reservation record, block 1: probe block)",
        path.display()
    )
}

/// Checks `path` (the property `path`) names a block device, or an image
/// file big enough for the layout.
pub(crate) fn check_path(path: &Path) -> std::result::Result<(), PathError> {
    if !path.is_absolute() {
        return Err(PathError::Invalid(format!(
            "{} is a relative path; give the absolute path of a block device or an image file",
            path.display()
        )));
    }
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(PathError::Missing(format!(
                "{} does not exist (expected a block device or an image file)",
                path.display()
            )));
        }
        Err(e) => {
            return Err(PathError::Io(format!("looking at {}: {e}", path.display())));
        }
    };
    let kind = meta.file_type();
    if kind.is_file() {
        if meta.len() < MIN_DISK_SIZE {
            return Err(PathError::Invalid(too_small(path, meta.len())));
        }
        return Ok(());
    }
    if kind.is_block_device() {
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(PathError::Invalid(format!(
        "{} is {what}, not a block device or an image file",
        path.display()
    )))
}

/// An open disk.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// Whether the file is open with `O_DIRECT`.
    pub(crate) direct: bool,
}

/// Why direct I/O was asked for but is not used.
pub(crate) type Fallback = Option<String>;

fn is_einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

impl Device {
    /// Opens `path` read-write, with `O_DIRECT` when `direct` and the
    /// filesystem supports it (else buffered, and the reason is returned),
    /// and checks its size.
    pub(crate) fn open(path: &Path, direct: bool) -> Result<(Device, Fallback)> {
        check_path(path).map_err(PathError::into_error)?;
        let mut fallback = None;
        let mut file = None;
        if direct {
            match open_rw(path, libc::O_DIRECT) {
                Ok(f) => file = Some(f),
                Err(e) if is_einval(&e) => {
                    fallback = Some(format!("the filesystem refuses O_DIRECT at open ({e})"));
                }
                Err(e) => return Err(open_error(path, &e)),
            }
        }
        let file = match file {
            Some(f) => f,
            None => open_rw(path, 0).map_err(|e| open_error(path, &e))?,
        };
        let mut device = Device {
            file,
            path: path.to_owned(),
            direct: direct && fallback.is_none(),
        };
        let size = device.size()?;
        if size < MIN_DISK_SIZE {
            return Err(PathError::Invalid(too_small(path, size)).into_error());
        }
        if device.direct {
            // Some filesystems accept O_DIRECT at open and refuse the I/O.
            if let Err(e) = device.read_block(RECORD_BLOCK) {
                if !is_einval(&e) {
                    return Err(Error::io(
                        format_args!("reading block 0 of {}", path.display()),
                        &e,
                    ));
                }
                fallback = Some(format!("the filesystem refuses O_DIRECT reads ({e})"));
                device.file = open_rw(path, 0).map_err(|e| open_error(path, &e))?;
                device.direct = false;
            }
        }
        Ok((device, fallback))
    }

    fn size(&mut self) -> Result<u64> {
        // A block device's metadata says 0 bytes; seeking to the end works for both.
        let size = self.file.seek(SeekFrom::End(0));
        let _ = self.file.seek(SeekFrom::Start(0));
        size.map_err(|e| Error::io(format_args!("measuring {}", self.path.display()), &e))
    }

    /// Reads block `index`.
    pub(crate) fn read_block(&self, index: u64) -> io::Result<AlignedBlock> {
        let mut block = AlignedBlock::zeroed();
        self.file
            .read_exact_at(&mut block, index * BLOCK_SIZE as u64)?;
        Ok(block)
    }

    /// Writes block `index`; with `durable`, waits until the device has it
    /// (`fdatasync`, which also flushes a volatile write cache under
    /// `O_DIRECT`). Buffered writes are always made durable.
    pub(crate) fn write_block(
        &self,
        index: u64,
        block: &AlignedBlock,
        durable: bool,
    ) -> io::Result<()> {
        self.file.write_all_at(block, index * BLOCK_SIZE as u64)?;
        if durable || !self.direct {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Drops block `index` from the page cache, so that a buffered read
    /// goes to the device (best effort; a no-op under `O_DIRECT`).
    pub(crate) fn forget_cached(&self, index: u64) {
        if !self.direct {
            // SAFETY: plain system call on an fd `self.file` keeps open.
            unsafe {
                libc::posix_fadvise(
                    self.file.as_raw_fd(),
                    (index * BLOCK_SIZE as u64) as libc::off_t,
                    BLOCK_SIZE as libc::off_t,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
    }

    /// Whether the image file was removed (its link count is 0). Block
    /// devices and unreadable metadata count as present.
    pub(crate) fn unlinked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file
            .metadata()
            .is_ok_and(|m| m.is_file() && m.nlink() == 0)
    }
}

fn open_rw(path: &Path, flags: libc::c_int) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
}

fn open_error(path: &Path, e: &io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        return Error::NotFound(format!(
            "property `path`: {} does not exist (expected a block device or an image file)",
            path.display()
        ));
    }
    Error::io(
        format_args!(
            "property `path`: opening {} for reading and writing",
            path.display()
        ),
        e,
    )
}

fn ofd_lock(file: &File, command: libc::c_int, kind: libc::c_short) -> io::Result<bool> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0; // the whole file, however long
    lock.l_pid = 0; // required for OFD locks
    // SAFETY: F_OFD_SETLK reads the `flock` we pass, which outlives the call.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), command, &raw mut lock) };
    if result == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Takes the exclusive open-file-description lock on the whole of `file`
/// without waiting: `Ok(false)` when another open file description (in this
/// process or another) holds a conflicting lock.
pub(crate) fn try_lock(file: &File) -> io::Result<bool> {
    ofd_lock(file, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short)
}

/// Releases the lock taken by [`try_lock`] on this open file description,
/// even while another thread still does I/O through it.
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    ofd_lock(file, libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short).map(drop)
}

/// The exclusive lock `online` takes on a disk: an open-file-description
/// (OFD) write lock on the whole file, `fcntl(F_OFD_SETLK, F_WRLCK)`.
///
/// Unlike a process-associated POSIX lock, it belongs to one open of the
/// file, so two opens in one process conflict too. It is released when this
/// value drops. Tests and tools use it to see whether a disk is reserved on
/// this host:
///
/// ```no_run
/// use clusterkit_disk::DiskLock;
///
/// match DiskLock::try_acquire("/srv/disks/data.img")? {
///     Some(_lock) => println!("free on this host (and now ours until `_lock` drops)"),
///     None => println!("reserved by a resource on this host"),
/// }
/// # Ok::<(), clusterkit::Error>(())
/// ```
#[derive(Debug)]
pub struct DiskLock {
    file: File,
}

impl DiskLock {
    /// Opens `path` and takes the lock; `None` when another open of the file
    /// holds it. Errors name the file.
    pub fn try_acquire(path: impl AsRef<Path>) -> Result<Option<DiskLock>> {
        let path = path.as_ref();
        let file = open_rw(path, 0).map_err(|e| open_error(path, &e))?;
        match try_lock(&file) {
            Ok(true) => Ok(Some(DiskLock { file })),
            Ok(false) => Ok(None),
            Err(e) => Err(Error::io(format_args!("locking {}", path.display()), &e)),
        }
    }
}

impl Drop for DiskLock {
    fn drop(&mut self) {
        let _ = unlock(&self.file);
    }
}

/// This machine's host name, as `gethostname(2)` gives it.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which we pass.
    let result = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if result != 0 {
        return "localhost".to_owned();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}
