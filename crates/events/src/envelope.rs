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
use protobuf::MessageFull;

/// The type URL containerd expects for message type `M`.
pub fn type_url<M: MessageFull>() -> String {
    M::descriptor().full_name().to_owned()
}

/// Packs `event` into an `Any` with containerd's type URL convention.
pub fn to_any<M: MessageFull>(event: &M) -> Result<Any, protobuf::Error> {
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
