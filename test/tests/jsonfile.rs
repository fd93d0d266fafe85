//! Issue 5: the built-in json-file log (Docker's format), enabled per container with
//! `--annotation io.scribe.log.driver=json-file`: long lines cut into 16 KiB pieces, rotation
//! with gzip, invalid UTF-8 kept (as U+FFFD), a last line without newline, the tag option.
//! The output also still reaches ctr.
//!
//! Scribe's own feature: the tests always run the Scribe runtime.

use scribe_e2e::records::{is_gzip, json_log_files, read_log_file, stream_text, LogSetup};
use scribe_e2e::*;
use std::time::Duration;

const JSON_FILE: &str = "io.scribe.log.driver=json-file";

#[test]
fn line_of_100k_is_cut_into_seven_16k_pieces() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "long", "");
    let id = "longline";
    // seq's digits without newlines: 102400 bytes of varied content, then one newline
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--annotation",
        JSON_FILE,
        IMAGE,
        id,
        "sh",
        "-c",
        "seq 1 30000 | tr -d '\\n' | head -c 102400; echo",
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    let mut want: String = (1..=30000).map(|i| i.to_string()).collect();
    want.truncate(100 * 1024);
    want.push('\n');
    assert!(
        o.stdout == want,
        "ctr's stdout must still get the line: {} bytes, want {}",
        o.stdout.len(),
        want.len()
    );
    let entries = logs.json_entries(id);
    let sizes: Vec<usize> = entries.iter().map(|e| e.log.len()).collect();
    assert_eq!(
        sizes,
        [16384, 16384, 16384, 16384, 16384, 16384, 4097],
        "pieces of a 100 KiB line (only the last ends with \\n)"
    );
    assert!(entries.iter().all(|e| e.stream == "stdout"), "{entries:?}");
    for e in &entries[..6] {
        assert!(!e.log.ends_with('\n'), "a middle piece ends with a newline");
    }
    assert!(
        stream_text(&entries, "stdout") == want,
        "the pieces reassembled differ from the line"
    );

    // a long line of 2-byte characters: pieces are cut between characters (never inside one),
    // so each piece is valid UTF-8 and nothing turns into U+FFFD
    let id = "longutf8";
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--annotation",
        JSON_FILE,
        IMAGE,
        id,
        "sh",
        "-c",
        // printf turns each \303\251 into U+00E9 (2 bytes): 200 x 100 of them, 40000 bytes
        r#"s=''; i=0; while [ $i -lt 100 ]; do s="$s\303\251"; i=$((i+1)); done;
           j=0; while [ $j -lt 200 ]; do printf "$s"; j=$((j+1)); done; echo"#,
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    let want = format!("{}\n", "\u{e9}".repeat(20000));
    assert!(o.stdout == want, "ctr's stdout must get the multibyte line");
    let entries = logs.json_entries(id);
    assert!(
        entries
            .iter()
            .all(|e| e.log.len() <= 16384 && !e.log.contains('\u{FFFD}')),
        "pieces of a multibyte line: sizes {:?}",
        entries.iter().map(|e| e.log.len()).collect::<Vec<_>>()
    );
    assert_eq!(entries.len(), 3, "40000 bytes in pieces of at most 16 KiB");
    assert!(
        stream_text(&entries, "stdout") == want,
        "the multibyte pieces reassembled differ from the line"
    );
    c.assert_clean();
}

#[test]
fn rotation_keeps_max_file_gzipped_files_holding_the_latest_lines() {
    const LINES: usize = 20000;
    const MAX_SIZE: usize = 10_000; // 10k: decimal, as Docker
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "rot", "");
    let id = "rotate";
    let seq = format!("seq 1 {LINES}");
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--annotation",
        JSON_FILE,
        "--annotation",
        "io.scribe.log.max-size=10k",
        "--annotation",
        "io.scribe.log.max-file=3",
        "--annotation",
        "io.scribe.log.compress=true",
        IMAGE,
        id,
        "sh",
        "-c",
        &seq,
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(
        o.stdout.lines().count(),
        LINES,
        "ctr's stdout must still get every line"
    );

    let dir = logs.container_dir(id);
    let files = json_log_files(&dir, id);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // ~1.5 MB of JSON through 10 kB files: rotated many times, 3 files kept
    assert_eq!(
        names,
        [
            format!("{id}-json.log.2.gz"),
            format!("{id}-json.log.1.gz"),
            format!("{id}-json.log"),
        ],
        "files in {}",
        dir.display()
    );
    let others: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("json.log") && !names.contains(n))
        .collect();
    assert!(
        others.is_empty(),
        "other json-file files left in {}: {others:?}",
        dir.display()
    );

    let mut entries = Vec::new();
    for f in &files {
        let rotated = f.extension().map(|e| e == "gz").unwrap_or(false);
        assert_eq!(is_gzip(f), rotated, "{}: gzip iff rotated", f.display());
        let text = read_log_file(f);
        assert!(
            text.len() <= MAX_SIZE,
            "{}: {} bytes, past max-size {MAX_SIZE}",
            f.display(),
            text.len()
        );
        if rotated {
            assert!(
                text.len() > MAX_SIZE - 200,
                "{}: rotated at {} bytes, well before max-size {MAX_SIZE}",
                f.display(),
                text.len()
            );
        }
        entries.extend(records::parse_json_log(&text, &f.display().to_string()));
    }
    // what is kept is exactly the last K lines written, in order
    let k = entries.len();
    assert!(k > 300, "only {k} entries kept in 3 files of 10 kB");
    let want: Vec<String> = (LINES - k + 1..=LINES).map(|i| format!("{i}\n")).collect();
    let got: Vec<&str> = entries.iter().map(|e| e.log.as_str()).collect();
    if let Some(i) = (0..k).find(|&i| got[i] != want[i]) {
        panic!(
            "entry {i} of the {k} kept is {:?}, want {:?}: the files are not a suffix of the output",
            got[i], want[i]
        );
    }
    assert!(entries.iter().all(|e| e.stream == "stdout"));
    c.assert_clean();
}

#[test]
fn invalid_utf8_kept_last_line_without_newline_written_and_tagged() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "utf8", "");
    let id = "utf8tail";
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--annotation",
        JSON_FILE,
        "--annotation",
        "io.scribe.log.tag=mytag",
        IMAGE,
        id,
        "sh",
        "-c",
        r"printf 'before\n\377\376bad\n\200ok\nno-newline-at-end'; printf 'err-tail' >&2",
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stdout.ends_with("ok\nno-newline-at-end"),
        "ctr's stdout must still get the output: {o}"
    );
    let entries = logs.json_entries(id);
    let out: Vec<&str> = entries
        .iter()
        .filter(|e| e.stream == "stdout")
        .map(|e| e.log.as_str())
        .collect();
    assert_eq!(
        out,
        [
            "before\n",
            "\u{FFFD}\u{FFFD}bad\n",
            "\u{FFFD}ok\n",
            "no-newline-at-end"
        ],
        "stdout entries: invalid bytes become U+FFFD, a last line without newline is kept"
    );
    assert_eq!(
        stream_text(&entries, "stderr"),
        "err-tail",
        "stderr entries: {entries:?}"
    );
    for e in &entries {
        assert_eq!(
            e.attrs,
            Some(serde_json::json!({"tag": "mytag"})),
            "io.scribe.log.tag: {e:?}"
        );
    }

    // a partial line is written too when the process is killed rather than exiting
    let ev = c.events();
    let id = "killedtail";
    c.ctr_ok(&logs.run_args(&[
        "-d",
        "--annotation",
        JSON_FILE,
        IMAGE,
        id,
        "sh",
        "-c",
        "echo whole; printf 'partial-before-kill'; exec sleep 1000",
    ]));
    assert!(
        wait_until(Duration::from_secs(10), || {
            logs.json_log(id).exists() && !logs.json_entries(id).is_empty()
        }),
        "no json-file entry for the first line"
    );
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    assert_eq!(
        ev.wait_exit(id, Duration::from_secs(30)),
        Some(137),
        "{}",
        ev.dump()
    );
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    assert_eq!(
        stream_text(&logs.json_entries(id), "stdout"),
        "whole\npartial-before-kill",
        "json-file of a killed container"
    );
    c.assert_clean();
}

#[test]
fn bad_log_options_fail_the_create_naming_the_problem() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "bad", "");
    // A 100,000-byte tag (a single argument may not exceed 128 KiB) is over the 1 KiB bound.
    let huge_tag = format!("io.scribe.log.tag={}", "t".repeat(100_000));
    for (id, opt, words) in [
        (
            "badsize",
            "io.scribe.log.max-size=lots",
            ["max-size", "lots"],
        ),
        (
            "baddriver",
            "io.scribe.log.driver=syslog",
            ["driver", "syslog"],
        ),
        ("hugetag", huge_tag.as_str(), ["tag", "1024-byte limit"]),
    ] {
        let o = c.ctr(&logs.run_args(&[
            "--rm",
            "--annotation",
            JSON_FILE,
            "--annotation",
            opt,
            IMAGE,
            id,
            "echo",
            "must-not-run",
        ]));
        o.assert_failure();
        assert!(!o.stdout.contains("must-not-run"), "{o}");
        for w in words {
            assert!(o.stderr.contains(w), "the error must name {w:?}: {o}");
        }
        assert!(
            o.stderr.len() < 2000,
            "the error quotes a huge option whole ({} bytes)",
            o.stderr.len()
        );
        // containerd runs the shim's `delete` after the failed Create: no exit or delete of a
        // container that never existed.
        if logs.container_log(id).exists() {
            let recs = logs.records(id);
            assert!(
                recs.iter().all(|r| r["event"] == "create"),
                "records of a container whose Create failed: {recs:?}"
            );
        }
    }
    assert!(c.containers().is_empty(), "{:?}", c.containers());
    c.assert_clean();
}

/// The json-file log also works when turned on by the runtime options TOML instead of an
/// annotation, with options from `[LogOpts]`.
#[test]
fn json_file_from_runtime_options() {
    let c = Containerd::start();
    let logs = LogSetup::new(
        &c,
        "toml",
        "LogDriver = \"json-file\"\n[LogOpts]\nmax-size = \"1m\"\nmax-file = \"2\"\n",
    );
    let id = "tomljson";
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        IMAGE,
        id,
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2",
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    let files = json_log_files(&logs.container_dir(id), id);
    assert_eq!(files, [logs.json_log(id)], "one live file");
    let entries = logs.json_entries(id);
    assert_eq!(
        stream_text(&entries, "stdout"),
        "out1\nout2\n",
        "{entries:?}"
    );
    assert_eq!(stream_text(&entries, "stderr"), "err1\n", "{entries:?}");
    assert!(
        entries.iter().all(|e| e.attrs.is_none()),
        "no tag, no attrs: {entries:?}"
    );
    c.assert_clean();
}

/// `ctr run -d` leaves the container's FIFOs without a reader once ctr exits. The json-file log
/// must still get every line and the container must not block on its output (Docker never
/// stalls a container's json-file because nobody is attached). containerd's Go shim blocks the
/// container here, but it has no json-file log to keep.
#[test]
fn detached_container_output_reaches_json_file_without_a_fifo_reader() {
    const LINES: usize = 100_000; // ~590 kB: far more than a FIFO buffers
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "detached", "");
    let ev = c.events();
    let id = "detachedjson";
    // sleep first: `ctr run -d` copies the FIFOs itself until it exits
    let script = format!("sleep 1; seq 1 {LINES}; echo done");
    c.ctr_ok(&logs.run_args(&[
        "-d",
        "--annotation",
        JSON_FILE,
        IMAGE,
        id,
        "sh",
        "-c",
        &script,
    ]));
    let st = ev.wait_exit(id, Duration::from_secs(15));
    let entries = logs.json_entries(id);
    assert_eq!(
        st,
        Some(0),
        "the container did not exit: blocked writing its output? json-file has {} of {} entries",
        entries.len(),
        LINES + 1
    );
    let mut want: String = (1..=LINES).map(|i| format!("{i}\n")).collect();
    want.push_str("done\n");
    assert_eq!(entries.len(), LINES + 1, "json-file entries");
    assert!(
        stream_text(&entries, "stdout") == want,
        "json-file content differs"
    );
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_clean();
}
