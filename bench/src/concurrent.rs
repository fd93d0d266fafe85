//! N containers started at once (`ctr run -d` in parallel), then torn down at once
//! (`ctr task rm -f` + `ctr containers rm` in parallel): wall time of each phase.

use crate::report::Row;
use crate::stats::median;
use crate::Ctx;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Runs `f(i)` for every i in 0..n on its own thread, all at once; returns the wall time and
/// the first error.
fn all_at_once<F>(n: usize, f: F) -> (Duration, Result<()>)
where
    F: Fn(usize) -> Result<()> + Send + Sync + 'static,
{
    let f = std::sync::Arc::new(f);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                f(i)
            })
        })
        .collect();
    let start = Instant::now();
    barrier.wait();
    let mut res = Ok(());
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(anyhow!("worker thread panicked")));
        if let (Err(e), Ok(())) = (r, &res) {
            res = Err(e);
        }
    }
    (start.elapsed(), res)
}

pub fn run(ctx: &Ctx, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let cfg = ctx.cfg;
    let n = cfg.concurrent;
    eprintln!(
        "scribe-bench: concurrency: {n} containers started and torn down at once, {} round(s) per runtime",
        cfg.concurrent_rounds
    );
    let mut starts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut downs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut failed: BTreeMap<&str, String> = BTreeMap::new();
    for round in 0..cfg.concurrent_rounds {
        for rt in ctx.rotated(round) {
            crate::check_interrupt()?;
            if failed.contains_key(rt.key) {
                continue;
            }
            let ids: Vec<String> = (0..n)
                .map(|k| format!("conc-{}-{round}-{k}", rt.key))
                .collect();
            let arg_sets: Vec<Vec<String>> = ids
                .iter()
                .map(|id| ctx.run_args(rt, &["-d"], id, &["sleep", "1000000"]))
                .collect();
            let ctr = ctx.ctr.clone();
            let timeout = ctx.ctr_timeout();
            let (up, up_res) = all_at_once(n, move |i| ctr.run(&arg_sets[i], timeout).map(|_| ()));
            let ctr = ctx.ctr.clone();
            let ids2 = ids.clone();
            let (down, down_res) = all_at_once(n, move |i| ctr.remove(&ids2[i]));
            // Whatever happened, nothing of this round may stay behind.
            let cleanup = ctx.ctr.remove_all(&ids, 8);
            ctx.wait_no_shims(Duration::from_secs(30));
            match (up_res, down_res, cleanup) {
                (Ok(()), Ok(()), _) => {
                    starts.entry(rt.key).or_default().push(up.as_secs_f64());
                    downs.entry(rt.key).or_default().push(down.as_secs_f64());
                }
                (Err(e), _, _) | (_, Err(e), _) => {
                    failed.insert(rt.key, format!("{e:#}"));
                }
            }
        }
    }
    for (k, e) in &failed {
        notes.push(format!(
            "concurrency: {k}: failed, not measured further: {e}"
        ));
    }
    let mut rows = vec![
        Row::new(
            "conc.start",
            &format!("{n} concurrent starts (ctr run -d), wall"),
            "s",
        )
        .decimals(2),
        Row::new(
            "conc.down",
            &format!("{n} concurrent teardowns (task rm -f + rm), wall"),
            "s",
        )
        .decimals(2),
    ];
    rows[0].note(format!("median of {} round(s)", cfg.concurrent_rounds));
    for rt in &ctx.runtimes {
        if let Some(s) = starts.get(rt.key) {
            rows[0].set(rt.key, median(s));
        }
        if let Some(s) = downs.get(rt.key) {
            rows[1].set(rt.key, median(s));
        }
    }
    Ok(rows)
}
