//! The long-lived shim process: serves the Task API on the socket `start` bound.
//!
//! One thread: a tokio current_thread runtime runs the ttrpc server, the reaper, the stdio
//! copies and the event publisher. At start, a child process prunes old log directories
//! (`retention`) once and exits.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::shim_async::create_task;
use containerd_shim_protos::ttrpc::r#async::Server;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::ForkResult;
use scribe_events::Publisher;
use tokio::sync::Notify;

use crate::flags::Flags;
use crate::options::Settings;
use crate::reaper::Reaper;
use crate::start::{LISTEN_FD, PARENT_PID_ENV};
use crate::task::Service;

/// The service name containerd 1.6 to 2.x call for task API v2.
const TASK_V2_SERVICE: &str = "containerd.task.v2.Task";
/// How long queued events may take to reach containerd when the shim exits.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Makes the bundle's `log` FIFO our stderr (containerd reads it into its own log).
fn open_log_fifo(bundle: &Path) {
    let path = bundle.join("log");
    let opened = nix::fcntl::open(
        &path,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    );
    if let Ok(fd) = opened {
        // SAFETY: `fd` was just opened and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = nix::unistd::dup2(fd.as_raw_fd(), 2);
    }
}

/// oom_score_adj = containerd's + 1, so the OOM killer picks a shim before containerd.
fn adjust_oom_score() {
    let Ok(ppid) = std::env::var(PARENT_PID_ENV) else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(format!("/proc/{ppid}/oom_score_adj")) else {
        return;
    };
    let Ok(score) = text.trim().parse::<i32>() else {
        return;
    };
    let target = (score + 1).min(1000);
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", target.to_string()) {
        log::warn!("setting oom_score_adj to {target}: {e}");
    }
}

/// How long an exiting shim waits for its network log drivers to deliver what they queued.
const DRIVER_GRACE: Duration = Duration::from_secs(5);

/// Runs the daemon until containerd shuts it down.
pub fn run(flags: &Flags) -> Result<(), String> {
    let bundle = crate::start::bundle_dir(flags)?;
    open_log_fifo(&bundle);
    crate::logger::init(flags.debug);
    // Writes to a FIFO whose reader is gone must fail with EPIPE, not kill the shim.
    // SAFETY: setting a signal disposition to SIG_IGN has no handler to be unsafe about.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map_err(|e| format!("ignoring SIGPIPE: {e}"))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    adjust_oom_score();
    // The listener must be close-on-exec from here on: runtime children must not inherit it.
    fcntl(LISTEN_FD, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(|e| format!("fd {LISTEN_FD} is not the shim socket: {e}"))?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building runtime: {e}"))?;
    rt.block_on(serve(flags))
}

async fn serve(flags: &Flags) -> Result<(), String> {
    let reaper = Reaper::global();
    tokio::spawn(async move {
        if let Err(e) = reaper.run().await {
            log::error!("child reaper stopped: {e}");
        }
    });
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| "TTRPC_ADDRESS is not set: containerd always sets it".to_string())?;
    let publisher = Publisher::spawn(&ttrpc_address, &flags.namespace);
    let shutdown = Arc::new(Notify::new());
    let service = Arc::new(Service::new(
        flags.namespace.clone(),
        publisher.clone(),
        shutdown.clone(),
    ));
    // containerd-shim-protos generates the task service under its v3 name; containerd 1.6 to 2.x
    // call v2 for shims that print a plain address. The messages are the same.
    let services = create_task(service)
        .into_values()
        .map(|svc| (TASK_V2_SERVICE.to_string(), svc))
        .collect();
    // Known before the server owns (and eventually closes) the fd: removed at shutdown.
    let socket_path = socket_path_of_self();
    // SAFETY: fd 3 is the listening socket `start` handed us, owned by nobody else.
    let mut server = unsafe { Server::new().add_unix_listener(LISTEN_FD) }
        .map_err(|e| format!("using the shim socket: {e}"))?
        .register_service(services);
    server
        .start()
        .await
        .map_err(|e| format!("starting ttrpc server: {e}"))?;
    log::debug!("serving {}", flags.id);
    start_log_pruning(flags);
    shutdown.notified().await;
    log::info!("no container left; shutting down");
    if !publisher.flush(FINAL_FLUSH).await {
        log::error!("some events could not be delivered to containerd before shutdown");
    }
    // Let the Shutdown reply reach containerd before the socket goes away.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = server.shutdown().await;
    if let Some(path) = socket_path {
        if let Err(e) = std::fs::remove_file(&path) {
            log::warn!("removing shim socket {path}: {e}");
        }
    }
    // Network drivers (fluentd) may still hold output of removed containers (fluentd was away):
    // give them a bounded time, then count and report what is left.
    // Logging plugins too: their tasks write what is queued, call StopLogging and remove the
    // FIFOs. Both kinds share the one grace period.
    let senders = async {
        scribe_io::drivers::fluentd::all_finished().await;
        scribe_io::drivers::plugin::all_finished().await;
    };
    if tokio::time::timeout(DRIVER_GRACE, senders).await.is_err() {
        scribe_io::drivers::fluentd::abandon_all("the shim is exiting");
        scribe_io::drivers::plugin::abandon_all("the shim is exiting");
    }
    Ok(())
}

/// Prunes the namespace's deleted containers' log directories once, in a child process that
/// exits when done (the service thread goes on serving; nothing wakes an idle shim later).
///
/// A child, not a thread: a thread's stack and malloc arena stay resident after it ends, and
/// that cost every idle shim 32 KiB of USS (336 against 304 KiB, `scribe-bench --idle 20`).
fn start_log_pruning(flags: &Flags) {
    let settings = match crate::start::bundle_dir(flags).and_then(|b| Settings::load(&b)) {
        Ok(Some(s)) => s,
        Ok(None) => Settings::defaults(&flags.namespace),
        Err(e) => {
            log::warn!(error:% = e; "log retention: no settings, not pruning");
            return;
        }
    };
    // SAFETY: the shim has one thread here (a current-thread runtime; no container, so no
    // rotation thread, exists yet), so no lock is held by a thread the child would not have.
    // The child only prunes and logs, then leaves with _exit: no destructor, no runtime.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let p = crate::retention::prune(&settings, &flags.namespace);
            if p.removed > 0 {
                log::info!(
                    "log retention: removed {} deleted containers' log directories ({} bytes) under {}",
                    p.removed,
                    p.bytes,
                    settings.log_root
                );
            }
            // SAFETY: ends the child at once, without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            // Subscribed before this task yields, so the reaper hands the exit here and never
            // keeps it as unclaimed for a later process with the same pid.
            let exited = Reaper::global().subscribe(child.as_raw());
            tokio::spawn(async move {
                match exited.await {
                    Ok(0) => {}
                    Ok(code) => log::warn!("log retention: the prune exited with {code}"),
                    Err(_) => log::warn!("log retention: the prune's exit was not seen"),
                }
            });
        }
        Err(e) => log::warn!(error:% = e; "log retention: fork for the prune"),
    }
}

/// The filesystem path of our listening socket, from the fd itself.
fn socket_path_of_self() -> Option<String> {
    let addr: nix::sys::socket::UnixAddr = nix::sys::socket::getsockname(LISTEN_FD).ok()?;
    addr.path().map(|p| p.display().to_string())
}
