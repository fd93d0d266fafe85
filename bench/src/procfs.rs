//! What the benchmark reads from /proc: memory, threads, CPU time, shim processes.

use anyhow::{anyhow, Context, Result};
use scribe_e2e::procs::cmdline;
use std::fs;

/// Memory of one process from `/proc/<pid>/smaps_rollup`, in KiB (the kernel's "kB").
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Private_Clean + Private_Dirty.
    pub uss_kib: u64,
}

pub fn mem(pid: i32) -> Result<Mem> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut m = Mem::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(v) = val.parse::<u64>() else { continue };
        match key {
            "Rss:" => m.rss_kib = v,
            "Pss:" => m.pss_kib = v,
            "Private_Clean:" | "Private_Dirty:" => m.uss_kib += v,
            _ => {}
        }
    }
    if m.rss_kib == 0 {
        return Err(anyhow!("{path}: no Rss line (kernel thread or zombie?)"));
    }
    Ok(m)
}

/// `Threads:` of `/proc/<pid>/status`.
pub fn threads(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{path}: no Threads line"))
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks (all threads of the process).
pub fn cpu_ticks(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .with_context(|| format!("{path}: malformed"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{path}: field {} missing", i + 3))
    };
    Ok(num(11)? + num(12)?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_sec() -> u64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The long-running shim daemon started for container `id` by the containerd at `address`:
/// argv[0] named `containerd-shim*`, `-id <id>`, `-address <address>`, and not the short-lived
/// `start`/`delete` invocation. Cheaper than the harness's socket scan; used while timing.
pub fn find_shim_daemon(address: &str, id: &str) -> Option<i32> {
    let rd = fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let argv = pid.parse().map(cmdline).unwrap_or_default();
        let Some(arg0) = argv.first() else { continue };
        let base = arg0.rsplit('/').next().unwrap_or(arg0);
        if !base.starts_with("containerd-shim") {
            continue;
        }
        let flag = |f: &str| {
            argv.iter()
                .position(|a| a == f)
                .and_then(|i| argv.get(i + 1))
                .map(String::as_str)
        };
        let last = argv.last().map(String::as_str);
        if flag("-id") == Some(id)
            && flag("-address") == Some(address)
            && last != Some("start")
            && last != Some("delete")
        {
            return pid.parse().ok();
        }
    }
    None
}

/// Direct children of `pid` (from /proc/<pid>/task/*/children).
pub fn children(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                v.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    v
}

/// argv[0]'s base name of `pid`.
pub fn comm_of(pid: i32) -> String {
    let argv = cmdline(pid);
    argv.first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default()
}
