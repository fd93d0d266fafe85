//! The shim's listening socket: where it lives, binding it, and finding a live one to share.
//!
//! The address is a plain `unix://` path under `/run/containerd/s/`, named by the sha256 of
//! `<containerd address>/<namespace>/<group id>`: containerd 1.6 only understands a plain address,
//! and the hash keeps it short (sun_path holds 108 bytes) and the same for every container of a
//! group, which is how a second container of a pod finds the shim already serving it.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Directory holding every shim socket, as containerd's own shims use.
pub const SOCKET_DIR: &str = "/run/containerd/s";
/// Longest usable unix socket path (sun_path minus the terminating NUL, with a margin).
const MAX_SOCKET_PATH: usize = 106;

/// Computes the socket path for a group of containers.
pub fn socket_path(dir: &Path, containerd_address: &str, namespace: &str, group: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{containerd_address}/{namespace}/{group}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(hex)
}

/// Formats a socket path as the address printed to containerd.
pub fn address_of(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// The result of trying to own a group's socket.
pub enum Bound {
    /// We own a fresh listener: start a daemon on it.
    New(UnixListener),
    /// A shim already serves this group at that socket.
    Existing,
}

/// Binds the socket, or reports that a live shim already serves it.
///
/// A socket file nobody accepts on is left over from a dead shim and is replaced.
pub fn bind_or_reuse(path: &Path) -> io::Result<Bound> {
    let shown = path.display().to_string();
    if shown.len() > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {shown} is longer than {MAX_SOCKET_PATH} bytes"),
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io::Error::new(e.kind(), format!("chmod {shown}: {e}")))?;
            Ok(Bound::New(l))
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(Bound::Existing);
            }
            std::fs::remove_file(path)
                .map_err(|e| io::Error::new(e.kind(), format!("removing stale {shown}: {e}")))?;
            let l = UnixListener::bind(path)
                .map_err(|e| io::Error::new(e.kind(), format!("binding {shown}: {e}")))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io::Error::new(e.kind(), format!("chmod {shown}: {e}")))?;
            Ok(Bound::New(l))
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("binding {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_stable_and_short() {
        let a = socket_path(
            Path::new(SOCKET_DIR),
            "/run/containerd/containerd.sock",
            "ns",
            "g",
        );
        let b = socket_path(
            Path::new(SOCKET_DIR),
            "/run/containerd/containerd.sock",
            "ns",
            "g",
        );
        let c = socket_path(
            Path::new(SOCKET_DIR),
            "/run/containerd/containerd.sock",
            "ns",
            "h",
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.display().to_string().len() <= MAX_SOCKET_PATH);
        assert!(address_of(&a).starts_with("unix:///run/containerd/s/"));
    }

    #[test]
    fn second_bind_finds_the_live_listener_and_replaces_a_stale_one() {
        let dir = std::env::temp_dir().join(format!("scribe-sock-{}", std::process::id()));
        let path = socket_path(&dir, "addr", "ns", "g");
        let first = match bind_or_reuse(&path).unwrap() {
            Bound::New(l) => l,
            Bound::Existing => panic!("fresh path reported as existing"),
        };
        assert!(matches!(bind_or_reuse(&path).unwrap(), Bound::Existing));
        drop(first);
        // The file is still there, but nobody accepts: it is stale.
        assert!(matches!(bind_or_reuse(&path).unwrap(), Bound::New(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
