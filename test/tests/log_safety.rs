//! Issue 14, items 2 and 3: links planted under the log root are refused, never followed, and a
//! container rotating its json-file log as fast as it can does not stall the other containers
//! of its pod shim.
//!
//! Each planted link points at a victim file outside the log root; the test checks the victim's
//! content and mtime afterwards. A refused log fails the Create with an error naming the path
//! (as ctr prints it); a link planted while the container runs is reported in `runtime.log` and
//! in containerd's log (the shim's stderr).
//!
//! Scribe's own feature: the tests always run the Scribe runtime.

use scribe_e2e::records::{parse_json_log, LogSetup};
use scribe_e2e::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const JSON_FILE: &str = "io.scribe.log.driver=json-file";

/// A file outside the log root that planted links point at.
struct Victim {
    path: PathBuf,
    mtime: SystemTime,
}

impl Victim {
    fn new(c: &Containerd) -> Victim {
        let dir = c.dir().join("elsewhere");
        std::fs::create_dir_all(&dir).expect("victim dir");
        let path = dir.join("victim");
        std::fs::write(&path, "precious\n").expect("victim");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        Victim { path, mtime }
    }

    /// The directory holding the victim (for directory links).
    fn dir(&self) -> &Path {
        self.path.parent().expect("victim dir")
    }

    #[track_caller]
    fn assert_untouched(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.path).expect("read victim"),
            "precious\n",
            "the link's target was written"
        );
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(mtime, self.mtime, "the link's target was modified");
        let names: Vec<_> = std::fs::read_dir(self.dir())
            .expect("ls victim dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["victim"], "files appeared beside the victim");
    }
}

/// The rotated json-file logs of `id` in `dir` (`<id>-json.log.<N>[.gz]`), counted without
/// judging other names (a planted link, a rotation in progress).
fn rotated_count(dir: &Path, id: &str) -> usize {
    let base = format!("{id}-json.log.");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix(&base)
                        .map(|r| r.strip_suffix(".gz").unwrap_or(r))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}

fn symlink(target: &Path, at: &Path) {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).expect("mkdir for link");
    }
    std::os::unix::fs::symlink(target, at)
        .unwrap_or_else(|e| panic!("planting {} -> {}: {e}", at.display(), target.display()));
}

/// Runs `id` (with `extra` ctr args before the image) and expects the Create to fail with an
/// error naming `path` as a refused link.
#[track_caller]
fn assert_create_refuses(c: &Containerd, logs: &LogSetup, id: &str, extra: &[&str], path: &Path) {
    let mut args = vec!["--rm"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, id, "echo", "should not run"]);
    let o = c.ctr(&logs.run_args(&args));
    assert!(!o.success(), "the Create must fail: {o}");
    let text = o.combined();
    println!("ctr: {}", text.trim());
    assert!(
        text.contains(&*path.to_string_lossy()),
        "the error must name {}: {o}",
        path.display()
    );
    assert!(
        text.contains("symbolic link"),
        "the error must say why: {o}"
    );
    assert!(!text.contains("should not run"), "the container ran: {o}");
}

#[test]
fn json_log_link_fails_the_create_naming_it() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "jl", "");
    let v = Victim::new(&c);
    let id = "jsonlink";
    let link = logs.json_log(id);
    symlink(&v.path, &link);
    assert_create_refuses(&c, &logs, id, &["--annotation", JSON_FILE], &link);
    v.assert_untouched();
    c.assert_clean();
}

#[test]
fn namespace_and_container_directory_links_fail_the_create() {
    let c = Containerd::start();
    let v = Victim::new(&c);
    // <LogRoot>/<ns> is a link.
    let logs = LogSetup::new(&c, "nsl", "");
    let ns_dir = logs.root.join(c.namespace());
    symlink(v.dir(), &ns_dir);
    assert_create_refuses(&c, &logs, "nslink", &["--annotation", JSON_FILE], &ns_dir);
    v.assert_untouched();
    // <LogRoot>/<ns>/<id> is a link (records off: the json-file log alone must refuse it too).
    let logs = LogSetup::new(&c, "idl", "ContainerLog = false\nRuntimeLog = false");
    let id = "idlink";
    let id_dir = logs.container_dir(id);
    symlink(v.dir(), &id_dir);
    assert_create_refuses(&c, &logs, id, &["--annotation", JSON_FILE], &id_dir);
    v.assert_untouched();
    c.assert_clean();
}

#[test]
fn container_log_and_runtime_log_links_fail_the_create() {
    let c = Containerd::start();
    let v = Victim::new(&c);
    let logs = LogSetup::new(&c, "rec", "");
    for (id, file) in [("clog", "container.log"), ("rlog", "runtime.log")] {
        let link = logs.container_dir(id).join(file);
        symlink(&v.path, &link);
        assert_create_refuses(&c, &logs, id, &[], &link);
        v.assert_untouched();
    }
    c.assert_clean();
}

/// The kernel's uptime in seconds (`/proc/uptime`, as the ticker container reads it).
fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("/proc/uptime: {text:?}"))
}

/// Polls `path` for up to `timeout` until its text contains `needle`.
fn wait_for_text(path: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn gzip_temp_link_planted_while_running_is_refused_and_reported() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "gz", "");
    let v = Victim::new(&c);
    let id = "gzlink";
    // The container waits for /tmp/go, so the link is in place before the first rotation.
    c.ctr_ok(&logs.run_args(&[
        "-d",
        "--annotation",
        JSON_FILE,
        "--annotation",
        "io.scribe.log.max-size=1k",
        "--annotation",
        "io.scribe.log.max-file=3",
        "--annotation",
        "io.scribe.log.compress=true",
        IMAGE,
        id,
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; seq 1 300; sleep 1000",
    ]));
    let tmp = logs
        .container_dir(id)
        .join(format!("{id}-json.log.1.gz.tmp"));
    symlink(&v.path, &tmp);
    c.ctr_ok(&["task", "exec", "--exec-id", "go", id, "touch", "/tmp/go"]);
    let needle = tmp.to_string_lossy().into_owned();
    assert!(
        wait_for_text(&logs.runtime_log(id), &needle, Duration::from_secs(15)),
        "runtime.log must report the refused {needle}:\n{}",
        std::fs::read_to_string(logs.runtime_log(id)).unwrap_or_default()
    );
    assert!(
        wait_for_text(&c.log_path(), &needle, Duration::from_secs(15)),
        "containerd's log (the shim's stderr) must report the refused {needle}:\n{}",
        c.log_tail(30)
    );
    let text = std::fs::read_to_string(logs.runtime_log(id)).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains(&needle) && l.contains(r#""component":"json-file""#))
        .unwrap_or_else(|| panic!("no json-file record names {needle}:\n{text}"));
    println!("runtime.log: {line}");
    assert!(
        line.contains("symbolic link"),
        "the record must say why: {line}"
    );
    v.assert_untouched();
    // Output goes on: the last line reaches the live file, the rotated file stays plain.
    let live = logs.json_log(id);
    assert!(
        wait_for_text(&live, r#"{"log":"300\n""#, Duration::from_secs(15)),
        "the last line never reached {}",
        live.display()
    );
    let entries = parse_json_log(
        &std::fs::read_to_string(&live).expect("live log"),
        &live.display().to_string(),
    );
    assert!(
        entries.iter().any(|e| e.log == "300\n"),
        "the last line is missing from the live log"
    );
    let one = logs.container_dir(id).join(format!("{id}-json.log.1"));
    assert!(one.is_file(), "{} must stay uncompressed", one.display());
    assert!(
        std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_symlink()),
        "the planted link is left as it was"
    );
    c.kill_and_remove(id);
    c.assert_clean();
}

#[test]
fn max_file_above_the_bound_is_refused_at_create() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "mf", "");
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--annotation",
        JSON_FILE,
        "--annotation",
        "io.scribe.log.max-size=1k",
        "--annotation",
        "io.scribe.log.max-file=10000",
        IMAGE,
        "maxfile",
        "echo",
        "should not run",
    ]));
    println!("ctr: {}", o.combined().trim());
    assert!(!o.success(), "max-file=10000 must be refused: {o}");
    assert!(
        o.combined().contains("max-file") && o.combined().contains("1000"),
        "the error must name the option and the bound: {o}"
    );
    c.assert_clean();
}

/// Runs container `id` in `group`, printing the kernel's uptime (/proc/uptime, read by the
/// shell itself: no fork) `ticks` times every `tick_ms`, attached to ctr; each line is compared
/// with the uptime when it arrives: the delay of that output through the shim and ctr (10 ms
/// resolution), whatever the load does to the container's own scheduling. Delays sorted.
fn tick_delays(
    c: &Containerd,
    logs: &LogSetup,
    group: &str,
    id: &str,
    ticks: u64,
    tick_ms: u64,
) -> Vec<Duration> {
    let ticker = format!(
        "i=0; while [ $i -lt {ticks} ]; do read u rest < /proc/uptime; echo $u; sleep 0.0{tick_ms}; i=$((i+1)); done"
    );
    let args = logs.run_args(&[
        "--rm",
        "--annotation",
        group,
        IMAGE,
        id,
        "sh",
        "-c",
        &ticker,
    ]);
    let (out, delays) = c.ctr_streaming(&args, Duration::from_secs(120), |out| {
        let mut delays = Vec::new();
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let now = uptime();
            let sent: f64 = line
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("ticker line {line:?} is not an uptime: {e}"));
            delays.push(Duration::from_secs_f64((now - sent).max(0.0)));
        }
        delays
    });
    assert!(out.success(), "ticker {id}: {out}");
    let mut delays = delays.expect("ticker output");
    assert_eq!(delays.len() as u64, ticks, "ticks lost: {out}");
    delays.sort();
    delays
}

/// `p`-th percentile of sorted `v`.
fn percentile(v: &[Duration], p: usize) -> Duration {
    v.get((v.len().saturating_sub(1)) * p / 100)
        .copied()
        .unwrap_or_default()
}

/// The issue's stall: max-size=1k with a huge max-file made every rotation walk every index on
/// the shim's only thread; the other containers of the pod got no output and no Task API.
/// Container `hot` rotates as fast as it writes with max-file at the bound (1000) while its
/// neighbours in the same shim tick, answer execs and Task API calls.
#[test]
fn fast_rotating_container_does_not_stall_its_pod_shim() {
    const TICK_MS: u64 = 20;
    const TICKS: u64 = 300;
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "pod", "");
    let group = "io.containerd.runc.v2.group=pod14";
    c.ctr_ok(&logs.run_args(&["-d", "--annotation", group, IMAGE, "calm", "sleep", "1000"]));

    let exec_once = |n: usize| -> Duration {
        let exec_id = format!("e{n}");
        let t = Instant::now();
        let o = c.ctr(&[
            "task",
            "exec",
            "--exec-id",
            &exec_id,
            "calm",
            "echo",
            "pong",
        ]);
        let took = t.elapsed();
        assert!(
            o.success() && o.stdout == "pong\n",
            "exec {n}: {o}\n{}",
            c.log_tail(20)
        );
        took
    };
    let api = c.tasks_api();
    let get_once = || -> Duration {
        let t = Instant::now();
        api.get("calm", "").expect("Tasks/Get calm");
        t.elapsed()
    };
    let baseline_exec = (0..5).map(exec_once).max().expect("baseline execs");
    let baseline_get = (0..20).map(|_| get_once()).max().expect("baseline gets");
    let baseline_ticks = tick_delays(&c, &logs, group, "ticker0", 100, TICK_MS);

    let hot_dir = logs.container_dir("hot");
    std::fs::create_dir_all(&hot_dir).expect("hot's log directory");
    for n in 1..1000 {
        let entry = format!(
            "{{\"log\":\"old {n}\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}}\n"
        );
        std::fs::write(hot_dir.join(format!("hot-json.log.{n}")), entry).expect("pre-fill");
    }
    c.ctr_ok(&logs.run_args(&[
        "-d",
        "--annotation",
        group,
        "--annotation",
        JSON_FILE,
        "--annotation",
        "io.scribe.log.max-size=1k",
        "--annotation",
        "io.scribe.log.max-file=1000",
        IMAGE,
        "hot",
        "sh",
        "-c",
        "while true; do seq 1 200; sleep 0.005; done",
    ]));
    // Its 999 rotated files were there from the start (as after a long run), so every rotation
    // renames about 1000 of them.
    assert_eq!(
        c.shim_pid("hot"),
        c.shim_pid("calm"),
        "the group annotation must put both in one shim"
    );

    // A third container of the pod ticks on an attached ctr while calm answers execs and
    // Tasks/Get.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (delays, execs, gets) = std::thread::scope(|s| {
        let ticks = s.spawn(|| {
            let d = tick_delays(&c, &logs, group, "ticker", TICKS, TICK_MS);
            let _ = done_tx.send(());
            d
        });
        let mut execs = Vec::new();
        let mut gets = Vec::new();
        let mut n = 100;
        while done_rx.try_recv().is_err() {
            execs.push(exec_once(n));
            n += 1;
            for _ in 0..5 {
                gets.push(get_once());
            }
        }
        (ticks.join().expect("ticker thread"), execs, gets)
    });
    let max_delay = delays.last().copied().unwrap_or_default();
    let max_exec = execs.iter().max().copied().unwrap_or_default();
    let max_get = gets.iter().max().copied().unwrap_or_default();
    let rotated = rotated_count(&hot_dir, "hot");
    let hot_bytes = std::fs::metadata(logs.json_log("hot"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        hot_bytes <= 1000,
        "hot's live file grew past max-size: {hot_bytes} bytes"
    );
    let aged = (1..1000)
        .filter(|n| {
            std::fs::read_to_string(hot_dir.join(format!("hot-json.log.{n}")))
                .is_ok_and(|t| !t.contains("\"old "))
        })
        .count();
    assert!(aged > 0, "hot never rotated");
    println!(
        "hot: {rotated} rotated json-file files (max-file 1000, max-size 1k), {aged} of them new\n\
         ticker: {TICKS} ticks every {TICK_MS} ms, delay through shim and ctr: median {:?}, p99 {:?}, max {max_delay:?} \
         (before hot: median {:?}, max {:?}; 10 ms resolution)\n\
         exec in calm: {} execs, max {max_exec:?} (baseline before hot: max {baseline_exec:?})\n\
         Tasks/Get calm: {} calls, max {max_get:?} (baseline: max {baseline_get:?})",
        percentile(&delays, 50),
        percentile(&delays, 99),
        percentile(&baseline_ticks, 50),
        baseline_ticks.last().copied().unwrap_or_default(),
        execs.len(),
        gets.len()
    );
    // The bound is the issue's 100 ms, held by 99 of 100 samples; the rest may not stall either
    // (before the fix they waited minutes). On a 2-core machine the hot writer, its rotation
    // thread and ctr reading it can take both cores for a scheduler tick or two, which shows
    // as a lone sample above 100 ms with any shim; the max is printed above.
    let mut sorted_gets = gets.clone();
    sorted_gets.sort();
    let p99_delay = percentile(&delays, 99);
    let p99_get = percentile(&sorted_gets, 99);
    assert!(
        p99_delay <= Duration::from_millis(100) && max_delay <= Duration::from_secs(1),
        "ticks through the shim: p99 {p99_delay:?}, max {max_delay:?}: the neighbour's output stalled"
    );
    assert!(
        p99_get <= Duration::from_millis(100) && max_get <= Duration::from_secs(1),
        "Tasks/Get: p99 {p99_get:?}, max {max_get:?}: the Task service stalled"
    );
    // An exec is a ctr process, containerd and `runc exec` besides the shim, and `hot`'s
    // rotation thread keeps the disk busy for all of them: the typical exec keeps within 100 ms
    // of the slowest before `hot` started; none may stall (the issue's execs timed out).
    let mut sorted = execs.clone();
    sorted.sort();
    let median_exec = percentile(&sorted, 50);
    println!("exec in calm: median {median_exec:?}");
    assert!(
        median_exec <= baseline_exec + Duration::from_millis(100),
        "execs took {median_exec:?} (median; baseline max {baseline_exec:?}): the Task service stalled"
    );
    assert!(
        max_exec <= Duration::from_secs(2),
        "an exec took {max_exec:?}: the Task service stalled"
    );
    for id in ["hot", "calm"] {
        c.kill_and_remove(id);
    }
    c.assert_clean();
}
