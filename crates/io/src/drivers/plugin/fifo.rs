//! The FIFO a plugin reads a container's frames from, and the ledger that says which frames a
//! dead plugin never consumed.
//!
//! The FIFOs live in `/run/scribe/logging/<namespace>/<container id>/` ([`DEFAULT_FIFO_ROOT`]),
//! each directory mode 0700, created through [`SafeDir`]: on tmpfs like dockerd's
//! `/run/docker/logging` (a FIFO holds no data on disk, and a reboot clears leftovers), outside
//! the log roots (which a container may see through a mount and which retention keeps after
//! delete), and private to root (the plugin runs as root and opens the path it is given). Every
//! FIFO gets a random name, is opened `O_RDWR|O_NONBLOCK` before StartLogging (the shim is
//! then a reader too: a plugin that dies never makes a write fail with EPIPE, and what it left
//! unread can be read back out), and is removed with its directory at delete.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::mkfifoat;
use scribe_safefs::SafeDir;

/// Where the FIFO directories go (see the module doc for why there).
pub const DEFAULT_FIFO_ROOT: &str = "/run/scribe/logging";

/// The pipe size asked for (1 MiB: the unprivileged maximum; fewer wake-ups of the plugin and
/// the writer than the default 64 KiB). A refusal keeps the default.
pub const PIPE_SIZE: i32 = 1 << 20;

/// One open FIFO: the shim's `O_RDWR` end and where it is.
#[derive(Debug)]
pub struct Fifo {
    /// The shim's end, non-blocking.
    pub file: File,
    /// The path given to the plugin.
    pub path: PathBuf,
    /// Its name in the directory.
    pub name: String,
}

/// The container's private FIFO directory.
#[derive(Debug)]
pub struct FifoDir {
    dir: SafeDir,
    parent: SafeDir,
    id: String,
}

impl FifoDir {
    /// Creates (or opens) `<root>/<ns>/<id>` mode 0700, no link followed below `root`.
    pub fn create(root: &Path, ns: &str, id: &str) -> Result<FifoDir, String> {
        let top = SafeDir::open_root(root, true, 0o700).map_err(|e| e.to_string())?;
        let parent = top.create_dir_all([ns], 0o700).map_err(|e| e.to_string())?;
        let dir = parent.create_dir(id, 0o700).map_err(|e| e.to_string())?;
        // mkdirat leaves an existing directory's mode alone (and the umask applies): insist.
        nix::sys::stat::fchmod(dir.as_fd().as_raw_fd(), Mode::from_bits_truncate(0o700))
            .map_err(|e| format!("chmod {}: {e}", dir.path().display()))?;
        Ok(FifoDir {
            dir,
            parent,
            id: id.to_owned(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes a FIFO with a random name and opens it `O_RDWR|O_NONBLOCK`.
    pub fn new_fifo(&self) -> Result<Fifo, String> {
        let mut rnd = [0u8; 16];
        random(&mut rnd);
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.path().join(&name);
        let fd = self.dir.as_fd().as_raw_fd();
        mkfifoat(Some(fd), name.as_str(), Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
        let raw = openat(
            Some(fd),
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("open {}: {e}", path.display()))?;
        // SAFETY: `openat` just returned this descriptor and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let st = fstat(owned.as_raw_fd()).map_err(|e| format!("stat {}: {e}", path.display()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
            return Err(format!("{} is not the FIFO just made", path.display()));
        }
        // SAFETY: plain fcntl on a descriptor we own; failure keeps the default size.
        unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Fifo {
            file: File::from(owned),
            path,
            name,
        })
    }

    /// Removes the FIFO `name` made by [`FifoDir::new_fifo`] (the fd may stay open).
    pub fn remove_fifo(&self, name: &str) -> Result<(), String> {
        self.dir.remove(name).map_err(|e| e.to_string())
    }

    /// Removes the directory and anything left in it.
    pub fn remove(self) -> Result<(), String> {
        self.parent
            .remove_tree(&self.id, 1)
            .map_err(|e| e.to_string())
    }
}

/// Bytes waiting in the pipe (`FIONREAD`).
pub fn pending(f: &File) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Reads everything left in the pipe (non-blocking fd) out.
pub fn read_residue(f: &File) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut r = f;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn random(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
}

/// The frames written into one FIFO that the plugin may not have consumed yet: their end
/// offsets in the byte stream written so far, so that the bytes still in the pipe say exactly
/// which frames a dead plugin took, which one it took only part of, and which it never saw.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// End offset (in bytes written to this FIFO) of every frame not known to be consumed.
    ends: VecDeque<u64>,
    /// Payload bytes of those frames (for drop counts), in the same order.
    payload: VecDeque<u32>,
    /// Where the first tracked frame starts (the end of the last one consumed).
    start: u64,
    /// Bytes written to the FIFO so far.
    written: u64,
}

/// What a dead plugin left in its FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Residue {
    /// Frames the plugin read in whole since the last settle (delivered).
    pub consumed: u64,
    /// A frame it read only part of (lost: counted as dropped): its payload bytes.
    pub partial: Option<u64>,
    /// Whole frames it never read: these can be sent again.
    pub unread: u64,
    /// Where the unread frames start in the bytes read back out of the pipe.
    pub skip: usize,
}

impl Ledger {
    /// A frame of `len` bytes (`payload` of them the message) was written.
    pub fn wrote_frame(&mut self, len: usize, payload: usize) {
        self.written += len as u64;
        self.ends.push_back(self.written);
        self.payload
            .push_back(u32::try_from(payload).unwrap_or(u32::MAX));
    }

    /// Frames still tracked (written, not known consumed).
    pub fn tracked(&self) -> usize {
        self.ends.len()
    }

    /// `in_pipe` bytes are still in the pipe: forgets the frames entirely read; returns how
    /// many.
    pub fn settle(&mut self, in_pipe: usize) -> u64 {
        let read_to = self.written.saturating_sub(in_pipe as u64);
        let mut n = 0;
        while let Some(&e) = self.ends.front() {
            if e > read_to {
                break;
            }
            self.ends.pop_front();
            self.payload.pop_front();
            self.start = e;
            n += 1;
        }
        n
    }

    /// The plugin died and `left` bytes were read back out of the pipe (all it still held):
    /// which frames it had. The ledger is empty afterwards (that FIFO is done).
    pub fn residue(&mut self, left: usize) -> Residue {
        let consumed = self.settle(left);
        let read_to = self.written.saturating_sub(left as u64);
        let mut r = Residue {
            consumed,
            ..Residue::default()
        };
        if let Some(&first_end) = self.ends.front() {
            if self.start < read_to {
                r.partial = self.payload.front().map(|&p| u64::from(p));
                r.skip = usize::try_from(first_end - read_to).unwrap_or(usize::MAX);
                r.unread = self.ends.len() as u64 - 1;
            } else {
                r.unread = self.ends.len() as u64;
            }
        }
        self.ends.clear();
        self.payload.clear();
        self.start = self.written;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localfmt::EntryRef;
    use crate::plugin::frame::{decode_frame, encode_frame};
    use std::io::{Read, Write};

    fn frame(i: usize) -> Vec<u8> {
        let line = format!("line {i}");
        let mut out = Vec::new();
        encode_frame(
            &EntryRef {
                source: "stdout",
                time_nano: i as i64,
                line: line.as_bytes(),
                ..EntryRef::default()
            },
            &mut out,
        );
        out
    }

    /// A plugin that read `read` bytes of 10 frames and died: the ledger says which it had,
    /// from the bytes read back out of a real FIFO.
    #[test]
    fn a_dead_plugins_residue_is_counted_exactly() {
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "ns", "c1").unwrap();
        let frames: Vec<Vec<u8>> = (0..10).map(frame).collect();
        let total: usize = frames.iter().map(Vec::len).sum();
        for read in [0, 1, frames[0].len(), frames[0].len() + 3, total - 1, total] {
            let fifo = dir.new_fifo().unwrap();
            let mut ledger = Ledger::default();
            let mut w = &fifo.file;
            for f in &frames {
                w.write_all(f).unwrap();
                ledger.wrote_frame(f.len(), f.len() - 20);
            }
            // The "plugin": a second reader taking `read` bytes, then gone.
            let mut plugin = std::fs::File::open(&fifo.path).unwrap();
            let mut took = vec![0u8; read];
            plugin.read_exact(&mut took).unwrap();
            drop(plugin);
            let left = read_residue(&fifo.file).unwrap();
            assert_eq!(left.len(), total - read);
            let r = ledger.residue(left.len());
            // Whole frames consumed: those ending at or before `read`; a cut one if `read`
            // falls inside a frame.
            let ends: Vec<usize> = frames
                .iter()
                .scan(0, |e, f| {
                    *e += f.len();
                    Some(*e)
                })
                .collect();
            let whole = ends.iter().filter(|&&e| e <= read).count() as u64;
            assert_eq!(r.consumed, whole, "read {read}");
            let cut = read > 0 && !ends.contains(&read);
            assert_eq!(r.partial.is_some(), cut, "read {read}");
            assert_eq!(
                r.consumed + u64::from(r.partial.is_some()) + r.unread,
                10,
                "read {read}"
            );
            // The bytes after `skip` are exactly the unread frames, whole.
            let mut rest = &left[r.skip..];
            let mut n = 0;
            while let Some((e, used)) = decode_frame(rest).unwrap() {
                assert_eq!(e.time_nano, (10 - r.unread + n) as i64);
                rest = &rest[used..];
                n += 1;
            }
            assert!(rest.is_empty());
            assert_eq!(n, r.unread, "read {read}");
            dir.remove_fifo(&fifo.name).unwrap();
        }
        let p = dir.path().to_path_buf();
        dir.remove().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn settle_forgets_consumed_frames() {
        let mut l = Ledger::default();
        for _ in 0..4 {
            l.wrote_frame(10, 5);
        }
        assert_eq!(l.settle(40), 0);
        assert_eq!(l.settle(25), 1);
        assert_eq!(l.settle(0), 3);
        assert_eq!(l.tracked(), 0);
        assert_eq!(l.residue(0), Residue::default());
    }

    #[test]
    fn the_fifo_dir_is_private_and_links_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "ns", "c").unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let f = dir.new_fifo().unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&f.path).unwrap().file_type().is_fifo());
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("ns/d")).unwrap();
        assert!(FifoDir::create(root.path(), "ns", "d").is_err());
    }
}
