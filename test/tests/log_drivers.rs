//! Issue 11: the driver pipeline as a user sees it: driver lists, Docker's modes, who may choose
//! what (AllowedLogDrivers / AllowedLogAddresses), and bad options failing the Create with the
//! option named and nothing left behind. The drivers' own tests are in their files (json-file,
//! local, fluentd).
//!
//! Scribe's own feature: the tests always run the Scribe runtime.

use scribe_e2e::records::{stream_text, LogSetup};
use scribe_e2e::*;

/// Runs `ctr run --rm` with `annotations`; the Create must fail, the program must not run, and
/// the error must contain every one of `words`.
#[track_caller]
fn refused(c: &Containerd, logs: &LogSetup, id: &str, annotations: &[&str], words: &[&str]) {
    let mut args = vec!["--rm"];
    for a in annotations {
        args.push("--annotation");
        args.push(a);
    }
    args.extend([IMAGE, id, "echo", "must-not-run"]);
    let o = c.ctr(&logs.run_args(&args));
    o.assert_failure();
    assert!(!o.stdout.contains("must-not-run"), "{o}");
    for w in words {
        assert!(o.stderr.contains(w), "the error must name {w:?}: {o}");
    }
    assert!(
        !logs.json_log(id).exists(),
        "a refused container left a json-file log"
    );
}

#[test]
fn bad_driver_lists_and_modes_fail_the_create_naming_the_option() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "badmodes", "");
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "unknowndriver",
            &["io.scribe.log.driver=json-file,syslog"],
            &["syslog"],
        ),
        (
            "nonewithother",
            &["io.scribe.log.driver=none,json-file"],
            &["none"],
        ),
        (
            "twice",
            &["io.scribe.log.driver=json-file,json-file"],
            &["json-file", "twice"],
        ),
        (
            "buffernoblock",
            &[
                "io.scribe.log.driver=json-file",
                "io.scribe.log.max-buffer-size=4m",
            ],
            &["max-buffer-size", "non-blocking"],
        ),
        (
            "badmode",
            &["io.scribe.log.driver=json-file", "io.scribe.log.mode=fast"],
            &["mode", "fast"],
        ),
        (
            "negsize",
            &[
                "io.scribe.log.driver=json-file",
                "io.scribe.log.mode=non-blocking",
                "io.scribe.log.max-buffer-size=-1",
            ],
            &["max-buffer-size", "-1"],
        ),
        (
            "negmaxsize",
            &[
                "io.scribe.log.driver=json-file",
                "io.scribe.log.max-size=-5",
            ],
            &["max-size"],
        ),
        (
            "unknownopt",
            &[
                "io.scribe.log.driver=json-file",
                "io.scribe.log.no-such-option=1",
            ],
            &["no-such-option"],
        ),
        (
            "optnodriver",
            &["io.scribe.log.max-file=3"],
            &["max-file", "no log driver"],
        ),
    ];
    for (id, annotations, words) in cases {
        refused(&c, &logs, id, annotations, words);
    }
    assert!(c.containers().is_empty(), "{:?}", c.containers());
    c.assert_clean();
}

/// `AllowedLogDrivers` bounds what an annotation may choose; the admin's own `LogDriver` is
/// always allowed, and a container may still turn logging off.
#[test]
fn annotations_choose_drivers_only_among_the_allowed() {
    let c = Containerd::start();
    let locked = LogSetup::new(&c, "locked", "AllowedLogDrivers = []\n");
    refused(
        &c,
        &locked,
        "notallowed",
        &["io.scribe.log.driver=json-file"],
        &["json-file", "AllowedLogDrivers"],
    );
    let o = c.ctr(&locked.run_args(&[
        "--rm",
        "--annotation",
        "io.scribe.log.driver=none",
        IMAGE,
        "offisfine",
        "echo",
        "ran",
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(o.stdout, "ran\n");

    let admin = LogSetup::new(
        &c,
        "admin",
        "AllowedLogDrivers = []\nLogDriver = \"json-file\"\n[LogOpts]\nmax-size = \"1m\"\n",
    );
    let id = "adminsdriver";
    let o = c.ctr(&admin.run_args(&[
        "--rm",
        "--annotation",
        "io.scribe.log.driver=json-file",
        "--annotation",
        "io.scribe.log.mode=non-blocking",
        IMAGE,
        id,
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    let entries = admin.json_entries(id);
    assert_eq!(stream_text(&entries, "stdout"), "out\n", "{entries:?}");
    assert_eq!(stream_text(&entries, "stderr"), "err\n", "{entries:?}");
    c.assert_clean();
}

/// `mode=non-blocking` json-file: every line still arrives (the disk keeps up), in order.
#[test]
fn non_blocking_json_file_keeps_every_line() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "nonblock", "");
    let id = "nonblock";
    let o = c.ctr(&logs.run_args(&[
        "--rm",
        "--null-io",
        "--annotation",
        "io.scribe.log.driver=json-file",
        "--annotation",
        "io.scribe.log.mode=non-blocking",
        "--annotation",
        "io.scribe.log.max-buffer-size=2m",
        "--annotation",
        "io.scribe.log.max-size=200k",
        "--annotation",
        "io.scribe.log.max-file=100",
        IMAGE,
        id,
        "sh",
        "-c",
        "seq 1 50000",
    ]));
    assert_eq!(o.code, Some(0), "{o}");
    let mut text = String::new();
    let files = scribe_e2e::records::json_log_files(&logs.container_dir(id), id);
    for f in &files {
        let entries = scribe_e2e::records::parse_json_log(
            &scribe_e2e::records::read_log_file(f),
            &f.display().to_string(),
        );
        text.push_str(&stream_text(&entries, "stdout"));
    }
    let want: String = (1..=50000).map(|i| format!("{i}\n")).collect();
    assert!(
        text == want,
        "non-blocking json-file lost or reordered lines: {} bytes, want {}",
        text.len(),
        want.len()
    );
    c.assert_clean();
}
