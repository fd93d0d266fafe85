//! A small tmpfs for tests that need a file system that fills up.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A tmpfs mounted at a directory; unmounted (lazily) when dropped, also when a test panics.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    /// Creates `dir` and mounts a tmpfs of `size` (mount's syntax: `256k`, `1m`) on it.
    /// Panics naming the directory and the error when that is not possible (the tests need it).
    #[track_caller]
    pub fn mount(dir: impl Into<PathBuf>, size: &str) -> Tmpfs {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating {} for a tmpfs: {e}", dir.display()));
        let target = c_path(&dir);
        let data = CString::new(format!("size={size},mode=0755")).expect("no NUL in the size");
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert!(
            r == 0,
            "mounting a tmpfs of {size} on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Tmpfs { dir, mounted: true }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Bytes still free, as `statvfs` reports them.
    #[track_caller]
    pub fn free_bytes(&self) -> u64 {
        let path = c_path(&self.dir);
        // SAFETY: statvfs writes into the zeroed struct; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        assert!(
            r == 0,
            "statvfs {}: {}",
            self.dir.display(),
            std::io::Error::last_os_error()
        );
        st.f_bavail * st.f_frsize
    }

    /// Unmounts now (lazily: files still open stay readable to their holders); panics on error.
    #[track_caller]
    pub fn unmount(mut self) {
        self.mounted = false;
        let r = unmount(&self.dir);
        assert!(r.is_ok(), "unmounting {}: {r:?}", self.dir.display());
    }
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes())
        .unwrap_or_else(|_| panic!("{} contains NUL", p.display()))
}

fn unmount(dir: &Path) -> std::io::Result<()> {
    let path = c_path(dir);
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = unmount(&self.dir) {
                eprintln!("scribe-e2e: unmounting {}: {e}", self.dir.display());
            }
        }
    }
}
