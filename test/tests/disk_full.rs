//! Issue 4: a json-file log whose disk fills up. The container must keep running and exit with
//! its own status, the attached reader (ctr, through the FIFOs) must still get every byte, and
//! `runtime.log` must say what was lost: a record when dropping starts (with the file and the
//! OS error), one when writing works again (with the count), and a summary when the log closes.
//!
//! The json-file log goes to a 256 KiB tmpfs (`JsonFileRoot` in the runtime options) while the
//! records stay under `LogRoot` on the ordinary disk: with both on the full disk, runtime.log
//! could not be written either (the shim's own log would be the only place left to say it).
//! Scribe's own feature: the test always runs the Scribe runtime.

use scribe_e2e::records::{
    json_log_files, parse_json_log, read_json_lines, read_log_file, LogSetup,
};
use scribe_e2e::tmpfs::Tmpfs;
use scribe_e2e::*;
use serde_json::Value;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines before the test frees space, the last line of the short phase after it, and in all.
const FILL: usize = 3000;
const RESUME_TO: usize = 3400;
const TOTAL: usize = 6000;

/// stdout: `out 1` .. `out FILL` (more than the tmpfs holds); wait for /signal/go; 200 lines,
/// 2 s pause (writes have worked for longer than the shim's settle time), 200 lines; then
/// `out RESUME_TO+1` .. `out TOTAL`, filling the disk again; `err end` on stderr; exit 3.
fn script() -> String {
    format!(
        r#"i=1
while [ $i -le {FILL} ]; do echo "out $i"; i=$((i+1)); done
n=0; while [ ! -e /signal/go ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
while [ $i -le 3200 ]; do echo "out $i"; i=$((i+1)); done
sleep 2
while [ $i -le {RESUME_TO} ]; do echo "out $i"; i=$((i+1)); done
while [ $i -le {TOTAL} ]; do echo "out $i"; i=$((i+1)); done
echo "err end" >&2
exit 3"#
    )
}

/// The `json-file` records of a runtime.log, each checked against the runtime-log schema.
#[track_caller]
fn json_file_records(path: &std::path::Path) -> Vec<Value> {
    if !path.exists() {
        return Vec::new();
    }
    let all = read_json_lines(path);
    for r in &all {
        scribe_events::validate_runtime_record(r)
            .unwrap_or_else(|e| panic!("{}: {e}: {r}", path.display()));
    }
    all.into_iter()
        .filter(|r| r["component"] == "json-file")
        .collect()
}

/// What a json-file record reports: dropping, resumed or closed.
fn kind(r: &Value) -> &'static str {
    let msg = r["msg"].as_str().unwrap_or("");
    if r.get("total_entries_dropped").is_some() {
        "closed"
    } else if msg.contains("writable again") {
        "resumed"
    } else if msg.contains("dropping") {
        "dropping"
    } else {
        "other"
    }
}

/// The stdout line numbers kept in the json-file log, as runs (`1-1441 2480-3512 ...`), for
/// messages.
fn runs(kept: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &n in kept {
        match runs.last_mut() {
            Some(r) if r.1 + 1 == n => r.1 = n,
            _ => runs.push((n, n)),
        }
    }
    runs.iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn count(r: &Value, field: &str) -> u64 {
    r[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing or not a count: {r}"))
}

#[test]
fn full_json_file_disk_drops_and_reports_while_the_container_and_ctr_get_everything() {
    let c = Containerd::start();
    let fs = Tmpfs::mount(c.dir().join("jsonfs"), "256k");
    // Take 96 KiB of it; freeing this is what lets writes resume.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![b'x'; 96 * 1024])
        .unwrap_or_else(|e| panic!("writing {}: {e}", filler.display()));
    let signal = c.dir().join("signal");
    std::fs::create_dir_all(&signal).unwrap_or_else(|e| panic!("{}: {e}", signal.display()));
    let logs = LogSetup::new(
        &c,
        "full",
        &format!(
            "JsonFileRoot = \"{}\"\nLogDriver = \"json-file\"\n",
            fs.path().display()
        ),
    );
    let id = "diskfull";
    let json_dir = fs.path().join(c.namespace()).join(id);
    let json_log = json_dir.join(format!("{id}-json.log"));
    let runtime_log = logs.container_dir(id).join("runtime.log");

    let mount = format!(
        "type=bind,src={},dst=/signal,options=rbind:rw",
        signal.display()
    );
    let script = script();
    let args = logs.run_args(&["--rm", "--mount", &mount, IMAGE, id, "sh", "-c", &script]);
    // ctr's stdout as it comes: seeing `out FILL` there means the shim has handled the whole
    // first phase (it writes each read to the json-file before the FIFO).
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let o = std::thread::scope(|s| {
        let sink = seen.clone();
        let run = s.spawn(|| {
            c.ctr_streaming(&args, Duration::from_secs(120), move |mut out| {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            })
        });
        let phase1 = format!("out {FILL}\n");
        let done = wait_until(Duration::from_secs(60), || {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .ends_with(phase1.as_bytes())
        });
        if done {
            // The first phase filled the disk: the first record says so.
            let recs = json_file_records(&runtime_log);
            let first = recs.first().unwrap_or_else(|| {
                panic!(
                    "no json-file record in {} while the disk is full ({} bytes free)",
                    runtime_log.display(),
                    fs.free_bytes()
                )
            });
            assert_eq!(kind(first), "dropping", "{first}");
            assert_eq!(first["level"], "error", "{first}");
            let error = first["error"].as_str().unwrap_or("");
            assert!(
                error.contains(&*json_log.to_string_lossy())
                    && error.contains("No space left on device"),
                "the error must name the file and the OS error: {first}"
            );
            assert_eq!(first["container_id"], id, "{first}");
            // Make room and let the container go on.
            std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{}: {e}", filler.display()));
        }
        // (without the first phase the container gives up waiting after 60 s)
        std::fs::write(signal.join("go"), b"")
            .unwrap_or_else(|e| panic!("{}: {e}", signal.display()));
        let (o, consumed) = run.join().unwrap_or_else(|_| panic!("ctr thread panicked"));
        consumed.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            done,
            "ctr never got the first phase's last line: {o}\n{}",
            c.log_tail(30)
        );
        o
    });
    assert_eq!(o.code, Some(3), "the container's own exit status: {o}");

    // ctr got every byte, in order.
    let got = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let want: String = (1..=TOTAL).map(|i| format!("out {i}\n")).collect();
    assert!(
        got == want.as_bytes(),
        "ctr's stdout: {} bytes, want {}; first difference at byte {:?}",
        got.len(),
        want.len(),
        got.iter().zip(want.bytes()).position(|(a, b)| *a != b)
    );
    assert!(o.stderr.contains("err end"), "ctr's stderr: {o}");

    // The records: dropping, writable again (with the count), dropping again, and at the end
    // the summary, still dropping.
    assert!(
        wait_until(Duration::from_secs(15), || json_file_records(&runtime_log)
            .iter()
            .any(|r| kind(r) == "closed")),
        "no closing record in {}:\n{:#?}",
        runtime_log.display(),
        json_file_records(&runtime_log)
    );
    // What the json-file log kept (it is closed: the summary was written).
    let entries: Vec<_> = json_log_files(&json_dir, id)
        .iter()
        .flat_map(|f| parse_json_log(&read_log_file(f), &f.display().to_string()))
        .collect();
    let kept: Vec<usize> = entries
        .iter()
        .filter(|e| e.stream == "stdout")
        .map(|e| {
            e.log
                .strip_prefix("out ")
                .and_then(|n| n.strip_suffix('\n'))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not an output line: {e:?}"))
        })
        .collect();

    let recs = json_file_records(&runtime_log);
    let kinds: Vec<&str> = recs.iter().map(kind).collect();
    assert_eq!(
        kinds,
        ["dropping", "resumed", "dropping", "closed"],
        "json-file records:\n{recs:#?}\nlines kept: {}",
        runs(&kept)
    );
    let (resumed, closed) = (&recs[1], &recs[3]);
    assert_eq!(resumed["level"], "warn", "{resumed}");
    assert_eq!(
        closed["level"], "error",
        "closed while still dropping: {closed}"
    );
    for r in &recs {
        assert_eq!(r["file"], json_log.to_string_lossy().as_ref(), "{r}");
        assert!(r["pid"].as_u64().is_some(), "{r}");
    }
    let total_entries = count(closed, "total_entries_dropped");
    let total_bytes = count(closed, "total_bytes_dropped");
    assert_eq!(
        count(resumed, "entries_dropped") + count(closed, "entries_dropped"),
        total_entries,
        "the counts of the records add up to the total: {recs:#?}"
    );
    assert_eq!(
        count(resumed, "bytes_dropped") + count(closed, "bytes_dropped"),
        total_bytes
    );

    // What is on the tmpfs plus what was reported dropped is all the output.
    assert!(
        kept.windows(2).all(|w| w[0] < w[1]),
        "json-file entries out of order or repeated"
    );
    for i in FILL + 1..=RESUME_TO {
        assert!(
            kept.binary_search(&i).is_ok(),
            "line {i}, written after space came back, is not in the json-file log (kept: {})",
            runs(&kept)
        );
    }
    let out_bytes: usize = (1..=TOTAL).map(|i| format!("out {i}\n").len()).sum();
    let all_bytes = (out_bytes + "err end\n".len()) as u64;
    let kept_bytes: u64 = entries.iter().map(|e| e.log.len() as u64).sum();
    assert_eq!(
        entries.len() as u64 + total_entries,
        TOTAL as u64 + 1,
        "entries kept ({}) + dropped ({total_entries}) must be every line",
        entries.len()
    );
    assert_eq!(
        kept_bytes + total_bytes,
        all_bytes,
        "bytes kept ({kept_bytes}) + dropped ({total_bytes}) must be all the output"
    );
    eprintln!(
        "disk full: {} of {} entries kept, {total_entries} entries ({total_bytes} bytes) dropped; records: {}",
        entries.len(),
        TOTAL + 1,
        recs.iter()
            .map(|r| r["msg"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    fs.unmount();
    c.assert_clean();
}
