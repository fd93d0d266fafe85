//! Idle shims: memory, threads and CPU of shims whose containers just sleep.

use crate::procfs;
use crate::report::Row;
use crate::stats::median;
use crate::Ctx;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct PerRuntime {
    singles: Vec<String>,
    pod: Vec<String>,
    failed: Option<String>,
}

pub fn run(ctx: &Ctx, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let mut per: BTreeMap<&'static str, PerRuntime> = BTreeMap::new();
    let mut all_ids = Vec::new();
    let res = start_and_measure(ctx, &mut per, &mut all_ids, notes);
    eprintln!("scribe-bench: idle: removing {} containers", all_ids.len());
    let rm = ctx.ctr.remove_all(&all_ids, 8);
    let rows = res?;
    rm.context("removing the idle containers")?;
    ctx.wait_no_shims(Duration::from_secs(30));
    Ok(rows)
}

fn start_and_measure(
    ctx: &Ctx,
    per: &mut BTreeMap<&'static str, PerRuntime>,
    all_ids: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Vec<Row>> {
    let cfg = ctx.cfg;
    eprintln!(
        "scribe-bench: idle: starting {} sleeping containers and a pod of {} per runtime",
        cfg.idle, cfg.pod
    );
    for rt in &ctx.runtimes {
        per.insert(rt.key, PerRuntime::default());
    }
    let sleep = ["sleep", "1000000"];
    for i in 0..cfg.idle {
        for rt in ctx.rotated(i) {
            crate::check_interrupt()?;
            let p = per.get_mut(rt.key).context("runtime table")?;
            if p.failed.is_some() {
                continue;
            }
            let id = format!("idle-{}-{i}", rt.key);
            all_ids.push(id.clone());
            match ctx
                .ctr
                .run(&ctx.run_args(rt, &["-d"], &id, &sleep), ctx.ctr_timeout())
            {
                Ok(_) => p.singles.push(id),
                Err(e) => p.failed = Some(format!("{e:#}")),
            }
        }
    }
    for j in 0..cfg.pod {
        for rt in ctx.rotated(j) {
            crate::check_interrupt()?;
            let p = per.get_mut(rt.key).context("runtime table")?;
            if p.failed.is_some() {
                continue;
            }
            let id = format!("pod-{}-{j}", rt.key);
            let ann = format!("io.containerd.runc.v2.group=benchpod-{}", rt.key);
            all_ids.push(id.clone());
            match ctx.ctr.run(
                &ctx.run_args(rt, &["-d", "--annotation", &ann], &id, &sleep),
                ctx.ctr_timeout(),
            ) {
                Ok(_) => p.pod.push(id),
                Err(e) => p.failed = Some(format!("{e:#}")),
            }
        }
    }
    for (k, p) in per.iter() {
        if let Some(e) = &p.failed {
            notes.push(format!("idle: {k}: starting a container failed: {e}"));
        }
    }
    // Scribe only: idle shims whose fluentd driver is connected to a receiver (the goal is that
    // they cost what a plain idle shim costs: one thread, a parked task and a socket).
    let (fluent_rx, fluent_ids) = start_fluentd_idle(ctx, all_ids, notes)?;
    std::thread::sleep(SETTLE);

    // Which shim serves which container (the process listening on the bundle's socket).
    let mut singles: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    let mut pods: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for (k, p) in per.iter() {
        if p.failed.is_some() {
            continue;
        }
        for id in &p.singles {
            match ctx.c.shim_pid(id) {
                Some(pid) => singles.entry(k).or_default().push(pid),
                None => notes.push(format!("idle: {k}: no shim process found for {id}")),
            }
        }
        for id in &p.pod {
            match ctx.c.shim_pid(id) {
                Some(pid) => {
                    pods.entry(k).or_default().insert(pid);
                }
                None => notes.push(format!("idle: {k}: no shim process found for {id}")),
            }
        }
    }
    let mut fluent_pids = Vec::new();
    for id in &fluent_ids {
        match ctx.c.shim_pid(id) {
            Some(pid) => fluent_pids.push(pid),
            None => notes.push(format!("idle: fluentd: no shim process found for {id}")),
        }
    }
    let every: BTreeSet<i32> = singles
        .values()
        .flatten()
        .chain(pods.values().flatten())
        .chain(fluent_pids.iter())
        .copied()
        .collect();

    eprintln!(
        "scribe-bench: idle: {} shims; measuring CPU over {} s",
        every.len(),
        cfg.idle_cpu_secs
    );
    let before: BTreeMap<i32, u64> = every
        .iter()
        .filter_map(|p| procfs::cpu_ticks(*p).ok().map(|t| (*p, t)))
        .collect();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(cfg.idle_cpu_secs) {
        crate::check_interrupt()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let tck = procfs::ticks_per_sec() as f64;
    let cpu_ms: BTreeMap<i32, f64> = every
        .iter()
        .filter_map(|p| {
            let b = before.get(p)?;
            let a = procfs::cpu_ticks(*p).ok()?;
            Some((*p, a.saturating_sub(*b) as f64 * 1000.0 / tck))
        })
        .collect();

    // Shims that are gone or have helpers besides their containers would skew the figures.
    for pid in &every {
        if !cpu_ms.contains_key(pid) {
            notes.push(format!("idle: shim {pid} vanished during the CPU window"));
        }
        let helpers: Vec<String> = procfs::children(*pid)
            .into_iter()
            .map(procfs::comm_of)
            .filter(|c| c != "sleep")
            .collect();
        if !helpers.is_empty() {
            notes.push(format!(
                "idle: shim {pid} ({}) has child processes besides its containers: {helpers:?} (not counted)",
                procfs::comm_of(*pid)
            ));
        }
    }

    let mut rows = vec![
        Row::new("idle.rss", "idle shim RSS (median)", "KiB"),
        Row::new("idle.pss", "idle shim PSS (median)", "KiB"),
        Row::new("idle.uss", "idle shim USS (median)", "KiB"),
        Row::new("idle.threads", "idle shim threads (median)", ""),
        Row::new(
            "idle.cpu.median",
            &format!("idle CPU per shim over {} s (median)", cfg.idle_cpu_secs),
            "ms",
        ),
        Row::new(
            "idle.cpu.max",
            &format!("idle CPU per shim over {} s (max)", cfg.idle_cpu_secs),
            "ms",
        ),
        Row::new(
            "pod.shims",
            &format!("pod of {}: shim processes", cfg.pod),
            "",
        ),
        Row::new("pod.rss", "pod shim(s) RSS", "KiB"),
        Row::new("pod.pss", "pod shim(s) PSS", "KiB"),
        Row::new("pod.uss", "pod shim(s) USS", "KiB"),
        Row::new("pod.threads", "pod shim(s) threads", ""),
        Row::new(
            "pod.cpu",
            &format!("pod shim(s) idle CPU over {} s", cfg.idle_cpu_secs),
            "ms",
        ),
    ];
    rows[0].note(format!("{} single-container shims each", cfg.idle));
    for rt in &ctx.runtimes {
        let k = rt.key;
        if let Some(pids) = singles.get(k) {
            let mems: Vec<procfs::Mem> = pids.iter().filter_map(|p| procfs::mem(*p).ok()).collect();
            let thr: Vec<f64> = pids
                .iter()
                .filter_map(|p| procfs::threads(*p).ok())
                .map(|t| t as f64)
                .collect();
            let cpu: Vec<f64> = pids.iter().filter_map(|p| cpu_ms.get(p).copied()).collect();
            rows[0].set(
                k,
                median(&mems.iter().map(|m| m.rss_kib as f64).collect::<Vec<_>>()),
            );
            rows[1].set(
                k,
                median(&mems.iter().map(|m| m.pss_kib as f64).collect::<Vec<_>>()),
            );
            rows[2].set(
                k,
                median(&mems.iter().map(|m| m.uss_kib as f64).collect::<Vec<_>>()),
            );
            rows[3].set(k, median(&thr));
            rows[4].set(k, median(&cpu));
            rows[5].set(k, cpu.iter().copied().reduce(f64::max));
            if pids.len() != cfg.idle {
                rows[0].note(format!("{k}: only {} shims measured", pids.len()));
            }
        }
        if let Some(pids) = pods.get(k) {
            let mems: Vec<procfs::Mem> = pids.iter().filter_map(|p| procfs::mem(*p).ok()).collect();
            let thr: u64 = pids.iter().filter_map(|p| procfs::threads(*p).ok()).sum();
            let cpu: f64 = pids.iter().filter_map(|p| cpu_ms.get(p)).sum();
            rows[6].set(k, Some(pids.len() as f64));
            rows[7].set(k, Some(mems.iter().map(|m| m.rss_kib).sum::<u64>() as f64));
            rows[8].set(k, Some(mems.iter().map(|m| m.pss_kib).sum::<u64>() as f64));
            rows[9].set(k, Some(mems.iter().map(|m| m.uss_kib).sum::<u64>() as f64));
            rows[10].set(k, Some(thr as f64));
            rows[11].set(k, Some(cpu));
            if pids.len() > 1 {
                rows[6].note(format!(
                    "{k} ignores the group annotation: figures are sums"
                ));
            }
        }
    }
    rows[3].decimals = 1;
    if let Some(rx) = fluent_rx {
        rows.extend(fluentd_rows(
            &fluent_pids,
            &cpu_ms,
            rx.connections(),
            cfg.idle_cpu_secs,
        ));
    }
    Ok(rows)
}

/// Starts `cfg.idle` sleeping Scribe containers with `io.scribe.log.driver=fluentd` (the bench's
/// options TOML sets `fluentd-address` to a unix socket in the work directory) and the
/// forward-protocol receiver they connect to. None when Scribe is not among the runtimes.
fn start_fluentd_idle(
    ctx: &Ctx,
    all_ids: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<(Option<scribe_e2e::fluentd::Receiver>, Vec<String>)> {
    let Some(rt) = ctx.runtimes.iter().find(|r| r.key == "scribe") else {
        return Ok((None, Vec::new()));
    };
    let sock = crate::relay::fluentd_socket(&ctx.work);
    let _ = std::fs::remove_file(&sock);
    let rx = scribe_e2e::fluentd::Receiver::unix(sock);
    let mut ids = Vec::new();
    for i in 0..ctx.cfg.idle {
        crate::check_interrupt()?;
        let id = format!("idle-fluentd-{i}");
        all_ids.push(id.clone());
        let args = ctx.run_args(
            rt,
            &["-d", "--annotation", "io.scribe.log.driver=fluentd"],
            &id,
            // One line first: the driver connects when it has something to send.
            &["sh", "-c", "echo idle; exec sleep 1000000"],
        );
        match ctx.ctr.run(&args, ctx.ctr_timeout()) {
            Ok(_) => ids.push(id),
            Err(e) => {
                notes.push(format!("idle: fluentd: starting {id} failed: {e:#}"));
                break;
            }
        }
    }
    Ok((Some(rx), ids))
}

/// Rows of the idle shims with a connected fluentd driver (Scribe's column only).
fn fluentd_rows(
    pids: &[i32],
    cpu_ms: &BTreeMap<i32, f64>,
    connections: u64,
    cpu_secs: u64,
) -> Vec<Row> {
    let mut uss = Row::new(
        "idle.fluentd.uss",
        "idle shim with fluentd connected: USS (median)",
        "KiB",
    );
    let mut thr = Row::new(
        "idle.fluentd.threads",
        "idle shim with fluentd connected: threads (median)",
        "",
    );
    let mut cpu = Row::new(
        "idle.fluentd.cpu.max",
        &format!("idle shim with fluentd connected: CPU over {cpu_secs} s (max)"),
        "ms",
    );
    let mems: Vec<f64> = pids
        .iter()
        .filter_map(|p| procfs::mem(*p).ok())
        .map(|m| m.uss_kib as f64)
        .collect();
    let threads: Vec<f64> = pids
        .iter()
        .filter_map(|p| procfs::threads(*p).ok())
        .map(|t| t as f64)
        .collect();
    let cpus: Vec<f64> = pids.iter().filter_map(|p| cpu_ms.get(p).copied()).collect();
    uss.set("scribe", median(&mems));
    thr.set("scribe", median(&threads));
    cpu.set("scribe", cpus.iter().copied().reduce(f64::max));
    thr.decimals = 1;
    uss.note(format!(
        "{} shims, {connections} connections accepted by the receiver (dual-logging cache on, the default)",
        pids.len()
    ));
    vec![uss, thr, cpu]
}
