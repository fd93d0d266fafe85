//! `ctr run --rm <image> <id> /bin/true` latency, `runc run` alone as the floor, and the gap
//! between the /tasks/start and /tasks/exit events of those runs.

use crate::ctr::run_timed;
use crate::report::Row;
use crate::stats::{median, p90};
use crate::Ctx;
use anyhow::{Context, Result};
use scribe_e2e::IMAGE;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A bundle for `runc run` with the image's root filesystem and `/bin/true` as its process.
pub struct Floor {
    bundle: PathBuf,
    root: PathBuf,
}

impl Floor {
    pub fn prepare(ctx: &Ctx) -> Result<Floor> {
        let dir = ctx.work.join("runc");
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        let mnt = dir.join("image-mount");
        std::fs::create_dir_all(&rootfs)
            .with_context(|| format!("creating {}", rootfs.display()))?;
        std::fs::create_dir_all(&mnt).with_context(|| format!("creating {}", mnt.display()))?;
        let mnt_s = mnt.to_string_lossy().into_owned();
        let t = Duration::from_secs(60);
        ctx.ctr
            .run(&["images", "mount", IMAGE, &mnt_s], t)
            .context("mounting the image for the runc bundle")?;
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(format!("{mnt_s}/.")).arg(&rootfs);
        let copied = run_timed(cp, t);
        let unmounted = ctx.ctr.run(&["images", "unmount", &mnt_s], t);
        copied.context("copying the image rootfs")?;
        unmounted.context("unmounting the image")?;

        let mut spec = Command::new("runc");
        spec.arg("spec").arg("-b").arg(&bundle);
        let _ = std::fs::remove_file(bundle.join("config.json"));
        run_timed(spec, t).context("runc spec")?;
        let cfg_path = bundle.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?;
        let mut v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", cfg_path.display()))?;
        v["process"]["terminal"] = false.into();
        v["process"]["args"] = serde_json::json!(["/bin/true"]);
        v["root"]["readonly"] = true.into();
        std::fs::write(
            &cfg_path,
            serde_json::to_vec_pretty(&v).context("serialising config.json")?,
        )
        .with_context(|| format!("writing {}", cfg_path.display()))?;
        Ok(Floor {
            bundle,
            root: dir.join("state"),
        })
    }

    /// `runc --root <state> run -b <bundle> <id>`: create, start, wait, delete.
    pub fn run(&self, id: &str) -> Result<Duration> {
        let mut c = Command::new("runc");
        c.arg("--root")
            .arg(&self.root)
            .arg("run")
            .arg("-b")
            .arg(&self.bundle)
            .arg(id)
            .stdin(std::process::Stdio::null());
        Ok(run_timed(c, Duration::from_secs(60))?.elapsed)
    }
}

/// Seconds since the epoch of a `ctr events` timestamp: `2026-11-23 14:14:12.313063113 +0000 UTC`.
pub fn parse_event_time(s: &str) -> Option<f64> {
    let mut it = s.split_whitespace();
    let date = it.next()?;
    let time = it.next()?;
    let offset = it.next().unwrap_or("+0000");
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if t.len() != 3 {
        return None;
    }
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    let off = if offset.len() == 5 && (offset.starts_with('+') || offset.starts_with('-')) {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let h: i64 = offset[1..3].parse().ok()?;
        let m: i64 = offset[3..5].parse().ok()?;
        sign * (h * 3600 + m * 60)
    } else {
        0
    };
    let days = days_from_civil(d[0], d[1], d[2]);
    Some((days * 86400 + t[0] * 3600 + t[1] * 60 + t[2] - off) as f64 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn run(ctx: &Ctx, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let cfg = ctx.cfg;
    let floor = match Floor::prepare(ctx) {
        Ok(f) => Some(f),
        Err(e) => {
            notes.push(format!("latency: no runc floor: {e:#}"));
            None
        }
    };
    let events = ctx.c.events();
    let true_cmd = ["/bin/true"];
    // Entries: each runtime, then the floor (None).
    let mut entries: Vec<Option<&crate::runtimes::Runtime>> =
        ctx.runtimes.iter().map(Some).collect();
    if floor.is_some() {
        entries.push(None);
    }
    eprintln!(
        "scribe-bench: latency: {} x `ctr run --rm ... /bin/true` per runtime, interleaved{}",
        cfg.latency_runs,
        if floor.is_some() {
            ", with `runc run` as the floor"
        } else {
            ""
        }
    );
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut failed: BTreeMap<&str, String> = BTreeMap::new();
    // Round 0 is a warm-up (page cache, first-run costs) and is not counted.
    for i in 0..=cfg.latency_runs {
        let n = entries.len();
        for k in 0..n {
            crate::check_interrupt()?;
            let e = entries[(i + k) % n];
            let key = e.map(|r| r.key).unwrap_or("floor");
            if failed.contains_key(key) {
                continue;
            }
            let res = match (e, &floor) {
                (Some(rt), _) => {
                    let id = format!("lat-{key}-{i}");
                    let r = ctx
                        .ctr
                        .run(
                            &ctx.run_args(rt, &["--rm"], &id, &true_cmd),
                            ctx.ctr_timeout(),
                        )
                        .map(|t| t.elapsed);
                    if i > 0 {
                        ids.entry(key).or_default().push(id);
                    }
                    r
                }
                (None, Some(f)) => f.run(&format!("bench-floor-{}-{i}", std::process::id())),
                (None, None) => continue,
            };
            match res {
                Ok(d) if i > 0 => samples
                    .entry(key)
                    .or_default()
                    .push(d.as_secs_f64() * 1000.0),
                Ok(_) => {}
                Err(e) => {
                    failed.insert(key, format!("{e:#}"));
                }
            }
        }
    }
    for (k, e) in &failed {
        notes.push(format!(
            "latency: {k}: a run failed, stopped measuring it: {e}"
        ));
    }

    // start -> exit gaps, from the events' own timestamps.
    let mut gaps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (k, list) in &ids {
        for id in list {
            let exit = events.wait_topic(id, "/tasks/exit", Duration::from_secs(5));
            let start = events.wait_topic(id, "/tasks/start", Duration::from_millis(10));
            let (Some(s), Some(x)) = (start, exit) else {
                continue;
            };
            if let (Some(a), Some(b)) = (parse_event_time(&s.time), parse_event_time(&x.time)) {
                gaps.entry(k).or_default().push((b - a) * 1000.0);
            }
        }
        let got = gaps.get(k).map(Vec::len).unwrap_or(0);
        if got < list.len() {
            notes.push(format!(
                "events: {k}: start and exit events found for {got} of {} runs",
                list.len()
            ));
        }
    }
    drop(events);

    let mut rows = vec![
        Row::new("lat.median", "ctr run --rm true (median)", "ms").decimals(1),
        Row::new("lat.p90", "ctr run --rm true (p90)", "ms").decimals(1),
        Row::new("ev.median", "start->exit event gap, true (median)", "ms").decimals(2),
        Row::new("ev.p90", "start->exit event gap, true (p90)", "ms").decimals(2),
    ];
    rows[0].note(format!("{} runs each", cfg.latency_runs));
    for rt in &ctx.runtimes {
        if let Some(s) = samples.get(rt.key) {
            rows[0].set(rt.key, median(s));
            rows[1].set(rt.key, p90(s));
        }
        if let Some(g) = gaps.get(rt.key) {
            rows[2].set(rt.key, median(g));
            rows[3].set(rt.key, p90(g));
        }
    }
    if let Some(f) = samples.get("floor") {
        if let (Some(m), Some(p)) = (median(f), p90(f)) {
            rows[0].note(format!("floor `runc run -b`: {m:.1}"));
            rows[1].note(format!("floor `runc run -b`: {p:.1}"));
        }
    }
    if let Some(f) = &floor {
        let _ = std::fs::remove_dir_all(&f.root);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time() {
        let a = parse_event_time("2026-11-23 14:14:12.313063113 +0000 UTC").unwrap();
        let b = parse_event_time("2026-11-23 14:14:13.000000000 +0000 UTC").unwrap();
        assert!(((b - a) - 0.686936887).abs() < 1e-6);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
    }
}
