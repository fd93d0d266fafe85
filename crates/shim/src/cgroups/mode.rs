//! Which cgroup layout the host runs: it decides between the v1 and v2 OOM sources and metrics.

use std::io;
use std::path::Path;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 hierarchies plus a (controller-less) cgroup2 mount at `/sys/fs/cgroup/unified`:
    /// controllers such as memory are still v1.
    Hybrid,
    /// `/sys/fs/cgroup` itself is cgroup2: every controller is v2.
    Unified,
}

impl Mode {
    /// True when controllers (memory, cpu, pids) live in the v2 hierarchy.
    pub fn is_unified(self) -> bool {
        self == Mode::Unified
    }
}

/// Detects the host layout from the filesystem types of `/sys/fs/cgroup` and its `unified` child.
pub fn host_mode() -> io::Result<Mode> {
    detect(Path::new("/sys/fs/cgroup"))
}

fn detect(root: &Path) -> io::Result<Mode> {
    let fs = statfs(root).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("statfs {}: {e}", root.display()),
        )
    })?;
    if fs.filesystem_type() == CGROUP2_SUPER_MAGIC {
        return Ok(Mode::Unified);
    }
    // A missing `unified` directory simply means a pure v1 host.
    match statfs(&root.join("unified")) {
        Ok(u) if u.filesystem_type() == CGROUP2_SUPER_MAGIC => Ok(Mode::Hybrid),
        _ => Ok(Mode::Legacy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_is_detected() {
        // Any host answers one of the three; on the development host (v1 + unified) it is Hybrid.
        let mode = host_mode().expect("statfs /sys/fs/cgroup");
        let has_controllers = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        assert_eq!(mode.is_unified(), has_controllers, "{mode:?}");
    }

    #[test]
    fn a_plain_directory_is_legacy() {
        assert_eq!(
            detect(Path::new("/tmp")).expect("statfs /tmp"),
            Mode::Legacy
        );
    }
}
