//! Issue 13: `scribe logs` reads a json-file or `local` container's logs back (rotated and
//! gzipped files included) exactly as they are on disk: all of it, `--tail`, `--since`/`--until`
//! to the nanosecond, and `--follow` across rotations until the container is deleted.
//!
//! `SCRIBE_E2E_READER_LINES` sets how many numbered lines the container writes (the issue's
//! figure is 200000; the default keeps the test under a minute). `SCRIBE_CLI_BIN` names the
//! `scribe` binary (default: next to the shim, where `make build` puts it).

use scribe_e2e::records::{json_log_files, stream_text, LogSetup};
use scribe_e2e::scribe_cli::{scribe_bin, scribe_logs as scribe};
use scribe_e2e::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The drivers `scribe logs` reads back.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Driver {
    JsonFile,
    Local,
}

impl Driver {
    fn annotation(self) -> &'static str {
        match self {
            Driver::JsonFile => "io.scribe.log.driver=json-file",
            Driver::Local => "io.scribe.log.driver=local",
        }
    }

    /// The container's log files, oldest first.
    fn files(self, logs: &LogSetup, id: &str) -> Vec<PathBuf> {
        match self {
            Driver::JsonFile => json_log_files(&logs.container_dir(id), id),
            Driver::Local => {
                let dir = logs.container_dir(id).join("local-logs");
                let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
                let mut live = None;
                for e in std::fs::read_dir(&dir)
                    .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
                    .flatten()
                {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name == "container.log" {
                        live = Some(e.path());
                        continue;
                    }
                    let n = name
                        .strip_prefix("container.log.")
                        .map(|r| r.strip_suffix(".gz").unwrap_or(r))
                        .and_then(|r| r.parse::<u32>().ok())
                        .unwrap_or_else(|| panic!("unexpected file {name} in {}", dir.display()));
                    rotated.push((n, e.path()));
                }
                rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
                let mut v: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
                v.extend(live);
                v
            }
        }
    }
}

/// A file's bytes, gunzipped by `gzip -dc` for a `.gz`.
fn file_bytes(path: &Path) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "gz") {
        let o = Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .output()
            .expect("gzip");
        assert!(o.status.success(), "gzip -dc {}", path.display());
        o.stdout
    } else {
        std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

const ROTATING: [&str; 6] = [
    "--annotation",
    "io.scribe.log.max-size=1m",
    "--annotation",
    "io.scribe.log.max-file=5",
    "--annotation",
    "io.scribe.log.compress=true",
];

fn lines_wanted() -> usize {
    std::env::var("SCRIBE_E2E_READER_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
}

/// What the files hold: every stdout entry's text in file order, and each entry's text and
/// time as Unix seconds with nine digits.
fn on_disk(driver: Driver, logs: &LogSetup, id: &str) -> (String, Vec<(String, String)>) {
    match driver {
        Driver::JsonFile => {
            let entries = logs.json_entries(id);
            let text = stream_text(&entries, "stdout");
            let times = entries
                .iter()
                .map(|e| (e.log.trim_end().to_string(), e.time.clone()))
                .collect();
            (text, times)
        }
        Driver::Local => {
            let mut text = String::new();
            let mut times = Vec::new();
            for f in driver.files(logs, id) {
                let bytes = file_bytes(&f);
                for e in scribe_io::localfmt::ForwardReader::new(&bytes[..]) {
                    let e = e.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                    let line = String::from_utf8(e.line).expect("utf-8");
                    if e.source == "stdout" {
                        text.push_str(&line);
                        if !e.partial {
                            text.push('\n');
                        }
                    }
                    let t = format!(
                        "{}.{:09}",
                        e.time_nano / 1_000_000_000,
                        e.time_nano % 1_000_000_000
                    );
                    times.push((line, t));
                }
            }
            (text, times)
        }
    }
}

#[test]
fn json_file_logs_all_tail_and_time_window_match_the_files() {
    logs_all_tail_and_time_window_match_the_files(Driver::JsonFile);
}

#[test]
fn local_logs_all_tail_and_time_window_match_the_files() {
    logs_all_tail_and_time_window_match_the_files(Driver::Local);
}

fn logs_all_tail_and_time_window_match_the_files(driver: Driver) {
    let n = lines_wanted();
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "reader", "");
    let id = "reader";
    let script = format!(
        "seq 1 {n} | sed 's/^/line /'; sleep 1; echo MARKER; sleep 1; seq 1 5 | sed 's/^/after /'"
    );
    let mut args = vec!["--rm", "--annotation", driver.annotation()];
    args.extend_from_slice(&ROTATING);
    args.extend_from_slice(&[IMAGE, id, "sh", "-c", &script]);
    let o = c.ctr(&logs.run_args(&args));
    assert_eq!(o.code, Some(0), "{o}");

    let files = driver.files(&logs, id);
    assert!(
        files.len() >= 2,
        "rotated: {files:?} ({n} lines through 1m files)"
    );
    let (want, times) = on_disk(driver, &logs, id);
    assert!(want.ends_with("MARKER\nafter 1\nafter 2\nafter 3\nafter 4\nafter 5\n"));

    let all = scribe(&c, &logs, &[id]);
    assert_eq!(all.code, Some(0), "{}", all.stderr);
    assert!(all.stderr.is_empty(), "stderr: {}", all.stderr);
    assert!(
        all.stdout == want,
        "scribe logs printed {} lines, the files hold {}",
        all.stdout.lines().count(),
        want.lines().count()
    );
    eprintln!(
        "{} files, {} lines on disk of {} written",
        files.len(),
        want.lines().count(),
        n + 6
    );

    let tail = scribe(&c, &logs, &["--tail", "10", id]);
    assert_eq!(tail.code, Some(0), "{}", tail.stderr);
    let last10: Vec<&str> = want
        .lines()
        .rev()
        .take(10)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(tail.stdout.lines().collect::<Vec<_>>(), last10);

    // The marker's own time, to the nanosecond: --since includes it, --until too.
    let marker = &times.iter().find(|(l, _)| l == "MARKER").expect("marker").1;
    let only = scribe(&c, &logs, &["--since", marker, "--until", marker, id]);
    assert_eq!(only.stdout, "MARKER\n", "{}", only.stderr);
    // Half a second either side (Unix time with a fraction): the sleeps keep the others out.
    let t: f64 = match driver {
        Driver::JsonFile => unix_of(marker),
        Driver::Local => marker.parse().expect("seconds"),
    };
    let since = format!("{:.9}", t - 0.5);
    let until = format!("{:.9}", t + 0.5);
    let window = scribe(&c, &logs, &["--since", &since, "--until", &until, id]);
    assert_eq!(window.stdout, "MARKER\n", "{}", window.stderr);
    let after = scribe(&c, &logs, &["--since", marker, "-t", id]);
    let after_lines: Vec<&str> = after.stdout.lines().collect();
    assert_eq!(after_lines.len(), 6, "{}", after.stdout);
    assert!(after_lines[0].ends_with("Z MARKER"), "{}", after.stdout);
    assert!(after_lines[5].ends_with("Z after 5"), "{}", after.stdout);
    if driver == Driver::JsonFile {
        assert_eq!(after_lines[0], format!("{marker} MARKER"));
    }

    // scribe records: the container's lifecycle records, filtered.
    let root = logs.root.to_str().expect("utf-8");
    let rec = Command::new(scribe_bin())
        .args(["records", "-n", c.namespace(), "--log-root", root])
        .args(["--event", "exit,delete", id])
        .output()
        .expect("scribe records");
    let rec_out = String::from_utf8_lossy(&rec.stdout);
    let events: Vec<String> = rec_out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
            v["event"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(events, ["exit", "delete"], "{rec_out}");
    let rec = Command::new(scribe_bin())
        .args(["records", "-n", c.namespace(), "--log-root", root])
        .args(["--tail", "1", id])
        .output()
        .expect("scribe records");
    assert!(
        String::from_utf8_lossy(&rec.stdout).contains("\"event\":\"delete\""),
        "{rec:?}"
    );

    let unknown = scribe(&c, &logs, &["nosuchcontainer"]);
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown.stderr.contains(
            &logs
                .root
                .join(c.namespace())
                .join("nosuchcontainer")
                .display()
                .to_string()
        ),
        "the error says where it looked: {}",
        unknown.stderr
    );
    c.assert_clean();
}

/// Seconds since the epoch of a json-file time (`2024-03-21T10:00:00.123456789Z`), via `date`.
fn unix_of(t: &str) -> f64 {
    let o = Command::new("date")
        .args(["-u", "-d", t, "+%s.%N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("date -d {t}: {e}"))
}

#[test]
fn json_file_follow_sees_every_line_across_rotations_and_ends_at_delete() {
    follow_sees_every_line_across_rotations_and_ends_at_delete(Driver::JsonFile);
}

#[test]
fn local_follow_sees_every_line_across_rotations_and_ends_at_delete() {
    follow_sees_every_line_across_rotations_and_ends_at_delete(Driver::Local);
}

fn follow_sees_every_line_across_rotations_and_ends_at_delete(driver: Driver) {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "follow", "");
    let id = "follower";
    // 40 chunks of lines (about 4.5 MB of json-file, 6 MB of local: four 1m rotations or more), after a
    // pause that lets the follower start first.
    let chunks = 40;
    // local records are about a third of a json-file entry: more lines for as many rotations.
    let per = match driver {
        Driver::JsonFile => 1500,
        Driver::Local => 4000,
    };
    let script = format!(
        "sleep 2; i=0; while [ $i -lt {chunks} ]; do seq $((i*{per}+1)) $(((i+1)*{per})) | sed 's/^/line /'; sleep 0.05; i=$((i+1)); done"
    );
    let mut args = vec!["-d", "--annotation", driver.annotation()];
    args.extend_from_slice(&ROTATING);
    args.extend_from_slice(&[IMAGE, id, "sh", "-c", &script]);
    c.ctr_ok(&logs.run_args(&args));
    let root = logs.root.to_str().expect("utf-8").to_string();
    let child = Command::new(scribe_bin())
        .args(["logs", "-f", "-n", c.namespace(), "--log-root", &root, id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scribe logs -f");
    let pid = child.id() as i32;
    // Its output is read as it comes: a full pipe would stop the follower while files rotate
    // away under it.
    let waiter = std::thread::spawn(move || child.wait_with_output());
    assert!(
        c.wait_task_status(id, "STOPPED", Duration::from_secs(120)),
        "{id} did not finish: {:?}",
        c.tasks()
    );
    let files = driver.files(&logs, id);
    let gz = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "gz"))
        .count();
    assert!(gz >= 3, "at least three rotations: {files:?}");
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    // It ends by itself after the delete; a stuck follower is killed (by pid) and fails.
    let ended = procs::wait_until(Duration::from_secs(20), || waiter.is_finished());
    if !ended {
        procs::kill(pid, libc::SIGKILL);
    }
    let o = waiter.join().expect("join").expect("wait scribe");
    assert!(
        ended,
        "scribe logs -f did not end after the container was deleted"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
    let got = String::from_utf8(o.stdout).expect("utf-8");
    let want: String = (1..=chunks * per).map(|i| format!("line {i}\n")).collect();
    assert!(
        got == want,
        "followed {} lines, want {}; first difference at line {:?}",
        got.lines().count(),
        chunks * per,
        got.lines().zip(want.lines()).position(|(a, b)| a != b)
    );
    c.assert_clean();
}
