//! Output relay throughput and the shim's CPU per GiB.
//!
//! Producers inside the container: `dd if=/dev/zero bs=1M count=N` (busybox), and `cat` of a
//! pre-generated file of 100-byte lines bind-mounted read-only at /data/lines.
//! Destinations: an attached reader (`ctr run --rm` with its stdout piped to this program, which
//! counts bytes), `--log-uri file:///...`, Scribe's json-file driver (`--null-io`, annotation
//! `io.scribe.log.driver=json-file`), Scribe's `local` driver (likewise, one file: no rotation
//! in the run), and the json-file driver with the attached reader too (what framing and writing
//! every line costs the FIFO path).
//!
//! Throughput is timed from the first to the last byte seen at the destination, so container
//! start and teardown are not in it. Shim CPU is the shim daemon's utime+stime over the same
//! span, scaled to one GiB of container output.

use crate::procfs;
use crate::report::Row;
use crate::stats::median;
use crate::Ctx;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GIB: f64 = (1u64 << 30) as f64;
const LINE_LEN: usize = 100;
/// A run that wrote nothing this long after it was started has failed.
const STALL: Duration = Duration::from_secs(30);

/// A run gets this long before it is killed: a minute plus 8 MiB/s.
fn run_timeout(mib: u64) -> Duration {
    Duration::from_secs(60 + mib / 8)
}

/// Cases a runtime cannot do, and why (instead of waiting for a run that never finishes).
fn unsupported(rt: &str, case: &Case) -> Option<&'static str> {
    match (rt, case.dest) {
        (
            _,
            Dest::JsonFile | Dest::JsonFileAttached | Dest::Local | Dest::Fluentd | Dest::Plugin,
        ) if rt != "scribe" =>
        {
            Some("log drivers are Scribe's own")
        }
        ("rust", Dest::File) => Some(
            "containerd-runc-shim 0.1.1 has no file:// stdio (its create_io only knows fifo; the run hangs)",
        ),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Producer {
    Dd,
    Lines,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dest {
    Attached,
    File,
    JsonFile,
    /// The json-file driver and an attached reader at once.
    JsonFileAttached,
    /// The fluentd driver into a forward-protocol receiver on a unix socket (the dual-logging
    /// cache off, so the row is fluentd's own cost).
    Fluentd,
    /// Docker's `local` driver.
    Local,
    /// A Docker logging plugin (a minimal one that discards frames, [`crate::plugin`]; the
    /// dual-logging cache off, so the row is the plugin driver's own cost).
    Plugin,
    /// An attached reader that stops reading for 1 s out of every 2 (a slow or restarting
    /// consumer): Scribe spools what it does not read, other shims block the container.
    AttachedStalling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Case {
    producer: Producer,
    dest: Dest,
}

impl Case {
    fn id(&self) -> &'static str {
        match (self.producer, self.dest) {
            (Producer::Dd, Dest::Attached) => "relay.dd.attached",
            (Producer::Dd, Dest::File) => "relay.dd.file",
            (Producer::Dd, Dest::JsonFile) => "relay.dd.json",
            (Producer::Lines, Dest::Attached) => "relay.lines.attached",
            (Producer::Lines, Dest::File) => "relay.lines.file",
            (Producer::Lines, Dest::JsonFile) => "relay.lines.json",
            (_, Dest::JsonFileAttached) => "relay.lines.json_attached",
            (_, Dest::Local) => "relay.lines.local",
            (_, Dest::Fluentd) => "relay.lines.fluentd",
            (_, Dest::Plugin) => "relay.lines.plugin",
            (_, Dest::AttachedStalling) => "relay.lines.attached_stall",
        }
    }
    fn cpu_id(&self) -> &'static str {
        match (self.producer, self.dest) {
            (Producer::Dd, Dest::Attached) => "cpu.dd.attached",
            (Producer::Dd, Dest::File) => "cpu.dd.file",
            (Producer::Dd, Dest::JsonFile) => "cpu.dd.json",
            (Producer::Lines, Dest::Attached) => "cpu.lines.attached",
            (Producer::Lines, Dest::File) => "cpu.lines.file",
            (Producer::Lines, Dest::JsonFile) => "cpu.lines.json",
            (_, Dest::JsonFileAttached) => "cpu.lines.json_attached",
            (_, Dest::Local) => "cpu.lines.local",
            (_, Dest::Fluentd) => "cpu.lines.fluentd",
            (_, Dest::Plugin) => "cpu.lines.plugin",
            (_, Dest::AttachedStalling) => "cpu.lines.attached_stall",
        }
    }
    fn label(&self) -> String {
        let p = match self.producer {
            Producer::Dd => "dd bs=1M",
            Producer::Lines => "100-byte lines",
        };
        let d = match self.dest {
            Dest::Attached => "attached reader",
            Dest::File => "file://",
            Dest::JsonFile => "json-file",
            Dest::JsonFileAttached => "json-file + attached reader",
            Dest::Local => "local",
            Dest::Fluentd => "fluentd",
            Dest::Plugin => "log plugin",
            Dest::AttachedStalling => "attached reader stalling 1 s of every 2",
        };
        format!("{p} -> {d}")
    }
}

/// One run's outcome.
#[derive(Debug, Clone, Copy)]
struct Sample {
    mb_per_s: f64,
    cpu_s_per_gib: Option<f64>,
}

/// Writes the line file: `mib` MiB (rounded down to whole 100-byte lines).
pub fn make_lines_file(path: &Path, mib: u64) -> Result<u64> {
    let lines = (mib << 20) / LINE_LEN as u64;
    let mut block = Vec::with_capacity(10_000 * LINE_LEN);
    for i in 0..10_000u32 {
        let head = format!("{i:05} scribe-bench line ");
        let mut l = head.into_bytes();
        let fill = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut k = i as usize;
        while l.len() < LINE_LEN - 1 {
            l.push(fill[k % fill.len()]);
            k += 1;
        }
        l.push(b'\n');
        block.extend_from_slice(&l);
    }
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut left = lines;
    while left > 0 {
        let n = left.min(10_000);
        w.write_all(&block[..n as usize * LINE_LEN])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n;
    }
    let f = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    // On disk before the runs start, so that its write-back does not compete with them.
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(lines * LINE_LEN as u64)
}

pub fn run(ctx: &Ctx, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let cfg = ctx.cfg;
    let mut cases = vec![
        Case {
            producer: Producer::Dd,
            dest: Dest::Attached,
        },
        Case {
            producer: Producer::Dd,
            dest: Dest::File,
        },
        Case {
            producer: Producer::Lines,
            dest: Dest::Attached,
        },
        Case {
            producer: Producer::Lines,
            dest: Dest::File,
        },
        Case {
            producer: Producer::Lines,
            dest: Dest::AttachedStalling,
        },
    ];
    if ctx.runtimes.iter().any(|r| r.key == "scribe") {
        cases.push(Case {
            producer: Producer::Lines,
            dest: Dest::JsonFile,
        });
        cases.push(Case {
            producer: Producer::Lines,
            dest: Dest::JsonFileAttached,
        });
        cases.push(Case {
            producer: Producer::Lines,
            dest: Dest::Local,
        });
        cases.push(Case {
            producer: Producer::Lines,
            dest: Dest::Fluentd,
        });
        cases.push(Case {
            producer: Producer::Lines,
            dest: Dest::Plugin,
        });
    }
    cases.retain(|c| {
        let name = c.id().strip_prefix("relay.").unwrap_or(c.id());
        cfg.relay_cases.iter().any(|k| k == name)
    });
    if cases.is_empty() {
        bail!("--relay-cases: none of the chosen cases applies to these runtimes");
    }
    let lines_file = ctx.work.join("data/lines");
    eprintln!(
        "scribe-bench: relay: writing {} MiB of 100-byte lines",
        cfg.relay_mib
    );
    let lines_bytes = make_lines_file(&lines_file, cfg.relay_mib)?;
    let dd_bytes = cfg.relay_mib << 20;
    eprintln!(
        "scribe-bench: relay: {} MiB per run, {} repetition(s), {} cases",
        cfg.relay_mib,
        cfg.relay_reps,
        cases.len()
    );
    let dd_cmd: Vec<String> = vec![
        "dd".into(),
        "if=/dev/zero".into(),
        "bs=1M".into(),
        format!("count={}", cfg.relay_mib),
    ];
    let host_cat: Vec<String> = vec!["cat".into(), lines_file.to_string_lossy().into_owned()];
    let mut floors: BTreeMap<Producer, Vec<f64>> = BTreeMap::new();
    let mut samples: BTreeMap<(Case, &str), Vec<Sample>> = BTreeMap::new();
    let mut failed: BTreeMap<(Case, &str), String> = BTreeMap::new();
    let mut serial = 0usize;
    for rep in 0..cfg.relay_reps {
        for (producer, cmd, expect) in [
            (Producer::Dd, dd_cmd.clone(), dd_bytes),
            (Producer::Lines, host_cat.clone(), lines_bytes),
        ] {
            match host_pipe(&cmd, expect, cfg.relay_mib) {
                Ok(v) => floors.entry(producer).or_default().push(v),
                Err(e) => notes.push(format!("relay: host pipe floor: {e:#}")),
            }
        }
        for (ci, case) in cases.iter().enumerate() {
            for rt in ctx.rotated(rep + ci) {
                crate::check_interrupt()?;
                if let Some(why) = unsupported(rt.key, case) {
                    if rep == 0
                        && !matches!(
                            case.dest,
                            Dest::JsonFile
                                | Dest::JsonFileAttached
                                | Dest::Local
                                | Dest::Fluentd
                                | Dest::Plugin
                        )
                    {
                        notes.push(format!(
                            "relay: {}: {} skipped: {why}",
                            rt.key,
                            case.label()
                        ));
                    }
                    continue;
                }
                if failed.contains_key(&(*case, rt.key)) {
                    continue;
                }
                serial += 1;
                let id = format!("relay-{}-{serial}", rt.key);
                let (mut opts, cmd, expect): (Vec<String>, Vec<String>, u64) = match case.producer {
                    Producer::Dd => (vec![], dd_cmd.clone(), dd_bytes),
                    Producer::Lines => (
                        vec![
                            "--mount".into(),
                            format!(
                                "type=bind,src={},dst=/data/lines,options=rbind:ro",
                                lines_file.display()
                            ),
                        ],
                        vec!["cat".into(), "/data/lines".into()],
                        lines_bytes,
                    ),
                };
                opts.push("--rm".into());
                let out_dir = ctx.work.join("out");
                let res = match case.dest {
                    Dest::Attached => attached(ctx, rt, &id, &opts, &cmd, expect, false),
                    Dest::AttachedStalling => attached(ctx, rt, &id, &opts, &cmd, expect, true),
                    Dest::File => {
                        let path = out_dir.join(format!("{id}.log"));
                        opts.push("--log-uri".into());
                        opts.push(format!("file://{}", path.display()));
                        let r = to_file(ctx, rt, &id, &opts, &cmd, &path, expect, None, None);
                        let _ = std::fs::remove_file(&path);
                        r
                    }
                    Dest::JsonFile => {
                        let dir = ctx.log_root.join(ctx.c.namespace()).join(&id);
                        let path = dir.join(format!("{id}-json.log"));
                        opts.push("--null-io".into());
                        opts.push("--annotation".into());
                        opts.push("io.scribe.log.driver=json-file".into());
                        let r =
                            to_file(ctx, rt, &id, &opts, &cmd, &path, expect, Some(expect), None);
                        let _ = std::fs::remove_dir_all(&dir);
                        r
                    }
                    Dest::Fluentd => {
                        let dir = ctx.log_root.join(ctx.c.namespace()).join(&id);
                        let sock = fluentd_socket(&ctx.work);
                        let rx = scribe_e2e::fluentd::CountingReceiver::unix(sock.clone())
                            .with_context(|| format!("listening on {}", sock.display()))?;
                        opts.push("--null-io".into());
                        for a in [
                            "io.scribe.log.driver=fluentd",
                            "io.scribe.log.cache-disabled=true",
                        ] {
                            opts.push("--annotation".into());
                            opts.push(a.into());
                        }
                        let probe = || rx.records() * LINE_LEN as u64;
                        let r =
                            to_file(ctx, rt, &id, &opts, &cmd, &sock, expect, None, Some(&probe));
                        let _ = std::fs::remove_dir_all(&dir);
                        r
                    }
                    Dest::Plugin => {
                        let dir = ctx.log_root.join(ctx.c.namespace()).join(&id);
                        let pdir = crate::plugin::plugin_dir(&ctx.work);
                        let plugin = crate::plugin::DiscardPlugin::start(&pdir)?;
                        opts.push("--null-io".into());
                        for a in [
                            format!("io.scribe.log.driver={}", crate::plugin::NAME),
                            "io.scribe.log.cache-disabled=true".to_string(),
                        ] {
                            opts.push("--annotation".into());
                            opts.push(a);
                        }
                        let sock = pdir.join(format!("{}.sock", crate::plugin::NAME));
                        let probe = || plugin.frames() * LINE_LEN as u64;
                        let r =
                            to_file(ctx, rt, &id, &opts, &cmd, &sock, expect, None, Some(&probe));
                        drop(plugin);
                        let _ = std::fs::remove_dir_all(&dir);
                        r
                    }
                    Dest::Local => {
                        let dir = ctx.log_root.join(ctx.c.namespace()).join(&id);
                        let path = dir.join("local-logs/container.log");
                        opts.push("--null-io".into());
                        for a in [
                            "io.scribe.log.driver=local",
                            // One file for the whole run: the size of the live file is the clock.
                            "io.scribe.log.max-size=1000g",
                            "io.scribe.log.max-file=2",
                            "io.scribe.log.compress=false",
                        ] {
                            opts.push("--annotation".into());
                            opts.push(a.into());
                        }
                        let r =
                            to_file(ctx, rt, &id, &opts, &cmd, &path, expect, Some(expect), None);
                        let _ = std::fs::remove_dir_all(&dir);
                        r
                    }
                    Dest::JsonFileAttached => {
                        let dir = ctx.log_root.join(ctx.c.namespace()).join(&id);
                        opts.push("--annotation".into());
                        opts.push("io.scribe.log.driver=json-file".into());
                        let r = attached(ctx, rt, &id, &opts, &cmd, expect, false);
                        let _ = std::fs::remove_dir_all(&dir);
                        r
                    }
                };
                // An attached run that failed half-way may leave its container behind.
                let _ = ctx.ctr.remove(&id);
                match res {
                    Ok(s) => {
                        eprintln!(
                            "scribe-bench: relay: {:<8} {:<34} {:>7.0} MB/s  {}",
                            rt.key,
                            case.label(),
                            s.mb_per_s,
                            s.cpu_s_per_gib
                                .map(|c| format!("{c:.2} s CPU/GiB"))
                                .unwrap_or_else(|| "CPU n/a".into())
                        );
                        samples.entry((*case, rt.key)).or_default().push(s);
                    }
                    Err(e) => {
                        eprintln!("scribe-bench: relay: {} {}: {e:#}", rt.key, case.label());
                        failed.insert((*case, rt.key), format!("{e:#}"));
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_file(&lines_file);
    for ((case, k), e) in &failed {
        notes.push(format!("relay: {k}: {}: {e}", case.label()));
    }
    let mut rows = Vec::new();
    for case in &cases {
        let mut tp = Row::new(case.id(), &case.label(), "MB/s");
        let mut cpu = Row::new(
            case.cpu_id(),
            &format!("  shim CPU per GiB, {}", case.label()),
            "s",
        )
        .decimals(2)
        .ratio_floor(0.05);
        for rt in &ctx.runtimes {
            if let Some(s) = samples.get(&(*case, rt.key)) {
                tp.set(
                    rt.key,
                    median(&s.iter().map(|x| x.mb_per_s).collect::<Vec<_>>()),
                );
                cpu.set(
                    rt.key,
                    median(&s.iter().filter_map(|x| x.cpu_s_per_gib).collect::<Vec<_>>()),
                );
            }
        }
        if matches!(case.dest, Dest::JsonFile | Dest::Local) {
            tp.note("MB/s of input lines; Scribe only");
        }
        if case.dest == Dest::Plugin {
            tp.note("MB/s of input lines counted as frames read from the FIFO by a discarding plugin (unix socket); Scribe only");
        }
        if case.dest == Dest::Fluentd {
            tp.note("MB/s of input lines counted at a forward-protocol receiver (unix socket); Scribe only");
        }
        if case.dest == Dest::AttachedStalling {
            tp.note("MB/s at a reader that reads 1 s, then stops for 1 s, and so on (first to last byte)");
        }
        if case.dest == Dest::JsonFileAttached {
            tp.note("timed at the attached reader; every line also framed into json-file");
        }
        if case.dest == Dest::Attached {
            if let Some(f) = floors.get(&case.producer).and_then(|v| median(v)) {
                tp.note(format!(
                    "floor, same producer piped straight to the reader on the host: {f:.0}"
                ));
            }
        }
        if case.dest == Dest::Attached && ctx.runtimes.iter().any(|r| r.key == "rust") {
            cpu.note("rust: runc gets ctr's FIFOs, the shim copies nothing");
        }
        rows.push(tp);
        rows.push(cpu);
    }
    if let Some(r) = rows.first_mut() {
        r.note(format!(
            "{} MiB a run, median of {}",
            cfg.relay_mib, cfg.relay_reps
        ));
    }
    Ok(rows)
}

/// Polls for the shim daemon of `id` (by argv; a socket scan as the fallback).
fn find_shim(ctx: &Ctx, id: &str, since: Instant) -> Option<i32> {
    procfs::find_shim_daemon(&ctx.ctr.address(), id).or_else(|| {
        if since.elapsed() > Duration::from_millis(500) {
            ctx.c.shim_pid(id)
        } else {
            None
        }
    })
}

/// Attached reader: `ctr run --rm` with stdout piped here; with `stall`, the reader stops
/// reading for 1 s after every second of reading.
fn attached(
    ctx: &Ctx,
    rt: &crate::runtimes::Runtime,
    id: &str,
    opts: &[String],
    cmd: &[String],
    expect: u64,
    stall: bool,
) -> Result<Sample> {
    let o: Vec<&str> = opts.iter().map(String::as_str).collect();
    let c: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut command = ctx.ctr.command(&ctx.run_args(rt, &o, id, &c));
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("spawning ctr run for {id}"))?;
    let stdout = child.stdout.take().context("ctr stdout")?;
    // A bigger pipe between ctr and us: fewer wake-ups on the reading side, for every runtime.
    unsafe {
        libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
    let stderr = child.stderr.take().context("ctr stderr")?;
    let err_h = std::thread::spawn(move || {
        let mut s = String::new();
        let mut e = stderr;
        let _ = e.read_to_string(&mut s);
        s
    });
    let shim = Arc::new(AtomicI32::new(0));
    let shim_r = shim.clone();
    let reader = std::thread::spawn(move || count_bytes(stdout, &shim_r, stall));
    // Find the shim while the container starts; the reader samples its CPU.
    let dog = crate::ctr::watchdog(child.id(), run_timeout(ctx.cfg.relay_mib));
    while shim.load(Ordering::Acquire) == 0 && !reader.is_finished() {
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        if let Some(p) = find_shim(ctx, id, started) {
            shim.store(p, Ordering::Release);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for ctr run {id}"))?;
    let _ = dog.send(());
    let st = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))?
        .with_context(|| format!("reading the output of {id}"))?;
    let err = err_h.join().unwrap_or_default();
    if !status.success() {
        bail!("ctr run {id} failed ({status}): {}", err.trim());
    }
    if st.total != expect {
        bail!(
            "{id}: received {} bytes, expected {expect}; stderr: {}",
            st.total,
            err.trim()
        );
    }
    let mb_per_s = throughput(&st, id)?;
    let cpu = match (st.base, st.end_ticks) {
        (Some((b_bytes, b_ticks)), Some(e_ticks)) => {
            let bytes = st.total - b_bytes;
            (bytes as f64 >= expect as f64 * 0.5).then(|| {
                let s = e_ticks.saturating_sub(b_ticks) as f64 / procfs::ticks_per_sec() as f64;
                s / (bytes as f64 / GIB)
            })
        }
        _ => None,
    };
    Ok(Sample {
        mb_per_s,
        cpu_s_per_gib: cpu,
    })
}

#[derive(Debug, Default)]
struct ReadStats {
    total: u64,
    /// When the first chunk arrived, and its size.
    first: Option<(Instant, u64)>,
    last: Option<Instant>,
    /// Bytes received and shim CPU ticks when the shim was first sampled.
    base: Option<(u64, u64)>,
    end_ticks: Option<u64>,
}

/// Reads `r` to EOF, counting bytes and noting when the first and last arrived; samples the
/// CPU ticks of the process in `shim` (once it is known, i.e. > 0) at the first read after
/// that and at EOF. With `stall`, stops reading for 1 s after every second of reading.
fn count_bytes(mut r: impl Read, shim: &AtomicI32, stall: bool) -> std::io::Result<ReadStats> {
    let mut buf = vec![0u8; 1 << 20];
    let mut st = ReadStats::default();
    let mut reading_since = Instant::now();
    loop {
        if stall && reading_since.elapsed() >= Duration::from_secs(1) {
            std::thread::sleep(Duration::from_secs(1));
            reading_since = Instant::now();
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        if st.first.is_none() {
            st.first = Some((now, n as u64));
        }
        st.total += n as u64;
        st.last = Some(now);
        if st.base.is_none() {
            let pid = shim.load(Ordering::Acquire);
            if pid > 0 {
                if let Ok(t) = procfs::cpu_ticks(pid) {
                    st.base = Some((st.total, t));
                }
            }
        }
    }
    let pid = shim.load(Ordering::Acquire);
    if pid > 0 {
        st.end_ticks = procfs::cpu_ticks(pid).ok();
    }
    Ok(st)
}

/// MB/s from the first to the last chunk (the first chunk's bytes arrived before the clock
/// started, so they are not counted).
fn throughput(st: &ReadStats, what: &str) -> Result<f64> {
    let (Some((t0, first_n)), Some(t1)) = (st.first, st.last) else {
        bail!("{what}: no output");
    };
    let secs = (t1 - t0).as_secs_f64();
    if secs <= 0.0 {
        bail!("{what}: all output arrived at once; use a larger --relay-mib");
    }
    Ok((st.total - first_n) as f64 / secs / 1e6)
}

/// The same producer and reader without container, containerd or shim: busybox on the host,
/// its stdout piped straight into [`count_bytes`]. What the attached-reader runs cannot beat.
fn host_pipe(cmd: &[String], expect: u64, mib: u64) -> Result<f64> {
    let mut c = std::process::Command::new("/usr/bin/busybox");
    c.args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().context("spawning busybox on the host")?;
    let out = child.stdout.take().context("busybox stdout")?;
    unsafe {
        libc::fcntl(out.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
    let reader = std::thread::spawn(move || count_bytes(out, &AtomicI32::new(0), false));
    let (status, timed_out) = crate::ctr::wait_child(&mut child, run_timeout(mib), "busybox")?;
    let st = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))?
        .context("reading busybox's output")?;
    if timed_out {
        bail!(
            "host busybox {} took longer than {:?}",
            cmd.join(" "),
            run_timeout(mib)
        );
    }
    if !status.success() {
        bail!("host busybox {} failed ({status})", cmd.join(" "));
    }
    if st.total != expect {
        bail!(
            "host busybox {}: {} bytes, expected {expect}",
            cmd.join(" "),
            st.total
        );
    }
    throughput(&st, "host pipe")
}

/// A destination file (`file://`, json-file): its size is polled every 2 ms.
/// `input` is the number of container-output bytes the final file represents when it differs
/// from the file's size (json-file); throughput and CPU are then per input byte. `probe`, when
/// given, replaces the file's size (fluentd: the bytes of the records a receiver counted).
#[allow(clippy::too_many_arguments)]
fn to_file(
    ctx: &Ctx,
    rt: &crate::runtimes::Runtime,
    id: &str,
    opts: &[String],
    cmd: &[String],
    path: &PathBuf,
    expect: u64,
    input: Option<u64>,
    probe: Option<&dyn Fn() -> u64>,
) -> Result<Sample> {
    let o: Vec<&str> = opts.iter().map(String::as_str).collect();
    let c: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut command = ctx.ctr.command(&ctx.run_args(rt, &o, id, &c));
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("spawning ctr run for {id}"))?;
    let stderr = child.stderr.take().context("ctr stderr")?;
    let err_h = std::thread::spawn(move || {
        let mut s = String::new();
        let mut e = stderr;
        let _ = e.read_to_string(&mut s);
        s
    });
    let mut shim = 0i32;
    let mut last_size = 0u64;
    let mut first: Option<(Instant, u64)> = None;
    let mut last: Option<(Instant, u64)> = None;
    let mut base: Option<(u64, u64)> = None;
    let mut end_ticks: Option<u64> = None;
    let mut exited: Option<std::process::ExitStatus> = None;
    loop {
        if shim == 0 {
            if let Some(p) = find_shim(ctx, id, started) {
                shim = p;
            }
        }
        let size = match probe {
            Some(p) => p(),
            None => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        };
        let now = Instant::now();
        if size != last_size {
            last_size = size;
            if size > 0 && first.is_none() {
                first = Some((now, size));
            }
            if size > 0 {
                last = Some((now, size));
            }
            if shim > 0 {
                if let Ok(t) = procfs::cpu_ticks(shim) {
                    if base.is_none() && size > 0 {
                        base = Some((size, t));
                    }
                    end_ticks = Some(t);
                }
            }
        }
        if exited.is_none() {
            exited = child
                .try_wait()
                .with_context(|| format!("waiting for ctr run {id}"))?;
        }
        let quiet = last.map(|(t, _)| now - t).unwrap_or(now - started);
        if exited.is_some() && quiet > Duration::from_millis(500) {
            break;
        }
        let limit = run_timeout(ctx.cfg.relay_mib);
        let stalled = first.is_none() && exited.is_none() && started.elapsed() > STALL;
        if stalled || started.elapsed() > limit {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
            if stalled {
                bail!("{id}: nothing written to {} in {STALL:?}", path.display());
            }
            bail!("{id}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let err = err_h.join().unwrap_or_default();
    if let Some(st) = exited.filter(|s| !s.success()) {
        bail!("ctr run {id} failed ({st}): {}", err.trim());
    }
    let (Some((t0, s0)), Some((t1, s1))) = (first, last) else {
        bail!("{id}: nothing was written to {}", path.display());
    };
    if s1 < expect {
        bail!(
            "{id}: {} holds {s1} bytes, expected at least {expect}",
            path.display()
        );
    }
    let secs = (t1 - t0).as_secs_f64();
    if secs <= 0.0 {
        bail!("{id}: all output arrived at once; use a larger --relay-mib");
    }
    // Output bytes -> container-output bytes.
    let scale = input.map(|i| i as f64 / s1 as f64).unwrap_or(1.0);
    let mb_per_s = (s1 - s0) as f64 * scale / secs / 1e6;
    let cpu = match (base, end_ticks) {
        (Some((b_size, b_ticks)), Some(e_ticks)) => {
            let bytes = (s1 - b_size) as f64 * scale;
            (bytes >= expect as f64 * 0.5).then(|| {
                let s = e_ticks.saturating_sub(b_ticks) as f64 / procfs::ticks_per_sec() as f64;
                s / (bytes / GIB)
            })
        }
        _ => None,
    };
    Ok(Sample {
        mb_per_s,
        cpu_s_per_gib: cpu,
    })
}

/// The unix socket the fluentd case's receiver listens on (the options TOML allows it).
pub fn fluentd_socket(work: &Path) -> PathBuf {
    work.join("fluentd.sock")
}
