//! Issue 12, the host side: Scribe drives a Docker logging plugin. The suite's own plugin
//! (src/bin/scribe-test-plugin.rs, driven by test/src/plugin.rs) records every call and every
//! entry of every FIFO, and stalls, crashes and restarts on command.
//!
//! First the plugin itself is proved against the reference host, dockerd 20.10
//! (`test_plugin_receives_what_dockerd_sends`); then Scribe's plugin driver is checked against
//! it on a real containerd: many containers through one plugin (by annotation and by the
//! runtime options), a plugin killed and restarted mid-stream, a stalled plugin in non-blocking
//! mode beside json-file, a plugin missing at Create, the dual-logging cache of a plugin without
//! ReadLogs, and names and choices the admin did not allow.
//!
//! Scribe's own feature (but for the dockerd test): the tests always run the Scribe runtime.
//! `SCRIBE_E2E_PLUGIN_CONTAINERS` sets how many containers the first containerd test runs at
//! once (default 20, the figure).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scribe_e2e::localfiles::{decode_files, local_files};
use scribe_e2e::plugin::{PluginEntry, TestPlugin};
use scribe_e2e::records::{env_usize, LogSetup};
use scribe_e2e::scribe_cli::scribe_logs;
use scribe_e2e::*;
use serde_json::Value;

const PLUGIN_BIN: &str = env!("CARGO_BIN_EXE_scribe-test-plugin");

/// The size of the long line: over six of Docker's 16 KiB pieces.
const BIG: usize = 100 * 1024;
/// Docker's piece size for long lines.
const PIECE: usize = 16 * 1024;

/// A program writing `n` numbered lines to stdout and to stderr, alternately.
fn numbered(n: usize) -> String {
    format!("i=1; while [ $i -le {n} ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done")
}

/// [`numbered`], then a [`BIG`]-byte line of `a` on stdout.
fn numbered_and_big(n: usize) -> String {
    format!(
        "{}; head -c {BIG} /dev/zero | tr '\\0' a; echo",
        numbered(n)
    )
}

fn want(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix} {i}")).collect()
}

/// A plugin name no other test or run uses.
fn plugin_name(what: &str) -> String {
    format!("scribetp-{what}-{}", std::process::id())
}

/// The test plugin serving `<dir>/<name>.sock` (`dir` is what `PluginDirs` names), recording
/// into `<c.dir()>/plugin-out-<name>`.
fn start_plugin(c: &Containerd, dir: &Path, name: &str, args: &[&str]) -> TestPlugin {
    TestPlugin::start(
        PLUGIN_BIN,
        dir.join(format!("{name}.sock")),
        c.dir().join(format!("plugin-out-{name}")),
        args,
    )
}

/// Options allowing `plugin` by annotation (beside json-file and local), searched for in `dir`
/// only, then `extra` TOML.
fn plugin_setup(c: &Containerd, what: &str, dir: &Path, plugin: &str, extra: &str) -> LogSetup {
    LogSetup::new(
        c,
        what,
        &format!(
            "AllowedLogDrivers = [\"json-file\", \"local\", \"{plugin}\"]\nPluginDirs = [\"{}\"]\n{extra}",
            dir.display()
        ),
    )
}

/// `ctr run --rm --null-io` with annotations `io.scribe.log.<k>=<v>`, then the image, id and
/// `sh -c prog`.
fn run(c: &Containerd, logs: &LogSetup, opts: &[(&str, &str)], id: &str, prog: &str) -> CmdOutput {
    let ann: Vec<String> = opts
        .iter()
        .map(|(k, v)| format!("io.scribe.log.{k}={v}"))
        .collect();
    let mut args = vec!["--rm", "--null-io"];
    for a in &ann {
        args.extend(["--annotation", a.as_str()]);
    }
    args.extend([IMAGE, id, "sh", "-c", prog]);
    c.ctr(&logs.run_args(&args))
}

/// The partial pieces of `entries` (one long line): Docker's metadata, the same id on every
/// piece, ordinals 1..n, `last` only on the final one, every piece but the last [`PIECE`]
/// bytes, and together the `len` bytes of `a`. Returns the piece sizes.
#[track_caller]
fn check_pieces(entries: &[PluginEntry], len: usize, who: &str) -> Vec<usize> {
    let pieces: Vec<&PluginEntry> = entries.iter().filter(|e| e.partial).collect();
    let sizes: Vec<usize> = pieces.iter().map(|e| e.line.len()).collect();
    assert_eq!(
        pieces.len(),
        len.div_ceil(PIECE),
        "{who}: pieces of the {len}-byte line: {sizes:?}"
    );
    let ids: BTreeSet<&str> = pieces
        .iter()
        .map(|e| e.partial_meta.as_ref().map(|m| m.0.as_str()).unwrap_or(""))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "{who}: one partial id for all pieces: {ids:?}"
    );
    assert!(!ids.contains(""), "{who}: pieces without a partial id");
    for (i, e) in pieces.iter().enumerate() {
        let (_, ordinal, last) = e.partial_meta.clone().expect("metadata");
        assert_eq!(ordinal, i as i64 + 1, "{who}: piece {i} ordinal");
        assert_eq!(last, i + 1 == pieces.len(), "{who}: piece {i} last flag");
        if i + 1 < pieces.len() {
            assert_eq!(e.line.len(), PIECE, "{who}: piece {i} size");
        }
        assert!(
            e.line.bytes().all(|b| b == b'a'),
            "{who}: piece {i} content"
        );
    }
    assert_eq!(sizes.iter().sum::<usize>(), len, "{who}: {sizes:?}");
    sizes
}

/// The entries that are not pieces of a long line: whole lines, without metadata.
#[track_caller]
fn whole_lines(entries: &[PluginEntry], source: &str, who: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.source == source && !e.partial)
        .map(|e| {
            assert!(e.partial_meta.is_none(), "{who}: {e:?}");
            e.line.clone()
        })
        .collect()
}

/// The calls one host process (a shim, dockerd) made for container `id`: its Activate calls
/// and the container's own; checks Activate once, then StartLogging then StopLogging, once
/// each, StopLogging after the FIFO was read cleanly. Returns the StartLogging call.
#[track_caller]
fn check_calls(p: &TestPlugin, id: &str) -> Value {
    let calls = p.calls();
    let start: Vec<&Value> = calls
        .iter()
        .filter(|c| c["method"] == "StartLogging" && c["container_id"] == id)
        .collect();
    assert_eq!(start.len(), 1, "{id}: StartLogging calls: {calls:?}");
    let start = start[0].clone();
    let pid = start["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0, "{id}: the caller's pid: {start}");
    let file = start["file"].as_str().unwrap_or("").to_owned();
    let mine: Vec<&Value> = calls
        .iter()
        .filter(|c| c["pid"].as_i64() == Some(pid))
        .filter(|c| c["method"] == "Activate" || c["file"].as_str() == Some(file.as_str()))
        .collect();
    let methods: Vec<&str> = mine.iter().filter_map(|c| c["method"].as_str()).collect();
    assert_eq!(
        methods,
        ["Activate", "StartLogging", "StopLogging"],
        "{id}: the calls of its host (pid {pid}), in order"
    );
    let stop = mine[2];
    assert!(stop["error"].is_null(), "{id}: the FIFO's stream: {stop}");
    start
}

/// Waits (30 s) until the plugin answered a StopLogging for container `id`: the shim answers
/// containerd's Delete first and finishes its plugin drivers on its way out, so `ctr run --rm`
/// may return while the last frames are still on their way.
#[track_caller]
fn wait_stopped(p: &TestPlugin, id: &str) {
    assert!(
        wait_until(Duration::from_secs(30), || p
            .calls_for(id)
            .iter()
            .any(|c| c["method"] == "StopLogging")),
        "{id}: no StopLogging within 30 s of the delete: {:?}",
        p.calls_for(id)
    );
}

/// The plugin's own drop counts for `id` in runtime.log: the closing report's total and the
/// sum of the per-report counts (records of a component naming the plugin driver).
fn plugin_drops(logs: &LogSetup, id: &str, plugin: &str) -> (Option<u64>, u64) {
    let records = logs.runtime_records(id);
    let mine = |r: &&Value| {
        let comp = r["component"].as_str().unwrap_or("");
        comp == plugin || comp.contains("plugin") || r.to_string().contains(plugin)
    };
    let total = records
        .iter()
        .rev()
        .filter(mine)
        .find_map(|r| r.get("total_entries_dropped").and_then(Value::as_u64));
    let sum = records
        .iter()
        .filter(mine)
        .filter_map(|r| r.get("entries_dropped").and_then(Value::as_u64))
        .sum();
    (total, sum)
}

/// The plugin's drops for `id` once the container is gone: waits for the closing report (up to
/// 30 s when `expected`, else 3 s: a driver that dropped nothing may not write one) and returns
/// its total (0 without one) and the sum of the per-report counts.
fn closing_drops(logs: &LogSetup, id: &str, plugin: &str, expected: bool) -> (u64, u64) {
    let wait = Duration::from_secs(if expected { 30 } else { 3 });
    let found = wait_until(wait, || plugin_drops(logs, id, plugin).0.is_some());
    assert!(
        found || !expected,
        "no closing drop report of the plugin in runtime.log: {:?}",
        logs.runtime_records(id)
    );
    let (total, sum) = plugin_drops(logs, id, plugin);
    (total.unwrap_or(0), sum)
}

/// Numbered `line N` of `entries` (a stream of whole lines), as a set of the numbers seen.
fn numbers_seen(entries: &[PluginEntry], prefix: &str) -> BTreeSet<usize> {
    entries
        .iter()
        .filter_map(|e| e.line.strip_prefix(prefix)?.trim().parse().ok())
        .collect()
}

/// One HTTP/1.1 `POST path` with a JSON body on `conn` (kept open, as dockerd's client does);
/// returns the status and the JSON body of the reply.
fn post(conn: &mut std::os::unix::net::UnixStream, path: &str, body: &str) -> (u16, Value) {
    use std::io::{BufRead, BufReader, Read, Write};
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin.moby.localhost\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).expect("send request");
    let mut r = BufReader::new(conn.try_clone().expect("dup"));
    let mut status_line = String::new();
    r.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().expect("Content-Length");
            }
        }
    }
    let mut b = vec![0; len];
    r.read_exact(&mut b).expect("body");
    assert!(r.buffer().is_empty(), "more than one reply");
    (status, serde_json::from_slice(&b).expect("JSON reply"))
}

/// A FIFO made and opened the way a host does (O_RDWR|O_NONBLOCK before StartLogging).
fn host_fifo(path: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let c = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
    // SAFETY: a valid C string.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open FIFO")
}

/// `n` frames `line <first..first+n>` on stdout, written whole (the FIFO has room).
fn write_frames(f: &mut std::fs::File, first: usize, n: usize) {
    use std::io::Write;
    let mut buf = Vec::new();
    for i in first..first + n {
        let line = format!("line {i}");
        let e = scribe_io::localfmt::EntryRef {
            source: "stdout",
            time_nano: 1_700_000_000_000_000_000 + i as i64,
            line: line.as_bytes(),
            partial: false,
            partial_meta: None,
        };
        scribe_io::plugin::frame::encode_frame(&e, &mut buf);
    }
    f.write_all(&buf).expect("write frames");
}

/// The test plugin on its own, driven like a host: keep-alive calls, StopLogging only after
/// the FIFO was read, stalled and resumed by signal, crashing after N frames, restarted on the
/// stale socket. No containerd: this is the tool the host tests rely on.
#[test]
fn test_plugin_stalls_crashes_and_restarts_on_command() {
    use std::os::unix::net::UnixStream;
    let dir = PathBuf::from(format!("/tmp/scribe-plugin-self-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let sock = dir.join("self.sock");
    let mut p = TestPlugin::start(
        PLUGIN_BIN,
        &sock,
        dir.join("out"),
        &["--crash-after-frames", "150"],
    );
    let mut conn = UnixStream::connect(&sock).expect("connect");
    let (st, v) = post(&mut conn, "/Plugin.Activate", "");
    assert_eq!(
        (st, &v["Implements"]),
        (200, &serde_json::json!(["LogDriver"]))
    );
    let (st, v) = post(&mut conn, "/LogDriver.Capabilities", "null");
    assert_eq!((st, &v["Cap"]["ReadLogs"]), (200, &Value::Bool(false)));
    let start = |conn: &mut UnixStream, fifo: &Path, id: &str| {
        let body =
            serde_json::json!({"File": fifo, "Info": {"ContainerID": id, "ContainerArgs": null}});
        let (st, v) = post(conn, "/LogDriver.StartLogging", &body.to_string());
        assert_eq!((st, v["Err"].as_str()), (200, Some("")), "{v}");
    };
    // Everything written before StopLogging is read before it answers.
    let f1 = dir.join("fifo1");
    let mut w1 = host_fifo(&f1);
    start(&mut conn, &f1, "c1");
    write_frames(&mut w1, 1, 100);
    let (st, _) = post(
        &mut conn,
        "/LogDriver.StopLogging",
        &serde_json::json!({"File": f1}).to_string(),
    );
    assert_eq!(st, 200);
    let lines: Vec<String> = p.entries("c1").into_iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        (1..=100).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    let stop = p
        .calls()
        .into_iter()
        .find(|c| c["method"] == "StopLogging")
        .expect("stop");
    assert_eq!(
        (stop["frames"].as_u64(), &stop["error"]),
        (Some(100), &Value::Null)
    );
    assert_eq!(
        stop["pid"].as_i64(),
        Some(std::process::id() as i64),
        "the caller's pid"
    );
    // Stalled: nothing is read until it resumes.
    let f2 = dir.join("fifo2");
    let mut w2 = host_fifo(&f2);
    p.stall();
    start(&mut conn, &f2, "c2");
    write_frames(&mut w2, 1, 10);
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.entries("c2").is_empty(), "read while stalled");
    p.resume();
    assert!(p.wait_entries("c2", Duration::from_secs(10), |e| e.len() == 10));
    // 110 frames so far: the 150th ends it (status 3), after writing it.
    write_frames(&mut w2, 11, 100);
    assert!(
        wait_until(Duration::from_secs(10), || p.exited()),
        "no crash"
    );
    assert_eq!(p.entries("c2").len(), 50);
    assert!(sock.exists(), "a crash leaves its socket");
    // Restarted on the stale socket, counting only: it answers again, reads everything and
    // writes no entries.
    p.restart(&["--discard"]);
    let mut conn = UnixStream::connect(&sock).expect("connect after restart");
    assert_eq!(post(&mut conn, "/Plugin.Activate", "").0, 200);
    assert_eq!(p.count("Activate"), 2);
    let f3 = dir.join("fifo3");
    let mut w3 = host_fifo(&f3);
    start(&mut conn, &f3, "c3");
    write_frames(&mut w3, 1, 1000);
    let (st, _) = post(
        &mut conn,
        "/LogDriver.StopLogging",
        &serde_json::json!({"File": f3}).to_string(),
    );
    assert_eq!(st, 200);
    let stop = p
        .calls()
        .into_iter()
        .rev()
        .find(|c| c["method"] == "StopLogging")
        .expect("stop");
    assert_eq!(stop["frames"].as_u64(), Some(1000), "{stop}");
    assert!(p.entries("c3").is_empty(), "--discard writes no entries");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_plugin_receives_what_dockerd_sends() {
    use scribe_e2e::dockerd::{Dockerd, DOCKER_IMAGE};
    // dockerd looks for legacy plugins only in its fixed places: a unique socket there.
    let name = plugin_name("dockerd");
    let dir = PathBuf::from("/run/docker/plugins");
    let out = PathBuf::from(format!("/tmp/scribe-plugin-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    let p = TestPlugin::start(PLUGIN_BIN, dir.join(format!("{name}.sock")), &out, &[]);
    let d = Dockerd::start();
    d.import_busybox();
    let cname = "plugin-ref";
    let n = 200;
    let o = d.docker(&[
        "run",
        "--name",
        cname,
        "--network",
        "none",
        "--log-driver",
        &name,
        "--log-opt",
        "test-opt=value1",
        DOCKER_IMAGE,
        "sh",
        "-c",
        &numbered_and_big(n),
    ]);
    assert_eq!(o.code, Some(0), "{o}");
    let id = d
        .docker(&["inspect", "-f", "{{.Id}}", cname])
        .assert_success()
        .stdout
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "{id}");
    // dockerd stops the logger when the container stops; remove it too.
    d.docker(&["rm", cname]).assert_success();
    assert!(
        wait_until(Duration::from_secs(30), || p
            .calls_for(&id)
            .iter()
            .any(|c| c["method"] == "StopLogging")),
        "no StopLogging: {:?}",
        p.calls()
    );
    let start = check_calls(&p, &id);
    let info = &start["info"];
    assert_eq!(info["Config"]["test-opt"], "value1", "{info}");
    assert_eq!(info["ContainerName"], format!("/{cname}"), "{info}");
    assert!(!p.log().contains("bad frame"), "{}", p.log());
    let entries = p.entries(&id);
    let out_e: Vec<PluginEntry> = entries
        .iter()
        .filter(|e| e.source == "stdout")
        .cloned()
        .collect();
    assert_eq!(whole_lines(&entries, "stdout", "dockerd"), want("out", n));
    assert_eq!(whole_lines(&entries, "stderr", "dockerd"), want("err", n));
    let sizes = check_pieces(&out_e, BIG, "dockerd");
    let stop = p
        .calls_for(&id)
        .into_iter()
        .find(|c| c["method"] == "StopLogging")
        .expect("StopLogging");
    assert_eq!(
        stop["frames"].as_u64(),
        Some(entries.len() as u64),
        "{stop}"
    );
    eprintln!(
        "dockerd: {} entries, the {BIG}-byte line in pieces {sizes:?}; calls: {:?}",
        entries.len(),
        p.calls()
            .iter()
            .map(|c| c["method"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    );
    drop(d);
    drop(p);
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn plugin_host_many_containers_through_a_plugin_every_line_in_order() {
    let n = env_usize("SCRIBE_E2E_PLUGIN_CONTAINERS", 20).max(2);
    let lines = 2000;
    let c = Containerd::start();
    let plug = plugin_name("many");
    let dir = c.dir().join("plugins-many");
    let p = start_plugin(&c, &dir, &plug, &[]);
    let by_ann = plugin_setup(&c, "many", &dir, &plug, "");
    let by_opts = LogSetup::new(
        &c,
        "manyopts",
        &format!(
            "LogDriver = \"{plug}\"\nPluginDirs = [\"{}\"]\n[LogOpts]\nplugin-opt = \"from-toml\"\n",
            dir.display()
        ),
    );
    let ids: Vec<String> = (0..n).map(|i| format!("plugin-many-{i:02}")).collect();
    let prog = numbered_and_big(lines);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (i, id) in ids.iter().enumerate() {
            let (c, prog, plug) = (&c, &prog, &plug);
            let logs = if i + 1 == n { &by_opts } else { &by_ann };
            s.spawn(move || {
                let opts: Vec<(&str, &str)> = if i + 1 == n {
                    vec![]
                } else {
                    vec![("driver", plug.as_str()), ("plugin-opt", "from-annotation")]
                };
                let o = run(c, logs, &opts, id, prog);
                assert_eq!(o.code, Some(0), "{id}: {o}");
            });
        }
    });
    eprintln!(
        "{n} containers x {lines} lines x 2 streams through the plugin in {:?}",
        t0.elapsed()
    );
    let mut shims = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let logs = if i + 1 == n { &by_opts } else { &by_ann };
        wait_stopped(&p, id);
        let entries = p.entries(id);
        let why = || {
            format!(
                "calls: {:?}\nruntime.log: {}",
                p.calls_for(id),
                std::fs::read_to_string(logs.runtime_log(id)).unwrap_or_default()
            )
        };
        for (source, prefix) in [("stdout", "out"), ("stderr", "err")] {
            let got = whole_lines(&entries, source, id);
            let first_bad = got
                .iter()
                .zip(want(prefix, lines))
                .position(|(a, b)| *a != b);
            assert!(
                got == want(prefix, lines),
                "{id} {source}: {} lines of {lines}, first difference at {first_bad:?}, last {:?}\n{}",
                got.len(),
                got.last(),
                why()
            );
        }
        let out_e: Vec<PluginEntry> = entries
            .iter()
            .filter(|e| e.source == "stdout")
            .cloned()
            .collect();
        check_pieces(&out_e, BIG, id);
        assert!(
            out_e.last().is_some_and(|e| e.partial),
            "{id}: the long line comes last"
        );
        let start = check_calls(&p, id);
        shims.insert(start["pid"].as_i64().unwrap_or(0));
        let info = &start["info"];
        assert_eq!(info["ContainerID"], id.as_str(), "{info}");
        let opt = if i + 1 == n {
            "from-toml"
        } else {
            "from-annotation"
        };
        assert_eq!(info["Config"]["plugin-opt"], opt, "{id}: Config: {info}");
        // The FIFO and the directory the shim made for it are gone.
        let fifo = PathBuf::from(start["file"].as_str().unwrap_or(""));
        assert!(fifo.is_absolute(), "{start}");
        let parent = fifo.parent().expect("FIFO's directory").to_path_buf();
        assert!(
            wait_until(Duration::from_secs(10), || !fifo.exists()
                && !parent.exists()),
            "{id}: left behind: FIFO {} exists={}, its directory {} exists={}",
            fifo.display(),
            fifo.exists(),
            parent.display(),
            parent.exists()
        );
    }
    // The FIFOs' directories sit in one per namespace: nothing of any container is left in it.
    let fifo_of = |id: &str| {
        PathBuf::from(
            p.calls_for(id)
                .iter()
                .find_map(|c| c["file"].as_str().map(str::to_owned))
                .unwrap_or_default(),
        )
    };
    let ns_dir = fifo_of(&ids[0])
        .ancestors()
        .nth(2)
        .expect("namespace directory")
        .to_path_buf();
    let left: Vec<String> = std::fs::read_dir(&ns_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", ns_dir.display());
    assert_eq!(shims.len(), n, "one shim per container: {shims:?}");
    assert_eq!(p.count("Activate"), n, "Activate once per shim");
    assert_eq!(p.count("StartLogging"), n);
    assert_eq!(p.count("StopLogging"), n);
    c.assert_clean();
}

/// How the plugin dies mid-stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Crash {
    /// SIGKILL from the test once 500 entries arrived: wherever the plugin is (between frames,
    /// most often: then nothing is lost, the host resends what the FIFO still holds).
    Sigkill,
    /// The plugin dies after taking the size and half the body of entry 501 out of the FIFO:
    /// exactly that line is lost, and the host finds the cut frame.
    InsideAFrame,
}

#[test]
fn plugin_host_killed_and_restarted_mid_stream_never_blocks_the_container() {
    killed_and_restarted(Crash::Sigkill);
}

#[test]
fn plugin_host_crashed_inside_a_frame_and_restarted_counts_the_cut_line() {
    killed_and_restarted(Crash::InsideAFrame);
}

/// The container runs at its normal speed through a plugin that dies mid-stream and comes back
/// 500 ms later; logging resumes, and runtime.log counts exactly the lines that never arrived.
fn killed_and_restarted(how: Crash) {
    let c = Containerd::start();
    let plug = plugin_name(if how == Crash::Sigkill { "kill" } else { "cut" });
    let dir = c.dir().join("plugins-kill");
    let args: &[&str] = match how {
        Crash::Sigkill => &[],
        Crash::InsideAFrame => &["--crash-mid-frame", "500"],
    };
    let mut p = start_plugin(&c, &dir, &plug, args);
    let logs = plugin_setup(&c, "kill", &dir, &plug, "");
    let total = 3000;
    let script = format!(
        "i=1; while [ $i -le {total} ]; do echo \"line $i\"; \
         [ $((i % 100)) -eq 0 ] && usleep 100000; i=$((i+1)); done"
    );
    // The same program with json-file only: the normal time.
    let t0 = Instant::now();
    let o = run(
        &c,
        &logs,
        &[("driver", "json-file")],
        "plugin-kill-base",
        &script,
    );
    assert_eq!(o.code, Some(0), "{o}");
    let normal = t0.elapsed();
    let id = "plugin-kill";
    let (o, took) = std::thread::scope(|s| {
        let run = s.spawn(|| {
            let t0 = Instant::now();
            let o = run(&c, &logs, &[("driver", plug.as_str())], id, &script);
            (o, t0.elapsed())
        });
        assert!(
            p.wait_entries(id, Duration::from_secs(60), |e| e.len() >= 500),
            "no entries before the kill"
        );
        if how == Crash::InsideAFrame {
            assert!(
                wait_until(Duration::from_secs(10), || p.exited()),
                "the plugin did not crash inside entry 501"
            );
        }
        p.kill();
        std::thread::sleep(Duration::from_millis(500));
        p.restart(&[]);
        run.join().expect("ctr thread")
    });
    assert_eq!(o.code, Some(0), "{o}");
    eprintln!("{how:?}: the container took {took:?} (json-file only: {normal:?})");
    assert!(
        took < normal + Duration::from_secs(5),
        "the container was held up by the plugin's crash: {took:?} against {normal:?}"
    );
    // Logging resumed: the last line came through the restarted plugin.
    assert!(
        p.wait_entries(id, Duration::from_secs(30), |e| e
            .iter()
            .any(|e| e.line == format!("line {total}"))),
        "logging did not resume after the restart: {} entries",
        p.entries(id).len()
    );
    assert!(p.count("Activate") >= 2, "re-activated: {:?}", p.calls());
    let seen = numbers_seen(&p.entries(id), "line ");
    let missing = total - seen.len();
    if how == Crash::InsideAFrame {
        assert_eq!(missing, 1, "the cut line only");
        assert!(!seen.contains(&501), "line 501 was cut");
    }
    let (total_dropped, per_record) = closing_drops(&logs, id, &plug, missing > 0);
    eprintln!(
        "{how:?}: {} of {total} lines arrived, {missing} missing, runtime.log: {total_dropped} dropped",
        seen.len()
    );
    assert_eq!(
        total_dropped,
        missing as u64,
        "runtime.log must count exactly the lines missing: {:?}",
        logs.runtime_records(id)
    );
    assert_eq!(per_record, missing as u64, "{:?}", logs.runtime_records(id));
    c.assert_clean();
}

#[test]
fn plugin_host_stalled_plugin_non_blocking_drops_are_counted_and_json_file_keeps_every_line() {
    let c = Containerd::start();
    let plug = plugin_name("stall");
    let dir = c.dir().join("plugins-stall");
    let p = start_plugin(&c, &dir, &plug, &["--stalled"]);
    let logs = plugin_setup(&c, "stall", &dir, &plug, "");
    let id = "plugin-stall";
    let lines = 300_000;
    let pad = "x".repeat(90);
    let script = format!("seq 1 {lines} | sed 's/$/ {pad}/'");
    let driver = format!("json-file,{plug}");
    let t0 = Instant::now();
    let o = run(
        &c,
        &logs,
        &[
            ("driver", &driver),
            ("mode", "non-blocking"),
            ("max-buffer-size", "64k"),
        ],
        id,
        &script,
    );
    let took = t0.elapsed();
    assert_eq!(o.code, Some(0), "{o}");
    eprintln!("stall: the container ran and was deleted in {took:?} with the plugin stalled");
    let entries = logs.json_entries(id);
    assert_eq!(entries.len(), lines, "json-file must keep every line");
    assert!(entries
        .last()
        .is_some_and(|e| e.log == format!("{lines} {pad}\n")));
    // The plugin reads again: whatever is still in its FIFO arrives.
    p.resume();
    let closed = || plugin_drops(&logs, id, &plug).0;
    assert!(
        wait_until(Duration::from_secs(60), || closed().is_some()),
        "no closing drop report of the plugin in runtime.log: {:?}",
        logs.runtime_records(id)
    );
    let (dropped, per_record) = plugin_drops(&logs, id, &plug);
    let dropped = dropped.expect("closing report");
    assert!(dropped > 0, "a stalled plugin must have cost something");
    let rest = lines - dropped as usize;
    p.wait_entries(id, Duration::from_secs(60), |e| e.len() >= rest);
    // Stable: nothing more comes.
    std::thread::sleep(Duration::from_millis(500));
    let delivered = p.entries(id).len() as u64;
    eprintln!("stall: {delivered} delivered, {dropped} dropped of {lines}");
    assert_eq!(
        delivered + dropped,
        lines as u64,
        "delivered {delivered} + dropped {dropped} must be every line"
    );
    assert_eq!(per_record, dropped, "{:?}", logs.runtime_records(id));
    c.assert_clean();
}

#[test]
fn plugin_host_missing_at_create_the_container_runs_and_logging_resumes() {
    missing_at_create(200, "", &[]);
}

/// More output while the plugin is missing than the driver may buffer (`mode=non-blocking`,
/// `max-buffer-size=64k`): the container is not held up, what did not fit is dropped and
/// counted.
#[test]
fn plugin_host_missing_at_create_drops_what_does_not_fit_and_counts_it() {
    missing_at_create(
        100_000,
        &"x".repeat(90),
        &[("mode", "non-blocking"), ("max-buffer-size", "64k")],
    );
}

/// A container whose plugin appears only after it wrote `before` lines (each followed by
/// `pad`): it runs anyway, the lines written after the plugin came all arrive, and every line
/// is either delivered or counted dropped in runtime.log.
fn missing_at_create(before: usize, pad: &str, opts: &[(&str, &str)]) {
    let c = Containerd::start();
    let plug = plugin_name(if pad.is_empty() { "late" } else { "latebig" });
    let dir = c.dir().join("plugins-late");
    std::fs::create_dir_all(&dir).expect("mkdir plugin dir");
    let logs = plugin_setup(&c, "late", &dir, &plug, "");
    let id = "plugin-late";
    let driver = format!("json-file,{plug}");
    let total = before + 201;
    let prog = format!(
        "seq 1 {before} | sed 's/$/ {pad}/'; sleep 3; seq {} {}; echo done",
        before + 1,
        before + 200
    );
    let mut plugin = None;
    let o = std::thread::scope(|s| {
        let mut all = vec![("driver", driver.as_str())];
        all.extend_from_slice(opts);
        let (c, logs, prog) = (&c, &logs, &prog);
        let run = s.spawn(move || run(c, logs, &all, id, prog));
        assert!(
            wait_until(Duration::from_secs(30), || std::fs::read_to_string(
                logs.json_log(id)
            )
            .is_ok_and(|t| t.contains(&format!("\"{before} {pad}\\n\"")))),
            "the container did not run while its plugin was missing"
        );
        plugin = Some(start_plugin(c, &dir, &plug, &[]));
        run.join().expect("ctr thread")
    });
    assert_eq!(o.code, Some(0), "{o}");
    let p = plugin.expect("plugin");
    assert!(
        p.wait_entries(id, Duration::from_secs(30), |e| e
            .iter()
            .any(|e| e.line == "done")),
        "logging did not start when the plugin appeared: {:?}",
        p.calls()
    );
    let seen = numbers_seen(&p.entries(id), "");
    assert!(
        (before + 1..=before + 200).all(|i| seen.contains(&i)),
        "lines written after the plugin appeared are missing: {seen:?}"
    );
    // Lines were dropped (then the closing report counts them) or all were kept until the
    // plugin came: which one depends on the buffer; either way each line is accounted for.
    let delivered = p.entries(id).len() as u64;
    let (dropped, per_record) = closing_drops(&logs, id, &plug, !pad.is_empty());
    assert_eq!(per_record, dropped, "{:?}", logs.runtime_records(id));
    eprintln!("late {before}: {delivered} delivered, {dropped} dropped of {total}");
    assert_eq!(
        delivered + dropped,
        total as u64,
        "every line delivered or counted"
    );
    if !pad.is_empty() {
        assert!(
            dropped > 0,
            "{} MB cannot all wait in the buffer",
            before * 100 / 1_000_000
        );
    }
    // The plugin's absence was reported, naming it.
    let warned = logs
        .runtime_records(id)
        .iter()
        .any(|r| (r["level"] == "warn" || r["level"] == "error") && r.to_string().contains(&plug));
    assert!(warned, "{:?}", logs.runtime_records(id));
    assert_eq!(
        logs.json_entries(id).len(),
        total,
        "json-file has every line"
    );
    c.assert_clean();
}

#[test]
fn plugin_host_without_read_logs_gets_a_cache_that_scribe_logs_reads() {
    let c = Containerd::start();
    let plug = plugin_name("cache");
    let dir = c.dir().join("plugins-cache");
    let p = start_plugin(&c, &dir, &plug, &[]);
    let logs = plugin_setup(&c, "cache", &dir, &plug, "");
    let id = "plugin-cache";
    let n = 500;
    let o = run(&c, &logs, &[("driver", plug.as_str())], id, &numbered(n));
    assert_eq!(o.code, Some(0), "{o}");
    wait_stopped(&p, id);
    let entries = p.entries(id);
    assert_eq!(whole_lines(&entries, "stdout", id), want("out", n));
    assert_eq!(whole_lines(&entries, "stderr", id), want("err", n));
    assert!(p.count("Capabilities") >= 1, "{:?}", p.calls());
    // The cache: every line, with its stream.
    let cdir = logs.container_dir(id);
    let files = local_files(&cdir, "container-cached.log");
    assert_eq!(
        files,
        [cdir.join("container-cached.log")],
        "the cache's files"
    );
    let cached = decode_files(&files);
    let of = |source: &str| -> Vec<String> {
        cached
            .iter()
            .filter(|e| e.source == source)
            .map(|e| String::from_utf8_lossy(&e.line).into_owned())
            .collect()
    };
    assert_eq!(of("stdout"), want("out", n));
    assert_eq!(of("stderr"), want("err", n));
    assert!(!logs.json_log(id).exists(), "only the plugin and its cache");
    let text = |l: Vec<String>| l.iter().map(|l| format!("{l}\n")).collect::<String>();
    let o = scribe_logs(&c, &logs, &[id]);
    assert_eq!(o.code, Some(0), "scribe logs: {}", o.stderr);
    assert!(o.stdout == text(want("out", n)), "stdout: {}", o.stdout);
    assert!(o.stderr == text(want("err", n)), "stderr: {}", o.stderr);
    let last5 = &cached[cached.len() - 5..];
    let o = scribe_logs(&c, &logs, &["--tail", "5", id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(
        o.stdout,
        scribe_e2e::localfiles::stream_text(last5, "stdout")
    );
    c.assert_clean();
}

#[test]
fn plugin_host_names_and_choices_only_as_the_admin_allows() {
    let c = Containerd::start();
    let plug = plugin_name("allow");
    let dir = c.dir().join("plugins-allow");
    let p = start_plugin(&c, &dir, &plug, &[]);
    let refused = |logs: &LogSetup, id: &str, driver: &str, words: &[&str]| {
        let o = run(&c, logs, &[("driver", driver)], id, "echo must-not-run");
        o.assert_failure();
        for w in words {
            assert!(o.stderr.contains(w), "the error must name {w:?}: {o}");
        }
    };
    // Hostile names, even where the admin listed them: refused naming the annotation, the name
    // and why.
    let hostile = LogSetup::new(
        &c,
        "hostile",
        &format!(
            "AllowedLogDrivers = [\"json-file\", \"../x\", \"a/b\"]\nPluginDirs = [\"{}\"]\n",
            dir.display()
        ),
    );
    refused(
        &hostile,
        "dotdot",
        "../x",
        &["io.scribe.log.driver", "\"../x\"", "plugin name"],
    );
    refused(
        &hostile,
        "slash",
        "a/b",
        &["io.scribe.log.driver", "\"a/b\"", "plugin name"],
    );
    refused(
        &hostile,
        "slashbuiltin",
        "json-file,a/b",
        &["io.scribe.log.driver", "\"a/b\"", "plugin name"],
    );
    // A working plugin the admin did not allow, by annotation: refused, never started.
    let closed = LogSetup::new(
        &c,
        "closed",
        &format!(
            "AllowedLogDrivers = [\"json-file\"]\nPluginDirs = [\"{}\"]\n",
            dir.display()
        ),
    );
    refused(
        &closed,
        "notallowed",
        &plug,
        &["io.scribe.log.driver", &plug, "AllowedLogDrivers"],
    );
    refused(
        &closed,
        "notallowed2",
        &format!("json-file,{plug}"),
        &["io.scribe.log.driver", &plug, "AllowedLogDrivers"],
    );
    assert_eq!(p.count("StartLogging"), 0, "{:?}", p.calls());
    // The same plugin, allowed: it works.
    let open = plugin_setup(&c, "open", &dir, &plug, "");
    let o = run(
        &c,
        &open,
        &[("driver", plug.as_str())],
        "allowed",
        "echo hello",
    );
    assert_eq!(o.code, Some(0), "{o}");
    wait_stopped(&p, "allowed");
    let lines: Vec<String> = p.entries("allowed").into_iter().map(|e| e.line).collect();
    assert_eq!(lines, ["hello"]);
    assert!(c.containers().is_empty(), "{:?}", c.containers());
    c.assert_clean();
}
