//! The lifecycle of an init or exec process: every state, every event, and which event is legal
//! in which state, in one table ([`next`]).
//!
//! ```text
//!              Start                 Pause
//!   Created ----------> Running <-----------> Paused
//!   CreatedFromCheckpoint --^    Resume  |        |
//!      |                   |             | Exit   | Exit
//!      +------ Exit -------+-----------> Stopped <+
//!                                           | Delete
//!                                           v
//!                                        Deleted
//! ```
//! Events that only ask whether an operation may run (Kill, Checkpoint, Update, AddExec,
//! HostExec) leave the state as it is. An event the state does not allow is [`Refused`]: the Task
//! service answers FAILED_PRECONDITION, except a signal to a process that already exited, which
//! is NOT_FOUND ("process already finished", as containerd's runc shim answers, and as callers
//! that kill a task racing its exit expect). Only the init can be paused, checkpointed, updated,
//! or host execs; only the init can be created from a checkpoint.

/// Whether a process is a container's init or one of its exec processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Init,
    Exec,
}

/// Where a process is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The runtime created it; its user process has not run yet.
    Created,
    /// A Create from a checkpoint: nothing runs until Start restores it (init only).
    CreatedFromCheckpoint,
    /// Started (or restored), not reaped yet.
    Running,
    /// Frozen by the runtime (init only).
    Paused,
    /// Reaped; its exit is known and published.
    Stopped,
    /// Deleted through the Task API; nothing more happens to it.
    Deleted,
}

impl State {
    /// Every state, for exhaustive tests and tables.
    pub const ALL: [State; 6] = [
        State::Created,
        State::CreatedFromCheckpoint,
        State::Running,
        State::Paused,
        State::Stopped,
        State::Deleted,
    ];

    /// The word error messages use for this state.
    pub fn word(self) -> &'static str {
        match self {
            State::Created => "created",
            State::CreatedFromCheckpoint => "created-from-checkpoint",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
            State::Deleted => "deleted",
        }
    }
}

/// Something that happens to a process, or an operation that asks whether it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The runtime started (or restored) the process.
    Start,
    /// The runtime froze the container.
    Pause,
    /// The runtime thawed the container.
    Resume,
    /// A checkpoint of the container may be taken (state unchanged).
    Checkpoint,
    /// The container's resources may be updated (state unchanged).
    Update,
    /// A signal may be delivered (state unchanged).
    Kill,
    /// An exec process may be added to the container (asked of the init; state unchanged).
    AddExec,
    /// An exec process of the container may start (asked of the init; state unchanged).
    HostExec,
    /// The process was reaped.
    Exit,
    /// The process is deleted through the Task API.
    Delete,
}

impl Event {
    /// Every event, for exhaustive tests.
    pub const ALL: [Event; 10] = [
        Event::Start,
        Event::Pause,
        Event::Resume,
        Event::Checkpoint,
        Event::Update,
        Event::Kill,
        Event::AddExec,
        Event::HostExec,
        Event::Exit,
        Event::Delete,
    ];

    /// The verb error messages use: `cannot <verb> a <state> container`.
    fn verb(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Pause => "pause",
            Event::Resume => "resume",
            Event::Checkpoint => "checkpoint",
            Event::Update => "update",
            Event::Kill => "signal",
            Event::AddExec => "exec in",
            Event::HostExec => "start an exec in",
            Event::Exit => "reap",
            Event::Delete => "delete",
        }
    }
}

/// An event the process's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub role: Role,
    pub state: State,
    pub event: Event,
}

impl Refused {
    /// True when the refusal means the process is gone (a signal after its exit): NOT_FOUND
    /// rather than FAILED_PRECONDITION.
    pub fn already_finished(&self) -> bool {
        self.event == Event::Kill && matches!(self.state, State::Stopped | State::Deleted)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.already_finished() {
            return f.write_str("process already finished");
        }
        let noun = match self.role {
            Role::Init => "container",
            Role::Exec => "exec",
        };
        write!(
            f,
            "cannot {} a {} {noun}",
            self.event.verb(),
            self.state.word()
        )
    }
}

/// The state after `event`, or why `event` is not allowed in `from`.
pub fn next(role: Role, from: State, event: Event) -> Result<State, Refused> {
    use Event as E;
    use State as S;
    let to = match role {
        Role::Init => match (from, event) {
            (S::Created | S::CreatedFromCheckpoint, E::Start) => S::Running,
            (S::Running, E::Pause) => S::Paused,
            (S::Paused, E::Resume) => S::Running,
            (S::Running | S::Paused, E::Checkpoint) => from,
            (S::Created | S::CreatedFromCheckpoint | S::Running | S::Paused, E::Update) => from,
            // A created init is signalled through the runtime too (containerd kills created
            // tasks that never start).
            (S::Created | S::CreatedFromCheckpoint | S::Running | S::Paused, E::Kill) => from,
            (S::Created | S::CreatedFromCheckpoint | S::Running | S::Paused, E::AddExec) => from,
            (S::Running, E::HostExec) => from,
            (S::Created | S::CreatedFromCheckpoint | S::Running | S::Paused, E::Exit) => S::Stopped,
            // A created or paused init is deleted by force (the runtime kills it); the delete
            // completes once its exit is reaped, from Stopped.
            (S::Created | S::CreatedFromCheckpoint | S::Paused | S::Stopped, E::Delete) => {
                S::Deleted
            }
            _ => {
                return Err(Refused {
                    role,
                    state: from,
                    event,
                })
            }
        },
        Role::Exec => match (from, event) {
            (S::Created, E::Start) => S::Running,
            (S::Running, E::Kill) => from,
            (S::Created | S::Running, E::Exit) => S::Stopped,
            (S::Created | S::Stopped, E::Delete) => S::Deleted,
            _ => {
                return Err(Refused {
                    role,
                    state: from,
                    event,
                })
            }
        },
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use State as S;

    /// Every legal transition, written out independently of `next`: (role, from, event, to).
    /// Any (role, state, event) not listed here must be refused.
    const LEGAL: &[(Role, State, Event, State)] = &[
        // init: start
        (Role::Init, S::Created, E::Start, S::Running),
        (Role::Init, S::CreatedFromCheckpoint, E::Start, S::Running),
        // init: pause and resume
        (Role::Init, S::Running, E::Pause, S::Paused),
        (Role::Init, S::Paused, E::Resume, S::Running),
        // init: checkpoint
        (Role::Init, S::Running, E::Checkpoint, S::Running),
        (Role::Init, S::Paused, E::Checkpoint, S::Paused),
        // init: update
        (Role::Init, S::Created, E::Update, S::Created),
        (
            Role::Init,
            S::CreatedFromCheckpoint,
            E::Update,
            S::CreatedFromCheckpoint,
        ),
        (Role::Init, S::Running, E::Update, S::Running),
        (Role::Init, S::Paused, E::Update, S::Paused),
        // init: kill
        (Role::Init, S::Created, E::Kill, S::Created),
        (
            Role::Init,
            S::CreatedFromCheckpoint,
            E::Kill,
            S::CreatedFromCheckpoint,
        ),
        (Role::Init, S::Running, E::Kill, S::Running),
        (Role::Init, S::Paused, E::Kill, S::Paused),
        // init: adding an exec
        (Role::Init, S::Created, E::AddExec, S::Created),
        (
            Role::Init,
            S::CreatedFromCheckpoint,
            E::AddExec,
            S::CreatedFromCheckpoint,
        ),
        (Role::Init, S::Running, E::AddExec, S::Running),
        (Role::Init, S::Paused, E::AddExec, S::Paused),
        // init: starting an exec
        (Role::Init, S::Running, E::HostExec, S::Running),
        // init: exit
        (Role::Init, S::Created, E::Exit, S::Stopped),
        (Role::Init, S::CreatedFromCheckpoint, E::Exit, S::Stopped),
        (Role::Init, S::Running, E::Exit, S::Stopped),
        (Role::Init, S::Paused, E::Exit, S::Stopped),
        // init: delete
        (Role::Init, S::Created, E::Delete, S::Deleted),
        (Role::Init, S::CreatedFromCheckpoint, E::Delete, S::Deleted),
        (Role::Init, S::Paused, E::Delete, S::Deleted),
        (Role::Init, S::Stopped, E::Delete, S::Deleted),
        // exec
        (Role::Exec, S::Created, E::Start, S::Running),
        (Role::Exec, S::Running, E::Kill, S::Running),
        (Role::Exec, S::Created, E::Exit, S::Stopped),
        (Role::Exec, S::Running, E::Exit, S::Stopped),
        (Role::Exec, S::Created, E::Delete, S::Deleted),
        (Role::Exec, S::Stopped, E::Delete, S::Deleted),
    ];

    fn legal(role: Role, from: State, event: Event) -> Option<State> {
        LEGAL
            .iter()
            .find(|(r, f, e, _)| *r == role && *f == from && *e == event)
            .map(|(.., to)| *to)
    }

    #[test]
    fn every_legal_transition_lands_where_the_table_says() {
        for &(role, from, event, to) in LEGAL {
            assert_eq!(
                next(role, from, event),
                Ok(to),
                "{role:?} {from:?} {event:?}"
            );
        }
    }

    #[test]
    fn every_other_transition_is_refused_with_its_state_and_event() {
        let mut refused = 0;
        for role in [Role::Init, Role::Exec] {
            for from in State::ALL {
                for event in Event::ALL {
                    if legal(role, from, event).is_some() {
                        continue;
                    }
                    assert_eq!(
                        next(role, from, event),
                        Err(Refused {
                            role,
                            state: from,
                            event
                        }),
                        "{role:?} {from:?} {event:?} must be refused"
                    );
                    refused += 1;
                }
            }
        }
        // 2 roles x 6 states x 10 events, minus the legal ones.
        assert_eq!(refused, 2 * 6 * 10 - LEGAL.len());
    }

    #[test]
    fn a_signal_after_the_exit_is_not_found_every_other_refusal_a_precondition() {
        for role in [Role::Init, Role::Exec] {
            for from in State::ALL {
                for event in Event::ALL {
                    let Err(r) = next(role, from, event) else {
                        continue;
                    };
                    let gone = event == E::Kill && matches!(from, S::Stopped | S::Deleted);
                    assert_eq!(r.already_finished(), gone, "{r:?}");
                    let text = r.to_string();
                    if gone {
                        assert_eq!(text, "process already finished");
                    } else {
                        assert!(
                            text.starts_with("cannot ") && text.contains(from.word()),
                            "{r:?}: {text}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn messages_name_the_operation_and_the_state() {
        let r = next(Role::Init, S::Stopped, E::AddExec).unwrap_err();
        assert_eq!(r.to_string(), "cannot exec in a stopped container");
        let r = next(Role::Init, S::Running, E::Delete).unwrap_err();
        assert_eq!(r.to_string(), "cannot delete a running container");
        let r = next(Role::Exec, S::Created, E::Kill).unwrap_err();
        assert_eq!(r.to_string(), "cannot signal a created exec");
    }

    #[test]
    fn a_whole_life_walks_through_the_table() {
        let mut s = S::Created;
        for e in [
            E::Start,
            E::Pause,
            E::Checkpoint,
            E::Resume,
            E::Kill,
            E::Exit,
            E::Delete,
        ] {
            s = next(Role::Init, s, e).unwrap();
        }
        assert_eq!(s, S::Deleted);
        // Nothing happens to a deleted process any more.
        for e in Event::ALL {
            assert!(next(Role::Init, S::Deleted, e).is_err(), "{e:?}");
            assert!(next(Role::Exec, S::Deleted, e).is_err(), "{e:?}");
        }
    }
}
