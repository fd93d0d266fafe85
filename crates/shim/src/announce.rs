//! Every lifecycle event the shim announces: the event containerd gets (through the ordered,
//! retrying [`Publisher`]) and the record `container.log` keeps, paired in one call each so the
//! two cannot drift apart.
//!
//! Publishing never fails an operation (the publisher queues, retries and logs what it loses);
//! neither does recording ([`crate::records::Recorder`]). Callers that order events (the `op`
//! lock of a process, the exit sequence in `exit/`) hold their lock around the call.

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::topics;
use scribe_events::{ContainerRecord, ContainerStatus, Publisher};

use crate::container::Container;
use crate::process::{Exit, Process, Role, State};

/// Announces a container's lifecycle to containerd and to its records.
#[derive(Clone)]
pub struct Announcer {
    publisher: Publisher,
}

impl Announcer {
    /// Announces through `publisher`.
    pub fn new(publisher: Publisher) -> Announcer {
        Announcer { publisher }
    }

    /// The init was created (pid 0 when it will be restored at Start): the `create` record, then
    /// TaskCreate.
    pub fn created(&self, c: &Container, req: &api::CreateTaskRequest) {
        let pid = c.init.pid();
        c.life.recorder.record(ContainerRecord::create(&c.id, pid));
        self.publisher.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            &ev::TaskCreate {
                container_id: c.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(ev::TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            },
        );
    }

    /// The init runs: the `start` record (with image and command), then TaskStart.
    pub fn started(&self, c: &Container) {
        let pid = c.init.pid();
        c.life.recorder.record(ContainerRecord::start(
            &c.id,
            pid,
            c.life.image.clone(),
            c.life.command.clone(),
        ));
        self.publisher.publish(
            topics::TASK_START_EVENT_TOPIC,
            &ev::TaskStart {
                container_id: c.id.clone(),
                pid,
                ..Default::default()
            },
        );
    }

    /// An exec was added: the `exec_added` record, then TaskExecAdded.
    pub fn exec_added(&self, c: &Container, exec_id: &str) {
        c.life
            .recorder
            .record(ContainerRecord::exec_added(&c.id, exec_id.to_string()));
        self.publisher.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            &ev::TaskExecAdded {
                container_id: c.id.clone(),
                exec_id: exec_id.to_string(),
                ..Default::default()
            },
        );
    }

    /// An exec runs: the `exec_started` record, then TaskExecStarted.
    pub fn exec_started(&self, c: &Container, p: &Process) {
        let pid = p.pid();
        c.life
            .recorder
            .record(ContainerRecord::exec_started(&c.id, p.exec_id.clone(), pid));
        self.publisher.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            &ev::TaskExecStarted {
                container_id: c.id.clone(),
                exec_id: p.exec_id.clone(),
                pid,
                ..Default::default()
            },
        );
    }

    /// A process exited: TaskExit, then the `exit` record.
    pub fn exited(&self, c: &Container, p: &Process, exit: Exit) {
        let is_init = p.role() == Role::Init;
        self.publisher.publish(
            topics::TASK_EXIT_EVENT_TOPIC,
            &ev::TaskExit {
                container_id: c.id.clone(),
                id: if is_init {
                    c.id.clone()
                } else {
                    p.exec_id.clone()
                },
                pid: p.pid(),
                exit_status: exit.code,
                exited_at: MessageField::some(exit.timestamp()),
                ..Default::default()
            },
        );
        c.life.recorder.record(ContainerRecord::exit(
            &c.id,
            (!is_init).then(|| p.exec_id.clone()),
            p.pid(),
            exit.code as i32,
            exit.at,
        ));
    }

    /// The container was deleted: TaskDelete, then the `delete` record.
    pub fn deleted(&self, c: &Container, exit: Exit) {
        let pid = c.init.pid();
        self.publisher.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            &ev::TaskDelete {
                container_id: c.id.clone(),
                pid,
                exit_status: exit.code,
                exited_at: MessageField::some(exit.timestamp()),
                ..Default::default()
            },
        );
        c.life.recorder.record(ContainerRecord::delete(
            &c.id,
            Some(pid),
            Some(exit.code as i32),
        ));
    }

    /// The container was frozen: the `pause` record, then TaskPaused.
    pub fn paused(&self, c: &Container) {
        c.life.recorder.record(ContainerRecord::pause(&c.id));
        self.publisher.publish(
            topics::TASK_PAUSED_EVENT_TOPIC,
            &ev::TaskPaused {
                container_id: c.id.clone(),
                ..Default::default()
            },
        );
    }

    /// The container was thawed: the `resume` record, then TaskResumed.
    pub fn resumed(&self, c: &Container) {
        c.life.recorder.record(ContainerRecord::resume(&c.id));
        self.publisher.publish(
            topics::TASK_RESUMED_EVENT_TOPIC,
            &ev::TaskResumed {
                container_id: c.id.clone(),
                ..Default::default()
            },
        );
    }

    /// A checkpoint was written to `image_path`: TaskCheckpointed, then the `checkpoint` record.
    pub fn checkpointed(&self, c: &Container, image_path: &str) {
        self.publisher.publish(
            topics::TASK_CHECKPOINTED_EVENT_TOPIC,
            &ev::TaskCheckpointed {
                container_id: c.id.clone(),
                checkpoint: image_path.to_string(),
                ..Default::default()
            },
        );
        c.life
            .recorder
            .record(ContainerRecord::checkpoint(&c.id, record_status(&c.init)));
    }

    /// The kernel OOM-killed a process of the container: TaskOOM, then the `oom` record with the
    /// memory figures read from its cgroup.
    pub fn oom(&self, c: &Container, peak: Option<u64>, limit: Option<u64>) {
        self.publisher.publish(
            topics::TASK_OOM_EVENT_TOPIC,
            &ev::TaskOOM {
                container_id: c.id.clone(),
                ..Default::default()
            },
        );
        c.life
            .recorder
            .record(ContainerRecord::oom(&c.id, Some(c.init.pid()), peak, limit));
    }
}

/// The container-log status word for a process's state.
pub fn record_status(p: &Process) -> ContainerStatus {
    match p.state() {
        State::Created | State::CreatedFromCheckpoint => ContainerStatus::Created,
        State::Running => ContainerStatus::Running,
        State::Paused => ContainerStatus::Paused,
        State::Stopped | State::Deleted => ContainerStatus::Stopped,
    }
}
