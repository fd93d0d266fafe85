//! Wrapping task events the way containerd expects them on `Events/Forward`.
//!
//! The `Any` type URL is the bare protobuf full name, e.g.
//! `containerd.events.TaskExit`, with no `type.googleapis.com/` prefix: that is
//! what containerd's own shims send (Go `typeurl.MarshalAny` falls back to
//! `proto.MessageName`), and containerd's consumers compare type URLs
//! verbatim (`typeurl.Is`), so a prefixed URL would not match them.

use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp as PbTimestamp;
use protobuf::Message;

/// A containerd event message and its type URL.
///
/// The URL is spelled out rather than read from `MessageFull::descriptor()`: building the
/// descriptors of the events proto file (and everything it imports) costs about 350 kB of heap
/// for the life of the shim, measured with mallinfo2, which is most of an idle shim's memory.
/// A unit test checks every URL against the descriptor.
pub trait TaskEvent: Message {
    /// The bare protobuf full name containerd compares (`containerd.events.TaskExit`).
    const TYPE_URL: &'static str;
}

macro_rules! task_events {
    ($($name:ident),* $(,)?) => {
        $(impl TaskEvent for containerd_shim_protos::events::task::$name {
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($name));
        })*
    };
}

task_events!(
    TaskCreate,
    TaskStart,
    TaskDelete,
    TaskIO,
    TaskExit,
    TaskOOM,
    TaskExecAdded,
    TaskExecStarted,
    TaskPaused,
    TaskResumed,
    TaskCheckpointed,
);

/// The type URL containerd expects for message type `M`.
pub fn type_url<M: TaskEvent>() -> String {
    M::TYPE_URL.to_owned()
}

/// Packs `event` into an `Any` with containerd's type URL convention.
pub fn to_any<M: TaskEvent>(event: &M) -> Result<Any, protobuf::Error> {
    Ok(Any {
        type_url: type_url::<M>(),
        value: event.write_to_bytes()?,
        ..Default::default()
    })
}

/// A protobuf `Timestamp` for `t` (clamped to the epoch for earlier times).
pub fn pb_timestamp(t: SystemTime) -> PbTimestamp {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    PbTimestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

/// The `Forward` request carrying one event.
pub fn forward_request(namespace: &str, topic: &str, event: Any, at: SystemTime) -> ForwardRequest {
    let envelope = Envelope {
        timestamp: Some(pb_timestamp(at)).into(),
        namespace: namespace.to_owned(),
        topic: topic.to_owned(),
        event: Some(event).into(),
        ..Default::default()
    };
    ForwardRequest {
        envelope: Some(envelope).into(),
        ..Default::default()
    }
}

/// The socket path in a `TTRPC_ADDRESS`, which may be a plain path or a
/// `unix://` URL.
pub fn socket_path(ttrpc_address: &str) -> &str {
    ttrpc_address
        .strip_prefix("unix://")
        .unwrap_or(ttrpc_address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
    use protobuf::Message;
    use std::time::Duration;

    #[test]
    fn type_url_is_bare_full_name() {
        assert_eq!(type_url::<TaskExit>(), "containerd.events.TaskExit");
        assert_eq!(type_url::<TaskOOM>(), "containerd.events.TaskOOM");
    }

    #[test]
    fn any_round_trips() {
        let exit = TaskExit {
            container_id: "c".into(),
            pid: 7,
            exit_status: 3,
            ..Default::default()
        };
        let any = to_any(&exit).expect("encode");
        assert_eq!(
            TaskExit::parse_from_bytes(&any.value).expect("decode"),
            exit
        );
    }

    #[test]
    fn request_carries_envelope() {
        let at = UNIX_EPOCH + Duration::new(5, 6);
        let any = to_any(&TaskOOM::default()).expect("encode");
        let req = forward_request("ns", "/tasks/oom", any, at);
        let env = req.envelope.as_ref().expect("envelope");
        assert_eq!(env.namespace, "ns");
        assert_eq!(env.topic, "/tasks/oom");
        assert_eq!((env.timestamp.seconds, env.timestamp.nanos), (5, 6));
        assert_eq!(env.event.type_url, "containerd.events.TaskOOM");
    }

    #[test]
    fn address_forms() {
        assert_eq!(socket_path("unix:///run/c.sock"), "/run/c.sock");
        assert_eq!(socket_path("/run/c.sock"), "/run/c.sock");
    }
}

#[cfg(test)]
mod type_url_tests {
    use super::TaskEvent;
    use containerd_shim_protos::events::task::*;
    use protobuf::MessageFull;

    fn check<M: TaskEvent + MessageFull>() {
        assert_eq!(M::TYPE_URL, M::descriptor().full_name());
    }

    #[test]
    fn spelled_out_urls_match_the_descriptors() {
        check::<TaskCreate>();
        check::<TaskStart>();
        check::<TaskDelete>();
        check::<TaskIO>();
        check::<TaskExit>();
        check::<TaskOOM>();
        check::<TaskExecAdded>();
        check::<TaskExecStarted>();
        check::<TaskPaused>();
        check::<TaskResumed>();
        check::<TaskCheckpointed>();
    }
}
