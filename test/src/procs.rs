//! /proc and mountinfo helpers.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// All pids currently in /proc.
pub fn all_pids() -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// argv of a process (empty for kernel threads, zombies, vanished processes).
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// (state char, ppid) from /proc/<pid>/stat.
pub fn stat(pid: i32) -> Option<(char, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Is the process alive (exists and is not a zombie)?
pub fn pid_alive(pid: i32) -> bool {
    matches!(stat(pid), Some((st, _)) if st != 'Z' && st != 'X')
}

/// Wait until `pid` is gone or a zombie.
pub fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    wait_until(timeout, || !pid_alive(pid))
}

/// Poll `f` every 50 ms until it is true or `timeout` passes. Returns the last value.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send `sig` to `pid` (ignores errors).
pub fn kill(pid: i32, sig: i32) {
    if pid > 1 {
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Children map ppid -> pids, for live processes.
pub fn children_map() -> HashMap<i32, Vec<i32>> {
    let mut m: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in all_pids() {
        if let Some((st, ppid)) = stat(p) {
            if st != 'Z' {
                m.entry(ppid).or_default().push(p);
            }
        }
    }
    m
}

/// All live descendants of `pid` (not including itself).
pub fn descendants(pid: i32) -> Vec<i32> {
    let m = children_map();
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Some(kids) = m.get(&p) {
            for k in kids {
                out.push(*k);
                stack.push(*k);
            }
        }
    }
    out
}

/// Processes that look like a containerd shim (argv[0] basename starts with
/// `containerd-shim`), with their argv.
pub fn shim_processes() -> Vec<(i32, Vec<String>)> {
    all_pids()
        .into_iter()
        .filter_map(|p| {
            let argv = cmdline(p);
            let a0 = argv.first()?;
            let base = Path::new(a0).file_name()?.to_str()?;
            if base.starts_with("containerd-shim") && pid_alive(p) {
                Some((p, argv))
            } else {
                None
            }
        })
        .collect()
}

/// Value following flag `flag` (Go single-dash style, also `-flag=value`) in argv.
pub fn flag_value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    let eq = format!("{flag}=");
    for (i, a) in argv.iter().enumerate() {
        if a == flag {
            return argv.get(i + 1).map(|s| s.as_str());
        }
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v);
        }
    }
    None
}

/// Inodes of unix sockets bound to `path` (from /proc/net/unix).
pub fn unix_socket_inodes(path: &str) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    if let Ok(s) = fs::read_to_string("/proc/net/unix") {
        for line in s.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 8 && f[7] == path {
                if let Ok(ino) = f[6].parse() {
                    set.insert(ino);
                }
            }
        }
    }
    set
}

/// Live processes holding one of the socket inodes as an fd.
pub fn pids_holding_sockets(inodes: &BTreeSet<u64>) -> Vec<i32> {
    if inodes.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    for p in all_pids() {
        let Ok(rd) = fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                let t = t.to_string_lossy();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    if n.parse().map(|n: u64| inodes.contains(&n)).unwrap_or(false) {
                        if pid_alive(p) {
                            out.push(p);
                        }
                        break;
                    }
                }
            }
        }
    }
    out
}

/// Does /proc/<pid>/cgroup have a path with the segment `/<ns>/` (ctr puts
/// containers in cgroup `/<namespace>/<id>`)?
pub fn in_cgroup_namespace(pid: i32, ns: &str) -> bool {
    let needle = format!("/{ns}/");
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|s| {
            s.lines().any(|l| {
                l.splitn(3, ':')
                    .nth(2)
                    .map(|p| format!("{p}/").contains(&needle))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// The memory limit file of `pid`'s memory cgroup, from /proc/<pid>/cgroup: cgroup v1's
/// `/sys/fs/cgroup/memory/<path>/memory.limit_in_bytes`, else v2's `/sys/fs/cgroup/<path>/memory.max`.
pub fn memory_limit_file(pid: i32) -> Result<PathBuf, String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("reading /proc/{pid}/cgroup: {e}"))?;
    let path_of = |want: &dyn Fn(&str) -> bool| {
        text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            want(ctl).then(|| path.trim_start_matches('/').to_string())
        })
    };
    if let Some(p) = path_of(&|ctl| ctl.split(',').any(|c| c == "memory")) {
        return Ok(Path::new("/sys/fs/cgroup/memory")
            .join(p)
            .join("memory.limit_in_bytes"));
    }
    match path_of(&|ctl| ctl.is_empty()) {
        Some(p) => Ok(Path::new("/sys/fs/cgroup").join(p).join("memory.max")),
        None => Err(format!("pid {pid} has no memory cgroup:\n{text}")),
    }
}

/// The memory limit in bytes of `pid`'s cgroup (`None` for v2's `max`).
pub fn memory_limit(pid: i32) -> Result<Option<u64>, String> {
    let file = memory_limit_file(pid)?;
    let text = fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    match text.trim() {
        "max" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|e| format!("{}: {n:?}: {e}", file.display())),
    }
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points (from /proc/self/mountinfo) at or under `path`, deepest last in
/// mount order.
pub fn mounts_under(path: impl AsRef<Path>) -> Vec<PathBuf> {
    let base = path.as_ref();
    let Ok(s) = fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    s.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(base))
        .collect()
}

/// Lines of /proc/self/mountinfo mentioning `needle` anywhere (mount point,
/// source or options: catches an overlay whose upperdir is under a path).
pub fn mountinfo_lines_containing(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.contains(needle))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Lazily unmount everything at or under `path`, deepest first.
pub fn unmount_all_under(path: &Path) {
    for _ in 0..4 {
        let mut ms = mounts_under(path);
        if ms.is_empty() {
            return;
        }
        ms.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in ms {
            if let Ok(c) = std::ffi::CString::new(m.as_os_str().to_string_lossy().as_bytes()) {
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

/// Paths under `base` that some process has open (scans /proc/*/fd).
pub fn open_paths_under(base: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for p in all_pids() {
        let Ok(rd) = fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                if t.starts_with(base) {
                    out.insert(t);
                }
            }
        }
    }
    out
}

/// Whether `pid` is asleep in write(2) (x86_64 syscall 1, or a pipe/tty writer's wait channel
/// where the syscall is not readable): blocked on its output, not merely waiting for a CPU.
pub fn blocked_in_write(pid: i32) -> bool {
    if !matches!(stat(pid), Some(('S' | 'D', _))) {
        return false;
    }
    if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/syscall")) {
        if let Some(nr) = s
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
        {
            return cfg!(target_arch = "x86_64") && nr == 1;
        }
    }
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    wchan.contains("pipe_write") || wchan.contains("tty_write")
}

/// Samples, every 2 ms on its own thread, whether a process is blocked writing its output
/// ([`blocked_in_write`]) and keeps the longest run of blocked samples. A timestamp gap in a
/// container's output also counts time it waited for a CPU on a loaded machine; this measures
/// only the time its writes were held up.
pub struct WriteBlockWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<(Duration, usize)>>,
}

impl WriteBlockWatch {
    /// Starts watching `pid`.
    pub fn start(pid: i32) -> WriteBlockWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut longest, mut samples) = (Duration::ZERO, 0usize);
            let mut since: Option<Instant> = None;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && pid_alive(pid) {
                let now = Instant::now();
                samples += 1;
                if blocked_in_write(pid) {
                    let start = *since.get_or_insert(now);
                    longest = longest.max(now - start);
                } else {
                    since = None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (longest, samples)
        });
        WriteBlockWatch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sampling; returns the longest time the process was seen blocked in write(2) and
    /// how many samples were taken.
    pub fn finish(mut self) -> (Duration, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or((Duration::ZERO, 0))
    }
}

impl Drop for WriteBlockWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
