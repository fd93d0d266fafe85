//! The shim's one error type for the Task API: a code and a message that carries its context
//! (container, exec, file, runtime command), converted to a ttrpc status in one place
//! (`From<Error> for ttrpc::Error`).
//!
//! Codes follow containerd's `errgrpc` mapping: NOT_FOUND makes containerd treat a task as gone,
//! FAILED_PRECONDITION is an operation the process's state does not allow
//! ([`crate::process::state`]), UNKNOWN is a runtime failure the shim cannot classify.

use containerd_shim_protos::ttrpc;

use crate::process::Refused;
use crate::runtime::RuntimeError;

/// What kind of failure, as the gRPC code containerd receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    DeadlineExceeded,
    Internal,
    Unknown,
}

/// A failed Task API operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    message: String,
}

/// The result of a Task operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with `code` and a message that already names what failed.
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// The request itself is wrong (bad id, bad options, bad payload).
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::InvalidArgument, message)
    }

    /// No such container or exec.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Code::NotFound, message)
    }

    /// The shim itself failed (a file, a pipe, a syscall).
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Code::Internal, message)
    }

    /// The process already exited: what a signal to it answers (NOT_FOUND, as containerd's runc
    /// shim answers and as callers that race a task's exit expect).
    pub fn finished(container: &str) -> Error {
        Error::not_found(format!("container {container}: process already finished"))
    }

    /// A runtime invocation failed: NOT_FOUND when the runtime says the container does not
    /// exist, UNKNOWN otherwise.
    pub fn runtime(container: &str, e: RuntimeError) -> Error {
        let code = if e.not_found {
            Code::NotFound
        } else {
            Code::Unknown
        };
        Error::new(code, format!("container {container}: {e}"))
    }

    /// An event the process's state refused.
    pub fn refused(container: &str, exec_id: &str, r: Refused) -> Error {
        if r.already_finished() {
            return Error::finished(container);
        }
        let message = if exec_id.is_empty() {
            format!("container {container}: {r}")
        } else {
            format!("container {container}: exec {exec_id}: {r}")
        };
        Error::new(Code::FailedPrecondition, message)
    }

    /// The message, for logs and failure records.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> ttrpc::Error {
        let code = match e.code {
            Code::InvalidArgument => ttrpc::Code::INVALID_ARGUMENT,
            Code::NotFound => ttrpc::Code::NOT_FOUND,
            Code::AlreadyExists => ttrpc::Code::ALREADY_EXISTS,
            Code::FailedPrecondition => ttrpc::Code::FAILED_PRECONDITION,
            Code::DeadlineExceeded => ttrpc::Code::DEADLINE_EXCEEDED,
            Code::Internal => ttrpc::Code::INTERNAL,
            Code::Unknown => ttrpc::Code::UNKNOWN,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{Event, Role, State};

    fn status_of(e: Error) -> (ttrpc::Code, String) {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn every_code_maps_to_its_grpc_code() {
        for (code, want) in [
            (Code::InvalidArgument, ttrpc::Code::INVALID_ARGUMENT),
            (Code::NotFound, ttrpc::Code::NOT_FOUND),
            (Code::AlreadyExists, ttrpc::Code::ALREADY_EXISTS),
            (Code::FailedPrecondition, ttrpc::Code::FAILED_PRECONDITION),
            (Code::DeadlineExceeded, ttrpc::Code::DEADLINE_EXCEEDED),
            (Code::Internal, ttrpc::Code::INTERNAL),
            (Code::Unknown, ttrpc::Code::UNKNOWN),
        ] {
            assert_eq!(status_of(Error::new(code, "m")), (want, "m".to_string()));
        }
    }

    #[test]
    fn refusals_are_preconditions_except_a_signal_after_the_exit() {
        let r = Refused {
            role: Role::Init,
            state: State::Stopped,
            event: Event::Pause,
        };
        assert_eq!(
            status_of(Error::refused("c1", "", r)),
            (
                ttrpc::Code::FAILED_PRECONDITION,
                "container c1: cannot pause a stopped container".to_string()
            )
        );
        let r = Refused {
            role: Role::Exec,
            state: State::Stopped,
            event: Event::Kill,
        };
        assert_eq!(
            status_of(Error::refused("c1", "e1", r)),
            (
                ttrpc::Code::NOT_FOUND,
                "container c1: process already finished".to_string()
            )
        );
    }

    #[test]
    fn runtime_failures_are_not_found_only_when_the_runtime_says_so() {
        let e = |not_found| RuntimeError {
            action: "runc kill c1 9".into(),
            message: "boom".into(),
            not_found,
        };
        assert_eq!(
            status_of(Error::runtime("c1", e(true))).0,
            ttrpc::Code::NOT_FOUND
        );
        let (code, msg) = status_of(Error::runtime("c1", e(false)));
        assert_eq!(code, ttrpc::Code::UNKNOWN);
        assert_eq!(msg, "container c1: runc kill c1 9: boom");
    }
}
