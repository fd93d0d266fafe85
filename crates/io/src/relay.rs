//! Zero-copy building blocks for stdio relays: `splice(2)` and `tee(2)`.
//!
//! Copying a container's pipe to a FIFO or file through a userspace buffer
//! costs a buffer per stream and two copies per byte. With `splice` the kernel
//! moves pages from the pipe straight to the destination, and `tee` duplicates
//! pipe contents into a second pipe without consuming them — so one stream can
//! feed containerd's FIFO and a log sink with no userspace buffer at all
//! (tee into a side pipe, then splice both). At least one side of `splice`, and
//! both sides of `tee`, must be pipes.
//!
//! These are blocks, not a relay: the shim composes them with its event loop.
//! [`splice_some`] / [`tee_some`] do one non-blocking step (returning
//! `WouldBlock` for the event loop to wait on); [`splice_all`] loops on
//! blocking descriptors until EOF.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::fcntl::{splice, tee, SpliceFFlags};

/// Bytes asked for per call: the default pipe capacity on Linux.
pub const CHUNK: usize = 64 * 1024;

fn context(call: &str, from: &impl AsFd, to: &impl AsFd, e: Errno) -> io::Error {
    let err = io::Error::from(e);
    io::Error::new(
        err.kind(),
        format!(
            "{call}(fd {} -> fd {}): {err}",
            from.as_fd().as_raw_fd(),
            to.as_fd().as_raw_fd()
        ),
    )
}

/// Moves up to `len` bytes from `from` to `to` with one `splice(2)` (retrying
/// `EINTR`). `Ok(0)` means EOF on `from`. With `nonblock`, pipe operations that
/// would block fail with `ErrorKind::WouldBlock` instead of waiting.
pub fn splice_some(
    from: &impl AsFd,
    to: &impl AsFd,
    len: usize,
    nonblock: bool,
) -> io::Result<usize> {
    let mut flags = SpliceFFlags::SPLICE_F_MOVE;
    if nonblock {
        flags |= SpliceFFlags::SPLICE_F_NONBLOCK;
    }
    loop {
        match splice(from.as_fd(), None, to.as_fd(), None, len, flags) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(context("splice", from, to, e)),
            Ok(n) => return Ok(n),
        }
    }
}

/// Copies everything from `from` to `to` until EOF on `from`, in [`CHUNK`]
/// steps, and returns the byte count. For blocking descriptors (a dedicated
/// thread, or a test); on non-blocking ones it returns the `WouldBlock` error.
pub fn splice_all(from: &impl AsFd, to: &impl AsFd) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = splice_some(from, to, CHUNK, false)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Duplicates up to `len` bytes queued in pipe `from` into pipe `to` without
/// consuming them (one `tee(2)`, `EINTR` retried). `Ok(0)` means `from` has no
/// data and its write end is closed.
pub fn tee_some(from: &impl AsFd, to: &impl AsFd, len: usize, nonblock: bool) -> io::Result<usize> {
    let flags = if nonblock {
        SpliceFFlags::SPLICE_F_NONBLOCK
    } else {
        SpliceFFlags::empty()
    };
    loop {
        match tee(from.as_fd(), to.as_fd(), len, flags) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(context("tee", from, to, e)),
            Ok(n) => return Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;

    fn pipe() -> (File, File) {
        let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
        (File::from(r), File::from(w))
    }

    #[test]
    fn splice_all_moves_a_pipe_into_a_file() {
        let (r, mut w) = pipe();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                w.write_all(&data).unwrap();
            })
        };
        let mut out = tempfile::tempfile().unwrap();
        let n = splice_all(&r, &out).unwrap();
        writer.join().unwrap();
        assert_eq!(n, data.len() as u64);
        let mut back = Vec::new();
        use std::io::Seek;
        out.rewind().unwrap();
        out.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn tee_then_splice_feeds_two_destinations() {
        let (src_r, mut src_w) = pipe();
        let (side_r, side_w) = pipe();
        let (main_r, main_w) = pipe();
        src_w.write_all(b"hello relay\n").unwrap();
        drop(src_w);
        let teed = tee_some(&src_r, &side_w, CHUNK, true).unwrap();
        assert_eq!(teed, 12);
        // tee did not consume: the same bytes can still be spliced onward.
        let moved = splice_some(&src_r, &main_w, teed, true).unwrap();
        assert_eq!(moved, 12);
        drop((side_w, main_w));
        let mut a = String::new();
        let mut b = String::new();
        (&side_r).read_to_string(&mut a).unwrap();
        (&main_r).read_to_string(&mut b).unwrap();
        assert_eq!(a, "hello relay\n");
        assert_eq!(b, "hello relay\n");
        // Source drained and closed: EOF.
        assert_eq!(
            splice_some(&src_r, &tempfile::tempfile().unwrap(), CHUNK, true).unwrap(),
            0
        );
    }

    #[test]
    fn nonblocking_empty_pipe_would_block_with_context() {
        let (r, _w) = pipe();
        let out = tempfile::tempfile().unwrap();
        let e = splice_some(&r, &out, CHUNK, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.to_string().starts_with("splice(fd "), "{e}");
        let (_r2, w2) = pipe();
        let e = tee_some(&r, &w2, CHUNK, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn splice_between_non_pipes_is_an_error() {
        let a = tempfile::tempfile().unwrap();
        let b = tempfile::tempfile().unwrap();
        let e = splice_some(&a, &b, CHUNK, false).unwrap_err();
        assert!(e.to_string().contains("splice"), "{e}");
    }
}
