//! Files under a directory that others can write, opened without following links.
//!
//! Scribe runs as root and writes under its log roots (`LogRoot`, `JsonFileRoot`), where a
//! container (through a mount) or a local user may be able to plant entries. A symlink at any
//! component below the trusted root would make root write elsewhere; a FIFO would block the shim.
//! [`SafeDir`] is a directory held open by fd: every child is reached with `openat(2)` /
//! `mkdirat(2)` / `renameat(2)` / `unlinkat(2)` relative to that fd, directories opened
//! `O_DIRECTORY|O_NOFOLLOW`, files `O_NOFOLLOW` (temporary files also `O_EXCL`), and a file is
//! used only when it is a regular file with one link. So a planted link is refused, never
//! followed, and a directory swapped after it was opened does not redirect later writes.
//!
//! Only the root itself is opened by path (following links): it is the administrator's setting.
//!
//! This is its own crate because both `scribe-io` (json-file logs) and `scribe-events`
//! (`container.log`, `runtime.log`) need it and neither may depend on the other.
//!
//! Failure policy: every error is a [`SafeFsError`] naming the operation and the full path;
//! a refused symlink says so in words (the kernel's `ELOOP` reads "too many levels of symbolic
//! links").

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// A failed step: what was attempted on which path, and the OS error (kind kept).
#[derive(Debug)]
pub struct SafeFsError {
    /// The operation (`open`, `create directory`, `rename`, ...).
    pub op: &'static str,
    /// The full path involved.
    pub path: PathBuf,
    /// The cause; a refused link or special file has a message saying so.
    pub source: io::Error,
}

impl SafeFsError {
    fn new(op: &'static str, path: PathBuf, source: io::Error) -> Self {
        SafeFsError { op, path, source }
    }

    /// True when the error is "not found" (for callers that tolerate a missing file).
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

impl fmt::Display for SafeFsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for SafeFsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<SafeFsError> for io::Error {
    fn from(e: SafeFsError) -> io::Error {
        io::Error::new(e.source.kind(), e.to_string())
    }
}

/// The message of a refused symlink.
pub const SYMLINK_REFUSED: &str =
    "is a symbolic link: refused (links under a log root are not followed)";

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file: refused under a log root",
    )
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, SafeFsError>;

/// What a directory entry is, as seen without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// An entry's `fstatat(AT_SYMLINK_NOFOLLOW)`: what it is, its size and its mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The entry's type.
    pub kind: Kind,
    /// `st_size` in bytes (of the link itself for a link).
    pub size: u64,
    /// `st_mtime`.
    pub mtime: SystemTime,
}

/// A directory held open by fd; children are reached relative to it, never through a link.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Checks that `name` is one plain path component (not empty, `.`, `..`, no `/` or NUL).
fn check_name(dir: &Path, name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(SafeFsError::new(
            "resolve",
            dir.join(name),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a single path component"),
            ),
        ));
    }
    Ok(())
}

impl SafeDir {
    /// Opens the trusted root `path` (creating it and its parents, mode `dir_mode` before umask,
    /// when `create`). Links in `path` itself are followed: it is the administrator's setting.
    pub fn open_root(path: &Path, create: bool, dir_mode: u32) -> Result<SafeDir> {
        if create {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(path)
                .map_err(|e| SafeFsError::new("create directory", path.to_path_buf(), e))?;
        }
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SafeFsError::new("open directory", path.to_path_buf(), e.into()))?;
        Ok(SafeDir {
            // SAFETY: `open` just returned this descriptor and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// The directory's path (for messages; never used to reach files).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Explains a failed `*at` call on `name`: a symlink (or, for a directory, a non-directory)
    /// gets a message saying so instead of the kernel's `ELOOP`/`ENOTDIR`/`EEXIST` wording.
    fn explain(&self, op: &'static str, name: &OsStr, errno: Errno) -> SafeFsError {
        let path = self.path.join(name);
        if matches!(
            errno,
            Errno::ELOOP | Errno::ENOTDIR | Errno::ENXIO | Errno::EMLINK | Errno::EEXIST
        ) {
            if let Ok(st) = fstatat(
                Some(self.fd.as_raw_fd()),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if kind == SFlag::S_IFLNK {
                    return SafeFsError::new(
                        op,
                        path,
                        io::Error::new(io::ErrorKind::InvalidInput, SYMLINK_REFUSED),
                    );
                }
                if errno == Errno::ENXIO && kind != SFlag::S_IFREG && kind != SFlag::S_IFDIR {
                    // A FIFO without reader (O_NONBLOCK) or a socket.
                    return SafeFsError::new(op, path, not_regular());
                }
            }
        }
        SafeFsError::new(op, path, errno.into())
    }

    /// Opens the existing child directory `name` without following a link.
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> Result<SafeDir> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        let fd = openat(
            Some(self.fd.as_raw_fd()),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.explain("open directory", name, e))?;
        Ok(SafeDir {
            // SAFETY: `openat` just returned this descriptor and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: self.path.join(name),
        })
    }

    /// Opens the child directory `name`, creating it (mode `mode` before umask) if missing.
    pub fn create_dir(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<SafeDir> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        match mkdirat(
            Some(self.fd.as_raw_fd()),
            name,
            Mode::from_bits_truncate(mode as libc::mode_t),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(self.explain("create directory", name, e)),
        }
        self.open_dir(name)
    }

    /// Walks `names` from this directory, creating what is missing; no component may be a link.
    pub fn create_dir_all<I, S>(&self, names: I, mode: u32) -> Result<SafeDir>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut names = names.into_iter();
        let Some(first) = names.next() else {
            return self.try_clone();
        };
        let mut dir = self.create_dir(first, mode)?;
        for n in names {
            dir = dir.create_dir(n, mode)?;
        }
        Ok(dir)
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> Result<SafeDir> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| SafeFsError::new("duplicate", self.path.clone(), e))?;
        Ok(SafeDir {
            fd,
            path: self.path.clone(),
        })
    }

    /// Opens `name` with `flags` plus `O_NOFOLLOW|O_CLOEXEC|O_NONBLOCK`, then insists on a
    /// regular file with a single link (a planted FIFO, device or hard link is refused), and
    /// clears `O_NONBLOCK` again.
    fn open_file(&self, op: &'static str, name: &OsStr, flags: OFlag, mode: u32) -> Result<File> {
        check_name(&self.path, name)?;
        let fd = openat(
            Some(self.fd.as_raw_fd()),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(mode as libc::mode_t),
        )
        .map_err(|e| self.explain(op, name, e))?;
        // SAFETY: `openat` just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = || self.path.join(name);
        let st = fstat(fd.as_raw_fd()).map_err(|e| SafeFsError::new("stat", path(), e.into()))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFREG {
            return Err(SafeFsError::new(op, path(), not_regular()));
        }
        if st.st_nlink > 1 {
            return Err(SafeFsError::new(
                op,
                path(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "has {} hard links: refused (a link under a log root could point at another file)",
                        st.st_nlink
                    ),
                ),
            ));
        }
        let fl = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| SafeFsError::new("fcntl", path(), e.into()))?;
        let fl = OFlag::from_bits_truncate(fl) & !OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(fl))
            .map_err(|e| SafeFsError::new("fcntl", path(), e.into()))?;
        Ok(File::from(fd))
    }

    /// Opens (creating, mode `mode` before umask) `name` for appending; with `read`, also for
    /// reading (to look at the last byte).
    pub fn open_append(&self, name: impl AsRef<OsStr>, mode: u32, read: bool) -> Result<File> {
        let access = if read { OFlag::O_RDWR } else { OFlag::O_WRONLY };
        self.open_file(
            "open",
            name.as_ref(),
            access | OFlag::O_APPEND | OFlag::O_CREAT,
            mode,
        )
    }

    /// Opens the existing file `name` for reading.
    pub fn open_read(&self, name: impl AsRef<OsStr>) -> Result<File> {
        self.open_file("open", name.as_ref(), OFlag::O_RDONLY, 0)
    }

    /// Creates `name`, which must not exist (`O_EXCL`: a planted file or link is refused), for
    /// writing.
    pub fn create_excl(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<File> {
        self.open_file(
            "create",
            name.as_ref(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
        )
    }

    /// Creates `name`, which must not exist, for reading and writing at explicit offsets (no
    /// `O_APPEND`: `splice(2)` refuses appending files). A spool file is written and read back
    /// through the same descriptor.
    pub fn create_excl_rw(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<File> {
        self.open_file(
            "create",
            name.as_ref(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
        )
    }

    /// Renames `from` to `to` inside this directory (`renameat`; a link at either name is moved or
    /// replaced as a name, never followed).
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        check_name(&self.path, from)?;
        check_name(&self.path, to)?;
        let fd = Some(self.fd.as_raw_fd());
        renameat(fd, from, fd, to)
            .map_err(|e| SafeFsError::new("rename", self.path.join(from), e.into()))
    }

    /// Removes the file (or link) `name` (`unlinkat`).
    pub fn remove(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        unlinkat(Some(self.fd.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| SafeFsError::new("remove", self.path.join(name), e.into()))
    }

    /// Describes `name` without following a link (`fstatat(AT_SYMLINK_NOFOLLOW)`).
    pub fn stat_nofollow(&self, name: impl AsRef<OsStr>) -> Result<Stat> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        let st = fstatat(
            Some(self.fd.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| SafeFsError::new("stat", self.path.join(name), e.into()))?;
        let kind = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        let mtime = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(st.st_mtime).unwrap_or(0),
                u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            );
        Ok(Stat {
            kind,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime,
        })
    }

    /// Removes `name`: a directory tree, walked through directory fds without following links
    /// and at most `max_depth` directories below `name` (deeper means planted: refused), or a
    /// file or link (the link itself; its target is untouched).
    pub fn remove_tree(&self, name: impl AsRef<OsStr>, max_depth: usize) -> Result<()> {
        let name = name.as_ref();
        if self.stat_nofollow(name)?.kind != Kind::Dir {
            return self.remove(name);
        }
        if max_depth == 0 {
            return Err(SafeFsError::new(
                "remove",
                self.path.join(name),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "directory tree too deep: refused",
                ),
            ));
        }
        let dir = self.open_dir(name)?;
        for entry in dir.entries()? {
            dir.remove_tree(&entry, max_depth - 1)?;
        }
        unlinkat(Some(self.fd.as_raw_fd()), name, UnlinkatFlags::RemoveDir)
            .map_err(|e| SafeFsError::new("remove directory", self.path.join(name), e.into()))
    }

    /// Bytes of the regular files in the tree `name` (or of `name` itself when a file); links,
    /// special files, what cannot be read and what lies more than `max_depth` directories below
    /// `name` count 0.
    pub fn tree_size(&self, name: impl AsRef<OsStr>, max_depth: usize) -> u64 {
        let name = name.as_ref();
        let Ok(st) = self.stat_nofollow(name) else {
            return 0;
        };
        match st.kind {
            Kind::File => st.size,
            Kind::Dir if max_depth > 0 => {
                let Ok(dir) = self.open_dir(name) else {
                    return 0;
                };
                dir.entries()
                    .unwrap_or_default()
                    .iter()
                    .map(|n| dir.tree_size(n, max_depth - 1))
                    .sum()
            }
            _ => 0,
        }
    }

    /// Creates `name` anew (mode `mode` before umask) for writing: an existing file or link of
    /// that name is removed first (the link, not its target), then the file is created with
    /// `O_EXCL`. For marker files whose mtime says when.
    pub fn replace_file(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<File> {
        let name = name.as_ref();
        match self.remove(name) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.create_excl(name, mode)
    }

    /// Opens (creating, mode `mode` before umask) the lock file `name` and takes an exclusive
    /// `flock` on it, waiting for it; released when the returned value is dropped.
    pub fn lock_file(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<Flock<File>> {
        let name = name.as_ref();
        let file = self.open_file("open", name, OFlag::O_RDWR | OFlag::O_CREAT, mode)?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| SafeFsError::new("flock", self.path.join(name), e.into()))
    }

    /// The names in this directory (without `.` and `..`), read once.
    pub fn entries(&self) -> Result<Vec<OsString>> {
        let err = |e: Errno| SafeFsError::new("list", self.path.clone(), e.into());
        // `Dir` takes ownership of an fd and reads from its offset: give it a fresh one on ".".
        let mut dir = nix::dir::Dir::openat(
            Some(self.fd.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(out)
    }
}

impl AsFd for SafeDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens the file at `path` for appending (creating it, mode `mode`), creating its parent
/// directory tree with `create_dir_all` semantics but refusing a link at the file itself.
/// For destinations outside any log root (`file://` stdio): the parent path is the user's choice,
/// the last component is not followed.
pub fn open_append_last_component(path: &Path, dir_mode: u32, mode: u32) -> Result<File> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SafeFsError::new(
            "open",
            path.to_path_buf(),
            io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    SafeDir::open_root(parent, true, dir_mode)?.open_append(name, mode, false)
}

#[cfg(test)]
mod tests;
