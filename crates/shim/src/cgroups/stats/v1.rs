//! cgroup v1 figures: memory, cpu/cpuacct and pids controllers, each from its own directory.

use std::io;
use std::path::Path;

use containerd_shim_protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryOomControl, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim_protos::protobuf::MessageField;

use crate::cgroups::files::{self, Limit};
use crate::cgroups::locate::V1Dirs;

/// Fills `io.containerd.cgroups.v1.Metrics` from the controllers the container has.
pub fn v1_metrics(dirs: &V1Dirs) -> io::Result<Metrics> {
    let mut m = Metrics::new();
    if let Some(dir) = &dirs.memory {
        m.memory = MessageField::some(memory(dir)?);
        m.memory_oom_control = oom_control(dir)?.into();
    }
    if let Some(dir) = &dirs.cpuacct {
        let mut cpu = CPUStat::new();
        cpu.usage = MessageField::some(cpu_usage(dir)?);
        if let Some(cpu_dir) = &dirs.cpu {
            cpu.throttling = throttling(cpu_dir)?.into();
        }
        m.cpu = MessageField::some(cpu);
    }
    if let Some(dir) = &dirs.pids {
        m.pids = pids(dir)?.into();
    }
    Ok(m)
}

fn memory(dir: &Path) -> io::Result<MemoryStat> {
    let mut s = MemoryStat::new();
    let stat_path = dir.join("memory.stat");
    let text = files::read(&stat_path)?;
    for (key, v) in files::parse_keyed(&text, &stat_path)? {
        set_stat(&mut s, key, v);
    }
    // The main counters must be there; the others depend on kernel config and swap accounting.
    let usage_path = dir.join("memory.usage_in_bytes");
    let usage = entry(dir, "memory")?
        .ok_or_else(|| files::context(io::ErrorKind::NotFound.into(), "reading", &usage_path))?;
    s.usage = MessageField::some(usage);
    s.swap = entry(dir, "memory.memsw")?.into();
    s.kernel = entry(dir, "memory.kmem")?.into();
    s.kernel_tcp = entry(dir, "memory.kmem.tcp")?.into();
    Ok(s)
}

/// `<prefix>.usage_in_bytes`, `.max_usage_in_bytes`, `.failcnt`, `.limit_in_bytes`; None when
/// the usage file is absent.
fn entry(dir: &Path, prefix: &str) -> io::Result<Option<MemoryEntry>> {
    let read = |name: &str| files::read_u64_optional(&dir.join(format!("{prefix}.{name}")));
    let Some(usage) = read("usage_in_bytes")? else {
        return Ok(None);
    };
    Ok(Some(MemoryEntry {
        usage,
        max: read("max_usage_in_bytes")?.unwrap_or(0),
        failcnt: read("failcnt")?.unwrap_or(0),
        limit: read("limit_in_bytes")?.unwrap_or(0),
        ..Default::default()
    }))
}

fn set_stat(s: &mut MemoryStat, key: &str, v: u64) {
    let field = match key {
        "cache" => &mut s.cache,
        "rss" => &mut s.rss,
        "rss_huge" => &mut s.rss_huge,
        "mapped_file" => &mut s.mapped_file,
        "dirty" => &mut s.dirty,
        "writeback" => &mut s.writeback,
        "pgpgin" => &mut s.pg_pg_in,
        "pgpgout" => &mut s.pg_pg_out,
        "pgfault" => &mut s.pg_fault,
        "pgmajfault" => &mut s.pg_maj_fault,
        "inactive_anon" => &mut s.inactive_anon,
        "active_anon" => &mut s.active_anon,
        "inactive_file" => &mut s.inactive_file,
        "active_file" => &mut s.active_file,
        "unevictable" => &mut s.unevictable,
        "hierarchical_memory_limit" => &mut s.hierarchical_memory_limit,
        "hierarchical_memsw_limit" => &mut s.hierarchical_swap_limit,
        "total_cache" => &mut s.total_cache,
        "total_rss" => &mut s.total_rss,
        "total_rss_huge" => &mut s.total_rss_huge,
        "total_mapped_file" => &mut s.total_mapped_file,
        "total_dirty" => &mut s.total_dirty,
        "total_writeback" => &mut s.total_writeback,
        "total_pgpgin" => &mut s.total_pg_pg_in,
        "total_pgpgout" => &mut s.total_pg_pg_out,
        "total_pgfault" => &mut s.total_pg_fault,
        "total_pgmajfault" => &mut s.total_pg_maj_fault,
        "total_inactive_anon" => &mut s.total_inactive_anon,
        "total_active_anon" => &mut s.total_active_anon,
        "total_inactive_file" => &mut s.total_inactive_file,
        "total_active_file" => &mut s.total_active_file,
        "total_unevictable" => &mut s.total_unevictable,
        _ => return,
    };
    *field = v;
}

fn oom_control(dir: &Path) -> io::Result<Option<MemoryOomControl>> {
    let path = dir.join("memory.oom_control");
    let Some(text) = files::read_optional(&path)? else {
        return Ok(None);
    };
    let pairs = files::parse_keyed(&text, &path)?;
    let get = |k| files::keyed_value(&pairs, k).unwrap_or(0);
    Ok(Some(MemoryOomControl {
        oom_kill_disable: get("oom_kill_disable"),
        under_oom: get("under_oom"),
        oom_kill: get("oom_kill"),
        ..Default::default()
    }))
}

/// The kernel's USER_HZ, the unit of `cpuacct.stat`.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn cpu_usage(dir: &Path) -> io::Result<CPUUsage> {
    let total_path = dir.join("cpuacct.usage");
    let mut u = CPUUsage {
        total: files::parse_u64(&files::read(&total_path)?, &total_path)?,
        ..Default::default()
    };
    let percpu_path = dir.join("cpuacct.usage_percpu");
    if let Some(text) = files::read_optional(&percpu_path)? {
        u.per_cpu = text
            .split_whitespace()
            .map(|w| files::parse_u64(w, &percpu_path))
            .collect::<io::Result<_>>()?;
    }
    // Nanoseconds where the kernel has them (4.15+), else USER_HZ ticks from cpuacct.stat.
    let user = files::read_u64_optional(&dir.join("cpuacct.usage_user"))?;
    let sys = files::read_u64_optional(&dir.join("cpuacct.usage_sys"))?;
    if let (Some(user), Some(sys)) = (user, sys) {
        u.user = user;
        u.kernel = sys;
    } else {
        let stat_path = dir.join("cpuacct.stat");
        if let Some(text) = files::read_optional(&stat_path)? {
            let pairs = files::parse_keyed(&text, &stat_path)?;
            let ns = |k| files::keyed_value(&pairs, k).unwrap_or(0) * 1_000_000_000 / clock_ticks();
            u.user = ns("user");
            u.kernel = ns("system");
        }
    }
    Ok(u)
}

fn throttling(dir: &Path) -> io::Result<Option<Throttle>> {
    let path = dir.join("cpu.stat");
    let Some(text) = files::read_optional(&path)? else {
        return Ok(None);
    };
    let pairs = files::parse_keyed(&text, &path)?;
    let get = |k| files::keyed_value(&pairs, k).unwrap_or(0);
    Ok(Some(Throttle {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get("throttled_time"),
        ..Default::default()
    }))
}

/// `pids.max` of `max` is reported as limit 0, as containerd's v1 code does. None when there
/// is no `pids.current` (the root cgroup has none).
fn pids(dir: &Path) -> io::Result<Option<PidsStat>> {
    let Some(current) = files::read_u64_optional(&dir.join("pids.current"))? else {
        return Ok(None);
    };
    let limit = match files::read_limit_optional(&dir.join("pids.max"))? {
        Some(Limit::Value(v)) => v,
        Some(Limit::Max) | None => 0,
    };
    Ok(Some(PidsStat {
        current,
        limit,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::locate::ContainerCgroup;
    use crate::cgroups::stats::V1_METRICS_TYPE;
    use crate::cgroups::testutil::{Kid, TempDir, TestCgroup};
    use containerd_shim_protos::protobuf::Message;

    /// A real v1 cgroup in the memory, cpu, cpuacct and pids hierarchies, holding a process that
    /// did some work after moving in; resolved from its pid like the shim does.
    #[test]
    fn metrics_of_a_real_v1_cgroup() {
        let Some(cg) = TestCgroup::create("stats-test", &["memory", "cpu", "cpuacct", "pids"])
        else {
            return;
        };
        cg.set(
            "memory",
            "memory.limit_in_bytes",
            &(64u64 << 20).to_string(),
        );
        cg.set("pids", "pids.max", "10");
        // Spin a little once moved in, so cpu and memory are charged here; then idle.
        let mut kid =
            Kid::sh("read go; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 30");
        cg.add(kid.0.id());
        kid.go();
        std::thread::sleep(std::time::Duration::from_millis(300));

        let pid = kid.0.id() as i32;
        let resolved = ContainerCgroup::of_pid(pid).expect("resolve the child's cgroup");
        let ContainerCgroup::V1(dirs) = &resolved else {
            panic!("a v1 host: {resolved:?}")
        };
        assert_eq!(dirs.memory.as_deref(), Some(cg.dir("memory").as_path()));
        assert_eq!(dirs.cpuacct.as_deref(), Some(cg.dir("cpuacct").as_path()));
        assert_eq!(dirs.pids.as_deref(), Some(cg.dir("pids").as_path()));

        let m = v1_metrics(dirs).expect("metrics");
        assert_eq!(m.pids.current, 1);
        assert_eq!(m.pids.limit, 10);
        assert_eq!(m.memory.usage.limit, 64 << 20);
        assert!(m.memory.usage.usage > 0, "{:?}", m.memory.usage);
        assert!(m.memory.usage.max >= m.memory.usage.usage);
        assert!(m.memory_oom_control.is_some());
        assert_eq!(m.memory_oom_control.oom_kill, 0);
        assert!(m.cpu.usage.total > 0, "{:?}", m.cpu.usage);
        assert!(!m.cpu.usage.per_cpu.is_empty());
        assert!(m.cpu.usage.user + m.cpu.usage.kernel > 0);
        assert!(m.cpu.throttling.is_some());

        let any = crate::cgroups::ContainerCgroup::of_pid(pid)
            .and_then(|cg| cg.metrics_any())
            .expect("metrics_any");
        assert_eq!(any.type_url, V1_METRICS_TYPE);
        let back = Metrics::parse_from_bytes(&any.value).expect("decodes");
        assert_eq!(back.pids.limit, 10);
    }

    /// Fake files: ticks fallback, absent swap accounting and unlimited pids.
    #[test]
    fn older_kernel_files() {
        let d = TempDir::new("stats-v1");
        d.write("memory.stat", "cache 10\nrss 20\npgpgin 3\ntotal_rss 20\nhierarchical_memsw_limit 7\nworkingset_refault_file 1\n");
        d.write("memory.usage_in_bytes", "30\n");
        d.write("memory.max_usage_in_bytes", "40\n");
        d.write("memory.limit_in_bytes", "9223372036854771712\n");
        d.write("memory.failcnt", "0\n");
        d.write("cpuacct.usage", "5000000000\n");
        d.write("cpuacct.usage_percpu", "3000000000 2000000000 \n");
        d.write("cpuacct.stat", "user 300\nsystem 100\n");
        d.write("pids.current", "3\n");
        d.write("pids.max", "max\n");
        let dirs = V1Dirs {
            memory: Some(d.path().to_path_buf()),
            cpu: Some(d.path().to_path_buf()),
            cpuacct: Some(d.path().to_path_buf()),
            pids: Some(d.path().to_path_buf()),
        };
        let m = v1_metrics(&dirs).expect("metrics");
        assert_eq!(
            (m.memory.cache, m.memory.rss, m.memory.pg_pg_in),
            (10, 20, 3)
        );
        assert_eq!(m.memory.hierarchical_swap_limit, 7);
        assert_eq!((m.memory.usage.usage, m.memory.usage.max), (30, 40));
        assert!(m.memory.swap.is_none() && m.memory.kernel.is_none());
        assert!(m.memory_oom_control.is_none());
        assert_eq!(m.cpu.usage.per_cpu, vec![3_000_000_000, 2_000_000_000]);
        let hz = clock_ticks();
        assert_eq!(m.cpu.usage.user, 300 * 1_000_000_000 / hz);
        assert_eq!(m.cpu.usage.kernel, 100 * 1_000_000_000 / hz);
        assert!(m.cpu.throttling.is_none());
        assert_eq!((m.pids.current, m.pids.limit), (3, 0));

        d.write("pids.current", "three\n");
        let err = v1_metrics(&dirs).expect_err("garbage");
        assert!(err.to_string().contains("pids.current"), "{err}");
    }
}
