//! `scribe-bench`: Scribe side by side with containerd's Go runc shim and the crates.io Rust runc
//! shim, all in one private containerd (the e2e harness's), measurements interleaved between the
//! runtimes. Prints a table with Scribe's ratio to each peer and checks the goals of issue 7;
//! with `--md PATH` also writes them into PATH. See `--help` and docs/benchmarks.md.
//!
//! The figures are measurements, never assertions: a missed goal does not fail the run.

mod concurrent;
mod config;
mod ctr;
mod idle;
mod latency;
mod plugin;
mod procfs;
mod reader;
mod relay;
mod report;
mod runtimes;
mod stats;

use anyhow::{bail, Context, Result};
use config::Config;
use ctr::Ctr;
use report::{Better, Goal, Report, Row};
use runtimes::Runtime;
use scribe_e2e::Containerd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Err once SIGINT/SIGTERM arrived, so that the private containerd is torn down on the way out.
pub fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// What every measurement needs.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub c: &'a Containerd,
    pub ctr: Ctr,
    /// The benchmark's temp dir (symlinks, data, outputs, Scribe's log root).
    pub work: PathBuf,
    /// Scribe's `LogRoot` (inside `work`).
    pub log_root: PathBuf,
    pub runtimes: Vec<Runtime>,
}

impl Ctx<'_> {
    /// `run --runtime <rt> <rt's options> <opts> <image> <id> <cmd...>`.
    pub fn run_args(&self, rt: &Runtime, opts: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["run".into(), "--runtime".into(), rt.name.clone()];
        v.extend(rt.run_opts.iter().cloned());
        v.extend(opts.iter().map(|s| s.to_string()));
        v.push(scribe_e2e::IMAGE.into());
        v.push(id.into());
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    }

    /// The runtimes, rotated by `i`: interleaved runs do not always start with the same one.
    pub fn rotated(&self, i: usize) -> Vec<&Runtime> {
        let n = self.runtimes.len();
        (0..n).map(|k| &self.runtimes[(i + k) % n]).collect()
    }

    pub fn ctr_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }

    /// Waits until no shim of the private containerd runs (they exit after their last container).
    pub fn wait_no_shims(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.c.shim_pids().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match Config::parse(&args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("scribe-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scribe-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: &Config) -> Result<()> {
    // Only the reading-logs rows (no containerd needed): SCRIBE_BENCH_READER_ONLY=<MiB>.
    if let Some(mib) = std::env::var_os("SCRIBE_BENCH_READER_ONLY") {
        let mib: u64 = mib
            .to_string_lossy()
            .parse()
            .context("SCRIBE_BENCH_READER_ONLY")?;
        let work = PathBuf::from(format!("/tmp/scribe-bench-reader-{}", std::process::id()));
        let mut notes = Vec::new();
        let res = reader::measure(&work, mib, &mut notes);
        let _ = std::fs::remove_dir_all(&work);
        for r in res? {
            println!(
                "{:<70} {:>10.1} ms",
                r.metric,
                r.values.get("scribe").copied().unwrap_or(f64::NAN)
            );
        }
        for n in notes {
            println!("{n}");
        }
        return Ok(());
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root (it starts containerd and containers)");
    }
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    let began = Instant::now();
    let work = PathBuf::from(format!("/tmp/scribe-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    for d in ["bin", "data", "out", "logs"] {
        let p = work.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    let res = run_in(cfg, &work, began);
    if let Err(e) = std::fs::remove_dir_all(&work) {
        eprintln!("scribe-bench: could not remove {}: {e}", work.display());
    }
    res
}

fn run_in(cfg: &Config, work: &Path, began: Instant) -> Result<()> {
    let mut report = Report {
        command: cfg.command.clone(),
        ..Default::default()
    };
    let log_root = work.join("logs");
    let scribe_toml = work.join("scribe.toml");
    // PluginDirs only when the plugin case runs: a build from before plugins refuses the key.
    let plugins = cfg.only.iter().any(|s| s == "relay")
        && cfg.relay_cases.iter().any(|c| c == "lines.plugin");
    let (plugin_driver, plugin_dirs) = if plugins {
        (
            format!(", \"{}\"", plugin::NAME),
            format!(
                "PluginDirs = [\"{}\"]\n",
                plugin::plugin_dir(work).display()
            ),
        )
    } else {
        (String::new(), String::new())
    };
    std::fs::write(
        &scribe_toml,
        format!(
            "# scribe-bench\nLogRoot = \"{}\"\nAllowedLogDrivers = [\"json-file\", \"local\", \"none\", \"fluentd\"{plugin_driver}]\n{plugin_dirs}[LogOpts]\nfluentd-address = \"unix://{}\"\n",
            log_root.display(),
            relay::fluentd_socket(work).display()
        ),
    )
    .with_context(|| format!("writing {}", scribe_toml.display()))?;

    let mut rts = Vec::new();
    for key in &cfg.runtimes {
        let r = match key.as_str() {
            "scribe" => runtimes::scribe(&scribe_toml, &work.join("bin")),
            "go" => runtimes::go(),
            _ => runtimes::rust(
                cfg,
                &scribe_e2e::workspace_dir().join(".cache/rust-shim"),
                &work.join("bin"),
            ),
        };
        match r {
            Ok(r) => rts.push(r),
            Err(e) if key == "scribe" => return Err(e),
            Err(e) => {
                let msg = format!("{key} shim skipped: {e:#}");
                eprintln!("scribe-bench: {msg}");
                report.notes.push(msg);
            }
        }
    }
    // containerd finds shims on its PATH: the harness puts the directory of SCRIBE_SHIM_BIN
    // first (our copy of Scribe's shim, beside the Rust shim's symlink) and keeps PATH after it.
    if let Some(s) = rts.iter().find(|r| r.key == "scribe") {
        std::env::set_var("SCRIBE_SHIM_BIN", &s.binary);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![work.join("bin")];
    dirs.extend(std::env::split_paths(&path));
    std::env::set_var(
        "PATH",
        std::env::join_paths(dirs).context("building PATH for containerd")?,
    );

    eprintln!(
        "scribe-bench: starting a private containerd; runtimes: {}",
        rts.iter()
            .map(|r| format!("{} ({})", r.key, r.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let c = Containerd::builder().log_level("info").start();
    report.runtimes = rts
        .iter()
        .map(|r| (r.key.to_string(), r.label.clone()))
        .collect();
    report.versions = versions(&c, &rts);
    let load_before = loadavg();
    report.machine = machine();
    report.date = date();
    report.settings = format!(
        "{} idle shims and a pod of {} per runtime, {} s idle CPU window, {} latency runs, {} concurrent x {} round(s), {} MiB x {} relay repetition(s){}",
        cfg.idle,
        cfg.pod,
        cfg.idle_cpu_secs,
        cfg.latency_runs,
        cfg.concurrent,
        cfg.concurrent_rounds,
        cfg.relay_mib,
        cfg.relay_reps,
        if cfg.quick { " (--quick)" } else { "" }
    );
    if cfg.only.len() < config::SECTIONS.len() {
        report
            .settings
            .push_str(&format!("; only {}", cfg.only.join(",")));
    }
    if cfg.relay_cases.len() < config::RELAY_CASES.len() {
        report
            .settings
            .push_str(&format!("; relay cases {}", cfg.relay_cases.join(",")));
    }
    let ctx = Ctx {
        cfg,
        c: &c,
        ctr: Ctr::new(&c),
        work: work.to_path_buf(),
        log_root,
        runtimes: rts,
    };

    type Section = fn(&Ctx, &mut Vec<String>) -> Result<Vec<Row>>;
    // (the name `--only` knows, title, measurement); the names are config::SECTIONS.
    let sections: [(&str, &str, Section); 5] = [
        ("idle", "idle shims", idle::run),
        ("latency", "start latency and events", latency::run),
        ("concurrency", "concurrency", concurrent::run),
        ("relay", "output relay", relay::run),
        ("reader", "reading logs", reader::run),
    ];
    for (key, title, f) in sections {
        if !cfg.only.iter().any(|o| o == key) {
            continue;
        }
        check_interrupt()?;
        let t = Instant::now();
        match f(&ctx, &mut report.notes) {
            Ok(rows) => report.sections.push((title.to_string(), rows)),
            Err(e) => {
                check_interrupt()?;
                let msg = format!("{title}: {e:#}");
                eprintln!("scribe-bench: {msg}");
                report.notes.push(msg);
            }
        }
        eprintln!(
            "scribe-bench: {title}: done in {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }
    drop(ctx);
    drop(c);

    report.duration_secs = began.elapsed().as_secs_f64();
    // Other work on the machine skews every figure; say how busy it was.
    report.machine.push_str(&format!(
        "; load average {load_before} at the start, {} at the end",
        loadavg()
    ));
    report.goals = goals(&report, cfg);
    println!();
    println!(
        "scribe-bench: {} ({:.0} s); ratio = scribe / peer",
        report.date, report.duration_secs
    );
    for (k, v) in &report.versions {
        println!("  {k}: {v}");
    }
    println!();
    print!("{}", report.table_text());
    println!();
    println!("goals (issue 7), Scribe:");
    print!("{}", report.goals_text());
    if !report.notes.is_empty() {
        println!();
        println!("notes:");
        for n in &report.notes {
            println!("  - {n}");
        }
    }
    match &cfg.md {
        Some(p) if cfg.only.len() < config::SECTIONS.len() => println!(
            "\n--only {}: not writing {} (the page holds every section)",
            cfg.only.join(","),
            p.display()
        ),
        Some(p) if cfg.quick => println!(
            "\n--quick: not writing {} (smoke figures are not representative)",
            p.display()
        ),
        Some(p) => {
            report::write_markdown(p, &report.markdown())?;
            println!("\nwrote {}", p.display());
        }
        None => {}
    }
    Ok(())
}

fn goals(r: &Report, cfg: &Config) -> Vec<Goal> {
    // The MB are decimal: 0.4 MB = 400 000 bytes = 390.6 KiB.
    let kib = |mb: f64| mb * 1e6 / 1024.0;
    vec![
        Goal::check(
            "scribe logs --tail 10 over rotated json-file logs < 20 ms",
            r.value("reader_tail10", "scribe"),
            20.0,
            Better::Lower,
            "ms",
        ),
        Goal::check(
            "USS per idle shim <= 0.4 MB (390.6 KiB)",
            r.value("idle.uss", "scribe"),
            kib(0.4),
            Better::Lower,
            "KiB",
        ),
        Goal::check(
            "PSS per idle shim <= 0.6 MB (585.9 KiB)",
            r.value("idle.pss", "scribe"),
            kib(0.6),
            Better::Lower,
            "KiB",
        ),
        Goal::check(
            "threads per idle shim <= 2",
            r.value("idle.threads", "scribe"),
            2.0,
            Better::Lower,
            "",
        ),
        Goal::check(
            "USS per idle shim with fluentd connected <= 0.4 MB (390.6 KiB)",
            r.value("idle.fluentd.uss", "scribe"),
            kib(0.4),
            Better::Lower,
            "KiB",
        ),
        Goal::check(
            "threads per idle shim with fluentd connected = 1",
            r.value("idle.fluentd.threads", "scribe"),
            1.0,
            Better::Lower,
            "",
        ),
        Goal::check(
            &format!(
                "idle CPU 0 ms over {} s (busiest idle shim)",
                cfg.idle_cpu_secs
            ),
            r.value("idle.cpu.max", "scribe"),
            0.0,
            Better::Lower,
            "ms",
        ),
        Goal::check(
            "ctr run --rm median <= 0.85x Go",
            r.ratio("lat.median", "go"),
            0.85,
            Better::Lower,
            "x",
        ),
        Goal::check(
            &format!("{} concurrent starts <= 0.7x Go", cfg.concurrent),
            r.ratio("conc.start", "go"),
            0.7,
            Better::Lower,
            "x",
        ),
        Goal::check(
            "relay to attached reader >= 1500 MB/s (dd)",
            r.value("relay.dd.attached", "scribe"),
            1500.0,
            Better::Higher,
            "MB/s",
        ),
        Goal::check(
            "file:// >= 1.5x Go (dd)",
            r.ratio("relay.dd.file", "go"),
            1.5,
            Better::Higher,
            "x",
        ),
        Goal::check(
            "shim CPU <= 0.2 s/GiB on splice paths: attached reader (dd)",
            r.value("cpu.dd.attached", "scribe"),
            0.2,
            Better::Lower,
            "s/GiB",
        ),
        Goal::check(
            "shim CPU <= 0.2 s/GiB, attached reader (100-byte lines)",
            r.value("cpu.lines.attached", "scribe"),
            0.2,
            Better::Lower,
            "s/GiB",
        ),
        Goal::check(
            "json-file >= 400 MB/s of 100-byte lines",
            r.value("relay.lines.json", "scribe"),
            400.0,
            Better::Higher,
            "MB/s",
        ),
        Goal::check(
            "shim CPU <= 1 s/GiB, json-file (100-byte lines)",
            r.value("cpu.lines.json", "scribe"),
            1.0,
            Better::Lower,
            "s/GiB",
        ),
        Goal::check(
            "local >= 600 MB/s of 100-byte lines",
            r.value("relay.lines.local", "scribe"),
            600.0,
            Better::Higher,
            "MB/s",
        ),
        Goal::check(
            "shim CPU <= 1 s/GiB, local (100-byte lines)",
            r.value("cpu.lines.local", "scribe"),
            1.0,
            Better::Lower,
            "s/GiB",
        ),
        Goal::check(
            "fluentd >= 300 MB/s of 100-byte lines into the receiver",
            r.value("relay.lines.fluentd", "scribe"),
            300.0,
            Better::Higher,
            "MB/s",
        ),
        Goal::check(
            "shim CPU <= 1 s/GiB, fluentd (100-byte lines)",
            r.value("cpu.lines.fluentd", "scribe"),
            1.0,
            Better::Lower,
            "s/GiB",
        ),
        Goal::check(
            "log plugin >= 300 MB/s of 100-byte lines through the FIFO",
            r.value("relay.lines.plugin", "scribe"),
            300.0,
            Better::Higher,
            "MB/s",
        ),
        Goal::check(
            "attaching the FIFO costs json-file <= 10% (json-file + reader / json-file >= 0.9)",
            match (
                r.value("relay.lines.json_attached", "scribe"),
                r.value("relay.lines.json", "scribe"),
            ) {
                (Some(a), Some(j)) if j > 0.0 => Some(a / j),
                _ => None,
            },
            0.9,
            Better::Higher,
            "x",
        ),
    ]
}

/// First line of `<prog> <args>` (stdout, else stderr), whatever its exit status.
fn first_line(prog: &str, args: &[&str]) -> String {
    match Command::new(prog).args(args).output() {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout);
            let err = String::from_utf8_lossy(&o.stderr);
            out.lines()
                .chain(err.lines())
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("(no output)")
                .to_string()
        }
        Err(e) => format!("({prog}: {e})"),
    }
}

fn versions(c: &Containerd, rts: &[Runtime]) -> Vec<(String, String)> {
    let ws = scribe_e2e::workspace_dir();
    let ws_s = ws.to_string_lossy().into_owned();
    let rev = first_line("git", &["-C", &ws_s, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", &ws_s, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let mut v = vec![
        ("containerd".to_string(), c.version()),
        ("runc".to_string(), first_line("runc", &["--version"])),
        (
            "kernel".to_string(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|e| format!("({e})")),
        ),
        (
            "producer".to_string(),
            first_line("/usr/bin/busybox", &["--help"]),
        ),
    ];
    for r in rts {
        let mut text = if r.key == "scribe" {
            format!("{}: {}", r.name, r.version)
        } else {
            format!(
                "{} `{}`: {}",
                r.name,
                report::shown_path(&r.binary),
                r.version
            )
        };
        if r.key == "scribe" {
            text.push_str(&format!(
                " (workspace git {rev}{})",
                if dirty {
                    ", with uncommitted changes"
                } else {
                    ""
                }
            ));
        }
        v.push((format!("{} shim", r.key), text));
    }
    v
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2"
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "cgroup v1 (hybrid)"
    } else {
        "cgroup v1"
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown OS".into());
    format!(
        "{os}, {cores} x {model}, {mem_gib:.0} GiB RAM, {cgroup}, /tmp on {}",
        fs_of("/tmp")
    )
}

/// The file system type /tmp is on (outputs of the relay runs land there).
fn fs_of(path: &str) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let mp = f[1];
        let covers = path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')));
        if covers && best.as_ref().map(|(n, _)| mp.len() > *n).unwrap_or(true) {
            best = Some((mp.len(), f[2].to_string()));
        }
    }
    best.map(|(_, t)| t).unwrap_or_else(|| "?".into())
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

fn date() -> String {
    first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}
