//! Helpers shared by this crate's tests.

use std::ffi::CString;
use std::path::Path;

/// A tmpfs of a few pages, unmounted on drop.
pub(crate) struct TinyTmpfs {
    dir: tempfile::TempDir,
}

impl TinyTmpfs {
    pub(crate) fn mount(size: &str) -> Option<TinyTmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let data = format!("size={size}");
        match nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        ) {
            Ok(()) => Some(TinyTmpfs { dir }),
            Err(e) => {
                eprintln!("skipping tmpfs test: mount failed: {e}");
                None
            }
        }
    }

    /// Like [`TinyTmpfs::mount`], but a test that cannot run without it fails, naming why.
    pub(crate) fn must_mount(size: &str) -> TinyTmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = format!("size={size}");
        if let Err(e) = nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        ) {
            panic!("this test needs to mount a tmpfs (run it as root): {e}");
        }
        TinyTmpfs { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.dir.path().as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
