//! Mounting the container's rootfs from the mounts containerd passes in Create.
//!
//! containerd hands the shim its snapshot as mount descriptions (usually one overlay mount) and
//! expects it at `<bundle>/rootfs`; the shim unmounts it when the task is deleted, and the
//! `delete` command does so when the shim died.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A mount as containerd describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mount flags and the filesystem data string parsed from containerd's option list.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedOptions {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: String,
}

/// Splits containerd's mount options into mount(2) flags, propagation flags and fs data.
pub fn parse_options(options: &[String]) -> ParsedOptions {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear, prop) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (
                MsFlags::MS_BIND | MsFlags::MS_REC,
                MsFlags::empty(),
                MsFlags::empty(),
            ),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
            ),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ),
            _ => {
                data.push(opt.as_str());
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
        propagation.insert(prop);
    }
    ParsedOptions {
        flags,
        propagation,
        data: data.join(","),
    }
}

/// Mounts every mount onto `target`, in order. On failure, what was mounted is undone.
pub fn mount_all(mounts: &[MountSpec], target: &Path) -> Result<(), String> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &MountSpec, target: &Path) -> Result<(), String> {
    let p = parse_options(&m.options);
    let data = (!p.data.is_empty()).then_some(p.data.as_str());
    let fstype = (!m.kind.is_empty() && p.flags.intersection(MsFlags::MS_BIND).is_empty())
        .then_some(m.kind.as_str());
    let fail = |what: &str, e: nix::Error| {
        format!(
            "{what} {} ({}) on {}: {e}",
            m.source,
            m.kind,
            target.display()
        )
    };
    mount(Some(m.source.as_str()), target, fstype, p.flags, data).map_err(|e| fail("mount", e))?;
    // A bind mount ignores MS_RDONLY on the first call; read-only needs a remount.
    if p.flags.contains(MsFlags::MS_BIND) && p.flags.contains(MsFlags::MS_RDONLY) {
        let flags = p.flags | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(|e| fail("remounting read-only", e))?;
    }
    if !p.propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            p.propagation,
            None::<&str>,
        )
        .map_err(|e| fail("setting propagation of", e))?;
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (lazily, so a busy mount does not fail delete).
pub fn unmount_all(target: &Path) -> Result<(), String> {
    for _ in 0..32 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(format!("unmounting {}: {e}", target.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_become_data() {
        let p = parse_options(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(p.data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
    }

    #[test]
    fn flags_and_propagation() {
        let p = parse_options(&opts(&["rbind", "ro", "nosuid", "rprivate"]));
        assert!(p
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert!(p.flags.contains(MsFlags::MS_NOSUID));
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(p.data.is_empty());
        let p = parse_options(&opts(&["ro", "rw"]));
        assert!(!p.flags.contains(MsFlags::MS_RDONLY));
    }
}
