//! Issue 11: Docker's `local` driver. A container run through containerd with
//! `io.scribe.log.driver=local` keeps every line, in order, through rotation and gzip; and
//! dockerd 20.10's own reader (`docker logs`) prints exactly the container's lines from the
//! files Scribe wrote, put in place of the files dockerd wrote for the same program.
//!
//! Scribe's own feature: the tests always run the Scribe runtime.

use std::path::PathBuf;

use scribe_e2e::dockerd::{Dockerd, DOCKER_IMAGE};
use scribe_e2e::localfiles::{decode_files, file_bytes, local_files, stream_text};
use scribe_e2e::records::LogSetup;
use scribe_e2e::*;
use scribe_io::localfmt::{self, Entry};

/// Panics unless `got == want`, naming the first line that differs (outputs are big).
#[track_caller]
fn assert_text(got: &str, want: &str, what: &str) {
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let i = g.iter().zip(&w).take_while(|(a, b)| a == b).count();
    let show = |l: Option<&&str>| l.map(|l| l.chars().take(80).collect::<String>());
    panic!(
        "{what}: {} bytes in {} lines, want {} bytes in {} lines; line {} is {:?}, want {:?}",
        got.len(),
        g.len(),
        want.len(),
        w.len(),
        i + 1,
        show(g.get(i)),
        show(w.get(i))
    );
}

/// A program writing `n` numbered lines to each stream, then a 40000-byte line (split in three
/// pieces at 16 KiB), an empty line and a last line to stdout, and a last line without its newline to stderr.
fn program(n: usize) -> String {
    format!(
        "for i in $(seq 1 {n}); do echo \"out $i\"; echo \"err $i\" >&2; done; \
         head -c 40000 /dev/zero | tr '\\0' x; echo; echo; echo done; printf 'no newline' >&2"
    )
}

fn expected(n: usize) -> (String, String) {
    let mut out: String = (1..=n).map(|i| format!("out {i}\n")).collect();
    out.push_str(&"x".repeat(40000));
    out.push_str("\n\ndone\n");
    let mut err: String = (1..=n).map(|i| format!("err {i}\n")).collect();
    // Output ending without a newline is kept without one (dockerd stores it as a split line's
    // first piece, and so does Scribe).
    err.push_str("no newline");
    (out, err)
}

/// Runs `program(n)` through containerd with the `local` driver and `opts` (annotations);
/// returns the container's `local-logs/` directory.
fn run_local(c: &Containerd, logs: &LogSetup, id: &str, n: usize, opts: &[&str]) -> PathBuf {
    let prog = program(n);
    let mut args = vec![
        "--rm",
        "--null-io",
        "--annotation",
        "io.scribe.log.driver=local",
    ];
    for o in opts {
        args.push("--annotation");
        args.push(o);
    }
    args.extend([IMAGE, id, "sh", "-c", &prog]);
    let o = c.ctr(&logs.run_args(&args));
    assert_eq!(o.code, Some(0), "{o}");
    logs.container_dir(id).join("local-logs")
}

#[test]
fn local_driver_keeps_every_line_through_rotation_and_gzip() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "local", "");
    let id = "localrot";
    let n = 2000;
    let dir = run_local(
        &c,
        &logs,
        id,
        n,
        &["io.scribe.log.max-size=4k", "io.scribe.log.max-file=1000"],
    );
    let files = local_files(&dir, "container.log");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() > 10, "max-size=4k must rotate: {names:?}");
    assert_eq!(names.last().map(String::as_str), Some("container.log"));
    for (i, name) in names.iter().rev().skip(1).enumerate() {
        assert_eq!(
            name,
            &format!("container.log.{}.gz", i + 1),
            "rotated files are named and gzipped as dockerd's: {names:?}"
        );
    }
    for f in &files {
        if f.extension().is_none_or(|e| e != "gz") {
            let len = std::fs::metadata(f).expect("metadata").len();
            assert!(len <= 16 * 1024 + 100, "{}: {len} bytes", f.display());
        }
    }
    let entries = decode_files(&files);
    let (out, err) = expected(n);
    assert_text(
        &stream_text(&entries, "stdout"),
        &out,
        "stdout of the local files",
    );
    assert_text(
        &stream_text(&entries, "stderr"),
        &err,
        "stderr of the local files",
    );
    // The long line: three pieces sharing one id, ordinals 1..3, the last marked.
    let pieces: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.partial && e.source == "stdout")
        .collect();
    assert_eq!(
        pieces.len(),
        3,
        "{:?}",
        pieces.iter().map(|e| e.line.len()).collect::<Vec<_>>()
    );
    let metas: Vec<(i32, bool, String)> = pieces
        .iter()
        .map(|e| {
            let m = e.partial_meta.clone().expect("partial metadata");
            (m.ordinal, m.last, m.id)
        })
        .collect();
    assert_eq!(
        metas.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(),
        [(1, false), (2, false), (3, true)]
    );
    assert!(metas.iter().all(|m| m.2 == metas[0].2 && !m.2.is_empty()));
    assert_eq!(pieces[0].line.len(), 16 * 1024);
    // Scribe's own records stay at the container's directory, apart from the driver's.
    assert!(logs.container_log(id).exists());
    c.assert_clean();
}

/// A record less what differs by run: line, partial, (ordinal, last).
type Comparable = (Vec<u8>, bool, Option<(i32, bool)>);

/// Entries as dockerd's reader sees them, less what differs by run (times, split-line ids).
fn comparable(entries: &[Entry], source: &str) -> Vec<Comparable> {
    entries
        .iter()
        .filter(|e| e.source == source)
        .map(|e| {
            (
                e.line.clone(),
                e.partial,
                e.partial_meta.as_ref().map(|m| (m.ordinal, m.last)),
            )
        })
        .collect()
}

#[test]
fn docker_logs_reads_the_local_files_scribe_wrote() {
    let n = 300;
    let (want_out, want_err) = expected(n);
    // dockerd 20.10's `local` reader (daemon/logger/local/read.go) ends a message with a newline
    // only when it has no split-line metadata, so the last piece of a split line loses its
    // newline in `docker logs` (for dockerd's own files alike): the long line runs into `done`.
    let long = "x".repeat(40000);
    let docker_out = want_out.replace(&format!("{long}\n"), &long);
    let opts = ["max-size=4k", "max-file=100"];

    // Scribe's files for the program.
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "local-docker", "");
    let annotations: Vec<String> = opts.iter().map(|o| format!("io.scribe.log.{o}")).collect();
    let annotations: Vec<&str> = annotations.iter().map(String::as_str).collect();
    let scribe_dir = run_local(&c, &logs, "fordocker", n, &annotations);
    let scribe_files = local_files(&scribe_dir, "container.log");
    assert!(scribe_files.len() > 2, "{scribe_files:?}");
    let scribe_entries = decode_files(&scribe_files);

    // dockerd's files for the same program.
    let d = Dockerd::start();
    d.import_busybox();
    let prog = program(n);
    let mut args = vec![
        "run",
        "--name",
        "ref",
        "--network",
        "none",
        "--log-driver",
        "local",
    ];
    for o in &opts {
        args.extend(["--log-opt", o]);
    }
    args.extend([DOCKER_IMAGE, "sh", "-c", &prog]);
    let o = d.docker(&args);
    assert_eq!(o.code, Some(0), "{o}");
    let o = d.docker(&["inspect", "-f", "{{.Id}}", "ref"]);
    o.assert_success();
    let docker_id = o.stdout.trim().to_string();
    let docker_dir = d.container_dir(&docker_id).join("local-logs");
    let docker_files = local_files(&docker_dir, "container.log");
    assert!(
        docker_files.len() > 2,
        "dockerd rotated too: {docker_files:?}"
    );

    // dockerd's reader on dockerd's files: the reference output.
    let o = d.docker(&["logs", "ref"]);
    o.assert_success();
    assert_text(
        &o.stdout,
        &docker_out,
        "docker logs of dockerd's own files (stdout)",
    );
    let reference = o.clone();
    assert_text(
        &o.stderr,
        &want_err,
        "docker logs of dockerd's own files (stderr)",
    );

    // The format module reads dockerd's files and writes their records back byte for byte.
    let docker_entries = decode_files(&docker_files);
    for f in &docker_files {
        let bytes = file_bytes(f);
        let mut again = Vec::new();
        for e in decode_files(std::slice::from_ref(f)) {
            localfmt::encode_record(&e.as_ref(), &mut again);
        }
        assert!(
            again == bytes,
            "re-encoding {} differs from dockerd's bytes",
            f.display()
        );
    }
    // Same records per stream (but times and split-line ids).
    for source in ["stdout", "stderr"] {
        assert_eq!(
            comparable(&scribe_entries, source),
            comparable(&docker_entries, source),
            "{source} records of Scribe and dockerd differ"
        );
    }

    // Scribe's files in place of dockerd's: dockerd's reader prints exactly the lines.
    for f in &docker_files {
        std::fs::remove_file(f).expect("remove dockerd's file");
    }
    for f in &scribe_files {
        std::fs::copy(f, docker_dir.join(f.file_name().unwrap())).expect("copy Scribe's file");
    }
    let o = d.docker(&["logs", "ref"]);
    o.assert_success();
    assert_text(
        &o.stdout,
        &docker_out,
        "docker logs of Scribe's files (stdout)",
    );
    assert!(
        o.stdout == reference.stdout && o.stderr == reference.stderr,
        "docker logs prints the same for Scribe's files as for dockerd's"
    );
    assert_text(
        &o.stderr,
        &want_err,
        "docker logs of Scribe's files (stderr)",
    );
    // `--tail` reads backwards from the end with the trailing sizes.
    // `--tail 1` reads back from the end with the trailing sizes: the last record of the live
    // file (whichever stream: the shim reads the two pipes apart, so their order across
    // streams is the order the reads happened).
    let last = scribe_entries.last().expect("entries");
    // (dockerd's reader ends a message with a newline only when it has no split-line metadata.)
    let newline = if last.partial_meta.is_none() {
        "\n"
    } else {
        ""
    };
    let line = format!("{}{newline}", String::from_utf8_lossy(&last.line));
    let want = if last.source == "stdout" {
        (line.as_str(), "")
    } else {
        ("", line.as_str())
    };
    let o = d.docker(&["logs", "--tail", "1", "ref"]);
    o.assert_success();
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), want, "{o}");
    d.docker(&["rm", "-f", "ref"]).assert_success();
    c.assert_clean();
}

/// Docker's validation of the `local` options (and the cache's) fails the Create, naming the
/// option, and leaves no log behind.
#[test]
fn bad_local_options_fail_the_create_naming_the_option() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "local-bad", "");
    let cases: &[(&str, &[&str], &[&str])] = &[
        // dockerd: compression cannot be enabled when max-file is 1 (compress defaults true).
        (
            "maxfileone",
            &["io.scribe.log.max-file=1"],
            &["compress", "max-file"],
        ),
        ("maxfilezero", &["io.scribe.log.max-file=0"], &["max-file"]),
        ("negsize", &["io.scribe.log.max-size=-1"], &["max-size"]),
        (
            "badcompress",
            &["io.scribe.log.compress=maybe"],
            &["compress"],
        ),
        ("tag", &["io.scribe.log.tag=x"], &["tag", "local"]),
        (
            "cachebool",
            &["io.scribe.log.cache-disabled=maybe"],
            &["cache-disabled"],
        ),
        (
            "cachesize",
            &["io.scribe.log.cache-max-size=0"],
            &["cache-max-size"],
        ),
    ];
    for (id, annotations, words) in cases {
        let mut args = vec!["--rm", "--annotation", "io.scribe.log.driver=local"];
        for a in *annotations {
            args.extend(["--annotation", a]);
        }
        args.extend([IMAGE, id, "echo", "must-not-run"]);
        let o = c.ctr(&logs.run_args(&args));
        o.assert_failure();
        assert!(!o.stdout.contains("must-not-run"), "{o}");
        for w in *words {
            assert!(o.stderr.contains(w), "the error must name {w:?}: {o}");
        }
        assert!(
            !logs.container_dir(id).join("local-logs").exists(),
            "a refused container left a local log"
        );
    }
    // max-file=1 is fine once compression is off.
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--annotation",
        "io.scribe.log.driver=local",
        "--annotation",
        "io.scribe.log.max-file=1",
        "--annotation",
        "io.scribe.log.compress=false",
        IMAGE,
        "onefile",
        "echo",
        "one",
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    let entries = decode_files(&[logs
        .container_dir("onefile")
        .join("local-logs/container.log")]);
    assert_eq!(stream_text(&entries, "stdout"), "one\n");
    c.assert_clean();
}

/// A full disk under the `local` log: the container runs to its own exit status, ctr gets every
/// line, and `runtime.log` reports the drops with `component` = `local`: the kept records and the
/// dropped count add up to what the container wrote.
#[test]
fn a_full_local_log_disk_drops_and_reports_but_never_holds_the_container() {
    use scribe_e2e::records::read_json_lines;
    use scribe_e2e::tmpfs::Tmpfs;
    use std::time::Duration;

    let c = Containerd::start();
    let fs = Tmpfs::mount(c.dir().join("localfs"), "128k");
    // Leave about 24 KiB: a few hundred records fit, the rest do not.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![b'x'; 104 * 1024])
        .unwrap_or_else(|e| panic!("writing {}: {e}", filler.display()));
    let logs = LogSetup::new(
        &c,
        "localfull",
        &format!("JsonFileRoot = \"{}\"\n", fs.path().display()),
    );
    let id = "localfull";
    let n = 20000;
    let prog = format!("seq 1 {n}; echo err end >&2; exit 3");
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--annotation",
        "io.scribe.log.driver=local",
        IMAGE,
        id,
        "sh",
        "-c",
        &prog,
    ]));
    assert_eq!(o.code, Some(3), "the container's own exit status: {o}");
    let want: String = (1..=n).map(|i| format!("{i}\n")).collect();
    assert_text(&o.stdout, &want, "ctr's stdout");

    let runtime_log = logs.container_dir(id).join("runtime.log");
    let local_records = || -> Vec<serde_json::Value> {
        if !runtime_log.exists() {
            return Vec::new();
        }
        read_json_lines(&runtime_log)
            .into_iter()
            .filter(|r| r["component"] == "local")
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(15), || local_records()
            .iter()
            .any(|r| r.get("total_entries_dropped").is_some())),
        "no local summary in {}: {:?}",
        runtime_log.display(),
        local_records()
    );
    let recs = local_records();
    let first = &recs[0];
    assert_eq!(first["level"], "error", "{first}");
    let error = first["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("local write ")
            && error.contains("local-logs/container.log")
            && error.contains("No space left on device"),
        "the error names the driver, the file and the OS error: {first}"
    );
    let closed = recs.last().expect("records");
    let dropped = closed["total_entries_dropped"]
        .as_u64()
        .unwrap_or_else(|| panic!("total_entries_dropped: {closed}"));
    let dir = fs.path().join(c.namespace()).join(id).join("local-logs");
    let kept = decode_files(&local_files(&dir, "container.log"));
    assert!(
        !kept.is_empty() && dropped > 0,
        "{} kept, {dropped} dropped",
        kept.len()
    );
    assert_eq!(
        kept.len() as u64 + dropped,
        n as u64 + 1,
        "kept records and dropped entries add up to the container's lines"
    );
    fs.unmount();
    c.assert_clean();
}
