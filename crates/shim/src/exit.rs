//! Where a process's exit is published, and in what order.
//!
//! Scribe's order goes beyond containerd's: a process's output is drained before its TaskExit
//! (bounded by [`OUTPUT_DRAIN_LIMIT`], or [`OUTPUT_REPLAY_LIMIT`] while a spool replays); every
//! exec's TaskExit precedes the init's (bounded by [`EXEC_EXIT_LIMIT`], then leftover execs are
//! killed); a TaskOOM precedes the init's TaskExit
//! (the OOM watcher's last check, armed by `oom.rs`); and the process's `op` lock keeps its
//! TaskStart/TaskExecStarted before its TaskExit. The counters this waits on are
//! [`crate::container::ExitOrder`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::announce::Announcer;
use crate::container::Container;
use crate::process::{Exit, Process, Role, State};

/// How long a process's output may keep flowing after it exited before TaskExit is published
/// anyway. A stray grandchild holding the stdio pipes open, or a FIFO reader that is not reading
/// while the stream's spool still holds bytes, makes this wait; the copy (and the spool's replay)
/// goes on after the deadline, so those bytes still arrive, just after the exit event, until the
/// process is deleted; Delete gives a replay a reader is reading this long again, then what no
/// reader takes (the spool's rest, what a FIFO with no reader left holds) is counted as dropped.
pub const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long the exit may wait in all while a spool is being replayed (its reader reading: some
/// bytes in every [`OUTPUT_DRAIN_LIMIT`]). `ctr` closes its FIFOs once it has the exit, so the
/// exit waits for a reader that reads a large spool back, within this bound.
pub const OUTPUT_REPLAY_LIMIT: Duration = Duration::from_secs(120);
/// How long the init's TaskExit waits for exec processes to report their exits; after that they
/// are killed (they outlive the init only when the pid namespace is shared with the host).
pub const EXEC_EXIT_LIMIT: Duration = Duration::from_secs(5);
/// How long the init's TaskExit waits for the OOM watcher's last check.
pub const OOM_CHECK_LIMIT: Duration = Duration::from_secs(1);

/// Waits for a process's exit (`exited`, from the reaper), lets its output drain, then publishes
/// TaskExit, records it, and wakes waiters. For the init, every exec's TaskExit is published
/// first, then any TaskOOM.
pub async fn watch_exit(
    c: Arc<Container>,
    p: Arc<Process>,
    exited: oneshot::Receiver<u32>,
    announce: Announcer,
) {
    // If the sender was dropped the exit status is unknowable; report it as a failure rather than
    // success (containerd's convention for a lost exit is 255).
    let code = exited.await.unwrap_or(255);
    let at = SystemTime::now();
    if !p
        .relay
        .lock()
        .await
        .drain_replaying(OUTPUT_DRAIN_LIMIT, OUTPUT_REPLAY_LIMIT)
        .await
    {
        log::warn!(
            container = c.id.as_str();
            "{}: output not delivered {:?} after exit (a process outside the container holds it, or a FIFO reader is not reading the spooled output, or its replay took longer than {OUTPUT_REPLAY_LIMIT:?}); publishing the exit",
            p.name(),
            OUTPUT_DRAIN_LIMIT
        );
    }
    let is_init = p.role() == Role::Init;
    if is_init {
        execs_first(&c).await;
        // TaskOOM, if the init was OOM-killed, must precede its TaskExit.
        c.exits.final_oom_check(OOM_CHECK_LIMIT).await;
    }
    let _op = p.op.lock().await;
    let exit = Exit { code, at };
    announce.exited(&c, &p, exit);
    if let Err(r) = p.exited(exit) {
        log::error!(container = c.id.as_str(); "{}: exit {code} not applied: {r}", p.name());
    }
    if !is_init {
        c.exits.exec_exited();
    }
}

/// Waits until every exec's TaskExit is out; execs still running after [`EXEC_EXIT_LIMIT`] are
/// killed (they outlive the init only in a shared pid namespace) and waited for once more.
async fn execs_first(c: &Container) {
    if tokio::time::timeout(EXEC_EXIT_LIMIT, c.exits.execs_done())
        .await
        .is_ok()
    {
        return;
    }
    for e in c.exec_list() {
        if e.state() == State::Running && e.pid() != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(e.pid() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if tokio::time::timeout(EXEC_EXIT_LIMIT, c.exits.execs_done())
        .await
        .is_err()
    {
        log::error!(
            container = c.id.as_str();
            "exec processes did not exit after the init; publishing the init's exit"
        );
    }
}
