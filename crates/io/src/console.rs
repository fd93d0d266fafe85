//! Terminals: the runtime's `--console-socket`, the pty master it sends back, and window size.
//!
//! For a process with a terminal, the OCI runtime creates the pty inside the container and sends
//! its master end over a unix socket (SCM_RIGHTS) named by `--console-socket`. The shim then
//! copies between that master and containerd's FIFOs.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening socket the runtime connects to with the pty master; removed on drop.
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Creates the socket in a fresh private directory under the system temp dir (bundle paths
    /// can be too long for a unix socket path).
    pub fn new() -> io::Result<ConsoleSocket> {
        let template = std::env::temp_dir().join("scribe-pty-XXXXXX");
        let dir = nix::unistd::mkdtemp(&template).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("mkdtemp {}: {e}", template.display()),
            )
        })?;
        let path = dir.join("pty.sock");
        let listener = UnixListener::bind(&path).map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            io::Error::new(e.kind(), format!("binding {}: {e}", path.display()))
        })?;
        Ok(ConsoleSocket {
            dir,
            path,
            listener,
        })
    }

    /// The path to give the runtime as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the runtime sent. Call after the runtime command returned: the
    /// connection is then already queued, so this never blocks; if the runtime sent nothing, it
    /// is an error.
    pub fn receive_master(&self) -> io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let (stream, _) = self.listener.accept().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "the runtime sent no console on {}: {e}",
                    self.path.display()
                ),
            )
        })?;
        stream.set_nonblocking(false)?;
        receive_fd(stream.as_raw_fd())
            .map_err(|e| io::Error::new(e.kind(), format!("receiving the pty master: {e}")))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn receive_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut name = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut fds = fds.into_iter();
            if let Some(fd) = fds.next() {
                // SAFETY: the kernel just installed this descriptor for us; nobody else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                for extra in fds {
                    // SAFETY: as above; extra descriptors are closed, not leaked.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                return Ok(owned);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "console message carried no file descriptor",
    ))
}

/// Sets a terminal's window size (containerd's ResizePty).
pub fn resize(master: &impl AsRawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own for the duration of the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::os::unix::net::UnixStream;

    #[test]
    fn receives_a_descriptor_and_cleans_up() {
        let sock = ConsoleSocket::new().unwrap();
        let dir = sock.path().parent().unwrap().to_path_buf();
        assert!(sock.path().to_str().unwrap().len() < 100);
        // What runc does: connect, send the master with a name.
        let pty = nix::pty::openpty(None, None).unwrap();
        let client = UnixStream::connect(sock.path()).unwrap();
        let fds = [pty.master.as_raw_fd()];
        let iov = [io::IoSlice::new(b"/dev/ptmx")];
        sendmsg::<()>(
            client.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let master = sock.receive_master().unwrap();
        resize(&master, 120, 40).unwrap();
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!((ws.ws_col, ws.ws_row), (120, 40));
        drop(sock);
        assert!(!dir.exists());
    }

    #[test]
    fn nothing_sent_is_an_error() {
        let sock = ConsoleSocket::new().unwrap();
        let e = sock.receive_master().unwrap_err();
        assert!(e.to_string().contains("sent no console"), "{e}");
    }
}
