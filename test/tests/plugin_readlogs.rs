//! Issues 12 and 13, the last piece: a container logged through a plugin that serves
//! `/LogDriver.ReadLogs` (`scribe plugin` itself) gets no dual-logging cache, and `scribe logs`
//! reads its logs back through the plugin: all, `--tail`, `--since`/`--until`, `--stream`, and
//! `--follow` started before the container writes, ending after the container is gone. An
//! unreachable plugin is an error naming it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use scribe_e2e::cmd::Spawned;
use scribe_e2e::records::{json_log_files, parse_json_log, read_log_file, JsonEntry, LogSetup};
use scribe_e2e::scribe_cli::{scribe_bin, scribe_logs, ScribePlugin};
use scribe_e2e::*;

/// The plugin's name (`<PluginDirs dir>/scribeplug.sock`).
const PLUG: &str = "scribeplug";

/// `scribe plugin` in a `PluginDirs` directory of this containerd's own.
struct Plugin {
    served: ScribePlugin,
}

impl Plugin {
    fn start(c: &Containerd, what: &str) -> Plugin {
        let dir = c.dir().join(format!("plugins-{what}"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join(format!("{PLUG}.sock"));
        let root = c.dir().join(format!("plugin-logs-{what}"));
        Plugin {
            served: ScribePlugin::start(socket, root),
        }
    }

    fn dir(&self) -> &Path {
        self.served.socket.parent().unwrap()
    }

    /// The plugin's own json-file log of `id`, oldest first.
    fn entries(&self, id: &str) -> Vec<JsonEntry> {
        let d = self.served.log_dir(id);
        json_log_files(&d, id)
            .iter()
            .flat_map(|f| parse_json_log(&read_log_file(f), &f.display().to_string()))
            .collect()
    }
}

fn setup(c: &Containerd, what: &str, p: &Plugin) -> LogSetup {
    LogSetup::new(
        c,
        what,
        &format!(
            "AllowedLogDrivers = [\"json-file\", \"{PLUG}\"]\nPluginDirs = [\"{}\"]\n",
            p.dir().display()
        ),
    )
}

/// Lines `from..=to` on stdout (`out i`) and stderr (`err i`).
fn numbered(from: usize, to: usize) -> String {
    format!("i={from}; while [ $i -le {to} ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done")
}

/// 20 numbered lines, a marker on stdout between two sleeps, 20 more.
fn program() -> String {
    format!(
        "sleep 2; {}; sleep 1; echo MARK; sleep 1; {}",
        numbered(1, 20),
        numbered(21, 40)
    )
}

fn text(prefix: &str, range: std::ops::RangeInclusive<usize>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

fn all_out() -> String {
    format!("{}MARK\n{}", text("out", 1..=20), text("out", 21..=40))
}

fn run_args<'a>(logs: &'a LogSetup, ann: &'a str, id: &'a str, prog: &'a str) -> Vec<&'a str> {
    logs.run_args(&[
        "--rm",
        "--null-io",
        "--annotation",
        ann,
        IMAGE,
        id,
        "sh",
        "-c",
        prog,
    ])
}

/// What only the plugin holds: no cache, the descriptor, the lines in the plugin's own log.
#[track_caller]
fn check_files(logs: &LogSetup, p: &Plugin, id: &str) -> Vec<JsonEntry> {
    let cdir = logs.container_dir(id);
    assert!(
        !cdir.join("container-cached.log").exists(),
        "a ReadLogs plugin gets no cache"
    );
    assert!(cdir.join("plugin-readlogs.json").is_file());
    assert!(!logs.json_log(id).exists());
    let entries = p.entries(id);
    let of = |s: &str| -> String {
        entries
            .iter()
            .filter(|e| e.stream == s)
            .map(|e| e.log.as_str())
            .collect()
    };
    assert_eq!(of("stdout"), all_out());
    assert_eq!(of("stderr"), text("err", 1..=40));
    entries
}

#[test]
fn plugin_readlogs_all_tail_since_until_and_unreachable() {
    let c = Containerd::start();
    let mut p = Plugin::start(&c, "read");
    let logs = setup(&c, "read", &p);
    let id = "plugin-readlogs";
    let ann = format!("io.scribe.log.driver={PLUG}");
    let prog = program();
    let o = c.ctr(&run_args(&logs, &ann, id, &prog));
    assert_eq!(o.code, Some(0), "{o}");
    let entries = check_files(&logs, &p, id);

    let o = scribe_logs(&c, &logs, &[id]);
    assert_eq!(o.code, Some(0), "scribe logs: {}", o.stderr);
    assert_eq!(o.stdout, all_out());
    assert_eq!(o.stderr, text("err", 1..=40));

    // The last 10 entries as the plugin stored them (the two streams' order is the shim's).
    let last = &entries[entries.len() - 10..];
    let o = scribe_logs(&c, &logs, &["--tail", "10", id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, scribe_e2e::records::stream_text(last, "stdout"));
    assert_eq!(o.stderr, scribe_e2e::records::stream_text(last, "stderr"));

    let mark = entries
        .iter()
        .find(|e| e.log == "MARK\n")
        .expect("marker")
        .time
        .clone();
    let o = scribe_logs(&c, &logs, &["--since", &mark, id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, format!("MARK\n{}", text("out", 21..=40)));
    assert_eq!(o.stderr, text("err", 21..=40));
    let o = scribe_logs(&c, &logs, &["--until", &mark, id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, format!("{}MARK\n", text("out", 1..=20)));
    assert_eq!(o.stderr, text("err", 1..=20));

    let o = scribe_logs(&c, &logs, &["--stream", "stderr", "-t", id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, "");
    let want: String = entries
        .iter()
        .filter(|e| e.stream == "stderr")
        .map(|e| format!("{} {}", e.time, e.log))
        .collect();
    assert_eq!(o.stderr, want);

    let o = scribe_logs(&c, &logs, &["--format", "json", "--tail", "1", id]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let e = entries.last().unwrap();
    let got: serde_json::Value = serde_json::from_str(o.stdout.trim())
        .or_else(|_| serde_json::from_str(o.stderr.trim()))
        .unwrap_or_else(|err| panic!("{err}: {o:?}"));
    assert_eq!(got["log"], e.log.as_str());
    assert_eq!(got["time"], e.time.as_str());

    // The plugin gone: a clear error naming it and its address.
    p.served.stop();
    let o = scribe_logs(&c, &logs, &[id]);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr.contains(PLUG) && o.stderr.contains(&p.served.socket.display().to_string()),
        "{}",
        o.stderr
    );
    c.assert_clean();
}

#[test]
fn plugin_readlogs_follow_from_before_the_first_line_ends_after_delete() {
    let c = Containerd::start();
    let p = Plugin::start(&c, "follow");
    let logs = setup(&c, "follow", &p);
    let id = "plugin-readlogs-follow";
    let ann = format!("io.scribe.log.driver={PLUG}");
    let prog = program();
    let run = c.ctr_spawn(&run_args(&logs, &ann, id, &prog));
    // The descriptor is written at open, the plugin's log at StartLogging: both before the
    // program's first line (it sleeps 2 s first).
    let desc = logs.container_dir(id).join("plugin-readlogs.json");
    let plog = p.served.log_dir(id).join(format!("{id}-json.log"));
    assert!(
        wait_until(Duration::from_secs(20), || desc.is_file() && plog.is_file()),
        "no descriptor or plugin log"
    );
    let root = logs.root.to_str().unwrap();
    let mut cmd = Command::new(scribe_bin());
    cmd.args(["logs", "-n", c.namespace(), "--log-root", root, "-f", id]);
    let follow = Spawned::spawn(cmd);
    let o = run.wait_timeout(Duration::from_secs(60));
    assert!(o.success(), "ctr run: {o}");
    let f = follow.wait_timeout(Duration::from_secs(30));
    assert!(
        !f.timed_out,
        "scribe logs -f did not end after the container: {f}"
    );
    assert_eq!(f.code, Some(0), "{f}");
    assert_eq!(f.stdout, all_out());
    assert_eq!(f.stderr, text("err", 1..=40));
    check_files(&logs, &p, id);
    c.assert_clean();
}
