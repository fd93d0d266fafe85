//! Issue 16 "never block, never lose": when the reader of a container's FIFO (here the attached
//! `ctr run`) stops reading, Scribe spools the output on disk and replays it, in order, when the
//! reader reads again; the container is never held up while the spool has room.
//!
//! The containers write numbered lines with a monotonic timestamp (`/proc/uptime`, read with the
//! shell's builtin `read`: no fork, 10 ms resolution); the largest gap between consecutive
//! timestamps is how long the container was held up.
//!
//! With `SCRIBE_E2E_RUNTIME=io.containerd.runc.v2` the first test runs containerd's Go shim and
//! only prints its numbers (it blocks the container while `ctr` is stopped).

use scribe_e2e::procs::WriteBlockWatch;
use scribe_e2e::records::LogSetup;
use scribe_e2e::*;
use std::time::{Duration, Instant};

const LINES: usize = 16_000;

/// 16,000 lines `line <n> <uptime>`, paced (a 5 ms sleep every 10 lines) so that writing takes
/// longer than the reader's 10 s stop. Each script first sleeps 2 s, so that `ctr` is stopped
/// before the first line.
const PACED: &str =
    "sleep 2; i=1; while [ $i -le 16000 ]; do read up x < /proc/uptime; echo \"line $i $up\"; \
     if [ $((i % 10)) -eq 0 ]; then usleep 5000; fi; i=$((i+1)); done";

/// 16,000 lines as fast as the shell writes them, 38 bytes each (`line <n, 5 digits>` padded).
const FAST: &str = "sleep 2; i=1; while [ $i -le 16000 ]; do printf 'line %05d ..........................\\n' $i; \
     i=$((i+1)); done";

/// Checks `line 1` .. `line 16000` in order, once each; returns the uptime stamps (seconds) when
/// the lines carry them.
fn check_lines(text: &str) -> Result<Vec<f64>, String> {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    let mut stamps = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let mut f = l.split_whitespace().skip(1);
        let n: usize = f
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("line {}: {l:?} is broken", i + 1))?;
        if n != i + 1 {
            return Err(format!(
                "line {} is {l:?}, want number {} ({} lines in all)",
                i + 1,
                i + 1,
                lines.len()
            ));
        }
        if let Some(t) = f.next().and_then(|t| t.parse::<f64>().ok()) {
            stamps.push(t);
        }
    }
    if lines.len() != LINES {
        return Err(format!("{} lines, want {LINES}", lines.len()));
    }
    Ok(stamps)
}

/// The largest gap between consecutive stamps, and where.
fn largest_gap(stamps: &[f64]) -> (f64, usize) {
    stamps
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1] - w[0], i + 1))
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// Runs `script` in an attached `ctr run --rm`, SIGSTOPs that `ctr` for `stop` once the
/// container runs, then continues it; returns ctr's output. `during(c, id)` runs while `ctr` is
/// stopped (after `stop` / 2).
fn run_with_stopped_reader(
    c: &Containerd,
    logs: &LogSetup,
    id: &str,
    annotations: &[&str],
    script: &str,
    stop: Duration,
    during: impl FnOnce(&Containerd, &str),
) -> (CmdOutput, Duration) {
    let mut args = vec!["--rm"];
    for a in annotations {
        args.extend(["--annotation", a]);
    }
    args.extend([IMAGE, id, "sh", "-c", script]);
    let args = if testing_scribe() {
        logs.run_args(&args)
    } else {
        c.run_args(&args)
    };
    let ctr = c.ctr_spawn(&args);
    assert!(
        c.wait_task_status(id, "RUNNING", Duration::from_secs(30)),
        "{id} did not start\n{}",
        c.log_tail(30)
    );
    let watch = watch_writer(c, id);
    ctr.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    std::thread::sleep(stop / 2);
    during(c, id);
    if let Some(rest) = stop.checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    ctr.signal(libc::SIGCONT);
    let o = ctr.wait_timeout(Duration::from_secs(120));
    (o, watch.finish().0)
}

/// Watches the container's init (the writing shell) for writes held up ([`WriteBlockWatch`]).
fn watch_writer(c: &Containerd, id: &str) -> WriteBlockWatch {
    let pid = c.task(id).map(|t| t.pid as i32).expect("the task's pid");
    WriteBlockWatch::start(pid)
}

/// The "never held up more than 100 ms" check. What is asserted is the longest time the
/// container's shell was seen asleep in write(2) (sampled every 2 ms): on a loaded 2-core
/// machine the timestamp gap also counts time the shell waited for a CPU (100-380 ms gaps were
/// seen with no write held up, with this shim and the one before spooling), so the gap is
/// printed and only bounded at 1 s, which still fails a shim that blocks the container for the
/// reader's stop (the Go shim: 3.2 s).
fn assert_never_held_up(blocked: Duration, gap: f64, at: usize) {
    assert!(
        blocked < Duration::from_millis(100),
        "the container was blocked writing its output for {blocked:?} (largest timestamp gap {:.0} ms, before line {at})",
        gap * 1000.0
    );
    assert!(
        gap < 1.0,
        "the container was held up {:.0} ms before line {at}",
        gap * 1000.0
    );
}

/// The attached `ctr` is stopped for 10 s while the container writes 16,000 paced lines: `ctr`
/// prints every line once, in order, and the container was never held up more than 100 ms.
#[test]
fn spool_stopped_reader_gets_every_line_and_the_container_never_waits() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "spool", "");
    let id = unique_id("spool");
    let started = Instant::now();
    let (o, blocked) = run_with_stopped_reader(
        &c,
        &logs,
        &id,
        &[],
        PACED,
        Duration::from_secs(10),
        |_, _| {},
    );
    let took = started.elapsed();
    let checked = check_lines(&o.stdout);
    let (gap, at) = checked
        .as_ref()
        .map(|s| largest_gap(s))
        .unwrap_or((f64::NAN, 0));
    eprintln!(
        "runtime {}: ctr stopped 10 s; {} lines printed, check: {:?}; largest gap between container timestamps {:.0} ms (before line {at}); longest write held up {blocked:?}; ctr ran {took:?}",
        runtime(),
        o.stdout.lines().count(),
        checked.as_ref().map(|s| s.len()),
        gap * 1000.0
    );
    if !testing_scribe() {
        return;
    }
    assert!(o.success(), "ctr failed: {o}\n{}", c.log_tail(30));
    let stamps = checked.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stamps.len(), LINES, "every line carries a timestamp");
    assert_never_held_up(blocked, gap, at);
    // Delivered in full: the spool file is gone.
    let left = spool_files(&logs, &id);
    assert!(left.is_empty(), "spool files left: {left:?}");
    c.assert_clean();
}

/// A terminal's output (`ctr run -t`: the shim relays the pty master, `\r\n` line ends) spools
/// too: the attached `ctr`, given a pty of its own, is stopped for 10 s while the container
/// writes 16,000 paced lines; `ctr` then prints every line once, in order, and the container was
/// never held up more than 100 ms.
#[test]
fn spool_terminal_stopped_reader_gets_every_line_and_the_container_never_waits() {
    use scribe_e2e::terminal::{clean, spawn_in_pty};
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "spooltty", "");
    let id = unique_id("spooltty");
    let script = format!("'{PACED}'");
    let tail = [
        "--rm",
        "-t",
        IMAGE,
        id.as_str(),
        "sh",
        "-c",
        script.as_str(),
    ];
    let args = if testing_scribe() {
        logs.run_args(&tail)
    } else {
        c.run_args(&tail)
    };
    let command = format!(
        "{} --address {} -n {} {}",
        c.bin_dir().join("ctr").display(),
        c.address().display(),
        c.namespace(),
        args.join(" ")
    );
    let started = Instant::now();
    let ctr = spawn_in_pty(&command, &c.dir().join(format!("{id}.pid")));
    assert!(
        c.wait_task_status(&id, "RUNNING", Duration::from_secs(30)),
        "{id} did not start\n{}",
        c.log_tail(30)
    );
    let watch = watch_writer(&c, &id);
    ctr.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(10));
    ctr.signal(libc::SIGCONT);
    let o = ctr.script.wait_timeout(Duration::from_secs(120));
    let blocked = watch.finish().0;
    let took = started.elapsed();
    // Every line came through the container's terminal: it ends in "\r\n".
    let bare = o
        .stdout
        .split('\n')
        .filter(|l| l.contains("line ") && !l.ends_with('\r'))
        .count();
    let text = clean(o.stdout.as_bytes());
    let checked = check_lines(&text);
    let (gap, at) = checked
        .as_ref()
        .map(|s| largest_gap(s))
        .unwrap_or((f64::NAN, 0));
    eprintln!(
        "runtime {}: terminal, ctr stopped 10 s; {} lines printed ({bare} without \\r), check: {:?}; largest gap between container timestamps {:.0} ms (before line {at}); longest write held up {blocked:?}; ctr ran {took:?}",
        runtime(),
        text.lines().count(),
        checked.as_ref().map(|s| s.len()),
        gap * 1000.0
    );
    if !testing_scribe() {
        return;
    }
    assert!(o.success(), "ctr failed: {o}\n{}", c.log_tail(30));
    let stamps = checked.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stamps.len(), LINES, "every line carries a timestamp");
    assert_eq!(bare, 0, "terminal lines without \\r");
    assert_never_held_up(blocked, gap, at);
    let left = spool_files(&logs, &id);
    assert!(left.is_empty(), "spool files left: {left:?}");
    c.assert_clean();
}

/// A spool of 64 KiB fills while `ctr` is stopped: by default the container then blocks, as on
/// a full pipe, and nothing is lost.
#[test]
fn full_spool_blocks_the_container_and_loses_nothing() {
    if !testing_scribe() {
        return;
    }
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "spoolfull", "");
    let id = unique_id("spoolfull");
    let mut running = None;
    let (o, _) = run_with_stopped_reader(
        &c,
        &logs,
        &id,
        &["io.scribe.log.spool-max-size=64KiB"],
        FAST,
        Duration::from_secs(6),
        |c, id| running = c.task(id).map(|t| t.status),
    );
    assert!(o.success(), "ctr failed: {o}\n{}", c.log_tail(30));
    assert_eq!(
        running.as_deref(),
        Some("RUNNING"),
        "with a full spool the container must wait for the reader"
    );
    check_lines(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    let drops: Vec<_> = logs
        .runtime_records(&id)
        .into_iter()
        .filter(|r| r["component"] == "spool")
        .collect();
    assert!(drops.is_empty(), "{drops:?}");
    c.assert_clean();
}

/// The same with `mode=non-blocking`: the container never waits (it finishes while `ctr` is
/// still stopped), the oldest spooled bytes are dropped, and runtime.log's count of dropped
/// bytes is exactly what `ctr` did not print.
///
/// The exit is published (after the bounded drain) while `ctr` is stopped, so `ctr` has it at
/// once when continued; `ctr` (1.6 and 2.1 alike) then closes its FIFOs before Delete (its IO
/// cancel), and what it had not read by then (the FIFO's bytes, the spool's rest) is missing at
/// the end of its output. The shim cannot deliver those; it counts them as dropped at Delete, so the count
/// still equals what `ctr` missed.
#[test]
fn full_spool_non_blocking_drops_oldest_and_reports_exactly_what_is_missed() {
    if !testing_scribe() {
        return;
    }
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "spooldrop", "");
    let id = unique_id("spooldrop");
    let mut finished = false;
    let (o, _) = run_with_stopped_reader(
        &c,
        &logs,
        &id,
        &[
            "io.scribe.log.spool-max-size=64KiB",
            "io.scribe.log.mode=non-blocking",
        ],
        FAST,
        Duration::from_secs(6),
        |c, id| finished = c.wait_task_status(id, "STOPPED", Duration::from_secs(2)),
    );
    assert!(o.success(), "ctr failed: {o}\n{}", c.log_tail(30));
    assert!(
        finished,
        "the container waited for the stopped reader\n{}",
        c.log_tail(30)
    );
    // One contiguous run is missing (the oldest spooled bytes), and possibly the end (what a
    // `ctr` that closed its FIFO early did not read): what was printed is in order around them.
    let want: String = (1..=LINES)
        .map(|i| format!("line {i:05} ..........................\n"))
        .collect();
    let written = want.len();
    let printed = o.stdout.len();
    assert!(printed < written, "nothing was dropped ({printed} bytes)");
    let head = o
        .stdout
        .bytes()
        .zip(want.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let missed = written - printed;
    let resumed = want[head..]
        .find(&o.stdout[head..])
        .map(|p| head + p)
        .unwrap_or_else(|| panic!("after byte {head} the output is not one run of the lines"));
    let tail = written - resumed - (printed - head);
    eprintln!(
        "non-blocking spool: ctr printed bytes 0..{head}, {resumed}..{} of {written}: {} missing in the middle (dropped oldest), {tail} at the end (not read by ctr)",
        written - tail,
        resumed - head
    );
    let records = logs.runtime_records(&id);
    let total = records
        .iter()
        .filter(|r| r["component"] == "spool")
        .filter_map(|r| r["total_bytes_dropped"].as_u64())
        .max();
    let spool_records: Vec<_> = records
        .iter()
        .filter(|r| r["component"] == "spool")
        .collect();
    eprintln!(
        "non-blocking spool: {missed} bytes missed by ctr, runtime.log says {total:?}: {spool_records:?}"
    );
    assert_eq!(total, Some(missed as u64), "{records:?}");
    c.assert_clean();
}

/// (Rss, Pss) of process `pid` in KiB, from `/proc/<pid>/smaps_rollup`.
fn rss_pss(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// The container's spool files (`.spool*` in its log directory).
fn spool_files(logs: &LogSetup, id: &str) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(logs.container_dir(id))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(".spool"))
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes in the container's spool files (their apparent size: the spool's write offset).
fn spooled(logs: &LogSetup, id: &str) -> u64 {
    spool_files(logs, id)
        .iter()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// 50 MiB of output, once `ctr` is stopped.
const BULK: &str = "sleep 2; yes 0123456789012345678901234567890123456789012345678901234567890 | head -c 52428800; sleep 1";
const BULK_BYTES: usize = 52_428_800;

/// Memory stays flat while spooling: the attached `ctr` is stopped while the container writes
/// 50 MiB (pipe, pipe with the json-file driver, terminal); the shim's Rss/Pss while 50 MiB are
/// spooled and while they are replayed are printed beside its idle numbers, and must not grow
/// by more than a few MiB (a spool in memory would add 50).
#[test]
fn spool_memory_stays_flat_whatever_the_spool_size() {
    use scribe_e2e::terminal::spawn_in_pty;
    if !testing_scribe() {
        return;
    }
    let c = Containerd::start();
    for (name, driver, tty) in [
        ("pipe", "", false),
        ("json", "LogDriver = \"json-file\"", false),
        ("tty", "", true),
    ] {
        let logs = LogSetup::new(&c, &format!("spoolrss{name}"), driver);
        let id = unique_id(&format!("spoolrss{name}"));
        let script = format!("'{BULK}'");
        let mut tail = vec!["--rm"];
        if tty {
            tail.push("-t");
        }
        tail.extend([IMAGE, id.as_str(), "sh", "-c", script.as_str()]);
        let args = logs.run_args(&tail);
        let (child, pid) = if tty {
            let command = format!(
                "{} --address {} -n {} {}",
                c.bin_dir().join("ctr").display(),
                c.address().display(),
                c.namespace(),
                args.join(" ")
            );
            let p = spawn_in_pty(&command, &c.dir().join(format!("{id}.pid")));
            (p.script, p.pid)
        } else {
            let mut unquoted = args.clone();
            if let Some(last) = unquoted.last_mut() {
                *last = BULK;
            }
            let s = c.ctr_spawn(&unquoted);
            let pid = s.pid();
            (s, pid)
        };
        assert!(
            c.wait_task_status(&id, "RUNNING", Duration::from_secs(30)),
            "{id} did not start\n{}",
            c.log_tail(30)
        );
        // SAFETY: kill(2) on the ctr this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let shim = c.shim_pid(&id).expect("the shim's pid");
        std::thread::sleep(Duration::from_millis(1500));
        let idle = rss_pss(shim).expect("shim memory");
        let mut peak_spooling = idle;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut most = 0;
        while Instant::now() < deadline {
            if let Some((r, p)) = rss_pss(shim) {
                peak_spooling = (peak_spooling.0.max(r), peak_spooling.1.max(p));
            }
            most = most.max(spooled(&logs, &id));
            if most as usize >= BULK_BYTES - 256 * 1024 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let full = rss_pss(shim).expect("shim memory");
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        child.signal(libc::SIGCONT);
        let mut peak_replay = full;
        let replay_started = Instant::now();
        while spooled(&logs, &id) > 0 && replay_started.elapsed() < Duration::from_secs(60) {
            if let Some((r, p)) = rss_pss(shim) {
                peak_replay = (peak_replay.0.max(r), peak_replay.1.max(p));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = child.wait_timeout(Duration::from_secs(120));
        eprintln!(
            "spool memory ({name}): shim idle Rss {} KiB Pss {} KiB; spooling {} MiB: peak Rss {} KiB Pss {} KiB (at full: {} / {}); replaying: peak Rss {} KiB Pss {} KiB; ctr printed {} bytes",
            idle.0,
            idle.1,
            most >> 20,
            peak_spooling.0,
            peak_spooling.1,
            full.0,
            full.1,
            peak_replay.0,
            peak_replay.1,
            o.stdout.len()
        );
        assert!(o.success(), "ctr failed: {o}\n{}", c.log_tail(30));
        assert!(
            most as usize >= BULK_BYTES - 256 * 1024,
            "{name}: only {most} bytes were spooled"
        );
        assert!(
            o.stdout.len() >= BULK_BYTES,
            "{name}: ctr printed {} bytes",
            o.stdout.len()
        );
        let grew = peak_spooling.0.max(peak_replay.0).saturating_sub(idle.0);
        assert!(
            grew < 8 * 1024,
            "{name}: the shim grew {grew} KiB while spooling 50 MiB"
        );
    }
    c.assert_clean();
}

/// The container writes everything and exits while the attached `ctr` is stopped, its output
/// in the (roomy) spool: the exit is published after the bounded drain, so `ctr`, continued,
/// has it at once. Every byte is either printed by `ctr`, in order, or counted as dropped in
/// runtime.log: `ctr` closes its FIFOs before Delete, and what it had not read by then is
/// missing at the end of its output; the shim counts exactly that.
#[test]
fn reader_back_after_exit_gets_or_is_told_every_byte() {
    if !testing_scribe() {
        return;
    }
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "spoolexit", "");
    let id = unique_id("spoolexit");
    let mut finished = false;
    let (o, _) = run_with_stopped_reader(
        &c,
        &logs,
        &id,
        &[],
        FAST,
        Duration::from_secs(6),
        |c, id| finished = c.wait_task_status(id, "STOPPED", Duration::from_secs(2)),
    );
    assert!(o.success(), "ctr failed: {o}\n{}", c.log_tail(30));
    assert!(finished, "the container waited for the stopped reader");
    let want: String = (1..=LINES)
        .map(|i| format!("line {i:05} ..........................\n"))
        .collect();
    assert!(
        want.starts_with(&o.stdout),
        "ctr's output is not the start of what the container wrote ({} bytes)",
        o.stdout.len()
    );
    let missed = (want.len() - o.stdout.len()) as u64;
    let records = logs.runtime_records(&id);
    let total = records
        .iter()
        .filter(|r| r["component"] == "spool")
        .filter_map(|r| r["total_bytes_dropped"].as_u64())
        .max();
    eprintln!(
        "ctr {}: printed {} of {} bytes; {missed} missed at the end, runtime.log's spool drops: {total:?}",
        c.version(),
        o.stdout.len(),
        want.len()
    );
    if missed == 0 {
        assert_eq!(total, None, "{records:?}");
    } else {
        assert_eq!(total, Some(missed), "{records:?}");
    }
    c.assert_clean();
}
