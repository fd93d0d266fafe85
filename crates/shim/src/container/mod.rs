//! A container served by this shim: its init process, its exec processes, its records.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::cgroups::ContainerCgroup;
mod exit_order;

use crate::process::Process;
use crate::records::Recorder;
use crate::runtime::{CheckpointOpts, ProcessStdio, Runtime};
use crate::stdio::PendingIo;
pub use exit_order::ExitOrder;

/// What the container's lifecycle records carry.
pub struct Lifecycle {
    pub recorder: Arc<Recorder>,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
}

/// A Create from a checkpoint, held until Start: the runtime restores the init then (as with
/// containerd's runc shim, so that the process runs only once containerd asked it to).
pub struct PendingRestore {
    /// What the runtime's `restore` needs: image and work directories and the CRIU flags.
    pub opts: CheckpointOpts,
    /// The stdio the restored init gets, and where it is relayed from once it runs.
    pub stdio: ProcessStdio,
    /// The relay (or console socket) waiting for the restored process.
    pub io: PendingIo,
}

/// One container.
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    /// Whether the shim mounted `<bundle>/rootfs` (and so must unmount it).
    pub rootfs_mounted: bool,
    pub init: Arc<Process>,
    /// Where lifecycle records go, and what they say about the container.
    pub life: Lifecycle,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    /// What this container's exits wait on (execs before the init, OOM before the exit).
    pub exits: ExitOrder,
    /// The container's cgroups (found once its init exists: at Create, or at Start for a
    /// restore; kept so Stats works until Delete).
    cgroup: OnceLock<ContainerCgroup>,
    /// A Create from a checkpoint: what Start needs to restore the init through the runtime.
    restore: Mutex<Option<PendingRestore>>,
    /// How the container's processes spool output their FIFO reader does not read (unset:
    /// spooling off); execs use the init's.
    spool: OnceLock<scribe_io::spool::SpoolConfig>,
}

impl Container {
    /// A container whose init the runtime just created (or, with `restore`, will restore at
    /// Start).
    pub fn new(
        id: String,
        bundle: PathBuf,
        runtime: Runtime,
        rootfs_mounted: bool,
        init: Arc<Process>,
        life: Lifecycle,
        restore: Option<PendingRestore>,
    ) -> Container {
        Container {
            cgroup: OnceLock::new(),
            spool: OnceLock::new(),
            restore: Mutex::new(restore),
            id,
            bundle,
            runtime,
            rootfs_mounted,
            init,
            life,
            execs: Mutex::new(HashMap::new()),
            exits: ExitOrder::default(),
        }
    }

    /// The container's cgroups, once known.
    pub fn cgroup(&self) -> Option<&ContainerCgroup> {
        self.cgroup.get()
    }

    /// Records the container's cgroups (once; a second call is ignored).
    pub fn set_cgroup(&self, cg: ContainerCgroup) {
        let _ = self.cgroup.set(cg);
    }

    /// The container's spooling (set once at Create when `SpoolMaxSize` is not 0).
    pub fn spool(&self) -> Option<&scribe_io::spool::SpoolConfig> {
        self.spool.get()
    }

    /// Records the container's spooling (once; a second call is ignored).
    pub fn set_spool(&self, cfg: scribe_io::spool::SpoolConfig) {
        let _ = self.spool.set(cfg);
    }

    /// Takes what a pending restore needs; `None` when the init was created normally (or the
    /// restore was already attempted).
    pub fn take_restore(&self) -> Option<PendingRestore> {
        self.restore
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn execs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Process>>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The init (empty id) or an exec process.
    pub fn process(&self, exec_id: &str) -> Option<Arc<Process>> {
        if exec_id.is_empty() {
            Some(self.init.clone())
        } else {
            self.execs().get(exec_id).cloned()
        }
    }

    /// Registers an exec; false when the id is taken.
    pub fn add_exec(&self, p: Arc<Process>) -> bool {
        let mut execs = self.execs();
        if execs.contains_key(&p.exec_id) {
            return false;
        }
        execs.insert(p.exec_id.clone(), p);
        true
    }

    /// Forgets an exec (Delete of that exec).
    pub fn remove_exec(&self, exec_id: &str) {
        self.execs().remove(exec_id);
    }

    /// Every exec, for Pids and for killing leftovers.
    pub fn exec_list(&self) -> Vec<Arc<Process>> {
        self.execs().values().cloned().collect()
    }
}
