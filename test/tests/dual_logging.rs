//! Issue 11 "Dual logging" and issue 13 "a fluentd container through its cache": a container
//! whose only driver is fluentd also gets a `local`-format cache, `container-cached.log`, that
//! holds every line in order with its stream, that `scribe logs` prints back (stdout to stdout,
//! stderr to stderr, `--tail`), that `cache-disabled=true` turns off, that `cache-max-size` x
//! `cache-max-file` bounds (gzip'd or not), and that has every line while fluentd is down.
//!
//! Scribe's own feature: the tests always run the Scribe runtime, against the forward-protocol
//! receiver of test/src/fluentd.rs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use scribe_e2e::fluentd::{lines_of, log_setup, Receiver};
use scribe_e2e::localfiles::{decode_files, file_bytes, local_files, stream_text};
use scribe_e2e::records::LogSetup;
use scribe_e2e::scribe_cli::scribe_logs;
use scribe_e2e::*;
use scribe_io::localfmt::{self, Entry};

/// The cache's file name (rotated: `.1`, `.1.gz`, ...).
const CACHE: &str = "container-cached.log";

/// A program writing `n` numbered lines to stdout and to stderr, alternately.
fn numbered(n: usize) -> String {
    format!("i=1; while [ $i -le {n} ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done")
}

/// The lines `numbered` writes to one stream (`out` or `err`), without newlines.
fn want_lines(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

/// `lines` as a stream's text, a newline after each.
fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The text of the entries' lines of `source`, one a line (these lines are whole lines).
fn lines_from(entries: &[Entry], source: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.source == source)
        .map(|e| {
            assert!(!e.partial, "a short line stored as a partial entry: {e:?}");
            String::from_utf8(e.line.clone()).expect("utf-8 line")
        })
        .collect()
}

/// `ctr run --null-io [--rm] --annotation io.scribe.log.<k>=<v>... IMAGE id sh -c prog`: the
/// container's exit status must be 0.
fn run(c: &Containerd, logs: &LogSetup, rm: bool, opts: &[(&str, &str)], id: &str, prog: &str) {
    let ann: Vec<String> = opts
        .iter()
        .map(|(k, v)| format!("io.scribe.log.{k}={v}"))
        .collect();
    let mut args = vec!["--null-io"];
    if rm {
        args.push("--rm");
    }
    for a in &ann {
        args.extend(["--annotation", a.as_str()]);
    }
    args.extend([IMAGE, id, "sh", "-c", prog]);
    let o = c.ctr(&logs.run_args(&args));
    assert_eq!(o.code, Some(0), "{o}");
}

/// The files of the container's cache in `dir`, oldest first; panics on any other file whose
/// name starts with the cache's (a left-over temporary file, say).
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let files = local_files(dir, CACHE);
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container-cached"))
        .collect();
    assert_eq!(
        names.len(),
        files.len(),
        "unexpected files in {}: {names:?}",
        dir.display()
    );
    files
}

/// Waits (30 s) until the receiver has `n` records of `id` per stream, then checks them against
/// `numbered(n)`.
#[track_caller]
fn assert_fluentd_got(rx: &Receiver, id: &str, n: usize) {
    let got = |source: &str| lines_of(&rx.records(), id, source).len();
    assert!(
        rx.wait_for(Duration::from_secs(30), |r| lines_of(r, id, "stdout").len()
            >= n
            && lines_of(r, id, "stderr").len() >= n),
        "fluentd got {} stdout and {} stderr lines of {n}",
        got("stdout"),
        got("stderr")
    );
    let records = rx.records();
    assert_eq!(lines_of(&records, id, "stdout"), want_lines("out", 1..=n));
    assert_eq!(lines_of(&records, id, "stderr"), want_lines("err", 1..=n));
    assert!(rx.errors().is_empty(), "{:?}", rx.errors());
}

#[test]
fn dual_logging_fluentd_only_container_has_a_cache_that_scribe_logs_reads() {
    let c = Containerd::start();
    let rx = Receiver::tcp();
    let logs = log_setup(&c, "only", &rx.address(), "");
    let id = "dual-only";
    let n = 500;
    run(&c, &logs, true, &[("driver", "fluentd")], id, &numbered(n));
    let dir = logs.container_dir(id);
    // One file (far below the 20 MiB default), every line in order with its stream.
    let files = cache_files(&dir);
    assert_eq!(files, [dir.join(CACHE)], "the cache's files");
    let entries = decode_files(&files);
    assert_eq!(lines_from(&entries, "stdout"), want_lines("out", 1..=n));
    assert_eq!(lines_from(&entries, "stderr"), want_lines("err", 1..=n));
    assert_eq!(entries.len(), 2 * n, "only stdout and stderr entries");
    // Only fluentd and the cache: no json-file or local log beside it.
    assert!(!logs.json_log(id).exists());
    assert!(!dir.join("local-logs").exists());
    assert_fluentd_got(&rx, id, n);

    // `scribe logs`: without --source the cache is what there is; with it, the same.
    let (out, err) = (
        text(&want_lines("out", 1..=n)),
        text(&want_lines("err", 1..=n)),
    );
    for args in [vec![id], vec!["--source", "cache", id]] {
        let o = scribe_logs(&c, &logs, &args);
        assert_eq!(o.code, Some(0), "scribe logs {args:?}: {}", o.stderr);
        assert!(o.stdout == out, "scribe logs {args:?} stdout: {}", o.stdout);
        assert!(o.stderr == err, "scribe logs {args:?} stderr: {}", o.stderr);
    }
    // --tail 5: the last five entries of the cache, each on its own stream.
    let last5 = &entries[entries.len() - 5..];
    let o = scribe_logs(&c, &logs, &["--tail", "5", id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, stream_text(last5, "stdout"), "--tail 5 stdout");
    assert_eq!(o.stderr, stream_text(last5, "stderr"), "--tail 5 stderr");
    // The other sources are not there, and the error says where it looked.
    let o = scribe_logs(&c, &logs, &["--source", "json-file", id]);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    assert!(o.stderr.contains(&format!("{id}-json.log")), "{o:?}");
    c.assert_clean();
}

#[test]
fn dual_logging_cache_disabled_leaves_no_cache_and_fluentd_gets_every_line() {
    let c = Containerd::start();
    let rx = Receiver::tcp();
    // The cache goes under JsonFileRoot when set: a root of its own shows whether anything was
    // made for the container there.
    let json_root = c.dir().join("json-root");
    let logs = log_setup(&c, "disabled", &rx.address(), "");
    // A top-level key: it goes before the [LogOpts] table.
    let toml = std::fs::read_to_string(&logs.options).expect("options");
    std::fs::write(
        &logs.options,
        format!("JsonFileRoot = \"{}\"\n{toml}", json_root.display()),
    )
    .expect("write options");
    let n = 300;
    // Control: the same setup without cache-disabled keeps its cache under JsonFileRoot.
    run(
        &c,
        &logs,
        true,
        &[("driver", "fluentd")],
        "dual-on",
        &numbered(n),
    );
    let on_dir = json_root.join(c.namespace()).join("dual-on");
    let entries = decode_files(&cache_files(&on_dir));
    assert_eq!(lines_from(&entries, "stdout"), want_lines("out", 1..=n));
    assert!(!logs.container_dir("dual-on").join(CACHE).exists());
    assert_fluentd_got(&rx, "dual-on", n);

    let id = "dual-off";
    run(
        &c,
        &logs,
        true,
        &[("driver", "fluentd"), ("cache-disabled", "true")],
        id,
        &numbered(n),
    );
    assert_fluentd_got(&rx, id, n);
    let dir = json_root.join(c.namespace()).join(id);
    assert!(
        std::fs::symlink_metadata(&dir).is_err(),
        "{} exists with cache-disabled=true: {:?}",
        dir.display(),
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert!(cache_files(&logs.container_dir(id)).is_empty());
    // A user asking for its logs is told there are none on the node.
    let root = json_root.to_str().expect("utf-8");
    let o = scribe_logs(&c, &logs, &["--json-file-root", root, id]);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    assert!(
        o.stderr.contains(&dir.display().to_string()),
        "the error names where it looked: {o:?}"
    );
    let o = scribe_logs(&c, &logs, &["--json-file-root", root, "dual-on"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout == text(&want_lines("out", 1..=n)), "{o:?}");
    c.assert_clean();
}

/// `cache-max-size=10k`, `cache-max-file=2`, `cache-compress=<compress>`: after 6000 lines (about
/// 200 KB of records) the cache is two files, each at most 10 KiB plus one record, holding the
/// newest lines of each stream with no gap.
fn bounded(compress: bool) {
    let c = Containerd::start();
    let rx = Receiver::tcp();
    let logs = log_setup(&c, "bounded", &rx.address(), "");
    let id = if compress {
        "dual-bounded-gz"
    } else {
        "dual-bounded"
    };
    let n = 3000;
    let max_size = 10 * 1024;
    let compress_opt = compress.to_string();
    run(
        &c,
        &logs,
        true,
        &[
            ("driver", "fluentd"),
            ("cache-max-size", "10k"),
            ("cache-max-file", "2"),
            ("cache-compress", &compress_opt),
        ],
        id,
        &numbered(n),
    );
    let dir = logs.container_dir(id);
    let files = cache_files(&dir);
    let rotated = dir.join(if compress {
        format!("{CACHE}.1.gz")
    } else {
        format!("{CACHE}.1")
    });
    assert_eq!(
        files,
        [rotated.clone(), dir.join(CACHE)],
        "the cache's files"
    );
    let gz = std::fs::read(&rotated).expect("rotated file");
    assert_eq!(
        gz.starts_with(&[0x1f, 0x8b]),
        compress,
        "{} gzip or not as cache-compress says",
        rotated.display()
    );
    for f in &files {
        let bytes = file_bytes(f);
        // Each file: whole records, at most max-size before its last one.
        let mut at = 0;
        let mut last = 0;
        while at < bytes.len() {
            let (_, used) = localfmt::decode_record(&bytes[at..])
                .unwrap_or_else(|e| panic!("{} at byte {at}: {e}", f.display()));
            last = used;
            at += used;
        }
        assert!(
            bytes.len() - last <= max_size,
            "{}: {} bytes, last record {last}: over cache-max-size",
            f.display(),
            bytes.len()
        );
    }
    // The rotated file was near full (Scribe rotates before a write that would pass
    // max-size, a batch of records at a time).
    let rotated_len = file_bytes(&rotated).len();
    assert!(
        rotated_len > max_size / 2,
        "{}: {rotated_len} bytes, rotated long before cache-max-size",
        rotated.display()
    );
    let entries = decode_files(&files);
    // Per stream, the newest lines with none missing between the oldest kept one and the
    // last. (A stream may have none left: the shim drains each pipe in large reads, so the
    // last ~600 entries can all be of one stream.)
    let mut kept = 0;
    for (source, prefix) in [("stdout", "out"), ("stderr", "err")] {
        let got = lines_from(&entries, source);
        assert!(got.len() < n, "{source}: all {n} lines kept");
        let first = n - got.len() + 1;
        assert_eq!(got, want_lines(prefix, first..=n), "{source}");
        kept += got.len();
    }
    assert!(
        kept > 0 && kept == entries.len(),
        "{kept} of {} entries",
        entries.len()
    );
    // `scribe logs --tail` reads the newest of them.
    let o = scribe_logs(&c, &logs, &["--tail", "5", id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let last5 = &entries[entries.len() - 5..];
    assert_eq!(o.stdout, stream_text(last5, "stdout"));
    assert_eq!(o.stderr, stream_text(last5, "stderr"));
    assert_fluentd_got(&rx, id, n);
    c.assert_clean();
}

#[test]
fn dual_logging_cache_max_size_and_max_file_bound_the_cache_compressed() {
    bounded(true);
}

#[test]
fn dual_logging_cache_max_size_and_max_file_bound_the_cache_uncompressed() {
    bounded(false);
}

#[test]
fn dual_logging_fluentd_down_the_cache_has_every_line() {
    let c = Containerd::start();
    let rx = Receiver::new(Receiver::free_tcp_address());
    let logs = log_setup(
        &c,
        "down",
        &rx.address(),
        "fluentd-retry-wait = \"100ms\"\n",
    );
    let id = "dual-down";
    let n = 500;
    // Not --rm: the container is read back after it exited, fluentd still down.
    run(&c, &logs, false, &[("driver", "fluentd")], id, &numbered(n));
    assert_eq!(rx.count(), 0);
    let entries = decode_files(&cache_files(&logs.container_dir(id)));
    assert_eq!(lines_from(&entries, "stdout"), want_lines("out", 1..=n));
    assert_eq!(lines_from(&entries, "stderr"), want_lines("err", 1..=n));
    let o = scribe_logs(&c, &logs, &[id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout == text(&want_lines("out", 1..=n)), "{}", o.stdout);
    assert!(o.stderr == text(&want_lines("err", 1..=n)), "{}", o.stderr);
    // Delivery once fluentd comes back is tests/fluentd.rs's job: here the task is already deleted
    // and its shim delivers only within its 5 s exit grace, a race on a loaded machine.
    // `ctr run` without --rm deleted the task; the container is left.
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_clean();
}
