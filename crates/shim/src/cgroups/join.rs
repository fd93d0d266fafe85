//! Moving a process into a cgroup by path: the runc option `ShimCgroup` puts the shim itself in
//! a cgroup chosen by the operator.

use std::io;
use std::path::Path;

use super::mode::{host_mode, Mode};

/// Writes `pid` into `cgroup.procs` of `path` in every hierarchy where that cgroup exists
/// (cgroup v1: each controller; v2: the one tree). It is an error if it exists nowhere.
pub fn join(pid: u32, path: &str) -> io::Result<()> {
    join_under(Path::new("/sys/fs/cgroup"), host_mode()?, pid, path)
}

fn join_under(root: &Path, mode: Mode, pid: u32, path: &str) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cgroup path {path:?} must not contain .."),
        ));
    }
    let hierarchies: Vec<std::path::PathBuf> = if mode == Mode::Unified {
        vec![root.to_path_buf()]
    } else {
        std::fs::read_dir(root)
            .map_err(|e| io::Error::new(e.kind(), format!("listing {}: {e}", root.display())))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir() && !p.is_symlink())
            .collect()
    };
    let mut joined = 0;
    for h in hierarchies {
        let procs = h.join(rel).join("cgroup.procs");
        if !procs.exists() {
            continue;
        }
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", procs.display())))?;
        joined += 1;
    }
    if joined == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "shim cgroup {path:?} does not exist under {}",
                root.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_hierarchy_that_has_the_cgroup() {
        let root = std::env::temp_dir().join(format!("scribe-join-{}", std::process::id()));
        for h in ["memory", "cpu"] {
            std::fs::create_dir_all(root.join(h).join("shims")).unwrap();
            std::fs::write(root.join(h).join("shims/cgroup.procs"), "").unwrap();
        }
        std::fs::create_dir_all(root.join("pids")).unwrap();
        join_under(&root, Mode::Hybrid, 42, "/shims").unwrap();
        for h in ["memory", "cpu"] {
            assert_eq!(
                std::fs::read_to_string(root.join(h).join("shims/cgroup.procs")).unwrap(),
                "42"
            );
        }
        let e = join_under(&root, Mode::Hybrid, 42, "/missing").unwrap_err();
        assert!(e.to_string().contains("/missing"), "{e}");
        assert!(join_under(&root, Mode::Hybrid, 42, "/../etc").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
