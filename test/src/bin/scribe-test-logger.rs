//! A logging binary for `binary://` end-to-end tests, following containerd's contract
//! (`runtime/v2/logging`): the shim starts it with `CONTAINER_ID` and `CONTAINER_NAMESPACE` in
//! its environment, the container's stdout on fd 3, its stderr on fd 4 and the write end of a
//! "ready" pipe on fd 5; the query of the URI comes as argument pairs (`?dir=/x` is `dir /x`).
//!
//! Arguments (pairs):
//! - `dir DIR` (required): where the files below go;
//! - `linger 1`: after both streams reached EOF, keep running until SIGTERM (to see whether the
//!   shim terminates the logger when the container is deleted).
//!
//! Files, named `<namespace>_<id>.*` so several containers can share a directory:
//! - `.stdout`, `.stderr`: every byte read from fd 3 and fd 4;
//! - `.start.json`: written before signalling ready: `pid`, `args`, `env` (the whole
//!   environment) and `fds` (each open descriptor and what it points to);
//! - `.exit` (written last, atomically): `eof` when both streams ended, `sigterm` when SIGTERM
//!   came (after the streams were drained or 5 s passed), or `error: ...` when something failed.
//!
//! Exit status 0 after `eof` or `sigterm`, 1 on an error, 2 when the contract was not met
//! (no `dir`, no `CONTAINER_ID`/`CONTAINER_NAMESPACE`).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The container's stdout (containerd's `CONTAINER_STDOUT`).
const STDOUT_FD: i32 = 3;
/// The container's stderr (`CONTAINER_STDERR`).
const STDERR_FD: i32 = 4;
/// The ready pipe (`CONTAINER_WAIT`).
const READY_FD: i32 = 5;
/// How long, after SIGTERM, the streams may take to reach EOF.
const DRAIN_AFTER_TERM: Duration = Duration::from_secs(5);

static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATED.store(true, Ordering::SeqCst);
}

/// What the command line asked for.
struct Config {
    dir: PathBuf,
    linger: bool,
    args: Vec<String>,
}

fn parse_args() -> Result<Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let mut linger = false;
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        match pair[0].as_str() {
            "dir" => dir = Some(PathBuf::from(value)),
            "linger" => linger = value == "1" || value == "true",
            _ => {}
        }
    }
    let dir = dir.ok_or_else(|| format!("no `dir` argument in {args:?}"))?;
    Ok(Config { dir, linger, args })
}

/// Every open descriptor of this process and its `/proc/self/fd` target.
fn open_fds() -> Vec<(i32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<(i32, String)> = rd
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_else(|e| format!("<readlink: {e}>"));
            Some((fd, target))
        })
        .collect();
    fds.sort();
    // read_dir's own descriptor is listed but already closed again
    fds.retain(|(fd, t)| !t.starts_with("/proc/") || *fd <= READY_FD);
    fds
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).map_err(|e| ctx(e, "writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| ctx(e, "renaming to", path))
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Copies descriptor `fd` into `path` until EOF; returns the number of bytes.
fn copy_stream(fd: i32, path: PathBuf) -> JoinHandle<io::Result<u64>> {
    std::thread::spawn(move || {
        // SAFETY: fds 3 and 4 are given to this process by the shim and used only here.
        let mut src = unsafe { File::from_raw_fd(fd) };
        let mut dst = File::create(&path).map_err(|e| ctx(e, "creating", &path))?;
        let n = io::copy(&mut src, &mut dst)
            .map_err(|e| ctx(e, &format!("copying fd {fd} to"), &path))?;
        dst.sync_data().map_err(|e| ctx(e, "syncing", &path))?;
        Ok(n)
    })
}

fn run(cfg: &Config, id: &str, ns: &str) -> io::Result<String> {
    let file = |ext: &str| cfg.dir.join(format!("{ns}_{id}.{ext}"));

    let env: serde_json::Map<String, serde_json::Value> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned().into(),
            )
        })
        .collect();
    let fds: serde_json::Map<String, serde_json::Value> = open_fds()
        .into_iter()
        .map(|(fd, t)| (fd.to_string(), t.into()))
        .collect();
    let start = serde_json::json!({
        "pid": std::process::id(),
        "args": cfg.args,
        "env": env,
        "fds": fds,
    });
    std::fs::create_dir_all(&cfg.dir).map_err(|e| ctx(e, "creating", &cfg.dir))?;
    write_atomic(&file("start.json"), start.to_string().as_bytes())?;

    // SAFETY: installing a handler that only stores to an atomic.
    let handler = on_sigterm as extern "C" fn(libc::c_int);
    unsafe { libc::signal(libc::SIGTERM, handler as libc::sighandler_t) };

    let streams = [
        copy_stream(STDOUT_FD, file("stdout")),
        copy_stream(STDERR_FD, file("stderr")),
    ];

    // Ready: one byte, then close (what containerd's logging.Run does).
    // SAFETY: fd 5 is the ready pipe the shim handed over.
    let mut ready = unsafe { File::from_raw_fd(READY_FD) };
    ready
        .write_all(&[0])
        .map_err(|e| io::Error::new(e.kind(), format!("writing the ready byte: {e}")))?;
    drop(ready);

    let mut term_at = None;
    loop {
        let done = streams.iter().all(JoinHandle::is_finished);
        if TERMINATED.load(Ordering::SeqCst) {
            let at = *term_at.get_or_insert_with(Instant::now);
            if done || at.elapsed() > DRAIN_AFTER_TERM {
                break;
            }
        } else if done && !cfg.linger {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut outcome = if term_at.is_some() {
        "sigterm".to_string()
    } else {
        "eof".to_string()
    };
    for (name, h) in ["stdout", "stderr"].iter().zip(streams) {
        if !h.is_finished() {
            outcome =
                format!("error: {name} did not reach EOF within {DRAIN_AFTER_TERM:?} of SIGTERM");
            continue;
        }
        match h.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => outcome = format!("error: {e}"),
            Err(_) => outcome = format!("error: the {name} copy panicked"),
        }
    }
    write_atomic(&file("exit"), outcome.as_bytes())?;
    Ok(outcome)
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scribe-test-logger: {e}");
            std::process::exit(2);
        }
    };
    let (Ok(id), Ok(ns)) = (
        std::env::var("CONTAINER_ID"),
        std::env::var("CONTAINER_NAMESPACE"),
    ) else {
        eprintln!("scribe-test-logger: CONTAINER_ID and CONTAINER_NAMESPACE must be set");
        std::process::exit(2);
    };
    match run(&cfg, &id, &ns) {
        Ok(outcome) if !outcome.starts_with("error") => {}
        Ok(_) => std::process::exit(1),
        Err(e) => {
            // stderr is /dev/null under a shim: leave the error where the test looks.
            let _ = write_atomic(
                &cfg.dir.join(format!("{ns}_{id}.exit")),
                format!("error: {e}").as_bytes(),
            );
            std::process::exit(1);
        }
    }
}
