//! cgroup v2 figures: memory, cpu and pids from the container's single directory.

use std::io;
use std::path::Path;

use containerd_shim_protos::cgroups_v2::metrics::{
    CPUStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};
use containerd_shim_protos::protobuf::MessageField;

use crate::cgroups::files::{self, Limit};

/// Fills `io.containerd.cgroups.v2.Metrics`; controllers not enabled for the cgroup are left out.
pub fn v2_metrics(dir: &Path) -> io::Result<Metrics> {
    let mut m = Metrics::new();
    m.pids = pids(dir)?.into();
    m.cpu = MessageField::some(cpu(dir)?);
    m.memory = memory(dir)?.into();
    m.memory_events = memory_events(dir)?.into();
    Ok(m)
}

/// A limit file as containerd's v2 code reports it: `max` is u64::MAX, absent is 0.
fn limit(path: &Path) -> io::Result<u64> {
    Ok(match files::read_limit_optional(path)? {
        Some(Limit::Value(v)) => v,
        Some(Limit::Max) => u64::MAX,
        None => 0,
    })
}

fn pids(dir: &Path) -> io::Result<Option<PidsStat>> {
    let Some(current) = files::read_u64_optional(&dir.join("pids.current"))? else {
        return Ok(None);
    };
    Ok(Some(PidsStat {
        current,
        limit: limit(&dir.join("pids.max"))?,
        ..Default::default()
    }))
}

/// `cpu.stat` exists in every v2 cgroup (usage even without the cpu controller).
fn cpu(dir: &Path) -> io::Result<CPUStat> {
    let path = dir.join("cpu.stat");
    let text = files::read(&path)?;
    let pairs = files::parse_keyed(&text, &path)?;
    let get = |k| files::keyed_value(&pairs, k).unwrap_or(0);
    Ok(CPUStat {
        usage_usec: get("usage_usec"),
        user_usec: get("user_usec"),
        system_usec: get("system_usec"),
        nr_periods: get("nr_periods"),
        nr_throttled: get("nr_throttled"),
        throttled_usec: get("throttled_usec"),
        nr_bursts: get("nr_bursts"),
        burst_usec: get("burst_usec"),
        ..Default::default()
    })
}

fn memory(dir: &Path) -> io::Result<Option<MemoryStat>> {
    let Some(usage) = files::read_u64_optional(&dir.join("memory.current"))? else {
        return Ok(None);
    };
    let stat_path = dir.join("memory.stat");
    let text = files::read(&stat_path)?;
    let pairs = files::parse_keyed(&text, &stat_path)?;
    let get = |k| files::keyed_value(&pairs, k);
    let mut s = MemoryStat::new();
    for (key, v) in &pairs {
        set_stat(&mut s, key, *v);
    }
    // Kernels 5.9+ split these into _anon and _file; report their sum under the old name.
    for (name, field) in [
        ("workingset_refault", &mut s.workingset_refault),
        ("workingset_activate", &mut s.workingset_activate),
    ] {
        if get(name).is_none() {
            let split =
                |part: &str| files::keyed_value(&pairs, &format!("{name}_{part}")).unwrap_or(0);
            *field = split("anon") + split("file");
        }
    }
    let number =
        |name: &str| files::read_u64_optional(&dir.join(name)).map(Option::unwrap_or_default);
    s.usage = usage;
    s.usage_limit = limit(&dir.join("memory.max"))?;
    s.swap_usage = number("memory.swap.current")?;
    s.swap_limit = limit(&dir.join("memory.swap.max"))?;
    s.max_usage = number("memory.peak")?;
    s.swap_max_usage = number("memory.swap.peak")?;
    Ok(Some(s))
}

fn set_stat(s: &mut MemoryStat, key: &str, v: u64) {
    let field = match key {
        "anon" => &mut s.anon,
        "file" => &mut s.file,
        "kernel_stack" => &mut s.kernel_stack,
        "slab" => &mut s.slab,
        "sock" => &mut s.sock,
        "shmem" => &mut s.shmem,
        "file_mapped" => &mut s.file_mapped,
        "file_dirty" => &mut s.file_dirty,
        "file_writeback" => &mut s.file_writeback,
        "anon_thp" => &mut s.anon_thp,
        "inactive_anon" => &mut s.inactive_anon,
        "active_anon" => &mut s.active_anon,
        "inactive_file" => &mut s.inactive_file,
        "active_file" => &mut s.active_file,
        "unevictable" => &mut s.unevictable,
        "slab_reclaimable" => &mut s.slab_reclaimable,
        "slab_unreclaimable" => &mut s.slab_unreclaimable,
        "pgfault" => &mut s.pgfault,
        "pgmajfault" => &mut s.pgmajfault,
        "workingset_refault" => &mut s.workingset_refault,
        "workingset_activate" => &mut s.workingset_activate,
        "workingset_nodereclaim" => &mut s.workingset_nodereclaim,
        "pgrefill" => &mut s.pgrefill,
        "pgscan" => &mut s.pgscan,
        "pgsteal" => &mut s.pgsteal,
        "pgactivate" => &mut s.pgactivate,
        "pgdeactivate" => &mut s.pgdeactivate,
        "pglazyfree" => &mut s.pglazyfree,
        "pglazyfreed" => &mut s.pglazyfreed,
        "thp_fault_alloc" => &mut s.thp_fault_alloc,
        "thp_collapse_alloc" => &mut s.thp_collapse_alloc,
        _ => return,
    };
    *field = v;
}

fn memory_events(dir: &Path) -> io::Result<Option<MemoryEvents>> {
    let path = dir.join("memory.events");
    let Some(text) = files::read_optional(&path)? else {
        return Ok(None);
    };
    let pairs = files::parse_keyed(&text, &path)?;
    let get = |k| files::keyed_value(&pairs, k).unwrap_or(0);
    Ok(Some(MemoryEvents {
        low: get("low"),
        high: get("high"),
        max: get("max"),
        oom: get("oom"),
        oom_kill: get("oom_kill"),
        oom_group_kill: get("oom_group_kill"),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::locate::ContainerCgroup;
    use crate::cgroups::stats::V2_METRICS_TYPE;
    use crate::cgroups::testutil::TempDir;
    use containerd_shim_protos::protobuf::Message;

    /// This host has no v2 controllers, so a directory of files copied from a unified host
    /// (kernel 6.x) stands in for the container's cgroup.
    fn fake_v2() -> TempDir {
        let d = TempDir::new("stats-v2");
        d.write("memory.current", "10485760\n");
        d.write("memory.max", "max\n");
        d.write("memory.peak", "20971520\n");
        d.write("memory.swap.current", "0\n");
        d.write("memory.swap.max", "0\n");
        d.write(
            "memory.stat",
            "anon 4096000\nfile 6000000\nkernel_stack 16384\nslab 200000\nsock 0\nshmem 0\n\
             file_mapped 100\nfile_dirty 0\nfile_writeback 0\nanon_thp 0\ninactive_anon 4000000\n\
             active_anon 96000\ninactive_file 5000000\nactive_file 1000000\nunevictable 0\n\
             slab_reclaimable 150000\nslab_unreclaimable 50000\nworkingset_refault_anon 2\n\
             workingset_refault_file 5\nworkingset_activate_anon 0\nworkingset_activate_file 1\n\
             workingset_nodereclaim 0\npgfault 1234\npgmajfault 3\npgscan 0\npgsteal 0\n\
             thp_fault_alloc 0\n",
        );
        d.write(
            "memory.events",
            "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n",
        );
        d.write(
            "cpu.stat",
            "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 10\nnr_throttled 1\n\
             throttled_usec 400\nnr_bursts 0\nburst_usec 0\n",
        );
        d.write("pids.current", "4\n");
        d.write("pids.max", "max\n");
        d
    }

    #[test]
    fn metrics_from_v2_files() {
        let d = fake_v2();
        let m = v2_metrics(d.path()).expect("metrics");
        assert_eq!((m.pids.current, m.pids.limit), (4, u64::MAX));
        assert_eq!(
            (m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec),
            (5000, 3000, 2000)
        );
        assert_eq!((m.cpu.nr_throttled, m.cpu.throttled_usec), (1, 400));
        assert_eq!(m.memory.usage, 10 << 20);
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!(m.memory.max_usage, 20 << 20);
        assert_eq!((m.memory.anon, m.memory.inactive_file), (4096000, 5000000));
        assert_eq!(m.memory.pgfault, 1234);
        assert_eq!(m.memory.workingset_refault, 7);
        assert_eq!(m.memory.workingset_activate, 1);
        assert_eq!(
            (
                m.memory_events.oom,
                m.memory_events.oom_kill,
                m.memory_events.max
            ),
            (3, 2, 12)
        );

        let any = ContainerCgroup::V2(d.path().to_path_buf())
            .metrics_any()
            .expect("packs");
        assert_eq!(any.type_url, V2_METRICS_TYPE);
        let back = Metrics::parse_from_bytes(&any.value).expect("decodes");
        assert_eq!(back.memory.usage, 10 << 20);
    }

    #[test]
    fn controllers_not_enabled_are_left_out() {
        let d = TempDir::new("stats-v2-bare");
        d.write("cpu.stat", "usage_usec 1\nuser_usec 1\nsystem_usec 0\n");
        let m = v2_metrics(d.path()).expect("metrics");
        assert!(m.memory.is_none() && m.pids.is_none() && m.memory_events.is_none());
        assert_eq!(m.cpu.usage_usec, 1);
        std::fs::remove_file(d.path().join("cpu.stat")).expect("rm");
        let err = v2_metrics(d.path()).expect_err("cpu.stat is required");
        assert!(err.to_string().contains("cpu.stat"), "{err}");
    }
}
