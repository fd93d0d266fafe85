//! Finding a process's cgroup directories: `/proc/<pid>/cgroup` says which cgroup it is in per
//! hierarchy, `/proc/self/mountinfo` says where (and from which root) each hierarchy is mounted.
//! The directories are resolved once, while the container's init is alive, so OOM watching and
//! Stats keep working after it has exited (the cgroup lives until the runtime deletes it).
//!
//! `/proc/<pid>/cgroup` is read by cgroups-rs. Its mountinfo reader is not used: it does not undo
//! mountinfo's octal escapes (a mount point with a space resolves to a path that does not
//! exist), it turns a read error into "no cgroup mounts", and it skips `cgroup2` mounts, so v2
//! hosts and mounts from a non-root cgroup (a cgroup namespace) need `parse_mountinfo` here.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::files;
use super::mode::{host_mode, Mode};

/// A process's cgroup per controller, as cgroups-rs reads `/proc/<pid>/cgroup`: controller name
/// (`memory`, `cpu`, `name=systemd`) to cgroup path; the v2 hierarchy's path is under `""`.
pub type Memberships = HashMap<String, String>;

/// Reads `/proc/<pid>/cgroup` through cgroups-rs.
fn memberships_of(pid: i32) -> io::Result<Memberships> {
    let pid = u32::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("pid {pid}")))?;
    cgroups_rs::fs::cgroup::get_cgroups_relative_paths_by_pid(pid).map_err(|e| {
        let kind = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .map_or(io::ErrorKind::Other, io::Error::kind);
        io::Error::new(kind, format!("reading /proc/{pid}/cgroup: {e}"))
    })
}

/// A cgroup filesystem mount, from one line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy appears at the mount point (`/` unless bind-mounted or
    /// mounted inside a cgroup namespace).
    pub root: String,
    /// True for `cgroup2`, false for a v1 `cgroup` hierarchy.
    pub v2: bool,
    /// The super options: for v1 they name the controllers (`rw,cpu,cpuacct`).
    pub options: Vec<String>,
}

/// Parses the cgroup mounts out of the text of `/proc/<pid>/mountinfo`; other mounts are skipped.
pub fn parse_mountinfo(text: &str, source: &Path) -> io::Result<Vec<CgroupMount>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // id parent maj:min root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            return Err(files::invalid(source, format!("no separator in {line:?}")));
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 3 {
            return Err(files::invalid(source, format!("short line {line:?}")));
        }
        let v2 = match right[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(CgroupMount {
            mount_point: PathBuf::from(unescape(left[4])),
            root: unescape(left[3]),
            v2,
            options: right[2].split(',').map(str::to_owned).collect(),
        });
    }
    Ok(out)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4);
        if let (b'\\', Some(&[a, b, c])) = (bytes[i], digits) {
            // Three octal digits of one byte value (the first is at most 3).
            if (b'0'..=b'3').contains(&a) && [b, c].iter().all(|d| (b'0'..=b'7').contains(d)) {
                out.push(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Joins a mount point and a cgroup path seen from the reader's namespace, taking the mount's
/// root into account: with root `/a` mounted at `/m`, cgroup `/a/b` is `/m/b`.
fn join(mount: &CgroupMount, path: &str) -> PathBuf {
    let rel = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str()).unwrap_or(path)
    };
    mount.mount_point.join(rel.trim_start_matches('/'))
}

/// The directory of `controller` (a v1 controller name such as `memory`) for a process, or None
/// when the host has no v1 hierarchy with that controller or the process is in none.
pub fn v1_dir(procs: &Memberships, mounts: &[CgroupMount], controller: &str) -> Option<PathBuf> {
    let path = procs.get(controller)?;
    let mount = mounts
        .iter()
        .find(|m| !m.v2 && m.options.iter().any(|o| o == controller))?;
    Some(join(mount, path))
}

/// The v2 directory of a process, or None when it has no v2 membership or no cgroup2 is mounted.
pub fn v2_dir(procs: &Memberships, mounts: &[CgroupMount]) -> Option<PathBuf> {
    let path = procs.get("")?;
    let mount = mounts.iter().find(|m| m.v2)?;
    Some(join(mount, path))
}

/// The v1 controller directories of a container (None: the host lacks that controller).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct V1Dirs {
    /// The memory controller's directory (OOM source, memory figures).
    pub memory: Option<PathBuf>,
    /// The cpu controller's directory (throttling).
    pub cpu: Option<PathBuf>,
    /// The cpuacct controller's directory (usage).
    pub cpuacct: Option<PathBuf>,
    /// The pids controller's directory.
    pub pids: Option<PathBuf>,
}

/// A container's cgroup, resolved from its init pid at Create and kept for its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerCgroup {
    /// A v1 (legacy or hybrid) host: one directory per controller.
    V1(V1Dirs),
    /// A unified host: one directory holds every controller.
    V2(PathBuf),
}

impl ContainerCgroup {
    /// Resolves the cgroup of `pid` on this host.
    pub fn of_pid(pid: i32) -> io::Result<ContainerCgroup> {
        let mode = host_mode()?;
        let procs = memberships_of(pid)?;
        let mi_path = Path::new("/proc/self/mountinfo");
        let mounts = parse_mountinfo(&files::read(mi_path)?, mi_path)?;
        Self::resolve(mode, &procs, &mounts).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("pid {pid}: no cgroup directory found for a {mode:?} host"),
            )
        })
    }

    /// Resolves from already parsed tables (split out for tests).
    pub fn resolve(
        mode: Mode,
        procs: &Memberships,
        mounts: &[CgroupMount],
    ) -> Option<ContainerCgroup> {
        if mode.is_unified() {
            return v2_dir(procs, mounts).map(ContainerCgroup::V2);
        }
        let dirs = V1Dirs {
            memory: v1_dir(procs, mounts, "memory"),
            cpu: v1_dir(procs, mounts, "cpu"),
            cpuacct: v1_dir(procs, mounts, "cpuacct"),
            pids: v1_dir(procs, mounts, "pids"),
        };
        (dirs != V1Dirs::default()).then_some(ContainerCgroup::V1(dirs))
    }

    /// The directory whose files carry the memory controller (what the OOM watcher arms on).
    pub fn memory_dir(&self) -> Option<&Path> {
        match self {
            ContainerCgroup::V1(d) => d.memory.as_deref(),
            ContainerCgroup::V2(d) => Some(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/<pid>/cgroup` of a ctr container on a hybrid host (cpu and cpuacct co-mounted), as
    /// cgroups-rs returns it.
    fn hybrid_procs() -> Memberships {
        ["pids", "memory", "cpu", "cpuacct", "name=systemd", ""]
            .iter()
            .map(|c| (c.to_string(), "/default/web".to_string()))
            .collect()
    }

    /// The matching cgroup lines of `/proc/self/mountinfo` (plus one unrelated mount).
    const HYBRID_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
33 25 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:17 - cgroup cgroup rw,memory
38 25 0:36 / /sys/fs/cgroup/pids rw,nosuid shared:22 - cgroup cgroup rw,pids
";

    #[test]
    fn own_memberships_through_cgroups_rs() {
        // Every Linux process is in some cgroup; a path with ':' (systemd scopes) stays whole.
        let m = memberships_of(std::process::id() as i32).expect("own /proc/self/cgroup");
        assert!(!m.is_empty());
        assert!(m.values().all(|p| p.starts_with('/')), "{m:?}");
        let err = memberships_of(i32::MAX).expect_err("no such pid");
        assert!(err.to_string().contains("/proc/"), "{err}");
    }

    #[test]
    fn resolves_a_hybrid_host() {
        let procs = hybrid_procs();
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO, Path::new("mi")).expect("valid");
        assert_eq!(mounts.len(), 5, "ext4 and tmpfs are skipped");
        let cg = ContainerCgroup::resolve(Mode::Hybrid, &procs, &mounts).expect("resolves");
        let ContainerCgroup::V1(d) = &cg else {
            panic!("hybrid hosts use v1 controllers: {cg:?}")
        };
        assert_eq!(
            d.memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/default/web"))
        );
        assert_eq!(
            d.cpu.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/default/web"))
        );
        assert_eq!(d.cpuacct, d.cpu);
        assert_eq!(
            d.pids.as_deref(),
            Some(Path::new("/sys/fs/cgroup/pids/default/web"))
        );
        assert_eq!(
            cg.memory_dir(),
            Some(Path::new("/sys/fs/cgroup/memory/default/web"))
        );
    }

    #[test]
    fn resolves_a_unified_host() {
        let procs: Memberships = [(
            String::new(),
            "/system.slice/containerd.service/k8s.io/abc".to_string(),
        )]
        .into();
        let mounts = parse_mountinfo(
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
            Path::new("mi"),
        )
        .expect("valid");
        let cg = ContainerCgroup::resolve(Mode::Unified, &procs, &mounts).expect("resolves");
        assert_eq!(
            cg,
            ContainerCgroup::V2(PathBuf::from(
                "/sys/fs/cgroup/system.slice/containerd.service/k8s.io/abc"
            ))
        );
    }

    #[test]
    fn mount_root_and_escapes_are_honoured() {
        // A hierarchy mounted from a non-root cgroup, at a path with a space.
        let mounts = parse_mountinfo(
            "40 25 0:31 /outer /mnt/my\\040cg rw - cgroup cgroup rw,memory\n",
            Path::new("mi"),
        )
        .expect("valid");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/my cg"));
        let procs: Memberships = [("memory".to_string(), "/outer/ns/id".to_string())].into();
        assert_eq!(
            v1_dir(&procs, &mounts, "memory"),
            Some(PathBuf::from("/mnt/my cg/ns/id"))
        );
        assert_eq!(v1_dir(&procs, &mounts, "pids"), None);
    }

    #[test]
    fn this_process_resolves() {
        // Works on any Linux host: the test process has a cgroup in every mounted hierarchy.
        let cg = ContainerCgroup::of_pid(std::process::id() as i32).expect("own cgroup");
        if let Some(dir) = cg.memory_dir() {
            assert!(dir.is_dir(), "{}", dir.display());
        }
    }
}
