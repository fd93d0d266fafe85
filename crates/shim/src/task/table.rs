//! The containers this shim serves, and the lookups every Task method starts with.
//!
//! A lookup that finds nothing is NOT_FOUND, naming the container (and exec).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use scribe_events::{ContainerEvent, ContainerRecord};

use crate::announce::Announcer;
use crate::container::Container;
use crate::error::{Error, Result};
use crate::process::{Process, Refused};

/// Every container of this shim, with what the Task operations share: the namespace and the
/// announcer of events and records. The operations are `impl Tasks` blocks, one file each.
pub struct Tasks {
    pub namespace: String,
    pub announce: Announcer,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

impl Tasks {
    /// No container yet.
    pub fn new(namespace: String, announce: Announcer) -> Tasks {
        Tasks {
            namespace,
            announce,
            containers: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container `id`.
    pub fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.table()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("container {id} not found")))
    }

    /// The container `id` and its init (empty `exec_id`) or exec.
    pub fn process(&self, id: &str, exec_id: &str) -> Result<(Arc<Container>, Arc<Process>)> {
        let c = self.container(id)?;
        let p = c
            .process(exec_id)
            .ok_or_else(|| Error::not_found(format!("container {id}: exec {exec_id} not found")))?;
        Ok((c, p))
    }

    /// Whether `id` is served here.
    pub fn contains(&self, id: &str) -> bool {
        self.table().contains_key(id)
    }

    /// Serves `c` from now on.
    pub fn insert(&self, c: Arc<Container>) {
        self.table().insert(c.id.clone(), c);
    }

    /// Stops serving `id` (its Delete).
    pub fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// How many containers are served.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// The pid of `id`'s init, 0 when unknown.
    pub fn init_pid(&self, id: &str) -> u32 {
        self.table()
            .get(id)
            .map(|c| c.init.pid())
            .unwrap_or_default()
    }
}

/// Turns a refusal of `p`'s state machine into the Task error, naming the container and exec.
pub fn refused<'a>(c: &'a Container, p: &'a Process) -> impl FnOnce(Refused) -> Error + 'a {
    move |r| Error::refused(&c.id, &p.exec_id, r)
}

/// Writes the failure record of `event` (for an exec when `exec_id` is not empty).
pub fn record_failure(c: &Container, event: ContainerEvent, exec_id: &str, e: &Error) {
    let mut rec = ContainerRecord::failed(event, &c.id, e.message());
    if !exec_id.is_empty() {
        rec = rec.with_exec_id(exec_id.to_string());
    }
    c.life.recorder.record(rec);
}
