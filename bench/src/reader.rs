//! Reading logs back: `scribe logs --tail 10` and `--since` (the last 1% of the time span)
//! over rotated, gzipped json-file logs (`SCRIBE_BENCH_READER_MIB`, default 1024 MiB; 64 with
//! --quick), against `tail -n 10` of the live file and against `scribe logs` reading all of it.
//! Goal (issue 13): --tail 10 under 20 ms.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::report::Row;
use crate::Ctx;
use scribe_io::jsonfile::{JsonFileOptions, JsonFileWriter, TagInfo};
use scribe_io::stream::Stream;

const ID: &str = "readbench";

/// Writes `mib` MiB of 100-byte lines through the json-file writer (files of a tenth of that,
/// 11 kept, gzipped), 1000 lines a millisecond apart in time; returns the time span.
fn generate(root: &Path, mib: u64) -> Result<(SystemTime, SystemTime)> {
    let dir = root.join("default").join(ID);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let opts = JsonFileOptions {
        max_size: Some((mib * 1024 * 1024 / 10).max(1024 * 1024)),
        max_file: 11,
        compress: true,
        tag: None,
    };
    let info = TagInfo {
        container_id: ID.into(),
        container_name: ID.into(),
        image_name: String::new(),
        image_id: String::new(),
        daemon_name: "scribe".into(),
    };
    let mut w = JsonFileWriter::open(dir.join(format!("{ID}-json.log")), &opts, &info)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_inline_rotation();
    // Each entry is about 150 bytes of JSON for a 100-byte line.
    let entries = mib * 1024 * 1024 / 150;
    let start = SystemTime::now() - Duration::from_secs(3600);
    let mut t = start;
    let pad = "x".repeat(80);
    let mut batch: Vec<String> = Vec::with_capacity(1000);
    let mut n = 0u64;
    while n < entries {
        batch.clear();
        for _ in 0..1000 {
            batch.push(format!("line {n:012} {pad}\n"));
            n += 1;
        }
        let refs: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
        w.write_many(Stream::Stdout, &refs, t)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        t += Duration::from_millis(1);
    }
    w.wait_rotation();
    Ok((start, t))
}

/// Median wall time of `runs` runs of `cmd` (stdout to /dev/null), in ms.
fn time_ms(cmd: &mut dyn FnMut() -> Command, runs: usize) -> Result<f64> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = cmd();
        let t = Instant::now();
        let st = c
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {c:?}"))?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
        if !st.success() {
            bail!("{c:?}: {st}");
        }
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

/// The `scribe` binary: `SCRIBE_CLI_BIN`, else where `make build` puts it (the shim itself is
/// run from a copy by then, so not beside `SCRIBE_SHIM_BIN`).
fn scribe_bin() -> PathBuf {
    std::env::var_os("SCRIBE_CLI_BIN")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| scribe_e2e::workspace_dir().join("target/release/scribe"))
}

/// The section's rows, all under the `scribe` column.
pub fn run(ctx: &Ctx, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let mib: u64 = match std::env::var("SCRIBE_BENCH_READER_MIB") {
        Ok(v) => v.parse().context("SCRIBE_BENCH_READER_MIB")?,
        Err(_) if ctx.cfg.quick => 64,
        Err(_) => 1024,
    };
    measure(&ctx.work.join("reader"), mib, notes)
}

/// Generates the logs under `root` and times the readers.
pub fn measure(root: &Path, mib: u64, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let bin = scribe_bin();
    if !bin.is_file() {
        bail!(
            "{} is missing: run make build (or set SCRIBE_CLI_BIN)",
            bin.display()
        );
    }
    let t0 = Instant::now();
    let (start, end) = generate(root, mib)?;
    notes.push(format!(
        "reading logs: {mib} MiB of json-file written in {:.1} s (11 files, gzipped)",
        t0.elapsed().as_secs_f64()
    ));
    let since = start + (end.duration_since(start).unwrap_or_default() * 99) / 100;
    let since = format!(
        "{:.9}",
        since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    );
    let root_s = root.to_str().context("utf-8 root")?.to_string();
    let scribe = |extra: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(["logs", "--log-root", &root_s]).args(extra).arg(ID);
        c
    };
    let live = root.join("default").join(ID).join(format!("{ID}-json.log"));
    let mut rows = Vec::new();
    let mut row = |id, metric: &str, v: f64| {
        let mut r = Row::new(id, metric, "ms").decimals(1);
        r.set("scribe", Some(v));
        rows.push(r);
    };
    let tail = time_ms(&mut || scribe(&["--tail", "10"]), 11)?;
    row(
        "reader_tail10",
        &format!("scribe logs --tail 10, {mib} MiB rotated json-file (goal < 20)"),
        tail,
    );
    let s = time_ms(&mut || scribe(&["--since", &since]), 5)?;
    row("reader_since", "scribe logs --since (last 1%)", s);
    let t = time_ms(
        &mut || {
            let mut c = Command::new("tail");
            c.args(["-n", "10"]).arg(&live);
            c
        },
        11,
    )?;
    row("reader_tail_coreutils", "tail -n 10 of the live file", t);
    let all = time_ms(&mut || scribe(&[]), 1)?;
    row("reader_all", "scribe logs, all of it", all);
    Ok(rows)
}
